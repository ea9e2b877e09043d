"""Rule folders (rule.json + theta.npz): a broken one says which file is wrong."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from metaplastic.core.rule_files import theta_sha256
from metaplastic.core.rules import load_rule
from metaplastic.plugins.pretrained_rules.shipped import SHIPPED

from helpers.rules import load_error


@pytest.fixture
def saved_rule(tmp_path):
    source = pathlib.Path(SHIPPED) / "glyphs-v2"
    target = tmp_path / "rule"
    shutil.copytree(source, target)
    return target


def test_broken_rule_folders_say_which_file_is_wrong(saved_rule):
    npz, rule_json = saved_rule / "theta.npz", saved_rule / "rule.json"
    good_npz, good_json = npz.read_bytes(), rule_json.read_text()
    description = json.loads(good_json)

    npz.write_bytes(good_npz[: len(good_npz) // 2])
    assert load_error(saved_rule).startswith(f"{npz}: unreadable, truncated or not an .npz")
    npz.write_bytes(good_npz)

    rule_json.write_text(good_json[:-20])
    assert load_error(saved_rule).startswith(f"{rule_json}: invalid JSON")
    rule_json.write_text(json.dumps({k: v for k, v in description.items() if k != "base_model"}))
    assert load_error(saved_rule) == f"{rule_json}: missing key base_model"
    rule_json.write_text(json.dumps(description | {"update_rule": "simple_locl"}))
    assert load_error(saved_rule).startswith(f"{rule_json}: unknown update_rule 'simple_locl'")
    rule_json.write_text(json.dumps(description | {"format_version": 2}))
    assert load_error(saved_rule).startswith(f"{rule_json}: format_version 2 is newer than this metaplastic")
    rule_json.write_text(json.dumps(description | {"theta_sha256": "0" * 64}))
    assert load_error(saved_rule).startswith(f"{npz}: sha256 {description['theta_sha256'][:16]}… does not match")
    rule_json.write_text(json.dumps(description | {"update_rule_config": {"hidden": 8, "max_inner_lr": 0.1}}))
    assert load_error(saved_rule).startswith(f"{npz}: θ entry ['unit_net']['Dense_0']['bias'] of shape (16,)")

    old = {k: v for k, v in description.items()
           if k not in ("format_version", "metaplastic_version", "theta_sha256", "input_spec")}
    rule_json.write_text(json.dumps(old))  # an export from before the format fields: loads unchecked
    np.testing.assert_array_equal(load_rule(saved_rule).theta["lr_logit"], load_rule("pretrained:glyphs-v2").theta["lr_logit"])
