"""README's "Writing a plugin" example as written: its module and pyproject.toml, copied into a folder, make
a wheel holding the module and the `metaplastic` entry point, and install with `pip install .` into a fresh
virtual environment where metaplastic is installed, whose `metaplastic plugins` then lists the objective."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


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


def test_readme_plugin_builds_a_wheel_with_module_and_entry_point(tmp_path):
    project = write_template(tmp_path / "project")
    done = pip(sys.executable, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheels"), str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list((tmp_path / "wheels").glob("my_objectives-0.1.0-*.whl"))
    assert len(wheels) == 1, list((tmp_path / "wheels").iterdir())
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        assert "my_objectives/spread.py" in names
        assert wheel.read("my_objectives/spread.py").decode() == readme_files()["my_objectives/spread.py"]
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        parser = configparser.ConfigParser()
        parser.read_string(wheel.read(entry_points).decode())
        requires = wheel.read(metadata).decode()
    assert dict(parser["metaplastic"]) == {"spread": "my_objectives.spread"}
    assert re.search(r"^Requires-Dist: metaplastic$", requires, re.M)


def fresh_venv_with_metaplastic(env: pathlib.Path) -> str:
    """A new virtual environment (no pip of its own, seconds) that sees this interpreter's site
    directories, where metaplastic and its dependencies are installed, as `pip install /path/to/metaplastic`
    leaves them. Why not copy metaplastic in: installing it builds in its source tree and needs JAX (hundreds
    of MB) or an index; `--system-site-packages` alone shows only the base interpreter's packages, not this
    environment's. A `.pth` line runs `site.addsitedir` so that their `.pth` files (editable installs) work."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = str(env / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    installed = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")
                 and os.path.isdir(p) and not os.path.samefile(p, own)]
    assert any((pathlib.Path(p) / "metaplastic").exists() or list(pathlib.Path(p).glob("*metaplastic*.pth"))
               or list(pathlib.Path(p).glob("metaplastic-*.dist-info")) for p in installed), installed
    line = "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in installed)
    (pathlib.Path(own) / "installed_metaplastic.pth").write_text(line + "\n")
    return python


def test_readme_template_installs_into_a_fresh_venv_and_metaplastic_finds_its_plugin(tmp_path):
    project = write_template(tmp_path / "project")
    python = fresh_venv_with_metaplastic(tmp_path / "env")
    # `pip install .` as documented; with dependencies resolved (no --no-deps), so `dependencies` must be met
    # by the installed metaplastic: offline there is no index to take it from
    done = pip(python, "install", "-q", ".", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert importlib.util.find_spec("my_objectives") is None  # installed into the new environment only
    environment = {k: v for k, v in os.environ.items() if k != "METAPLASTIC_DISABLE_PLUGIN_AUTOLOAD"}
    listed = subprocess.run([python, "-m", "metaplastic", "plugins"], capture_output=True, text=True,
                            timeout=300, env=environment, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert re.search(r"^meta_objective\s+feature_spread\s+my-objectives\s.*\smy_objectives\.spread$",
                     listed.stdout, re.M), listed.stdout + listed.stderr
    installed = subprocess.run([python, "-c", "import my_objectives.spread as m; print(m.__file__)"],
                               capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert pathlib.Path(installed.stdout.strip()).is_relative_to(tmp_path / "env"), installed.stdout
