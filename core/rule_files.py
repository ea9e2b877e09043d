"""The rule folder on disk: `rule.json` + `theta.npz`, their checks, and θ's digest.

`rule.json` holds the rule's and base model's registry names and fields, `format_version`, the package
version, `theta_sha256`, the `input_spec` it was meta-trained on, the distribution providing each
component, `update_rule_package` and `base_model_package` ({"name", "version"}), and optionally
`recommended_steps`, the inner-step default of `fit`, `run` and `apply_rule`; `theta.npz` holds the
flattened meta-parameters. `theta_sha256` is θ's `core.digest.pytree_digest` (the digest checkpoints
and evaluation cells use too) over θ as the rule builds it, each leaf as stored in theta.npz.

Format 1 stored `theta_sha256` as the sha256 over θ's leaf names in sorted order, each followed by its
array's byte count and bytes (C order, little-endian); a rule.json of format 1 (or without
`format_version`) is still checked that way. A rule.json without `theta_sha256` (older exports) loads
unchecked. Renamed config fields are read under their current names (`core.renamed_fields`). A rule
whose update rule or base model is not registered here, but whose rule.json names the package
providing it, is refused in one line saying what to install.

`core.rules` builds `LearnedRule`s on these functions (`load_rule`, `save_rule`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.core.digest import pytree_digest
from metaplastic.core.errors import UserError, one_line
from metaplastic.core.interfaces import Pytree, UpdateRule
from metaplastic.core.ops.files import NpzError, read_npz, save_npz_atomic, write_atomic
from metaplastic.core.renamed_fields import current_config

FORMAT_VERSION = 2  # 2: theta_sha256 is θ's pytree_digest
INPUT_SPEC = {"pixels": "[0, 1]", "layout": "flattened"}
REQUIRED_KEYS = ("update_rule", "update_rule_config", "base_model", "base_model_config")
PACKAGE_KEYS = {"update_rule": "update_rule_package", "base_model": "base_model_package"}


class RuleError(UserError, ValueError):
    """A saved rule (rule.json + theta.npz) or a rule source that cannot be loaded."""


def non_finite_count(tree) -> int:
    return sum(int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


# ---------------------------------------------------------------- θ's digest

def format1_theta_sha256(arrays: dict[str, np.ndarray]) -> str:
    """`theta_sha256` of a format-1 rule.json: sha256 over the sorted leaf names of θ, each followed by
    its byte count and bytes (C order, little-endian)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def theta_arrays(theta: Pytree) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(theta)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}



# ---------------------------------------------------------------- components

def _rule_components(rule_name: str, rule_fields: dict, model_name: str, model_fields: dict) -> UpdateRule:
    from metaplastic.registries import get_registry

    registry = get_registry()
    base_model = registry.get("base_model", model_name)(**_tuples(model_fields))
    return registry.get("update_rule", rule_name)(base_model=base_model, **_tuples(rule_fields))


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def _package_version() -> str:
    from metaplastic import __version__

    return __version__


def component_package(kind: str, name: str) -> dict | None:
    """{"name", "version"} of the distribution providing the registered component `name` of `kind`
    (None when it is not registered or not from an installed distribution, e.g. a test's plugin)."""
    from metaplastic.registries import ComponentError, get_registry
    from metaplastic.registries.registry import BUILTIN_ORIGIN

    try:
        origin = get_registry().entry(kind, name).origin
    except ComponentError:
        return None
    if origin == BUILTIN_ORIGIN:
        return {"name": "metaplastic", "version": _package_version()}
    version = _installed_version(origin)
    return None if version is None else {"name": origin, "version": version}


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None



# ---------------------------------------------------------------- reading and writing

def _read_description(path: pathlib.Path) -> dict:
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RuleError(f"{path}: invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RuleError(f"{path}: unreadable ({one_line(error)})") from None
    if not isinstance(description, dict):
        raise RuleError(f"{path}: expected a JSON object, got {type(description).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in description]
    if missing:
        raise RuleError(f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    wrong = [key for key in REQUIRED_KEYS if not isinstance(description[key], dict if "config" in key else str)]
    if wrong:
        raise RuleError(f"{path}: {wrong[0]} must be a {'JSON object' if 'config' in wrong[0] else 'string'}")
    version = description.get("format_version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RuleError(f"{path}: format_version must be an integer ≥ 1, got {version!r}")
        if version > FORMAT_VERSION:
            raise RuleError(f"{path}: format_version {version} is newer than this metaplastic "
                             f"({_package_version()}) reads ({FORMAT_VERSION}); upgrade metaplastic")
    steps = description.get("recommended_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise RuleError(f"{path}: recommended_steps must be an integer ≥ 1, got {steps!r}")
    for key in PACKAGE_KEYS.values():
        package = description.get(key)
        if package is not None and not (isinstance(package, dict) and isinstance(package.get("name"), str)
                                        and package["name"] and isinstance(package.get("version", ""), str)):
            raise RuleError(f"{path}: {key} must be a JSON object with a name and a version, got {package!r}")
    return current_config(description, where=f"{path}: ")


def _refuse_missing_components(directory: pathlib.Path, description: dict) -> None:
    """A component that is not registered here but whose providing package rule.json names: one line
    saying what to install (without the record, the registry's 'unknown ...' error follows)."""
    from metaplastic.registries import get_registry

    registry = get_registry()
    for kind, key in PACKAGE_KEYS.items():
        package, name = description.get(key), description[kind]
        if package is None or name in registry.candidates[kind]:
            continue
        distribution, version = package["name"], package.get("version")
        here = _installed_version(distribution)
        if here is not None and here == version:
            continue  # the package is here and has no such component: the registry's error says so
        if here is None or not version:
            saved, command = (f" (version {version})" if version else ""), f"pip install {distribution}"
        else:
            saved = f" (version {version}; {here} is installed here and does not provide it)"
            command = f"pip install '{distribution}=={version}'"
        raise RuleError(f"rule {directory} needs {kind.replace('_', ' ')} '{name}' from package "
                        f"'{distribution}'{saved}: {command}")



def read_rule_folder(directory: pathlib.Path) -> tuple[UpdateRule, Pytree, dict]:
    """(rule, θ, rule.json) of a rule folder, every part checked, or a one-line RuleError."""
    json_path, npz_path = directory / "rule.json", directory / "theta.npz"
    description = _read_description(json_path)
    _refuse_missing_components(directory, description)
    try:
        rule = _rule_components(description["update_rule"], description["update_rule_config"],
                                description["base_model"], description["base_model_config"])
    except (ValueError, TypeError, LookupError) as error:
        raise RuleError(f"{json_path}: {one_line(error)}") from error
    if not npz_path.is_file():
        raise RuleError(f"{npz_path}: missing (a saved rule is rule.json + theta.npz)")
    try:
        arrays = read_npz(npz_path)
    except NpzError as error:
        raise RuleError(f"{npz_path}: unreadable, truncated or not an .npz ({error.reason})") from None
    expected = description.get("theta_sha256")
    if expected is not None and description.get("format_version", 1) == 1:
        _check_digest(npz_path, format1_theta_sha256(arrays), expected)
    template = rule.init_theta(jax.random.PRNGKey(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        if name not in arrays or arrays[name].shape != leaf.shape:
            found = "missing" if name not in arrays else f"of shape {arrays[name].shape}"
            raise RuleError(f"{npz_path}: θ entry {name} {found}, rule '{description['update_rule']}' as "
                             f"configured in rule.json needs shape {tuple(leaf.shape)}")
        restored.append(arrays[name])
    if expected is not None and description.get("format_version", 1) > 1:
        _check_digest(npz_path, pytree_digest(jax.tree_util.tree_unflatten(treedef, restored)), expected)
    theta = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(array, leaf.dtype)
                                                   for array, (_, leaf) in zip(restored, leaves)])
    bad = non_finite_count(theta)
    if bad:
        raise RuleError(f"{npz_path}: θ of rule '{description['update_rule']}': non-finite ({bad} values)")
    return rule, theta, description


def _check_digest(npz_path: pathlib.Path, digest: str, expected) -> None:
    if digest != expected:
        raise RuleError(f"{npz_path}: sha256 {digest[:16]}… does not match theta_sha256 "
                        f"{str(expected)[:16]}… in rule.json (θ changed or corrupted)")


def write_rule_folder(directory: str | os.PathLike, description: dict, theta: Pytree) -> pathlib.Path:
    """Write `theta.npz` and `rule.json` (`description` plus the format's own fields) atomically;
    non-finite θ is refused in one line and nothing is written."""
    arrays = theta_arrays(theta)
    bad = non_finite_count(arrays)
    if bad:
        raise RuleError(f"θ of rule '{description['update_rule']}': non-finite ({bad} values); not saved")
    description.setdefault("input_spec", dict(INPUT_SPEC))
    for kind, key in PACKAGE_KEYS.items():
        package = component_package(kind, description[kind])
        if package is not None:
            description[key] = package
    description.update(format_version=FORMAT_VERSION, metaplastic_version=_package_version(),
                       theta_sha256=pytree_digest(theta))
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(directory / "theta.npz", arrays)
    write_atomic(directory / "rule.json", json.dumps(description, indent=2).encode())
    return directory
