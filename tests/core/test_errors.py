"""`UserError`, the one base of every user error: each error class a user can meet derives from it and
keeps the built-in base it had (code that caught ValueError still does)."""

from __future__ import annotations

from metaplastic import cli
from metaplastic.core.errors import UserError


def test_every_user_facing_error_is_a_user_error_and_keeps_its_old_base():
    from metaplastic.core.checkpoint import CheckpointError
    from metaplastic.core.config import ConfigError
    from metaplastic.core.data import BadDataset
    from metaplastic.core.distributed import DistributedError
    from metaplastic.core.interfaces import DatasetUnavailable, EvaluationError
    from metaplastic.core.ops.files import NpzError
    from metaplastic.core.rules import RuleError
    from metaplastic.core.snapshot import SnapshotError
    from metaplastic.core.trainer import TrainingError
    from metaplastic.core.workdir import WorkdirError
    from metaplastic.registries import ComponentError

    for error, base in ((ConfigError, ValueError), (ComponentError, ValueError), (BadDataset, ValueError),
                        (DatasetUnavailable, LookupError), (EvaluationError, ValueError), (NpzError, ValueError),
                        (RuleError, ValueError), (SnapshotError, ValueError), (DistributedError, ValueError),
                        (TrainingError, RuntimeError), (CheckpointError, RuntimeError), (WorkdirError, RuntimeError),
                        (cli.UsageError, Exception)):
        assert issubclass(error, UserError) and issubclass(error, base), error
