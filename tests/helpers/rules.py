"""Shared by the rule tests: the one-line error of loading a broken rule folder."""

import pytest

from metaplastic.core.rules import load_rule


def load_error(path) -> str:
    with pytest.raises(ValueError) as excinfo:
        load_rule(path)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)
