"""README's "Writing a plugin" example as written: its module and pyproject.toml, copied into a folder,
install with `pip install .` into a fresh virtual environment where metaplastic is installed (the module and
the `metaplastic` entry point land there), and `metaplastic plugins` run there lists the objective."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from helpers import REPO_ROOT


README = REPO_ROOT / "README.md"


def plugin_section() -> str:
    text = README.read_text()
    start = text.index("## Writing a plugin")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def readme_blocks() -> list[tuple[str, str]]:
    """(language, body) of the section's code blocks, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", plugin_section(), re.S)


def readme_files() -> dict[str, str]:
    """{relative path: text} of the section's python and toml blocks; each block's first line names its file."""
    files = {}
    for language, body in readme_blocks():
        if language not in ("python", "toml"):
            continue
        first = body.splitlines()[0]
        match = re.match(r"#\s*([\w./-]+)", first)
        assert match, f"a {language} block in 'Writing a plugin' does not name its file: {first!r}"
        files[match.group(1)] = body
    return files


def write_template(project: pathlib.Path) -> pathlib.Path:
    for name, body in readme_files().items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(body)
    return project


def venv_builds_wheels() -> bool:
    """Whether the interpreter's setuptools can build a wheel without build isolation (it has
    bdist_wheel from setuptools >= 70.1 or from the `wheel` package)."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1)


def build_options() -> list[str]:
    """Offline when the interpreter's setuptools builds wheels (the `test` extra brings `wheel`): no build
    isolation, no index. Else pip fetches setuptools for an isolated build, as a user's `pip install` does."""
    return ["--no-build-isolation", "--no-index"] if venv_builds_wheels() else []


def pip(python: str, *args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([python, "-m", "pip", *args, *build_options()], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    if done.returncode and not build_options() and re.search(
            r"(No matching distribution|Could not find a version).*setuptools", done.stderr):
        pytest.skip("no setuptools with bdist_wheel here and no package index to fetch one from")
    return done


def test_readme_plugin_files_are_named_and_installed_as_documented():
    files = readme_files()
    assert set(files) == {"my_objectives/spread.py", "pyproject.toml"}
    assert 'spread = "my_objectives.spread"' in files["pyproject.toml"]
    commands = [line.split("#")[0].strip() for language, body in readme_blocks() if language == "bash"
                for line in body.splitlines()]
    assert commands == ["pip install /path/to/metaplastic", "pip install ."]  # metaplastic first, from a folder
    assert re.search(r'pip install "metaplastic @ git\+https://\S+"', plugin_section())  # or from git


def fresh_venv_with_metaplastic(env: pathlib.Path) -> tuple[str, pathlib.Path]:
    """(python, site-packages) of a new virtual environment (no pip of its own: it takes a second) that sees
    this interpreter's site directories, where metaplastic and its dependencies are installed, as
    `pip install /path/to/metaplastic` leaves them. Not metaplastic installed into it afresh: that builds in
    the source tree and copies or fetches JAX and the rest (hundreds of MB). Not `--system-site-packages`
    alone: it shows the base interpreter's packages, not this environment's. A `.pth` line runs
    `site.addsitedir`, so that the `.pth` files there (an editable metaplastic) work too."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = str(env / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    site = pathlib.Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
    installed = [p for p in sys.path if pathlib.Path(p).name in ("site-packages", "dist-packages")
                 and pathlib.Path(p).is_dir() and not pathlib.Path(p).samefile(site)]
    (site / "installed_metaplastic.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in installed) + "\n")
    return python, site


def test_readme_template_installs_into_a_fresh_venv_and_metaplastic_finds_its_plugin(tmp_path):
    project = write_template(tmp_path / "project")
    python, site = fresh_venv_with_metaplastic(tmp_path / "env")
    # `pip install .` as documented, dependencies resolved (not --no-deps): `dependencies` must be met by the
    # installed metaplastic, since offline (--no-index) nothing else can; a few seconds of the resolver
    done = pip(python, "install", "-q", ".", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "my_objectives/spread.py").read_text() == readme_files()["my_objectives/spread.py"]
    assert importlib.util.find_spec("my_objectives") is None  # into the new environment only
    (info,) = site.glob("my_objectives-0.1.0.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read_string((info / "entry_points.txt").read_text())
    assert dict(entry_points["metaplastic"]) == {"spread": "my_objectives.spread"}
    assert re.search(r"^Requires-Dist: metaplastic$", (info / "METADATA").read_text(), re.M)

    environment = {k: v for k, v in os.environ.items() if k != "METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD"}
    listed = subprocess.run([python, "-m", "metaplastic", "plugins"], capture_output=True, text=True,
                            timeout=300, env=environment, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert re.search(r"^meta_objective\s+feature_spread\s+my-objectives\s.*\smy_objectives\.spread$",
                     listed.stdout, re.M), listed.stdout + listed.stderr
