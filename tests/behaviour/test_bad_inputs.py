"""Every user error ends in one line on stderr naming the culprit, exit status 2, no traceback, and
an existing workdir keeps everything it had; a new workdir ({tmp}/new) is not left behind.

One row per bad input: the arguments (with {workdir}: an existing run's workdir, {tmp}: a scratch
folder holding the bad files below, {snapshots}: snapshots of other runs) and the text the line must
contain. Every such error is a `metaplastic.core.errors.UserError`; anything else would be a bug and
keep its traceback. Below the table: what the table's one-argument-list form cannot say (a preempted
run exits 75 and the snapshot it started from resumes it, a run whose every step was skipped fails, a
step too big for memory, a damaged checkpoint said in its one warning line, no Orbax noise).
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from metaplastic import cli
from metaplastic.core import config as config_lib
from metaplastic.core.errors import UserError

TINY = "experiments/train/digits.py:tiny"
NEW = "{tmp}/new"  # a workdir the row would create


def train(*overrides, config=TINY, workdir="{workdir}"):
    return ["train", "--config", config, "--workdir", workdir, *overrides]


def snapshot(name):
    return train(f"--config.init_snapshot={name}", workdir=NEW)


ROWS = {
    # config-time refusals (core.config.resolve), against an existing workdir
    "batch_size < 1": (train("--config.batch_size=0"), "config.batch_size: must be >= 1, got 0"),
    "num_steps < 0": (train("--config.num_steps", "-1"), "config.num_steps: must be >= 0, got -1"),
    "tasks_per_step < 1": (train("--config.tasks_per_step=0"), "config.tasks_per_step: must be >= 1"),
    "checkpoint_every < 1": (train("--config.checkpoint_every=0"), "config.checkpoint_every: must be >= 1"),
    "checkpoint_keep < 1": (train("--config.checkpoint_keep=0"), "config.checkpoint_keep: must be >= 1"),
    "log_every < 1": (train("--config.log_every=0"), "config.log_every: must be >= 1"),
    "learning_rate < 0": (train("--config.optimizer.learning_rate=-1e-3"),
                          "config.optimizer.learning_rate: must be >= 0"),
    "clip_norm <= 0": (train("--config.optimizer.clip_norm=0"), "config.optimizer.clip_norm: must be > 0"),
    "empty widths": (train("--config.architecture.widths=()"), "config.architecture.widths: need at least one"),
    "empty depths": (train("--config.architecture.depths=()"), "config.architecture.depths: need at least one"),
    "top_width < 1": (train("--config.architecture.top_width=0"), "config.architecture.top_width: must be >= 1"),
    "horizon low > high": (train("--config.schedule.horizon=(4,2)"),
                           "config.schedule.horizon: need 1 <= low <= high, got (4, 2)"),
    "horizon shorter than K": (train("--config.schedule.horizon=(1,1)"),  # K = 2 would silently run 2
                               "config.schedule.horizon: low 1 is shorter than the longest truncation length 2"),
    "time limit < 0": (train("--config.time_limit_seconds=-1"), "config.time_limit_seconds: must be >= 0, got -1.0"),
    "max_consecutive_skipped < 1": (train("--config.max_consecutive_skipped=0"),
                                    "config.max_consecutive_skipped: must be >= 1, got 0"),
    "truncation length 0": (train("--config.schedule.truncation_lengths=(2,0)"),
                            "config.schedule.truncation_lengths: each value must be an integer >= 1"),
    "component's own ValueError": (train("--config.base_model_config.activation=sigmoidal"),
                                   "config.base_model='mlp_bn': base_model_config.activation: unknown 'sigmoidal'"),
    "rule hidden width 0": (train("--config.update_rule_config.hidden=0"),
                            "config.update_rule='simple_local': update_rule_config.hidden: must be an integer >= 1"),
    "distributed setup incomplete": (train("--config.distributed.num_processes=2"),
                                     "config.distributed: coordinator_address, process_id unset for a 2-process run"),
    "override without a value": (train("--config.num_steps"), "config.num_steps: no value given"),
    "unknown field": (train("--config.num_stepz=3"), "unknown config field 'config.num_stepz'"),
    "the old rule's field after choosing another": (
        train("--config.update_rule=hebbian", "--config.update_rule_config.hidden=8"),
        "config.update_rule_config.hidden: not a field of update_rule 'hebbian' (fields: learning_rate, mode, "
        "temperature) (hidden is a field of update_rule 'simple_local')"),
    # config files
    "unknown variant": (train(config="experiments/train/digits.py:nope"),
                        "experiments/train/digits.py: unknown variant 'nope' (known: tiny)"),
    "missing config file": (train(config="{tmp}/nowhere.py"), "config file '{tmp}/nowhere.py' not found"),
    "syntax error in config": (train(config="{tmp}/syntax.py"), "config file '{tmp}/syntax.py' line 4: syntax error"),
    "get_config raises": (train(config="{tmp}/raises.py"),
                          "config file '{tmp}/raises.py' line 6: get_config raised ZeroDivisionError"),
    "get_config returns a list": (train(config="{tmp}/a_list.py"),
                                  "config file '{tmp}/a_list.py': get_config() returned list, not a ConfigDict"),
    "get_config returns an int": (train(config="{tmp}/an_int.py"),
                                  "config file '{tmp}/an_int.py': get_config() returned int, not a ConfigDict"),
    "a study given to train": (train(config="experiments/eval/datasets.py:quick"),
                               "'experiments/eval/datasets.py:quick' is an evaluation study (it has methods and "
                               "datasets); use `metaplastic evaluate --config experiments/eval/datasets.py:quick`"),
    "a training config given to evaluate": (["evaluate", "--config", TINY, "--workdir", NEW],
                                            f"'{TINY}' is a training config (it has base_model, "),
    # data
    "missing dataset": (train("--config.task_family_config.datasets=('no_such_dataset',)"),
                        "dataset 'no_such_dataset' split 'train' is unavailable"),
    "misspelt dataset": (train("--config.task_family_config.datasets=('digts',)", workdir=NEW),
                         "dataset 'digts' split 'train' is unavailable: no data source knows the name; "
                         "did you mean 'digits'"),
    "text file as npz": (train("--config.task_family_config.datasets=('{tmp}/broken.npz',)"),
                         "dataset '{tmp}/broken.npz' split 'train' (source npz): not a NumPy .npz file (it "
                         "starts with b'this'"),
    "npz that is a broken zip": (train("--config.task_family_config.datasets=('{tmp}/broken_zip.npz',)"),
                                 "dataset '{tmp}/broken_zip.npz' split 'train' (source npz): truncated or "
                                 "damaged .npz (BadZipFile: "),
    "zero-byte npz": (train("--config.task_family_config.datasets=('{tmp}/empty_file.npz',)"),
                      "dataset '{tmp}/empty_file.npz' split 'train' (source npz): empty file (0 bytes)"),
    "npz with empty arrays": (train("--config.task_family_config.datasets=('{tmp}/no_rows.npz',)"),
                              "dataset '{tmp}/no_rows.npz' split 'train' (source npz): no examples "
                              "(x and y have 0 rows)"),
    "npz holding pickled objects": (train("--config.task_family_config.datasets=('{tmp}/objects.npz',)"),
                                    "dataset '{tmp}/objects.npz' split 'train' (source npz): holds object arrays "
                                    "(pickled Python objects), which are never loaded"),
    "empty corpus": (train("--config.task_family=imdb_bow", "--config.task_family_config.dataset={tmp}/no_texts.npz"),
                     "dataset '{tmp}/no_texts.npz' split 'train' (source npz): no examples (x and y have 0 rows)"),
    "corpus of stop words": (train("--config.task_family=imdb_bow",
                                   "--config.task_family_config.dataset={tmp}/stop_words.npz"),
                             "dataset '{tmp}/stop_words.npz' split 'train': empty vocabulary"),
    # snapshots (config.init_snapshot) start a new run
    "missing snapshot": (snapshot("{tmp}/nowhere.npz"), "snapshot '{tmp}/nowhere.npz': no such file"),
    "zero-byte snapshot": (snapshot("{tmp}/empty_file.npz"),
                           "snapshot '{tmp}/empty_file.npz': empty file (0 bytes), not a NumPy .npz"),
    "garbage snapshot": (snapshot("{tmp}/broken.npz"), "snapshot '{tmp}/broken.npz': not a NumPy .npz file"),
    "truncated snapshot": (snapshot("{snapshots}/truncated.npz"),
                           "snapshot '{snapshots}/truncated.npz': truncated or damaged .npz"),
    "npz that is no snapshot": (snapshot("{tmp}/no_rows.npz"),
                                "snapshot '{tmp}/no_rows.npz': not a metaplastic snapshot (no meta"),
    "another rule's snapshot": (snapshot("{snapshots}/hebbian.npz"),
                                "snapshot '{snapshots}/hebbian.npz': a snapshot of a 'hebbian' run; this config "
                                "trains config.update_rule='simple_local'"),
    "another width's snapshot": (snapshot("{snapshots}/wide.npz"),
                                 "has shape (32,), this config needs shape (16,) (the snapshot's run had "
                                 "update_rule_config.hidden=32 (here 16))"),
    "snapshot over checkpoints": (train("--config.init_snapshot={snapshots}/wide.npz"),
                                  "workdir '{workdir}' already holds checkpoints (newest step 2), which a run "
                                  "resumes; config.init_snapshot='{snapshots}/wide.npz' only starts a new run"),
    # resuming
    "allow_config_change of θ's shapes": (
        train("--config.allow_config_change=True", "--config.update_rule_config.hidden=32"),
        "checkpoint step 2 in {workdir}/checkpoints holds theta/unit_net/Dense_0/bias of shape (16,), where "
        "this run builds shape (32,) (and 14 more entries differ): the checkpoints are intact, but "
        "config.allow_config_change cannot change the shapes of θ or of the task state "
        "(update_rule_config.hidden: 16 -> 32)"),
    "snapshot of a folder that is no workdir": (["snapshot", "{tmp}", "{tmp}/out.npz"],
                                                "workdir '{tmp}': no checkpoints/ or config.json"),
    # workdirs
    "workdir is a file": (train(workdir="{tmp}/a_file"), "--workdir '{tmp}/a_file': exists and is not a directory"),
    "workdir under a file": (train(workdir="{tmp}/a_file/run"),
                             "--workdir '{tmp}/a_file/run': cannot be created, '{tmp}/a_file' is not a directory"),
    "workdir parent not writable": (train(workdir="{tmp}/read_only/run"),
                                    "--workdir '{tmp}/read_only/run': cannot be created, '{tmp}/read_only' "
                                    "is not writable"),
    # evaluation
    "missing rule checkpoint": (["evaluate", "--config", "experiments/eval/datasets.py:quick", "--workdir",
                                 NEW, "--config.rule_checkpoint={tmp}/no_run"],
                                "rule checkpoint '{tmp}/no_run': does not exist"),
    "missing init_theta": (train("--config.init_theta={tmp}/no_run", workdir=NEW),
                           "rule '{tmp}/no_run': does not exist"),
    # export, snapshot
    "export of a folder that is no workdir": (["export", "{tmp}", "{tmp}/out"], "'{tmp}'"),
    "export of a missing workdir": (["export", "{tmp}/no_run", "{tmp}/out"], "WORKDIR '{tmp}/no_run': does not exist"),
    "snapshot of a missing workdir": (["snapshot", "{tmp}/no_run", "{tmp}/out.npz"],
                                      "WORKDIR '{tmp}/no_run': does not exist"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An existing run's workdir, as `metaplastic train` leaves it: a real checkpoint of step 2 (the
    state a trainer starts with, saved without training: no compilation), metrics and event files
    that stand in (no row gets as far as reading them)."""
    from metaplastic.core.trainer import MetaTrainer

    path = tmp_path_factory.mktemp("bad_inputs") / "run"
    config = config_lib.resolve(config_lib.load_config_file(TINY))
    trainer = MetaTrainer(config, path)
    trainer.step = 2
    trainer.save()
    trainer.checkpointer.close()
    del trainer
    gc.collect()  # its workdir lock goes with it
    (path / "tensorboard").mkdir()
    (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (path / "metrics.csv").write_text("step,meta_loss,seconds\n1,0.9,1.0\n2,0.8,1.0\n")
    (path / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "syntax.py").write_text("import ml_collections\n\n\ndef get_config(:\n    pass\n")
    (tmp_path / "raises.py").write_text("import ml_collections\n\n\ndef get_config(arg=None):\n"
                                        "    config = ml_collections.ConfigDict()\n    return 1 / 0\n")
    (tmp_path / "broken.npz").write_bytes(b"this is not an npz file" * 4)
    (tmp_path / "broken_zip.npz").write_bytes(b"PK\x03\x04" + b"a truncated zip" * 4)
    (tmp_path / "empty_file.npz").write_bytes(b"")
    np.savez(tmp_path / "no_rows.npz", x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.int64))
    np.savez(tmp_path / "no_texts.npz", x_train=np.array([], str), y_train=np.zeros(0, np.int64))
    np.savez(tmp_path / "stop_words.npz", x_train=np.array(["a", "I", "x"] * 4), y_train=np.arange(12) % 2)
    np.savez(tmp_path / "objects.npz", x_train=np.array([{"a": 1}], object), y_train=np.zeros(1, np.int64))
    (tmp_path / "a_list.py").write_text("def get_config():\n    return [1, 2]\n")
    (tmp_path / "an_int.py").write_text("def get_config():\n    return 3\n")
    (tmp_path / "a_file").write_text("not a folder\n")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    real_access = os.access  # root may write anywhere: the check sees the folder as the permission bits say
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if pathlib.Path(path) == read_only
                        else real_access(path, mode, **kw))
    yield tmp_path
    read_only.chmod(0o755)


def contents(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file, rewritten by each trainer, aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """Snapshots of a run of another rule and of another width (their initial θ: no training), and a
    truncated one."""
    from metaplastic.core.snapshot import save_snapshot
    from metaplastic.core.keys import initial_theta
    from metaplastic.core.optimizer import make_optimizer

    folder = tmp_path_factory.mktemp("snapshots")
    for name, overrides in (("hebbian", ["--config.update_rule=hebbian"]),
                            ("wide", ["--config.update_rule_config.hidden=32"])):
        config = config_lib.resolve(config_lib.load_config_file(TINY), config_lib.parse_overrides(overrides))
        rule = config_lib.build(config, "update_rule", base_model=config_lib.build(config, "base_model"))
        theta = initial_theta(rule, config.seed)
        save_snapshot(folder / f"{name}.npz", theta, make_optimizer(config).init(theta), 3, 0, config.to_dict())
    data = (folder / "wide.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[: len(data) // 2])
    return folder


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_one_line_exit_2(row, workdir, scratch, snapshots, capsys):
    argv, culprit = ROWS[row]
    fill = dict(workdir=str(workdir), tmp=str(scratch), snapshots=str(snapshots))
    argv = [arg.format(**fill) for arg in argv]
    before = contents(workdir)
    code = cli.main(argv)
    # a trainer that failed in __init__ keeps the workdir lock until it is collected (in a process of
    # its own, `metaplastic train` exits and the kernel drops it)
    gc.collect()
    out, err = capsys.readouterr()
    assert code == 2, (row, out, err)
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith("metaplastic: error: ") and "Traceback" not in err
    assert culprit.format(**fill) in err, err
    assert contents(workdir) == before  # nothing in the existing workdir was lost or changed
    new = scratch / "new"
    assert not new.exists(), sorted(new.rglob("*"))  # a failed start leaves no workdir behind


def test_config_time_refusals_come_before_the_workdir_is_touched(tmp_path, capsys):
    target = tmp_path / "new_run"
    assert cli.main(train("--config.checkpoint_keep=0", workdir=str(target))) == 2
    assert not target.exists()
    assert "config.checkpoint_keep" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(_args, _overrides):
        raise ValueError("a bug, not the user's")

    monkeypatch.setitem(cli.COMMANDS, "plugins", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["plugins"])


def test_jax_platforms_naming_a_platform_this_machine_lacks_is_one_line(tmp_path):
    """(A process of its own: JAX reads JAX_PLATFORMS when it first starts its backends.)"""
    env = dict(os.environ, JAX_PLATFORMS="no_such_platform")
    done = subprocess.run([sys.executable, "-m", "metaplastic", *train(workdir=str(tmp_path / "run"))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("metaplastic: error: JAX_PLATFORMS='no_such_platform': no such device here")


def test_a_run_whose_every_step_was_skipped_fails_in_one_line(tmp_path, capsys):
    """Shorter than max_consecutive_skipped (20), so that check never fires; θ never changed."""
    code = cli.main(train("--config.num_steps=1", "--config.update_rule_config.max_inner_lr=1e38", "--no-progress",
                          workdir=str(tmp_path / "run")))
    gc.collect()
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert err[-1].startswith("metaplastic: error: every θ-step this run made (1: steps 1-1) was skipped "
                              "(non-finite meta-loss or meta-gradient; see skip_reason in "), err


def test_preempted_run_exits_75_and_the_snapshot_it_started_from_resumes_it(tmp_path, snapshots, monkeypatch,
                                                                            capsys):
    """SIGTERM after the first θ-step: saved, exit status 75 (schedulers requeue). The same command then
    resumes from that checkpoint: its init_snapshot is the one the run started from, so not refused."""
    from metaplastic.core.trainer import MetaTrainer

    step = MetaTrainer.train_step

    def step_then_preempted(self):
        metrics = step(self)
        os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler: stop after this step
        return metrics

    command = train("--config.num_steps=6", f"--config.init_snapshot={snapshots / 'wide.npz'}",
                    "--config.update_rule_config.hidden=32", "--no-progress", workdir=str(tmp_path / "run"))
    monkeypatch.setattr(MetaTrainer, "train_step", step_then_preempted)
    assert cli.main(command) == cli.EXIT_PREEMPTED == 75
    gc.collect()
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [  # said at once (on stderr, as --no-progress), then where it stopped
        "metaplastic: SIGTERM: stopping after step 4 of 6 (after compiling it, which cannot be cut short), "
        "then saving it",
        "metaplastic: preempted (SIGTERM): saved at step 4 of 6; run the same command to resume (exit status 75)"]
    monkeypatch.setattr(MetaTrainer, "train_step", step)
    assert cli.main(command) == 0  # steps 5 and 6, from the checkpoint of step 4
    gc.collect()
    out, err = capsys.readouterr()
    assert out.startswith("done: 6 steps, ") and "error" not in err, (out, err)


def test_a_step_too_big_for_memory_is_one_line_naming_the_fields_that_size_it(tmp_path, monkeypatch, capsys):
    """XLA's out-of-memory error, raised by a θ-step that its memory analysis let through."""
    import jax

    from metaplastic.core.trainer import MetaTrainer

    def out_of_memory(self):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                         "148000000000 bytes.")

    monkeypatch.setattr(MetaTrainer, "train_step", out_of_memory)
    code = cli.main(train("--no-progress", workdir=str(tmp_path / "run")))
    gc.collect()
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert err[-1] == ("metaplastic: error: θ-step 1 does not fit in the device's memory (RESOURCE_EXHAUSTED: Out "
                       "of memory while trying to allocate 148000000000 bytes.): lower config.batch_size (16) or "
                       "config.tasks_per_step (2)"), err
    assert not any("Traceback" in line for line in err)


GENOME = ["--config.trainer=genome", "--config.update_rule=metz2019", "--config.update_rule_config.prior=hebbian",
          "--config.update_rule_config.nets=False", "--config.update_rule_config.top_delta_size=8",
          "--config.update_rule_config.compute_h_size=8", "--config.update_rule_config.delta_dim=4",
          "--config.genome_strategy_config.population_size=4", "--config.genome.objective_points=(2, 6)"]


@pytest.mark.parametrize("trainer_args, sizing_fields", [
    ((), "config.batch_size (16) or config.tasks_per_step (2)"),
    (tuple(GENOME), "config.batch_size (16), config.tasks_per_step (2) or config.genome.objective_points (up to 6)"),
], ids=["gradient_step", "genome_generation"])
def test_a_step_too_big_for_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys,
                                                                         trainer_args, sizing_fields):
    """What `--config.batch_size=1000000` gives: XLA's memory analysis of the compiled θ-step (the gradient
    trainer's estimate, the genome trainer's population run) against what the machine has free (here made
    small, so nothing big is ever allocated): one line before any step runs, and no workdir left."""
    from metaplastic.core import device_memory

    monkeypatch.setattr(device_memory, "free_bytes", lambda device: 1000)
    workdir = tmp_path / "run"
    code = cli.main(train(*trainer_args, "--no-progress", workdir=str(workdir)))
    gc.collect()
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("metaplastic: error: θ-step 1 needs ") and err[0].endswith(
        " of memory (XLA's analysis of the compiled step) but this machine has 1.0 kB free: lower "
        + sizing_fields), err
    assert not workdir.exists()  # no config.json, metrics or checkpoint: nothing had started




def test_a_damaged_checkpoint_is_said_in_its_one_warning_line(workdir, tmp_path, capsys):
    damaged = tmp_path / "run"
    shutil.copytree(workdir, damaged)
    for data in (damaged / "checkpoints" / "2" / "state").rglob("d/*"):  # every file of array data
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    code = cli.main(train("--config.num_steps=2", workdir=str(damaged)))  # (restored, it would run no step)
    gc.collect()
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert len(err) == 2 and "Traceback" not in "".join(err), err
    assert err[0].startswith(f"metaplastic: checkpoint step 2 in {damaged}/checkpoints is damaged (")
    assert err[0].endswith("); no older step is left")
    assert err[1] == (f"metaplastic: error: no checkpoint in {damaged}/checkpoints restores intact (steps [2] are "
                      "all damaged); move it away to start the run again")


def test_a_failed_restore_leaves_no_noise_behind(workdir):
    """Orbax gives up on a restore with array reads still pending; each would report itself when
    collected ("Exception ignored in ...", "Task exception was never retrieved": a dozen tracebacks that
    bury the warning line). A process of its own: some are collected only at exit."""
    script = f"""
import jax, jax.numpy as jnp
from metaplastic.core.checkpoint import Checkpointer
checkpointer = Checkpointer({str(workdir / "checkpoints")!r})
stored = checkpointer.restore_raw(2)
try:
    checkpointer.restore(2, jax.tree.map(lambda a: jnp.zeros([n + 1 for n in a.shape], a.dtype), stored))
except ValueError as error:
    assert "not compatible with the stored shape" in str(error), error
else:
    raise AssertionError("restored into other shapes")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]


def test_a_misspelt_dataset_is_a_short_line_with_the_closest_names(capsys):
    from metaplastic.core.data import load_dataset

    with pytest.raises(UserError) as error:
        load_dataset("fashon_mnist", "train")
    message = str(error.value)
    assert message.startswith("dataset 'fashon_mnist' split 'train' is unavailable: no data source knows the "
                              "name; did you mean 'fashion_mnist'")
    assert len(message) < 200 and "\n" not in message
    assert capsys.readouterr().err == ""  # no library warnings (absl's, from TFDS) on the way


def test_a_failed_start_leaves_no_workdir_but_never_removes_work(tmp_path, capsys):
    nested = tmp_path / "runs" / "new" / "run"
    assert cli.main(train("--config.task_family_config.datasets=('digts',)", workdir=str(nested))) == 2
    gc.collect()
    assert not (tmp_path / "runs").exists()  # the folders it would have created, all gone
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine\n")
    assert cli.main(train("--config.task_family_config.datasets=('digts',)", workdir=str(kept / "run"))) == 2
    gc.collect()
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    existing = tmp_path / "made_beforehand"  # a folder the user made is theirs, even empty
    existing.mkdir()
    assert cli.main(train("--config.task_family_config.datasets=('digts',)", workdir=str(existing))) == 2
    gc.collect()
    assert existing.is_dir()
    assert "did you mean 'digits'" in capsys.readouterr().err
