"""`metaplastic config`: resolved fields, defaults and docs, a file's docstring and variants, studies,
another component's fields, a bad override in one line."""

from __future__ import annotations

from helpers.cli import ROOT, TINY, run


def test_config_prints_resolved_fields_defaults_and_docs(capsys):
    code, out, err = run(capsys, "config", TINY, "--config.num_steps", "3", "--config.remat=true")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"# {TINY} --config.num_steps 3 --config.remat=true: resolved training config")
    by_field = {line.split(" = ")[0]: line for line in lines if line.startswith("config.")}
    # a training field: value after the overrides, its doc from default.py, the default it differs from
    assert by_field["config.num_steps"].startswith("config.num_steps = 3 ")
    assert "# θ-steps (meta-gradient updates)  [default: 1000]" in by_field["config.num_steps"]
    assert by_field["config.remat"].startswith("config.remat = True ")
    assert by_field["config.seed"].endswith("# every random draw of the run derives from it")  # = default
    # every component's fields, with the dataclass field comments as docs
    assert "config.update_rule_config.hidden" in by_field and "config.base_model_config.activation" in by_field
    assert "# 0 = every allowed class" in by_field["config.task_family_config.classes_per_task"]
    assert "[default: ()]" in by_field["config.task_family_config.classes"]
    assert "# K choices (each compiles once)" in by_field["config.schedule.truncation_lengths"]
    assert "config.gradient_estimator_config" in by_field  # a component without fields still shows
    assert any(line.startswith("# optimizer: Adam on θ") for line in lines)  # a section's comment


def test_config_prints_the_files_docstring_and_its_variants(capsys, tmp_path):
    config_file = tmp_path / "mine.py"
    config_file.write_text('''"""My study of things.

More about them."""
import ml_collections
from metaplastic.core.config import apply_variant
from metaplastic.experiments.train import default


def small(config):
    """Fewer steps. Not this sentence."""
    config.num_steps = 3


def bare(config):
    config.num_steps = 4


def get_config(arg=None):
    return apply_variant(default.get_config(), arg, {"small": small, "bare": bare}, "mine.py")
''')
    code, out, err = run(capsys, "config", f"{config_file}:small")
    assert code == 0 and err == ""
    lines = out.splitlines()
    head = lines[1:lines.index(next(line for line in lines if line.startswith("config.")))]
    assert head == ["#", "# My study of things.", "#", "# More about them.", "#", "# variants (mine.py:NAME):",
                    "# * :small  Fewer steps.", "#   :bare", "#"]
    code, out, _ = run(capsys, "config", "experiments/train/default.py")
    assert code == 0 and "# variants: none (default.py takes no :NAME)" in out
    code, out, _ = run(capsys, "config", TINY)
    assert code == 0 and any(line.startswith("# * :tiny") for line in out.splitlines())


def test_every_shipped_variant_says_what_it_is():
    from metaplastic.core import config as config_lib

    for path in sorted((ROOT / "experiments").glob("*/*.py")):
        if "def get_config" in path.read_text():
            _, about = config_lib.read_config_file(str(path))
            assert about.doc, path
            assert all(about.variants.values()), (path, about.variants)  # each with its docstring


def test_config_of_another_component_shows_its_fields(capsys):
    code, out, _ = run(capsys, "config", TINY, "--config.update_rule=metz2019")
    assert code == 0
    assert "config.update_rule = 'metz2019'" in out and "[default: 'simple_local']" in out
    assert "config.update_rule_config.hidden" not in out and "config.update_rule_config.delta_dim" in out


def test_config_works_on_studies(capsys):
    code, out, _ = run(capsys, "config", "experiments/eval/datasets.py:quick", "--config.seeds=3")
    assert code == 0
    assert ": resolved study." in out.splitlines()[0]
    assert "config.seeds = 3" in out and "# repetitions: permutation" in out
    assert "config.datasets.digits_5_9.max_test = 100" in out and "[default: 2000]" in out
    assert "config.methods.learned.checkpoint_step = -1" in out and "config.methods.vae.likelihood" in out


def test_config_refuses_a_bad_override_in_one_line(capsys):
    code, out, err = run(capsys, "config", TINY, "--config.num_stepz=3")
    assert code == 2 and out == ""
    assert err == ("metaplastic: error: unknown config field 'config.num_stepz'; "
                   "did you mean 'config.num_steps'?\n")
