"""Quickstart: meta-train the simple local rule on scikit-learn's 8×8 digits 0–4.

Runs offline in a few minutes on 2 CPU cores. Digits 5–9 stay unseen for evaluation.
    metaplastic train --config experiments/quickstart.py --workdir runs/quickstart
Variant `:tiny` shrinks everything for tests.
"""

import ml_collections


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_steps = 1000
    config.tasks_per_step = 4
    config.batch_size = 64
    config.remat = False  # rematerialise inner steps in the backward pass (memory ~ √K, ~2 extra forwards)
    config.compilation_cache = True  # JAX's persistent compilation cache
    config.compilation_cache_dir = ""  # "" = <workdir>/compilation_cache
    # several processes (hosts): unset fields come from JAX_COORDINATOR_ADDRESS,
    # JAX_NUM_PROCESSES, JAX_PROCESS_ID; cluster_detection lets JAX read Slurm / Open MPI
    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=0, process_id=-1, cluster_detection=False))

    config.base_model = "mlp_bn"
    config.base_model_config = ml_collections.ConfigDict()
    config.update_rule = "simple_local"
    config.update_rule_config = ml_collections.ConfigDict(dict(hidden=16, max_inner_lr=0.1))
    config.meta_objective = "ridge_cosdist"
    config.meta_objective_config = ml_collections.ConfigDict(dict(ridge_lambda=0.1))
    config.task_family = "image_classes"
    config.task_family_config = ml_collections.ConfigDict(dict(
        datasets=("digits",), split="train", classes=(0, 1, 2, 3, 4), classes_per_task=0,
        examples_per_class=10, max_classes=10))
    config.gradient_estimator = "truncated_backprop"
    config.gradient_estimator_config = ml_collections.ConfigDict()

    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2), widths=(64,), top_width=32))
    config.schedule = ml_collections.ConfigDict(dict(truncation_lengths=(10,), horizon=(20, 200)))
    config.optimizer = ml_collections.ConfigDict(dict(learning_rate=3e-3, clip_norm=1.0))

    config.log_every = 1
    config.checkpoint_every = 50
    config.checkpoint_keep = 3

    if arg == "tiny":
        config.num_steps = 6
        config.tasks_per_step = 2
        config.batch_size = 16
        config.architecture = ml_collections.ConfigDict(dict(depths=(1,), widths=(16,), top_width=8))
        config.schedule = ml_collections.ConfigDict(dict(truncation_lengths=(2,), horizon=(4, 4)))
        config.checkpoint_every = 2
    return config
