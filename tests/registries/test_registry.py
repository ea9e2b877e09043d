import dataclasses
import re
import subprocess
import sys

import pytest

from helpers.distributions import make_distribution
from metaplastic.core import config as config_lib
from metaplastic.core.trainer import MetaTrainer
from metaplastic.registries import ComponentError, Registry, get_registry

EXTERNAL_OBJECTIVE = """
import dataclasses
import jax.numpy as jnp
from metaplastic.core.interfaces import MetaObjective
from metaplastic.registries import hookimpl

@dataclasses.dataclass(frozen=True)
class FeatureSpread(MetaObjective):
    '''Negative mean feature variance on batch B: a toy objective from outside the package.'''
    weight: float = 1.0

    def loss(self, features_fn, batch_a, batch_b):
        return -self.weight * jnp.mean(jnp.var(features_fn(batch_b.x), axis=0))

@hookimpl
def metaplastic_meta_objectives():
    return {"feature_spread": FeatureSpread}
"""


def plugin_table(lines: list[str]) -> list[dict[str, str]]:
    """The rows of `metaplastic plugins`' table, cut at its header's column starts."""
    header = lines[0]
    names = header.split()
    assert names == list(Registry.REPORT_HEADER)
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[1:]:
        if not line:  # the notes follow
            break
        rows.append({name: line[a:b].strip() for name, a, b in zip(names, starts, starts[1:] + [None])})
    return rows


def test_builtins_are_registered_with_origin():
    registry = get_registry()
    for kind, name in [("base_model", "mlp_bn"), ("update_rule", "simple_local"),
                       ("meta_objective", "ridge_cosdist"), ("task_family", "image_classes"),
                       ("gradient_estimator", "truncated_backprop"), ("data_source", "sklearn_digits")]:
        entry = registry.entry(kind, name)
        assert entry.origin == "built-in"
        assert entry.module.startswith("metaplastic.plugins.")


def test_unknown_name_lists_registered_and_closest():
    with pytest.raises(ComponentError) as error:
        get_registry().get("meta_objective", "ridge_cosdst")
    message = str(error.value)
    assert "ridge_cosdist" in message and "did you mean 'ridge_cosdist'" in message
    assert "\n" not in message
    with pytest.raises(ComponentError, match="unknown component kind"):
        get_registry().get("optimiser", "adam")


def test_external_plugin_trains_by_name(tmp_path, monkeypatch, fresh_registry):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    entry = registry.entry("meta_objective", "feature_spread")
    assert entry.origin == "spread-objective"

    config = config_lib.load_config_file("experiments/train/digits.py:tiny")
    config = config_lib.resolve(config, [("meta_objective", "feature_spread"),
                                         ("meta_objective_config.weight", "2.0")])
    assert config.meta_objective_config.to_dict() == {"weight": 2.0}
    trainer = MetaTrainer(config, tmp_path / "run")
    summary = trainer.run(progress=False)
    assert summary["steps"] == config.num_steps and summary["skipped"] == 0
    assert type(trainer.components.objective).__name__ == "FeatureSpread"


def test_broken_plugin_is_reported_and_skipped(tmp_path, monkeypatch, fresh_registry, capsys):
    make_distribution(tmp_path, "broken-dist", "broken_plugin", "raise RuntimeError('boom at import')\n")
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    assert len(registry.skipped) == 1
    line = registry.skipped[0]
    assert "broken-dist" in line and "RuntimeError: boom at import" in line and "skipped" in line
    assert "broken-dist" in capsys.readouterr().err
    assert "feature_spread" in registry.names("meta_objective")  # the run goes on


def test_autoload_can_be_switched_off(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry()
    assert "feature_spread" not in registry.names("meta_objective")
    assert "ridge_cosdist" in registry.names("meta_objective")
    monkeypatch.delenv("METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD")
    assert "feature_spread" in Registry().names("meta_objective")


def test_cli_lists_plugins_with_external_origin(tmp_path):
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    result = subprocess.run([sys.executable, "-m", "metaplastic", "plugins"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    rows = plugin_table(result.stdout.splitlines())
    assert [row for row in rows if row["name"] == "feature_spread"] == [dict(
        kind="meta_objective", name="feature_spread", origin="spread-objective",
        description="Negative mean feature variance on batch B: a toy objective from…",  # its docstring, cut
        module="spread_objective")]
    assert any((row["kind"], row["name"], row["origin"]) == ("update_rule", "simple_local", "built-in")
               for row in rows)


# ---------------------------------------------------------------- a plugin never takes the tool down

# Every broken plugin below also has good parts: a meta objective from a valid hook and, in the
# same update_rules mapping as the bad entry where there is one, an update rule.
GOOD_PARTS = """
from metaplastic.plugins.meta_objectives.ridge_cosdist import RidgeCosDist
from metaplastic.plugins.update_rules.simple_local import SimpleLocalRule
from metaplastic.registries import hookimpl

@hookimpl
def metaplastic_meta_objectives():
    return {"objective_MODULE": RidgeCosDist}
"""


@dataclasses.dataclass(frozen=True)
class Broken:
    """One installed third-party distribution that is broken in one way."""
    id: str
    source: str  # after GOOD_PARTS; MODULE is replaced by the module name
    line: str  # the one skipped line (a regex; DIST and MODULE are replaced)
    kept: tuple[str, ...] = ("meta_objective",)  # kinds whose good part must still work
    entry_points: str | None = None  # replaces the dist's entry_points.txt

    @property
    def dist(self) -> str:
        return f"{self.id}-dist"

    @property
    def module(self) -> str:
        return self.id.replace("-", "_") + "_plugin"

    def install(self, root) -> None:
        make_distribution(root, self.dist, self.module,
                          (GOOD_PARTS + self.source).replace("MODULE", self.module))
        if self.entry_points is not None:
            (root / f"{self.dist}-0.1.dist-info" / "entry_points.txt").write_text(self.entry_points)

    def pattern(self) -> str:
        return self.line.replace("DIST", re.escape(self.dist)).replace("MODULE", re.escape(self.module))


WHO = r"plugin MODULE \(DIST\)"
BROKEN = [
    Broken("hook-raises", """
@hookimpl
def metaplastic_update_rules():
    raise ValueError("no rules today")
""", WHO + r": hook metaplastic_update_rules raised ValueError: no rules today; skipped"),
    Broken("hook-exits", """
import sys
@hookimpl
def metaplastic_update_rules():
    sys.exit(3)
""", WHO + r": hook metaplastic_update_rules raised SystemExit: 3; skipped"),
    Broken("returns-list", """
@hookimpl
def metaplastic_update_rules():
    return [SimpleLocalRule]
""", WHO + r": hook metaplastic_update_rules returned list, not a mapping of names to factories; skipped"),
    Broken("returns-none", """
@hookimpl
def metaplastic_update_rules():
    pass
""", WHO + r": hook metaplastic_update_rules returned None, not a mapping of names to factories; skipped"),
    Broken("key-not-str", """
@hookimpl
def metaplastic_update_rules():
    return {"rule_MODULE": SimpleLocalRule, 3: SimpleLocalRule, "": SimpleLocalRule}
""", WHO + r": hook metaplastic_update_rules returned entries that are not name: factory "
          r"\(key 3 is not a non-empty str; key '' is not a non-empty str\); those skipped",
           kept=("meta_objective", "update_rule")),
    Broken("not-callable", """
@hookimpl
def metaplastic_update_rules():
    return {"rule_MODULE": SimpleLocalRule, "forty_two": 42}
""", WHO + r": hook metaplastic_update_rules returned entries that are not name: factory "
          r"\('forty_two' is int, not callable\); those skipped", kept=("meta_objective", "update_rule")),
    Broken("misspelt-hook", """
@hookimpl
def metaplastic_update_rule():
    return {"never_seen": SimpleLocalRule}
""", WHO + r": metaplastic_update_rule is not a hook \(did you mean metaplastic_update_rules\?\); ignored"),
    Broken("unknown-hook", """
@hookimpl
def metaplastic_optimisers():
    return {"never_seen": SimpleLocalRule}
""", WHO + r": metaplastic_optimisers is not a hook \(hooks: metaplastic_base_models, "
          r"metaplastic_update_rules, .*, metaplastic_pretrained_rules\); ignored"),
    Broken("unprefixed-hook", """
@hookimpl
def update_rules():
    return {"never_seen": SimpleLocalRule}
""", WHO + r": update_rules is not a hook \(did you mean metaplastic_update_rules\?\); ignored"),
    Broken("wrong-signature", """
@hookimpl
def metaplastic_update_rules(config):
    return {"never_seen": SimpleLocalRule}
""", WHO + r" does not fit the hook specifications \(Plugin 'DIST:MODULE' for hook 'metaplastic_update_rules' "
          r"hookimpl definition: metaplastic_update_rules\(config\) Argument\(s\) \{'config'\} are declared "
          r"in the hookimpl but can not be found in the hookspec\); skipped", kept=()),
    Broken("exits-at-import", "raise SystemExit(2)\n",
           r"plugin 'MODULE' from DIST failed to import \(SystemExit: 2\); skipped", kept=()),
    Broken("bad-entry-points", "", r"distribution DIST: its entry points could not be read "
           r"\(TypeError: .*\); skipped", kept=(), entry_points="[metaplastic]\nno_equals_sign\n"),
]


def builtin_names() -> set[tuple[str, str]]:
    return {(e.kind, e.name) for e in Registry(autoload=False).all_entries()}


def tiny_with(*overrides):
    config = config_lib.load_config_file("experiments/train/digits.py:tiny")
    return config_lib.resolve(config, list(overrides))


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b.id)
def test_a_broken_plugin_is_one_line_and_the_rest_still_works(broken, tmp_path, monkeypatch,
                                                                fresh_registry, capsys):
    broken.install(tmp_path)
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()  # (a) it builds
    # (b) every built-in is still there and resolves
    assert builtin_names() <= {(e.kind, e.name) for e in registry.all_entries()}
    for kind, name in builtin_names():
        assert registry.entry(kind, name).origin == "built-in"
    # (c) exactly one line, naming the plugin and the problem, kept and printed
    assert len(registry.skipped) == 1, registry.skipped
    assert re.fullmatch(broken.pattern(), registry.skipped[0]), registry.skipped[0]
    assert "\n" not in registry.skipped[0]
    assert f"metaplastic: {registry.skipped[0]}\n" in capsys.readouterr().err
    assert f"skipped: {registry.skipped[0]}" in registry.report_lines()
    # (d) the plugin's good parts still work where that is safe; its bad parts are not there
    names = set(registry.names("meta_objective")) | set(registry.names("update_rule"))
    assert "never_seen" not in names and "forty_two" not in names
    overrides = [("meta_objective", f"objective_{broken.module}")]
    if "update_rule" in broken.kept:
        overrides.append(("update_rule", f"rule_{broken.module}"))
    if broken.kept:
        components = config_lib.build_components(tiny_with(*overrides))
        assert type(components.objective).__name__ == "RidgeCosDist"
        assert type(components.rule).__name__ == "SimpleLocalRule"
        assert {registry.entry(kind, name).origin for kind, name in overrides} == {broken.dist}
    else:
        assert f"objective_{broken.module}" not in names
        with pytest.raises(config_lib.ConfigError, match="unknown meta_objective"):
            tiny_with(*overrides)
    # another distribution is unaffected
    assert tiny_with(("meta_objective", "feature_spread")).meta_objective == "feature_spread"


TWIN = """
from metaplastic.plugins.update_rules.simple_local import SimpleLocalRule
from metaplastic.registries import hookimpl

@hookimpl
def metaplastic_update_rules():
    return {"twin_rule": SimpleLocalRule, "solo_MODULE": SimpleLocalRule}
"""

SHADOWING = """
from metaplastic.registries import hookimpl
@hookimpl
def metaplastic_meta_objectives():
    return {"ridge_cosdist": object}
"""


def install_duplicates(root) -> None:
    for module in ("twin_a", "twin_b"):
        make_distribution(root, f"{module}-dist", module, TWIN.replace("MODULE", module))
    make_distribution(root, "shadowing-dist", "shadowing", SHADOWING)


def test_a_duplicate_name_is_an_error_only_when_used(tmp_path, monkeypatch, fresh_registry, capsys):
    install_duplicates(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()  # builds: a duplicate is not an error until used
    assert registry.skipped == [] and capsys.readouterr().err == ""
    twins = [(e.origin, e.module) for e in registry.all_entries() if e.name == "twin_rule"]
    assert sorted(twins) == [("twin_a-dist", "twin_a"), ("twin_b-dist", "twin_b")]
    shadows = [e.origin for e in registry.all_entries() if e.name == "ridge_cosdist"]
    assert shadows == ["built-in", "shadowing-dist"]
    assert registry.ambiguous("update_rule") == ["twin_rule"]
    assert registry.ambiguous("meta_objective") == ["ridge_cosdist"]
    assert "twin_rule" not in registry.names("update_rule")

    with pytest.raises(ComponentError) as error:
        registry.get("update_rule", "twin_rule")
    message = str(error.value)
    assert "duplicate update_rule 'twin_rule'" in message and "\n" not in message
    assert "twin_a-dist (twin_a)" in message and "twin_b-dist (twin_b)" in message
    with pytest.raises(ComponentError) as error:
        registry.entry("meta_objective", "ridge_cosdist")
    message = str(error.value)
    assert "duplicate meta_objective 'ridge_cosdist'" in message
    assert "built-in" in message and "shadowing-dist" in message
    # a config fails only when it uses the name (quickstart uses ridge_cosdist)
    with pytest.raises(config_lib.ConfigError, match="config.meta_objective: duplicate meta_objective"):
        tiny_with()
    with pytest.raises(config_lib.ConfigError, match="config.update_rule: duplicate update_rule 'twin_rule'"):
        tiny_with(("update_rule", "twin_rule"))  # update_rule is resolved before meta_objective
    # unrelated names from the same plugins, and built-ins, work
    for name in ("solo_twin_a", "solo_twin_b"):
        assert registry.entry("update_rule", name).module == name[len("solo_"):]
    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    registry = fresh_registry()
    config = tiny_with(("meta_objective", "feature_spread"), ("update_rule", "solo_twin_b"))
    components = config_lib.build_components(config)
    assert type(components.rule).__name__ == "SimpleLocalRule"
    assert registry.entry("update_rule", "solo_twin_b").origin == "twin_b-dist"
    assert registry.entry("update_rule", "simple_local").origin == "built-in"


def test_report_lines_mark_ambiguous_names_and_list_skipped_lines(tmp_path, monkeypatch, fresh_registry):
    install_duplicates(tmp_path)
    BROKEN[0].install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    lines = registry.report_lines()
    table = [(row["kind"], row["name"], row["origin"], row["module"], row["description"].startswith("(ambiguous)"))
             for row in plugin_table(lines)]
    assert ("update_rule", "twin_rule", "twin_a-dist", "twin_a", True) in table
    assert ("update_rule", "twin_rule", "twin_b-dist", "twin_b", True) in table
    assert ("update_rule", "solo_twin_a", "twin_a-dist", "twin_a", False) in table
    assert [row[:3] for row in table if row[1] == "ridge_cosdist"] == [
        ("meta_objective", "ridge_cosdist", "built-in"), ("meta_objective", "ridge_cosdist", "shadowing-dist")]
    assert all(row[-1] for row in table if row[1] == "ridge_cosdist")
    assert sum(row[-1] for row in table) == 4
    notes = lines[lines.index("") + 1:]
    assert [line.split(":")[0] for line in notes] == ["ambiguous", "ambiguous", "skipped"]
    assert notes[0].startswith("ambiguous: duplicate update_rule 'twin_rule': provided by twin_a-dist")
    assert notes[1].startswith("ambiguous: duplicate meta_objective 'ridge_cosdist': provided by built-in")
    assert notes[2] == f"skipped: {registry.skipped[0]}"


def test_report_lines_of_a_clean_registry_are_what_plugins_prints(tmp_path, monkeypatch, fresh_registry,
                                                                     capsys):
    from metaplastic import cli

    make_distribution(tmp_path, "spread-objective", "spread_objective", EXTERNAL_OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_registry()
    capsys.readouterr()
    assert cli.main(["plugins"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert registry.report_lines() == printed
    assert "" not in printed and len(printed) == 1 + len(registry.all_entries())


def test_cli_plugins_works_with_every_kind_of_broken_plugin(tmp_path):
    for broken in BROKEN:
        broken.install(tmp_path)
    install_duplicates(tmp_path)
    result = subprocess.run([sys.executable, "-m", "metaplastic", "plugins"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("metaplastic: ")]
    assert len(warnings) == len(BROKEN), result.stderr
    for broken in BROKEN:
        assert sum(bool(re.fullmatch("metaplastic: " + broken.pattern(), line)) for line in warnings) == 1, \
            (broken.id, result.stderr)
    rows = [(row["kind"], row["name"], row["origin"], row["module"])
            for row in plugin_table(result.stdout.splitlines())]
    assert {(row[0], row[1]) for row in rows if row[2] == "built-in"} >= builtin_names()
    assert [row[2] for row in rows if row[1] == "twin_rule"] == ["twin_a-dist", "twin_b-dist"]
    assert ("meta_objective", "objective_hook_raises_plugin", "hook-raises-dist", "hook_raises_plugin") in rows


def test_plugins_describes_every_builtin_in_one_line():
    """Each component's own docstring (else its module's, less the "`name`: " it starts with), first
    sentence; a shipped rule by its rule.json."""
    from metaplastic.registries.registry import doc_summary

    registry = get_registry()
    rows = plugin_table(registry.report_lines())
    described = {(row["kind"], row["name"]): row["description"] for row in rows if row["origin"] == "built-in"}
    assert described and all(text and text != "-" and len(text) <= 64 for text in described.values()), described
    assert described["meta_objective", "ridge_cosdist"] == (
        "Closed-form ridge readout fit on batch A's features, scored on…")
    assert described["update_rule", "metz2019"].startswith("The learned unsupervised update rule of Metz")
    assert described["pretrained_rule", "glyphs-v2"].startswith("`simple_local` rule on `mlp_bn`, ")
    assert doc_summary("First sentence, on\n two lines. Second. Ignored.\n\nNext paragraph.") == \
        "First sentence, on two lines."
    assert doc_summary("x" * 200, 10) == "x" * 9 + "…" and doc_summary(None) == ""
