"""Every training field, documented. Other training configs start from `get_config()` and change a few.

The defaults are the quickstart job: the simple local rule meta-trained on scikit-learn's 8×8
digits 0–4 (offline, a few minutes on 2 CPU cores); digits 5–9 stay unseen for evaluation.
A component is chosen by name (`config.<kind>`) and configured in `config.<kind>_config`, whose
fields are filled from the component's own defaults when the config is resolved
(`metaplastic config experiments/train/default.py` prints them all).
"""

import ml_collections

from metaplastic.core.config import apply_variant


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0                # every random draw of the run derives from it
    config.num_steps = 1000        # θ-steps (meta-gradient updates)
    config.tasks_per_step = 4      # T: tasks per meta-batch, unrolled together (vmapped)
    config.batch_size = 64         # unlabelled examples per inner step
    config.remat = False           # rematerialise inner steps in the backward pass (memory ~ √K, ~2 extra forwards)
    config.compilation_cache = True  # JAX's persistent compilation cache
    config.compilation_cache_dir = ""  # "" = <workdir>/compilation_cache
    # several processes (hosts): unset fields come from JAX_COORDINATOR_ADDRESS,
    # JAX_NUM_PROCESSES, JAX_PROCESS_ID; cluster_detection lets JAX read Slurm / Open MPI
    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=0, process_id=-1, cluster_detection=False))

    # components, by registered name (`metaplastic plugins` lists them)
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

    # base-model shapes: depth (hidden layers below the representation) × width buckets
    config.architecture = ml_collections.ConfigDict(dict(depths=(1, 2), widths=(64,), top_width=32))
    # K (inner steps per truncation), the horizon (inner steps per task, log-uniform), and whether the
    # tasks of a meta-batch start and end together (lockstep) or each at its own phase (independent;
    # group_length: inner steps an architecture bucket is kept, 0 = the longest horizon)
    config.schedule = ml_collections.ConfigDict(dict(truncation_lengths=(10,), horizon=(20, 200),
                                                     phases="lockstep", group_length=0))
    # Adam on θ after global-norm clipping
    config.optimizer = ml_collections.ConfigDict(dict(learning_rate=3e-3, clip_norm=1.0))

    config.init_theta = ""         # a new run starts from this rule's θ (pretrained:NAME, a rule folder, a workdir)
    config.init_snapshot = ""      # or continues this snapshot (θ, optimiser, step: `metaplastic snapshot`)
    config.allow_config_change = False  # resume a workdir whose config.json differs (history kept)
    config.max_consecutive_skipped = 20  # stop when this many θ-steps in a row were non-finite
    config.time_limit_seconds = 0.0  # stop (and save) after this much wall-clock time; 0 = none

    config.log_every = 1           # θ-steps between metric rows
    config.checkpoint_every = 50   # θ-steps between checkpoints
    config.checkpoint_keep = 3     # checkpoints kept
    return apply_variant(config, arg, {}, "experiments/train/default.py")  # no variants
