"""Every training field, documented. Other training configs start from `get_config()` and change a few.

The defaults are the small job of `digits.py`: the simple local rule meta-trained by truncated gradients
on scikit-learn's 8×8 digits 0–4; digits 5–9 stay unseen for evaluation.
A component is chosen by name (`config.<kind>`) and configured in `config.<kind>_config`, whose
fields are filled from the component's own defaults when the config is resolved
(`metaplastic config experiments/train/default.py` prints them all).
The fields and their docs are the dataclasses below; `get_config` turns `Training()` into a ConfigDict.
"""

import dataclasses

import ml_collections

from metaplastic.core.config import apply_variant
from metaplastic.core.distributed import ProcessSettings
from metaplastic.core.documented import documented
from metaplastic.core.tasks import ArchitectureSampler, Schedule


@dataclasses.dataclass(frozen=True)
class Optimizer:
    learning_rate: float = documented(3e-3, "Adam's step size (every element of θ unless genome_learning_rate)")
    clip_norm: float = documented(1.0, "clip the meta-gradient's global norm to this")
    clip_per_parameter: float = documented(
        0.0, "clip each gradient element to ±this before Adam; 0 = off (Metz et al. 2020: 0.1)")
    eps: float = documented(1e-8, "Adam's eps; near the gradient's per-element scale, steps stop being sign-like")
    genome_learning_rate: float = documented(
        0.0, "step size of θ's genome elements (UpdateRule.genome_mask); 0 = learning_rate")


@dataclasses.dataclass(frozen=True)
class Genome:
    objective_points: tuple[int, ...] = documented(
        (10, 30, 100, 300), "inner steps after which the meta-objective is taken (fitness: their mean)")


@dataclasses.dataclass(frozen=True)
class Validation:
    every: int = documented(0, "θ-steps between meta-validations; 0 = off")
    points: tuple[int, ...] = documented(
        (100, 1000), "inner steps after which the meta-objective is taken (the score: their mean)")
    num_tasks: int = documented(4, "fixed validation tasks")
    depths: tuple[int, ...] = documented((1,), "hidden layers below the representation layer of their networks")
    widths: tuple[int, ...] = documented((32,), "hidden width of their networks (one per network)")
    batch_size: int = documented(0, "0 = config.batch_size")
    seed: int = documented(1, "the validation tasks and their data")
    patience: int = documented(
        0, "stop when this many θ-steps after the first score have not beaten it (0 = never)")
    task_family_config: dict = documented(
        {}, "task_family_config's fields replaced for validation (e.g. split, classes)")


@dataclasses.dataclass(frozen=True)
class Training:
    seed: int = documented(0, "every random draw of the run derives from it")
    num_steps: int = documented(1000, "θ-steps (meta-gradient updates)")
    tasks_per_step: int = documented(4, "T: tasks per meta-batch, unrolled together (vmapped)")
    batch_size: int = documented(64, "unlabelled examples per inner step")
    remat: bool = documented(
        False, "rematerialise inner steps in the backward pass (memory ~ √K, ~2 extra forwards)")
    compilation_cache: bool = documented(True, "JAX's persistent compilation cache")
    compilation_cache_dir: str = documented("", '"" = <workdir>/compilation_cache')
    distributed: ProcessSettings = documented(
        default_factory=ProcessSettings,
        doc="several processes (hosts): unset fields come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
            "JAX_PROCESS_ID; cluster_detection lets JAX read Slurm / Open MPI")

    base_model: str = documented("mlp_bn", "a registered base_model (`metaplastic plugins` lists them)")
    base_model_config: dict = documented({}, "the base model's fields (the rest from its defaults)")
    update_rule: str = documented("simple_local", "a registered update_rule (`metaplastic plugins` lists them)")
    update_rule_config: dict = documented(
        {"hidden": 16, "max_inner_lr": 0.1}, "the update rule's fields (the rest from its defaults)")
    meta_objective: str = documented(
        "ridge_cosdist", "a registered meta_objective (`metaplastic plugins` lists them)")
    meta_objective_config: dict = documented(
        {"ridge_lambda": 0.1}, "the meta-objective's fields (the rest from its defaults)")
    task_family: str = documented("image_classes", "a registered task_family (`metaplastic plugins` lists them)")
    task_family_config: dict = documented(
        {"datasets": ("digits",), "split": "train", "classes": (0, 1, 2, 3, 4), "classes_per_task": 0,
         "examples_per_class": 10, "max_classes": 10},
        "the task family's fields (the rest from its defaults)")
    gradient_estimator: str = documented(
        "truncated_backprop", "a registered gradient_estimator (`metaplastic plugins` lists them)")
    gradient_estimator_config: dict = documented({}, "the estimator's fields (the rest from its defaults)")

    architecture: ArchitectureSampler = documented(
        default_factory=lambda: ArchitectureSampler(depths=(1, 2), widths=(64,), top_width=32),
        doc="base-model shapes: depth (hidden layers below the representation) × width buckets")
    schedule: Schedule = documented(
        default_factory=lambda: Schedule(truncation_lengths=(10,), horizon=(20, 200), phases="lockstep",
                                         group_length=0),
        doc="K (inner steps per truncation), the horizon (inner steps per task, log-uniform), and whether the "
            "tasks of a meta-batch start and end together (lockstep) or each at its own phase (independent; "
            "group_length: inner steps an architecture bucket is kept, 0 = the longest horizon)")
    optimizer: Optimizer = documented(
        default_factory=Optimizer,
        doc="Adam on θ after global-norm clipping (and, when on, per-parameter clipping)")

    init_theta: str = documented(
        "", "a new run starts from this rule's θ (pretrained:NAME, a rule folder, a workdir)")
    init_snapshot: str = documented(
        "", "or continues this snapshot (θ, optimiser, step: `metaplastic snapshot`)")
    allow_config_change: bool = documented(
        False, "resume a workdir whose config.json differs (history kept); it cannot change the shapes of θ or "
               "of the task state: a change that does is refused, and the checkpoints stay as they were")
    max_consecutive_skipped: int = documented(20, "stop when this many θ-steps in a row were non-finite")
    time_limit_seconds: float = documented(0.0, "stop (and save) after this much wall-clock time; 0 = none")

    trainer: str = documented(
        "gradient",
        'what meta-trains θ: "gradient" (the estimator\'s meta-gradient, then the optimiser) or "genome" (an '
        "evolution strategy over the rule's genome, UpdateRule.genome_mask, scored on whole inner runs: "
        "core.genome; a θ-step is then a generation, tasks_per_step its tasks, and the estimator and optimiser "
        "are unused)")
    genome_strategy: str = documented("cma_es", 'trainer="genome": the strategy, by registered name')
    genome_strategy_config: dict = documented({}, "its fields (population_size, std_init, ...)")
    genome: Genome = documented(
        default_factory=Genome,
        doc='trainer="genome": inner steps after which the meta-objective is taken; fitness = their mean over '
            "points and tasks, and each run lasts max(objective_points) inner steps")
    validation: Validation = documented(
        default_factory=Validation,
        doc="meta-validation every `every` θ-steps (0 = off) on fixed tasks of the training family with "
            "task_family_config's fields replaced (another split, other classes: neither meta-training nor "
            "evaluation data); the score is the meta-objective after each of `points` inner steps of a whole "
            "run, averaged; the best-validated θ is kept in <workdir>/best/ (`metaplastic export --step best`)")

    log_every: int = documented(1, "θ-steps between metric rows")
    checkpoint_every: int = documented(50, "θ-steps between checkpoints")
    checkpoint_keep: int = documented(3, "checkpoints kept")


def get_config(arg=None):
    config = ml_collections.ConfigDict(dataclasses.asdict(Training()))
    return apply_variant(config, arg, {}, "experiments/train/default.py")  # no variants
