"""One run per workdir, and a record of how its θ was trained.

- `WorkdirLock`: an exclusive `fcntl` lock on `<workdir>/.lock`, held while a trainer lives. The
  kernel drops it when the process dies, so a killed run never leaves the workdir stuck.
- `check_config`: a resumed run must be the run that was started. Its resolved config is
  compared with the stored `config.json`; a change is refused with a one-line diff unless
  `config.allow_config_change` is set, and then the old config is kept in
  `<workdir>/config_history/` before `config.json` is replaced.
- `check_workdir`: a path that is, or can be made, a writable directory; `missing_root` and
  `remove_if_empty`: a start that fails leaves no empty workdir behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil

from metaplastic.core.errors import UserError
from metaplastic.core.ops.files import write_atomic
from metaplastic.core.renamed_fields import current_config

# fields that may differ between the start and a resume of one run: they change when or how it
# is run, not what it computes
RUN_FIELDS = ("num_steps", "log_every", "checkpoint_every", "checkpoint_keep", "compilation_cache",
              "compilation_cache_dir", "distributed", "allow_config_change", "init_theta", "init_snapshot",
              "max_consecutive_skipped", "time_limit_seconds")


class WorkdirError(UserError, RuntimeError):
    """The workdir cannot be used for this run (in use, or it holds another run)."""


class WorkdirLock:
    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / ".lock"
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise WorkdirError(f"workdir '{workdir}' is in use by {holder}; one run per workdir") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"metaplastic train (pid {os.getpid()})")
        self._handle.flush()

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out


def config_changes(stored: dict, current: dict) -> list[str]:
    """'field: old -> new' for every field that differs, run fields excepted."""
    old, new = _flat(stored), _flat(json.loads(json.dumps(current, default=str)))
    changes = []
    for field in sorted(set(old) | set(new)):
        if field.split(".")[0] in RUN_FIELDS:
            continue
        if old.get(field, "<absent>") != new.get(field, "<absent>"):
            changes.append(f"{field}: {old.get(field, '<absent>')!r} -> {new.get(field, '<absent>')!r}")
    return changes


def check_config(workdir: pathlib.Path, config: dict, allow_change: bool) -> list[str]:
    """Refuse to resume with another config (one line), unless `allow_change`: then the changes
    ('field: old -> new'), for `keep_config_history` once the run has resumed."""
    path = workdir / "config.json"
    if not path.exists():
        return []
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WorkdirError(f"workdir '{workdir}': config.json is unreadable ({error})") from None
    # a run started before a field was renamed is the same run
    changes = config_changes(current_config(stored, where=f"{path}: "), config)
    if changes and not allow_change:
        raise WorkdirError(f"workdir '{workdir}' holds a run with another config ({shown_changes(changes)}); "
                           "use another --workdir, or --config.allow_config_change=True to continue this run "
                           "with it")
    return changes


def shown_changes(changes: list[str]) -> str:
    return "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")


def keep_config_history(workdir: pathlib.Path, step: int) -> None:
    """Keep the config a run had before its config changed at `step` (in config_history/)."""
    path = workdir / "config.json"
    write_atomic(workdir / "config_history" / f"config.before_step_{step}.json", path.read_bytes())


def check_workdir(workdir: str | os.PathLike, option: str = "--workdir") -> pathlib.Path:
    """`workdir` as a path that is, or can be made, a writable directory; else a one-line WorkdirError
    naming `option` (the flag that gave it)."""
    path = pathlib.Path(workdir)
    if not str(workdir).strip():
        raise WorkdirError(f"{option}: empty path")
    if path.exists():
        if not path.is_dir():
            raise WorkdirError(f"{option} '{workdir}': exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise WorkdirError(f"{option} '{workdir}': directory is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise WorkdirError(f"{option} '{workdir}': cannot be created, '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WorkdirError(f"{option} '{workdir}': cannot be created, '{parent}' is not writable")
    return path


def missing_root(workdir: str | os.PathLike | None) -> pathlib.Path | None:
    """The outermost folder of `workdir` that does not exist yet (what a failed start must not leave
    behind), or None when it exists."""
    if not workdir or not str(workdir).strip():
        return None
    path = pathlib.Path(workdir).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


# what a start writes before any work: the workdir lock, and JAX's compilation cache (the trainer's
# default, <workdir>/compilation_cache: rebuilt by the next run)
DISPOSABLE = (".lock", "compilation_cache")


def remove_if_empty(root: pathlib.Path) -> None:
    """Remove `root` if it holds nothing but what a start writes before any work (DISPOSABLE), as a
    start that failed leaves it; anything else in it is kept."""
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        if not path.is_dir() and not any(part in DISPOSABLE for part in path.relative_to(root).parts):
            return
    shutil.rmtree(root, ignore_errors=True)
