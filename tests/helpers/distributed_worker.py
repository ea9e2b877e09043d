"""A short meta-training run in its own process, for tests/core/test_distributed.py.

Device count (XLA_FLAGS) and the multi-process settings (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID) must be in the environment before JAX starts,
which is why the tests launch this file instead of calling the trainer in-process.
Writes <out>.npz (θ) and <out>.json (where tasks and arrays lived).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from metaplastic.core import config as config_lib
from metaplastic.core.trainer import MetaTrainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    args, overrides = parser.parse_known_args()
    config = config_lib.resolve(config_lib.load_config_file("experiments/train/digits.py:tiny"),
                                config_lib.parse_overrides(overrides))
    trainer = MetaTrainer(config, args.workdir)
    first_step, initial = trainer.step, jax.device_get(trainer.theta)
    trainer.run(progress=False)
    theta = {jax.tree_util.keystr(path): np.asarray(leaf)
             for path, leaf in jax.tree_util.tree_flatten_with_path(trainer.theta)[0]}
    inner = jax.tree.leaves(trainer.estimator_state.inner)
    report = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_tasks": list(trainer.local_tasks),
        "first_step": first_step,
        "steps": trainer.step,
        "theta_change": max(float(np.abs(a - b).max()) for a, b in
                            zip(jax.tree.leaves(initial), jax.tree.leaves(jax.device_get(trainer.theta)))),
        "theta_replicated": all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(trainer.theta)),
        "inner_global_rows": [leaf.shape[0] for leaf in inner],
        "inner_shard_rows": sorted({shard.data.shape[0] for leaf in inner for shard in leaf.addressable_shards}),
    }
    out = pathlib.Path(args.out)
    np.savez(out.with_suffix(".npz"), **theta)
    out.with_suffix(".json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
