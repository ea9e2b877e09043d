"""`metaplastic config`: resolved fields, defaults and docs (from the fields' metadata), a file's docstring
and variants, studies, another component's fields, a bad override in one line; every field has a doc."""

from __future__ import annotations

import dataclasses
import re

from metaplastic.core import config as config_lib
from metaplastic.core.documented import documented, field_docs, nested_field_docs
from metaplastic.core.interfaces import MetaObjective
from metaplastic.registries import get_registry, hookimpl
from metaplastic.registries import registry as registry_module

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


@dataclasses.dataclass(frozen=True)
class _Probe(MetaObjective):
    scale: float = documented(2.0, "how far the probe reaches")
    plain: int = 3

    def loss(self, features_fn, batch_a, batch_b):
        return 0.0


class _ProbePlugin:
    @hookimpl
    def metaplastic_meta_objectives(self):
        return {"doc_probe": _Probe}


def test_docs_come_from_field_metadata(capsys, monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.Registry(extra_plugins=(_ProbePlugin(),)))
    code, out, _ = run(capsys, "config", TINY, "--config.meta_objective=doc_probe",
                       "--config.meta_objective_config.scale=5")
    assert code == 0
    by_field = {line.split(" = ")[0]: line for line in out.splitlines() if line.startswith("config.")}
    assert by_field["config.meta_objective_config.scale"].endswith(
        "# how far the probe reaches  [default: 2.0]")
    assert by_field["config.meta_objective_config.plain"] == "config.meta_objective_config.plain = 3"  # no doc


def test_the_listing_reads_no_source():
    # documentation is data (core.documented): no comment scraping of configs or components
    source = (ROOT / "src" / "metaplastic" / "config_listing.py").read_text()
    assert not re.search(r"\btokenize\b|getsource|_comments\(", source)


# 'kind:name.field' -> why that field needs no doc of its own (none today: every field has one).
UNDOCUMENTED: dict[str, str] = {}


def undocumented_fields() -> list[str]:
    """'kind:name.field' of every registered component dataclass's field, and 'training.x' / 'study.x' of
    every training and study default field, that has no doc in its metadata."""
    from metaplastic.core.evaluation import study as study_lib
    from metaplastic.experiments.train import default

    missing = []
    registry = get_registry()
    for entry in registry.all_entries():
        factory = registry.get(entry.kind, entry.name)
        if dataclasses.is_dataclass(factory):
            docs = field_docs(factory)
            missing += [f"{entry.kind}:{entry.name}.{f.name}" for f in dataclasses.fields(factory)
                        if f.name not in docs]
        else:  # a factory function (the shipped rules) takes no config field
            assert not config_lib.component_defaults(entry.kind, entry.name), entry
    training = nested_field_docs(default.Training)
    missing += [f"training.{key}" for key in _dotted_keys(default.get_config().to_dict()) if key not in training]
    missing += [f"study.{name}" for name in study_lib.STUDY_DEFAULTS if name not in field_docs(study_lib.StudyFields)]
    missing += [f"dataset.{f.name}" for f in dataclasses.fields(study_lib.DatasetSpec)
                if f.name not in field_docs(study_lib.DatasetSpec)]
    return sorted(key for key in missing if key not in UNDOCUMENTED)


def _dotted_keys(tree: dict, prefix: str = "") -> list[str]:
    """Leaf and section names of a config dict, dotted; a component's `*_config` section is one name."""
    keys = []
    for key, value in tree.items():
        keys.append(prefix + key)
        if isinstance(value, dict) and not key.endswith("_config"):
            keys += _dotted_keys(value, f"{prefix}{key}.")
    return keys


def test_every_component_training_and_study_field_has_a_doc():
    assert undocumented_fields() == []


def test_the_doc_check_can_fail(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", registry_module.Registry(extra_plugins=(_ProbePlugin(),)))
    assert undocumented_fields() == ["meta_objective:doc_probe.plain"]
