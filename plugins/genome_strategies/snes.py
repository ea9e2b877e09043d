"""`snes`: separable natural evolution strategies (Schaul et al. 2011) from evosax: a diagonal search
distribution, cheap per generation and robust to noisy fitness."""

from __future__ import annotations

import dataclasses

from metaplastic.core.evolution import EvosaxStrategy
from metaplastic.registries import hookimpl


@dataclasses.dataclass(frozen=True)
class SNES(EvosaxStrategy):
    ALGORITHM = "SNES"


@hookimpl
def metaplastic_genome_strategies():
    return {"snes": SNES}
