"""The XLA flags every test process runs under (tests/conftest.py sets them before JAX starts).

Test graphs are small and compiled once each, so compiling dominates the suite's time:
- XLA's backend optimisation costs more than it saves;
- XLA:CPU's MLIR fusion emitters compile about twice as slowly as its classic emitters, for the
  same computation (measured with jaxlib 0.10.2). The flag is given only where jaxlib is known
  to have it (an unknown flag in XLA_FLAGS aborts the process).
Tests that compare numbers compare runs made under the same flags (tests/core/test_distributed.py
hands them to its worker processes; subprocesses inherit them).
"""

from __future__ import annotations

import importlib.metadata
import os

TEST_XLA_FLAGS = ["--xla_backend_optimization_level=0"]
try:
    if tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2]) >= (0, 6):
        TEST_XLA_FLAGS.append("--xla_cpu_use_fusion_emitters=false")
except (importlib.metadata.PackageNotFoundError, ValueError):
    pass


def set_test_xla_flags() -> None:
    """Add the flags to XLA_FLAGS (keeping the user's), before JAX is imported."""
    for flag in TEST_XLA_FLAGS:
        if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
