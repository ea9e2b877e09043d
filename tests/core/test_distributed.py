"""Sharding the meta-batch over devices and processes gives the single-device numbers.

Device counts and multi-process settings must be fixed before JAX starts, so
each run is a separate process (tests/helpers/distributed_worker.py). One reference
run on one device is shared by the comparisons.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from metaplastic.core import distributed

from helpers.xla_flags import TEST_XLA_FLAGS
from helpers import REPO_ROOT


ROOT = REPO_ROOT
WORKER = REPO_ROOT / "tests" / "helpers" / "distributed_worker.py"
TASKS = 4
STEPS = 4  # the tiny config starts a new task group every 2 steps
TIMEOUT = 300


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    # cheaper XLA compiles (every run here uses the same flags, so their numbers stay comparable)
    flags = " ".join([f"--xla_force_host_platform_device_count={devices}", *TEST_XLA_FLAGS,
                      "--xla_llvm_disable_expensive_passes=true"])
    env.update(XLA_FLAGS=flags, JAX_PLATFORMS="cpu", **extra)
    return env


def _launch(tmp: pathlib.Path, name: str, devices: int, steps: int, workdir: pathlib.Path,
            extra: tuple[str, ...] = (), **env):
    args = [sys.executable, str(WORKER), "--workdir", str(workdir), "--out", str(tmp / name),
            f"--config.tasks_per_step={TASKS}", f"--config.num_steps={steps}", *extra,
            # processes that compile at different speeds can miss gloo's 30 s rendezvous on CPU
            "--config.compilation_cache=False"]
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen(args, cwd=ROOT, env=_env(devices, **env), stdout=log, stderr=subprocess.STDOUT)


def _finish(tmp: pathlib.Path, processes: dict[str, subprocess.Popen]) -> dict[str, tuple[dict, dict]]:
    results = {}
    for name, process in processes.items():
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in processes.values():
                other.kill()
            code = "timeout"
        log = (tmp / f"{name}.log").read_text()
        assert code == 0, f"{name} exited with {code}:\n{log[-3000:]}"
        theta = dict(np.load(tmp / f"{name}.npz"))
        results[name] = (theta, json.loads((tmp / f"{name}.json").read_text()))
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same_theta(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One device (reference) and four devices, run side by side."""
    tmp = tmp_path_factory.mktemp("sharded")
    processes = {"one_device": _launch(tmp, "one_device", 1, STEPS, tmp / "wd1"),
                 "four_devices": _launch(tmp, "four_devices", 4, STEPS, tmp / "wd4")}
    return _finish(tmp, processes)


def test_four_devices_match_one_device(runs):
    theta, report = runs["four_devices"]
    assert report["device_count"] == 4
    assert report["inner_global_rows"] and set(report["inner_global_rows"]) == {TASKS}
    assert report["inner_shard_rows"] == [TASKS // 4]  # each device holds one task's inner state
    assert report["theta_replicated"]
    reference, reference_report = runs["one_device"]
    assert reference_report["inner_shard_rows"] == [TASKS]
    assert reference_report["theta_change"] > 1e-4  # the comparison is not between untrained θ
    _assert_same_theta(theta, reference)


def test_two_processes_save_resume_and_match_one_device(runs, tmp_path):
    """Two hosts with two devices each: each feeds its own tasks; a run stopped and resumed
    from the checkpoint ends where the uninterrupted one-device run ends."""
    workdir = tmp_path / "shared_workdir"
    for phase, steps in (("first", STEPS // 2), ("resumed", STEPS)):
        port = _free_port()
        processes = {f"{phase}{i}": _launch(tmp_path, f"{phase}{i}", 2, steps, workdir,
                                            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))
                     for i in range(2)}
        results = _finish(tmp_path, processes)
        reports = [results[f"{phase}{i}"][1] for i in range(2)]
        assert [r["process_count"] for r in reports] == [2, 2]
        assert [r["device_count"] for r in reports] == [4, 4]
        assert [r["local_tasks"] for r in reports] == [[0, 1], [2, 3]]
        assert [r["first_step"] for r in reports] == ([0, 0] if phase == "first" else [STEPS // 2] * 2)
        assert [r["steps"] for r in reports] == [steps, steps]
    checkpoints = sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert checkpoints[-1] == str(STEPS)
    _assert_same_theta(results["resumed1"][0], results["resumed0"][0])
    _assert_same_theta(results["resumed0"][0], runs["one_device"][0])


def test_independent_phases_four_devices_match_one_device(tmp_path):
    """Per-task resets (new tasks, fresh rows of the sharded state) give the one-device numbers."""
    extra = ("--config.schedule.phases=independent", "--config.schedule.horizon=(2, 8)",
             "--config.schedule.group_length=40")
    processes = {name: _launch(tmp_path, name, devices, 6, tmp_path / name, extra)
                 for name, devices in (("one", 1), ("four", 4))}
    results = _finish(tmp_path, processes)
    assert results["four"][1]["inner_shard_rows"] == [TASKS // 4]
    assert results["one"][1]["theta_change"] > 1e-4
    _assert_same_theta(results["four"][0], results["one"][0])


def test_tasks_not_divisible_by_devices_is_one_clear_line():
    code = ("from metaplastic.core.distributed import TaskSharding, DistributedError\n"
            "try:\n    TaskSharding.create(6)\nexcept DistributedError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(4),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ("config.tasks_per_step=6 is not divisible by the 4 devices "
                                     "it is sharded over")


def test_settings_from_config_and_environment(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "8")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    from_env = distributed.process_settings({"distributed": {"coordinator_address": "", "num_processes": 0,
                                                             "process_id": -1, "cluster_detection": False}})
    assert from_env == distributed.ProcessSettings("10.0.0.1:1234", 8, 3, False)
    assert from_env.requested
    from_config = distributed.process_settings({"distributed": {"coordinator_address": "h:1", "num_processes": 2,
                                                                "process_id": 1}})
    assert from_config == distributed.ProcessSettings("h:1", 2, 1, False)
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name)
    assert not distributed.process_settings({}).requested


def test_incomplete_multi_process_settings_name_the_missing_fields():
    with pytest.raises(distributed.DistributedError, match=r"^config\.distributed: coordinator_address, "
                       r"process_id unset for a 2-process run"):
        distributed.initialize(distributed.ProcessSettings(num_processes=2))
    with pytest.raises(distributed.DistributedError, match=r"process_id=2 is not in \[0, num_processes=2\)"):
        distributed.initialize(distributed.ProcessSettings("localhost:1", 2, 2))
