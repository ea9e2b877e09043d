"""What several test modules share: test problems, fixtures, fake plugins and data.

Importable as `helpers` from every test folder (pyproject.toml puts tests/ on the path); no test module
imports another test module.
"""

import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
