"""README's "Your own rule, data source and data" runs as written: its two modules, registered through a
`metaplastic` entry point as an installed package's would be, and each of its commands, run by the command
line in a scratch folder; and the API reference builds from the docstrings with the command it gives."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
import shlex
import sys

import pytest

from metaplastic import cli
from metaplastic.core.data import configure_data_sources
from metaplastic.core.metrics import read_metrics
from metaplastic.registries import registry as registry_module

from helpers import REPO_ROOT


README = REPO_ROOT / "README.md"
SECTION = "## Your own rule, data source and data"


def section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def modules() -> dict[str, str]:
    """{relative path: text} of the section's Python blocks; each block's first line names its file."""
    files = {}
    for body in re.findall(r"```python\n(.*?)```", section(), re.S):
        match = re.match(r"#\s*([\w./-]+\.py)\n", body)
        assert match, f"a Python block does not name its file: {body.splitlines()[0]!r}"
        files[match.group(1)] = body
    return files


def entry_points() -> dict[str, str]:
    """{entry-point name: module} the section tells a package to register."""
    return dict(re.findall(r'`(\w+) = "([\w.]+)"`', section()))


def commands() -> dict[str, list[str]]:
    """{subcommand: its arguments} of the section's shell blocks (`metaplastic SUBCOMMAND ...`)."""
    found = {}
    for body in re.findall(r"```bash\n(.*?)```", section(), re.S):
        argv = shlex.split(body.replace("\\\n", " "))
        assert argv[0] == "metaplastic", body
        found[argv[1]] = argv[1:]
    return found


def run(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `metaplastic argv...` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))  # not a terminal: no progress bar
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def readme_package(folder: pathlib.Path):
    """The section's modules installed as a package (modules plus a dist-info with their entry points)
    under `folder`, a registry that found them, and `folder` as the working directory."""
    site = folder / "site"
    for name, body in modules().items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(body)
    info = site / "my_plugins-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[metaplastic]\n" + "".join(f"{name} = {module}\n" for name, module in entry_points().items()))
    old_registry = registry_module._REGISTRY
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(registry_module.AUTOLOAD_ENV, raising=False)
        patch.syspath_prepend(str(site))
        patch.chdir(folder)
        try:
            registry_module._REGISTRY = registry_module.Registry()
            yield registry_module._REGISTRY
        finally:
            registry_module._REGISTRY = old_registry
            configure_data_sources(None)  # the next test's data comes from default-built sources
            for name in [m for m in sys.modules if m == "my_plugins" or m.startswith("my_plugins.")]:
                del sys.modules[name]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("readme_examples")


@pytest.fixture(scope="module")
def trained(folder):
    """The section's `metaplastic train` command, run once: (exit status, stdout, stderr)."""
    with readme_package(folder):
        return run(commands()["train"])


def test_the_section_names_its_modules_entry_points_and_commands():
    assert set(modules()) == {"my_plugins/oja.py", "my_plugins/bars.py"}
    assert entry_points() == {"oja": "my_plugins.oja", "bars": "my_plugins.bars"}
    assert set(commands()) == {"train", "evaluate"}


def test_the_modules_register_as_a_rule_and_a_data_source(folder):
    with readme_package(folder) as registry:
        assert not registry.skipped
        assert registry.entry("update_rule", "oja").origin == "my-plugins"
        assert registry.entry("data_source", "bars").origin == "my-plugins"


def test_the_rule_meta_trains_with_its_config_field(trained, folder):
    code, _, err = trained
    assert code == 0, err
    workdir = folder / commands()["train"][commands()["train"].index("--workdir") + 1]
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["update_rule"] == "oja"
    assert saved["update_rule_config"] == {"learning_rate": 0.1}
    rows = read_metrics(workdir)
    assert rows and all(row["skipped"] == 0 for row in rows)
    assert max(row["grad_norm"] for row in rows) > 0  # θ (the step size) gets a meta-gradient


def test_a_study_evaluates_the_rule_on_the_configured_data_source(trained, folder):
    assert trained[0] == 0, trained[2]
    argv = commands()["evaluate"]
    with readme_package(folder):
        code, out, err = run(argv)
    assert code == 0, err
    cells = [json.loads(p.read_text())["key"] for p in (folder / "runs/eval_bars/cells").glob("*.json")]
    bars = [key for key in cells if key["dataset_used"] == "bars"]
    assert bars and {key["input_dim"] for key in bars} == {8 * 8}  # data_sources.bars.size=8 reached it
    assert {key["method_settings"].get("rule") for key in bars if key["method"] == "learned"} == {"oja"}
    assert {key["dataset_used"] for key in cells} == {"bars", "digits"}  # the study's own dataset too


@pytest.mark.parametrize("change, says", [
    (("--config.datasets.bars.dataset=bars", "--config.datasets.bars.dataset=no_such_data"), "no_such_data"),
    (("--config.datasets.bars.dataset=bars", "--config.datasets.bars.dataset=bar"), "did you mean 'bars'"),
    (("--config.data_sources.bars.size=8", "--config.data_sources.bars.sise=8"),
     "config.data_sources.bars.sise: not a field of data_source 'bars' (fields: size); did you mean 'size'?"),
    (("--config.data_sources.bars.size=8", "--config.data_sources.bars.size=big"),
     "config.data_sources.bars.size: expected int, got 'big'"),
])
def test_a_mistake_in_the_study_command_is_one_line(folder, change, says):
    old, new = change
    argv = [new if arg == old else arg for arg in commands()["evaluate"]
            if not arg.startswith("--config.rule_checkpoint=")]  # the study's untrained rule: no train run needed
    assert new in argv
    argv[argv.index("--workdir") + 1] = "runs/eval_mistake"
    with readme_package(folder):
        code, _, err = run(argv)
    lines = [line for line in err.splitlines() if line.startswith("metaplastic: error:")]
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert not list((folder / "runs/eval_mistake").glob("cells/*.json"))


def test_the_api_reference_builds_from_the_docstrings(tmp_path):
    import pdoc.__main__ as pdoc_command  # the `docs` extra (also in `test`)

    match = re.search(r"`pip install -e '\.\[docs\]' && (pdoc -o [^`]+)`", section())
    assert match, "the section gives no pdoc command"
    args = shlex.split(match.group(1))[1:]
    args[args.index("-o") + 1] = str(tmp_path / "api")
    with contextlib.redirect_stderr(io.StringIO()):  # pdoc's notes on annotations it cannot evaluate
        pdoc_command.cli(args)  # the command in this process: the modules are imported already
    page = (tmp_path / "api/metaplastic/core/interfaces.html").read_text()
    for contract in ("base_model=", "state.step + 1", "layer i-1", "config.data_sources"):
        assert contract in page, contract
    assert (tmp_path / "api/metaplastic/registries/hookspecs.html").exists()
