"""Every training field, documented. Other training configs start from `get_config()` and change a few.

The defaults are the small job of `digits.py`: the simple local rule meta-trained by truncated gradients
on scikit-learn's 8×8 digits 0–4; digits 5–9 stay unseen for evaluation.
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
    # Adam on θ after global-norm clipping (and, when on, per-parameter clipping)
    config.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=3e-3,       # Adam's step size (every element of θ unless genome_learning_rate)
        clip_norm=1.0,            # clip the meta-gradient's global norm to this
        clip_per_parameter=0.0,   # clip each gradient element to ±this before Adam; 0 = off (Metz et al. 2020: 0.1)
        eps=1e-8,                 # Adam's eps; near the gradient's per-element scale, steps stop being sign-like
        genome_learning_rate=0.0,  # step size of θ's genome elements (UpdateRule.genome_mask); 0 = learning_rate
    ))

    config.init_theta = ""         # a new run starts from this rule's θ (pretrained:NAME, a rule folder, a workdir)
    config.init_snapshot = ""      # or continues this snapshot (θ, optimiser, step: `metaplastic snapshot`)
    # resume a workdir whose config.json differs (history kept); it cannot change the shapes of θ or
    # of the task state: a change that does is refused, and the checkpoints stay as they were
    config.allow_config_change = False
    config.max_consecutive_skipped = 20  # stop when this many θ-steps in a row were non-finite
    config.time_limit_seconds = 0.0  # stop (and save) after this much wall-clock time; 0 = none

    # what meta-trains θ: "gradient" (the estimator's meta-gradient, then the optimiser) or "genome" (an
    # evolution strategy over the rule's genome, UpdateRule.genome_mask, scored on whole inner runs: core.genome;
    # a θ-step is then a generation, tasks_per_step its tasks, and the estimator and optimiser are unused)
    config.trainer = "gradient"
    config.genome_strategy = "cma_es"  # trainer="genome": the strategy, by registered name
    config.genome_strategy_config = ml_collections.ConfigDict()  # its fields (population_size, std_init, ...)
    # trainer="genome": inner steps after which the meta-objective is taken; fitness = their mean over points
    # and tasks, and each run lasts max(objective_points) inner steps
    config.genome = ml_collections.ConfigDict(dict(objective_points=(10, 30, 100, 300)))

    # meta-validation every `every` θ-steps (0 = off) on fixed tasks of the training family with
    # task_family_config's fields replaced (another split, other classes: neither meta-training nor
    # evaluation data); the score is the meta-objective after each of `points` inner steps of a whole run,
    # averaged; the best-validated θ is kept in <workdir>/best/ (`metaplastic export --step best`)
    config.validation = ml_collections.ConfigDict(dict(
        every=0, points=(100, 1000), num_tasks=4, depths=(1,), widths=(32,),
        batch_size=0,      # 0 = config.batch_size
        seed=1,            # the validation tasks and their data
        patience=0,        # stop when this many θ-steps after the first score have not beaten it (0 = never)
        task_family_config=ml_collections.ConfigDict(),
    ))

    config.log_every = 1           # θ-steps between metric rows
    config.checkpoint_every = 50   # θ-steps between checkpoints
    config.checkpoint_keep = 3     # checkpoints kept
    return apply_variant(config, arg, {}, "experiments/train/default.py")  # no variants
