"""Rule folders (rule.json + theta.npz): a broken one says which file is wrong; folders written in
format 1 still load and are checked, their old field names read as the current ones."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from metaplastic.core.renamed_fields import RENAMED_FIELDS
from metaplastic.core.rule_files import FORMAT_VERSION
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
    newer = FORMAT_VERSION + 1
    rule_json.write_text(json.dumps(description | {"format_version": newer}))
    assert load_error(saved_rule).startswith(f"{rule_json}: format_version {newer} is newer than this metaplastic")
    rule_json.write_text(json.dumps(description | {"theta_sha256": "0" * 64}))
    assert load_error(saved_rule).startswith(f"{npz}: sha256 {description['theta_sha256'][:16]}… does not match")
    rule_json.write_text(json.dumps(description | {"update_rule_config": {"hidden": 8, "max_inner_lr": 0.1}}))
    assert load_error(saved_rule).startswith(f"{npz}: θ entry ['unit_net']['Dense_0']['bias'] of shape (16,)")

    old = {k: v for k, v in description.items()
           if k not in ("format_version", "metaplastic_version", "theta_sha256", "input_spec")}
    rule_json.write_text(json.dumps(old))  # an export from before the format fields: loads unchecked
    np.testing.assert_array_equal(load_rule(saved_rule).theta["lr_logit"], load_rule("pretrained:glyphs-v2").theta["lr_logit"])


# theta_sha256 of the shipped rules as they were released in format 1 (before θ's digest was the shared one)
FORMAT_1_SHA256 = {"glyphs-v2": "9d05ade79cbee9a912bf25bb85e62f1f084dc3e21d149b07165bd4f7e9de740f",
                   "metz2019-glyphs-v1": "40aee1d6eaba6d37ebce5da6d92fa1d2fa3d34c46f667f03373a231069dc7f28"}


def old_name(new: str) -> str:
    return next(old for _, _, old, current in RENAMED_FIELDS if current == new)


def as_format_1(folder: pathlib.Path, name: str, **changes) -> dict:
    """Rewrite `folder`'s rule.json as metaplastic wrote it in format 1 (its digest, its field names)."""
    description = json.loads((folder / "rule.json").read_text())
    fields = description["update_rule_config"]
    if "normalise_epsilon" in fields:
        fields[old_name("normalise_epsilon")] = fields.pop("normalise_epsilon")
    description.update(format_version=1, theta_sha256=FORMAT_1_SHA256[name], **changes)
    (folder / "rule.json").write_text(json.dumps(description, indent=2))
    return description


@pytest.mark.parametrize("name", sorted(FORMAT_1_SHA256))
def test_a_format_1_rule_folder_loads_and_is_checked_with_its_own_digest(tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(pathlib.Path(SHIPPED) / name, folder)
    as_format_1(folder, name)
    loaded, shipped = load_rule(folder), load_rule(f"pretrained:{name}")
    for a, b in zip(jax.tree.leaves(loaded.theta), jax.tree.leaves(shipped.theta), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.rule == shipped.rule  # the same fields, under their current names

    with np.load(folder / "theta.npz") as stored:  # θ changed behind rule.json's back
        arrays = {key: stored[key] for key in stored.files}
    first = sorted(arrays)[0]
    arrays[first] = arrays[first] + np.float32(1e-3)
    np.savez(folder / "theta.npz", **arrays)
    assert load_error(folder).startswith(f"{folder / 'theta.npz'}: sha256 ")
    assert "does not match theta_sha256 " + FORMAT_1_SHA256[name][:16] in load_error(folder)


def test_an_old_field_name_in_rule_json_is_read_as_the_current_one(tmp_path):
    folder = tmp_path / "metz"
    shutil.copytree(pathlib.Path(SHIPPED) / "metz2019-glyphs-v1", folder)
    description = as_format_1(folder, "metz2019-glyphs-v1")
    description["update_rule_config"][old_name("normalise_epsilon")] = 0.5
    (folder / "rule.json").write_text(json.dumps(description))
    assert load_rule(folder).rule.normalise_epsilon == 0.5  # read, not the default (1.0)

    description["update_rule_config"]["normalise_epsilon"] = 0.5  # both names: which one is meant?
    (folder / "rule.json").write_text(json.dumps(description))
    assert load_error(folder) == (f"{folder / 'rule.json'}: update_rule_config.{old_name('normalise_epsilon')}: "
                                  "the old name of normalise_epsilon, which is also given; keep only normalise_epsilon")


def test_a_format_2_digest_covers_theta_as_the_rule_builds_it(saved_rule):
    npz = saved_rule / "theta.npz"
    with np.load(npz) as stored:
        arrays = {key: stored[key] for key in stored.files}
    first = sorted(arrays)[0]
    arrays[first] = arrays[first] * np.float32(2)
    np.savez(npz, **arrays)
    assert load_error(saved_rule).startswith(f"{npz}: sha256 ")
