"""The layout is the architecture: these tests keep it so.

- core/ imports no plugin and no experiment; a plugin imports core and registries, never another plugin;
  registries import only themselves (and core.errors, the leaf that holds UserError).
- plugins/<folder>/<name>.py: folder = hook = config key, file name = registered name.
- Every package folder is listed in pyproject.toml; README's "What is where" lists every module.
- tests/ mirrors the tree: every module has tests/<folder>/test_<module>.py, or a reason in UNTESTED_ALONE.
- Every variant of every config file resolves; an unknown one is a one-line error.
"""

from __future__ import annotations

import ast
import fnmatch
import pathlib
import re
import tomllib

import pytest

from metaplastic.core import config as config_lib
from metaplastic.registries import KINDS, get_registry, hookspecs, training_kinds

from helpers import REPO_ROOT


ROOT = REPO_ROOT
PACKAGE_DIRS = {"core": "metaplastic.core", "plugins": "metaplastic.plugins",
                "registries": "metaplastic.registries", "experiments": "metaplastic.experiments",
                "src/metaplastic": "metaplastic"}


def python_files(folder: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module an `import` or `from ... import` in the file names (at any depth)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_core_imports_no_plugin_and_no_experiment():
    offenders = {f"{p.relative_to(ROOT)}: {m}" for p in python_files("core") for m in imported_modules(p)
                 if m.startswith(("metaplastic.plugins", "metaplastic.experiments"))}
    assert not offenders


def module_name(path: pathlib.Path) -> str:
    """core/evaluation/data.py -> 'metaplastic.core.evaluation.data' (a package: its __init__)."""
    folder = next(f for f in sorted(PACKAGE_DIRS, key=len, reverse=True) if path.is_relative_to(ROOT / f))
    parts = path.relative_to(ROOT / folder).with_suffix("").parts
    return ".".join([PACKAGE_DIRS[folder], *(parts[:-1] if parts[-1] == "__init__" else parts)])


def import_graph(paths: list[pathlib.Path]) -> dict[str, set[str]]:
    """{module: the modules among `paths` that importing it runs}: every import at any depth (inside
    functions and `if TYPE_CHECKING:` too), and for `a.b.c` the package `a.b` whose __init__ runs first."""
    modules = {module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        reached = set()
        for imported in imported_modules(path):
            parts = imported.split(".")
            reached.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {m for m in reached & modules.keys() if m != name and not name.startswith(m + ".")}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of imports in `graph` (its modules in order, the first repeated at the end), or None."""
    done, path = set(), []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for other in sorted(graph[module]):
            found = visit(other)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    return next((found for module in sorted(graph) if (found := visit(module))), None)


def test_core_has_no_import_cycle():
    # a cycle hidden by a function-level import still couples the two modules both ways
    assert import_cycle(import_graph(python_files("core"))) is None


def test_the_cycle_check_can_fail():
    a, b, c = "metaplastic.core.a", "metaplastic.core.b", "metaplastic.core.c"
    assert import_cycle({a: {b}, b: {c}, c: {a}}) == [a, b, c, a]
    assert import_cycle({a: {b, c}, b: {c}, c: set()}) is None
    # a function-level import is an edge; importing a submodule runs its package's __init__ first
    picture, pictures = ROOT / "core" / "metric_writers" / "curve_picture.py", ROOT / "core" / "evaluation" / "pictures.py"
    graph = import_graph([picture, pictures, ROOT / "core" / "evaluation" / "__init__.py"])
    assert graph["metaplastic.core.metric_writers.curve_picture"] == {"metaplastic.core.evaluation",
                                                                      "metaplastic.core.evaluation.pictures"}
    assert module_name(ROOT / "core" / "evaluation" / "__init__.py") == "metaplastic.core.evaluation"


def test_registries_import_only_themselves():
    # the built-in plugins package is imported only to find its kind folders; core.errors (a leaf
    # module) only for the one base of user errors
    offenders = {f"{p.relative_to(ROOT)}: {m}" for p in python_files("registries") for m in imported_modules(p)
                 if m.startswith("metaplastic.") and not m.startswith("metaplastic.registries")
                 and m != "metaplastic.plugins" and not m.startswith("metaplastic.core.errors")}
    assert not offenders


def plugin_of(module: str) -> str | None:
    """'metaplastic.plugins.update_rules.metz2019.X' -> 'update_rules.metz2019'."""
    parts = module.split(".")
    return ".".join(parts[2:4]) if parts[:2] == ["metaplastic", "plugins"] and len(parts) >= 4 else None


def test_a_plugin_imports_no_other_plugin():
    offenders = set()
    for path in python_files("plugins"):
        if path.name == "__init__.py":
            continue
        own = f"{path.parent.name}.{path.stem}"
        for module in imported_modules(path):
            other = plugin_of(module)
            if other is not None and other != own:
                offenders.add(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders


def test_the_import_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from metaplastic.plugins.base_models.mlp_bn import MLPBatchNorm\n")
    assert "metaplastic.plugins.base_models.mlp_bn" in imported_modules(bad)
    assert plugin_of("metaplastic.plugins.base_models.mlp_bn.MLPBatchNorm") == "base_models.mlp_bn"


def test_folder_is_hook_is_config_key_and_file_name_is_registered_name():
    plugins = ROOT / "plugins"
    folders = {p.name for p in plugins.iterdir() if (p / "__init__.py").exists()}
    assert folders == {hookspecs.folder(kind) for kind in KINDS}
    for kind in training_kinds():
        assert f"metaplastic_{hookspecs.folder(kind)}" == KINDS[kind]
    registry = get_registry()
    assert not [line for line in registry.skipped if "built-in" in line]
    for entry in registry.all_entries():
        if entry.origin != "built-in":
            continue
        folder, name = entry.module.split(".")[2:4]
        assert folder == hookspecs.folder(entry.kind), entry
        if entry.kind == "pretrained_rule":  # one name per shipped folder beside shipped.py
            assert (plugins / folder / entry.name / "rule.json").exists()
        else:
            assert name == entry.name, entry
    modules = {p.stem for p in (plugins / "pretrained_rules").glob("*.py") if p.stem != "__init__"}
    assert modules == {"shipped"}


def test_pyproject_lists_every_package_folder():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, package in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed


LONG_MODULE_LINES = 400


def length_problem(lines: int, docstring: str) -> str | None:
    """What is wrong with how a module of `lines` lines accounts for its length, or None: over
    LONG_MODULE_LINES it says "It is long because <its content>"; under, it does not defend its
    length; and it never counts its lines (counts drift from the file)."""
    sentences = re.split(r"(?<=[.;])\s+", " ".join(docstring.split()))
    reasons = [s for s in sentences if "long because" in s]
    counts = [s for s in sentences if re.search(r"\b\d[\d,]* lines\b", s)]
    if counts:
        return f"counts its lines ({counts[0]!r}): say what content makes it long"
    if lines > LONG_MODULE_LINES and not reasons:
        return f"{lines} lines and no 'It is long because <its content>' sentence"
    if lines <= LONG_MODULE_LINES and reasons:
        return f"{lines} lines, not over {LONG_MODULE_LINES}, yet defends its length ({reasons[0]!r})"
    return None


def test_no_large_module_without_a_reason():
    problems = {}
    for path in (python_files("core") + python_files("plugins") + python_files("registries")
                 + python_files("src/metaplastic")):
        text = path.read_text()
        problem = length_problem(text.count("\n"), ast.get_docstring(ast.parse(text)) or "")
        if problem:
            problems[str(path.relative_to(ROOT))] = problem
    assert not problems


def test_the_length_check_can_fail():
    assert length_problem(500, "Pictures.") is not None
    assert length_problem(500, "The module is ~490 lines because its pictures share helpers.") is not None
    assert length_problem(300, "Pictures. It is long because its pictures share helpers.") is not None
    assert length_problem(500, "Pictures. It is long because its pictures share helpers.") is None
    assert length_problem(300, "Pictures.") is None


# Where a module's tests are: the same folders under tests/, file test_<module>.py.
TEST_FOLDERS = {"core": "tests/core", "plugins": "tests/plugins", "registries": "tests/registries",
                "src/metaplastic": "tests/src"}
# Modules without a test file of their own (fnmatch patterns), each with where it is tested instead.
UNTESTED_ALONE = {
    "*/__init__.py": "package markers and re-exports; the package root's public API: tests/src/test_api.py",
    "src/metaplastic/__main__.py": "`python -m metaplastic`, run as a process by tests/behaviour/test_bad_inputs.py",
    "core/keys.py": "the key scheme: every draw of a run, pinned bit for bit by tests/behaviour/test_golden.py",
    "core/metrics.py": "`read_metrics`: reads back what tests/core/metric_writers/test_csv_writer.py writes",
    "core/ops/plasticity.py": "Hebbian directions: against NumPy in tests/plugins/update_rules/test_hebbian.py",
    "core/ops/ridge.py": "the closed-form ridge: against scikit-learn in tests/core/evaluation/test_readouts.py",
    "registries/hookspecs.py": "declarations: hook = folder = config key is checked in this file",
    "plugins/base_models/mlp_bn.py": "the base model of every rule test; tests/core/test_interfaces.py adds a second",
    "plugins/update_rules/simple_local.py": "the small rule of the objective's finite-difference and speed-path tests",
    "plugins/data_sources/sklearn_digits.py": "the digits of most tests and of the golden numbers",
    "plugins/eval_methods/*": "every method runs in tests/core/evaluation/test_runner.py's `evaluate` command",
    "plugins/genome_strategies/*": "tests/core/test_evolution.py minimises a quadratic with each",
}


def modules_without_tests(root: pathlib.Path, untested_alone: dict[str, str]) -> list[str]:
    """Modules of the package folders under `root` with neither a test file at the mirrored path
    (core/ops/files.py -> tests/core/ops/test_files.py) nor a pattern in `untested_alone`."""
    missing = []
    for folder, tests in TEST_FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            module = path.relative_to(root).as_posix()
            if "__pycache__" in path.parts or any(fnmatch.fnmatch(module, p) for p in untested_alone):
                continue
            relative = path.relative_to(root / folder)
            if not (root / tests / relative.parent / f"test_{path.stem}.py").exists():
                missing.append(module)
    return missing


def test_every_module_has_its_test_file_or_a_reason():
    assert modules_without_tests(ROOT, UNTESTED_ALONE) == []
    modules = [p.relative_to(ROOT).as_posix() for folder in TEST_FOLDERS for p in python_files(folder)]
    stale = [p for p in UNTESTED_ALONE if not any(fnmatch.fnmatch(m, p) for m in modules)]
    assert not stale, f"UNTESTED_ALONE names no module: {stale}"


def test_the_test_file_check_can_fail(tmp_path):
    for name in ("core/ops/files.py", "core/keys.py", "plugins/update_rules/hebbian.py", "core/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "tests" / "core" / "ops").mkdir(parents=True)
    (tmp_path / "tests" / "core" / "ops" / "test_files.py").write_text("")
    (tmp_path / "tests" / "core" / "test_hebbian.py").write_text("")  # not at the mirrored path
    assert modules_without_tests(tmp_path, {"*/__init__.py": "markers"}) == [
        "core/keys.py", "plugins/update_rules/hebbian.py"]
    assert modules_without_tests(tmp_path, {"*/__init__.py": "", "core/keys.py": "", "plugins/*": ""}) == []


def what_is_where() -> str:
    """README's 'What is where' section."""
    text = (ROOT / "README.md").read_text()
    return text.split("## What is where", 1)[1].split("\n## ", 1)[0]


def test_readme_what_is_where_names_every_module():
    section = what_is_where()
    for folder in ("core", "plugins", "registries", "experiments"):
        for path in python_files(folder):
            if path.name == "__init__.py":
                continue
            relative = path.relative_to(ROOT / folder)
            name = path.stem if relative.parent == pathlib.Path(".") else f"{relative.parent.name}/{path.stem}"
            assert re.search(rf"`{re.escape(name)}(\.py)?`|\b{re.escape(path.stem)}\b", section), \
                f"README 'What is where' does not mention {folder}/{relative}"


def config_files() -> list[pathlib.Path]:
    return [p for p in python_files("experiments") if p.stem not in ("__init__", "common")]


def variants_of(path: pathlib.Path) -> list[str]:
    """The names in the file's apply_variant(...) mapping, read from the source."""
    found = re.findall(r"apply_variant\([^{]*\{([^}]*)\}", path.read_text(), flags=re.S)
    return [""] + [key for block in found for key in re.findall(r'"([^"]+)"\s*:', block)]


@pytest.mark.parametrize("path", config_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_variant_of_every_config_resolves(path):
    from metaplastic.core.evaluation import resolve_study

    for variant in variants_of(path):
        config = config_lib.load_config_file(f"{path}:{variant}" if variant else str(path))
        if path.parent.name == "train":
            config_lib.resolve(config)
        else:
            resolve_study(config)
    with pytest.raises(config_lib.ConfigError, match=r"unknown variant 'nope' \(known: "):
        config_lib.load_config_file(f"{path}:nope")
