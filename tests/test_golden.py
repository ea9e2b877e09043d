"""Golden numbers: the layout may move code, never change what it computes.

Recorded once with METAPLASTIC_RECORD_GOLDEN=1 (same XLA flags as the suite, see conftest.py);
afterwards every value must match bit for bit.
"""

from __future__ import annotations

import json
import os
import pathlib

from metaplastic import cli
from metaplastic.core.metrics import read_metrics

GOLDEN = pathlib.Path(__file__).parent / "golden"
EXPERIMENTS = pathlib.Path(__file__).parents[1] / "experiments"
RECORD = os.environ.get("METAPLASTIC_RECORD_GOLDEN") == "1"


def check(name: str, values) -> None:
    path = GOLDEN / name
    if RECORD:
        path.write_text(json.dumps(values, indent=1) + "\n")
    assert values == json.loads(path.read_text())


def test_quickstart_tiny_first_20_meta_losses(tmp_path):
    code = cli.main(["train", "--config", str(EXPERIMENTS / "train" / "quickstart.py") + ":tiny", "--workdir",
                     str(tmp_path), "--no-progress", "--config.num_steps=20"])
    assert code == 0
    losses = [row["meta_loss"] for row in read_metrics(tmp_path)]
    assert len(losses) == 20
    check("quickstart_tiny_meta_losses.json", losses)


def test_glyphs_v2_ridge_accuracies_in_quick_datasets_study(tmp_path):
    code = cli.main(["evaluate", "--config", str(EXPERIMENTS / "eval" / "datasets.py") + ":quick", "--workdir",
                     str(tmp_path), "--no-progress", "--config.rule_checkpoint=pretrained:glyphs-v2"])
    assert code == 0
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    accuracies = sorted([c["dataset"], c["method"], c["seed"], c["shots"], c["steps"], c["accuracy"]["ridge"]]
                        for c in cells)
    assert len(accuracies) == 48  # 2 datasets × 6 methods × 2 seeds × 2 shots
    check("glyphs_v2_quick_datasets_ridge.json", accuracies)
