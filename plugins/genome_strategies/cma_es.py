"""`cma_es`: CMA-ES (Hansen 2016) from evosax: adapts a full covariance of the genome's search
distribution; the strongest default for a few dozen dimensions."""

from __future__ import annotations

import dataclasses

from metaplastic.core.evolution import EvosaxStrategy
from metaplastic.registries import hookimpl


@dataclasses.dataclass(frozen=True)
class CMAES(EvosaxStrategy):
    ALGORITHM = "CMA_ES"


@hookimpl
def metaplastic_genome_strategies():
    return {"cma_es": CMAES}
