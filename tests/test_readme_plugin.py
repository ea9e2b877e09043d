"""README's "Writing a plugin" example builds as written: its module and pyproject.toml, copied into a
folder, make a wheel holding the module and the `metaplastic` entry point (the wheel is not installed)."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
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


def readme_files() -> dict[str, str]:
    """{relative path: text} of the section's code blocks; each block's first line names its file."""
    files = {}
    for language, body in re.findall(r"```(\w+)\n(.*?)```", plugin_section(), re.S):
        first = body.splitlines()[0]
        match = re.match(r"#\s*([\w./-]+)", first)
        assert match, f"a {language} block in 'Writing a plugin' does not name its file: {first!r}"
        files[match.group(1)] = body
    return files


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


def test_readme_plugin_files_are_named():
    files = readme_files()
    assert set(files) == {"my_objectives/spread.py", "pyproject.toml"}
    assert 'spread = "my_objectives.spread"' in files["pyproject.toml"]


def test_readme_plugin_builds_a_wheel_with_module_and_entry_point(tmp_path):
    project = tmp_path / "project"
    for name, body in readme_files().items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(body)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
               "-w", str(tmp_path / "wheels"), str(project)]
    if venv_builds_wheels():
        command.insert(4, "--no-build-isolation")  # offline: the interpreter's own setuptools
    # else pip fetches setuptools for an isolated build, as a user's `pip install` would
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode and "--no-build-isolation" not in command and (
            "No matching distribution" in done.stderr or "Could not find a version" in done.stderr):
        pytest.skip("no setuptools with bdist_wheel here and no package index to fetch one from")
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
