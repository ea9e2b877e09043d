"""The public API from the package root: real docstrings, and `run_study` with overrides."""

import json
import sys

import metaplastic
from metaplastic.core import config as config_lib
from metaplastic.registries import get_registry


def test_public_api_is_imported_from_the_package_root_with_real_docstrings():
    import inspect
    import subprocess

    for name in set(metaplastic.__all__) - {"__version__"}:
        doc = inspect.getdoc(getattr(metaplastic, name)) or ""
        assert len(doc.splitlines()) >= 5, f"metaplastic.{name}: docstring of {len(doc.splitlines())} lines"
    doc = inspect.getdoc(metaplastic.apply_rule)
    for needed in ("[0, 1]", "activation", "BatchNorm", "full `variables`", "recommended_steps"):
        assert needed in doc, needed
    assert metaplastic.RidgeCosDist is get_registry().get("meta_objective", "ridge_cosdist")
    light = subprocess.run([sys.executable, "-c", "import sys, metaplastic; print('jax' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert light.stdout.strip() == "False", light.stdout + light.stderr  # `import metaplastic` stays light


def test_run_study_runs_a_study_config_with_overrides(tmp_path):
    import ml_collections

    study = config_lib.load_config_file("experiments/eval/datasets.py:quick")
    study.methods = ml_collections.ConfigDict({"raw": {"method": "raw_input"}})
    study.datasets = ml_collections.ConfigDict({"digits": study.datasets.digits_5_9.to_dict()})
    overrides = {"seeds": 1, "shots": (1,), "primary_method": "raw"}
    results = metaplastic.run_study(study, tmp_path, overrides, progress=False)
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(results["cells"]) == len(written["cells"]) > 0
    assert {cell["seed"] for cell in written["cells"]} == {0}
