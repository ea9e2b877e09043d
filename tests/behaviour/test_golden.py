"""Golden numbers: the layout may move code, never change what it computes.

Recorded once with METAPLASTIC_RECORD_GOLDEN=1 (same XLA flags as the suite, see conftest.py).
On the machine that recorded them the values match bit for bit; XLA:CPU's code differs with the
processor's vector instructions (AVX2 vs AVX-512), which moves float32 results in the last bits
(measured: 1.1e-7 relative on the first meta-loss). So floats must agree to 1e-5 relative, far
below what any real change of the computation moves them (a changed seed or formula: > 1e-3);
counts and labels must be equal.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from metaplastic import cli
from metaplastic.core.metrics import read_metrics

from helpers import REPO_ROOT


GOLDEN = pathlib.Path(__file__).parent / "golden"
EXPERIMENTS = REPO_ROOT / "experiments"
RECORD = os.environ.get("METAPLASTIC_RECORD_GOLDEN") == "1"


def check(name: str, values) -> None:
    path = GOLDEN / name
    if RECORD:
        path.write_text(json.dumps(values, indent=1) + "\n")
    assert_same(values, json.loads(path.read_text()))


def assert_same(values, golden) -> None:
    assert len(values) == len(golden)
    for got, want in zip(values, golden):
        got, want = (got, want) if isinstance(got, list) else ([got], [want])
        assert [g for g in got if not isinstance(g, float)] == [w for w in want if not isinstance(w, float)]
        np.testing.assert_allclose([g for g in got if isinstance(g, float)],
                                   [w for w in want if isinstance(w, float)], rtol=1e-5, atol=1e-7)


def test_a_real_change_is_caught_and_a_last_bit_one_is_not():
    golden = [1.0955741405487061, ["digits", "hebbian", 0, 1, 5, 0.35]]
    assert_same([1.0955742597579956, ["digits", "hebbian", 0, 1, 5, 0.35]], golden)  # AVX2 vs AVX-512
    for changed in ([1.0966, ["digits", "hebbian", 0, 1, 5, 0.35]],
                    [1.0955741405487061, ["digits", "hebbian", 0, 1, 5, 0.36]],
                    [1.0955741405487061, ["digits", "vae", 0, 1, 5, 0.35]]):
        with pytest.raises(AssertionError):
            assert_same(changed, golden)


def test_digits_tiny_first_20_meta_losses(tmp_path):
    code = cli.main(["train", "--config", str(EXPERIMENTS / "train" / "digits.py") + ":tiny", "--workdir",
                     str(tmp_path), "--no-progress", "--config.num_steps=20"])
    assert code == 0
    losses = [row["meta_loss"] for row in read_metrics(tmp_path)]
    assert len(losses) == 20
    check("digits_tiny_meta_losses.json", losses)


def test_glyphs_v2_ridge_accuracies_in_quick_datasets_study(tmp_path):
    code = cli.main(["evaluate", "--config", str(EXPERIMENTS / "eval" / "datasets.py") + ":quick", "--workdir",
                     str(tmp_path), "--no-progress", "--config.rule_checkpoint=pretrained:glyphs-v2"])
    assert code == 0
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    accuracies = sorted([c["dataset"], c["method"], c["seed"], c["shots"], c["steps"], c["accuracy"]["ridge"]]
                        for c in cells)
    assert len(accuracies) == 48  # 2 datasets × 6 methods × 2 seeds × 2 shots
    check("glyphs_v2_quick_datasets_ridge.json", accuracies)
