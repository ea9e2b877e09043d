"""Evaluation: train a fresh base model on held-out data with each method, read out with few labels.

A *study* (a config file in experiments/) names datasets, methods, architectures,
unsupervised step counts, shots (labelled examples per class) and seeds. Every
combination is a *cell*; its result is the test accuracy of each readout.

Per seed, every method sees the same data: the same input permutation, the
same unlabelled batches (batch t is drawn with `fold_in(data_key, t)`), the
same labelled examples and the same test subset, and every base model starts
from the same initialisation key.

Test labels are used for scoring only: a method gets unlabelled inputs (and,
if it declares `uses_labels`, the few labelled training examples); readouts
are fit on labelled training features and predict from test features; the
test labels live in `ScoringLabels`, whose only use is `accuracy(predictions)`.

Features use batch statistics (the base models normalise with the current
batch): the labelled and test examples are passed through the model together,
in one batch when they fit in `feature_batch` examples, otherwise in chunks of
test examples, each with the labelled examples prepended (labelled features are
averaged over the chunks). Readout and test examples thus share statistics.

Cells are cached in `<workdir>/cells/` (one JSON file each, written atomically)
as they finish, so an interrupted study resumes without redoing them.

Modules: `study` (the config), `study_data` (datasets, seeds' splits, unlabelled batches), `readouts`
(readouts and features), `runner` (methods, the cell cache, `run_study`), `report` (results,
report and pictures). The interfaces a method implements (`EvalMethod`, `FeatureModel`,
`TrainingProblem`) live in `core.interfaces`; rules saved in meta-training workdirs are loaded
by `core.rules`.
"""

from metaplastic.core.evaluation.readouts import (READOUTS, compute_features, logistic_readout, predict,
                                                  readout_args, ridge_readout)
from metaplastic.core.evaluation.report import compare, report_markdown, summarise, write_results
from metaplastic.core.evaluation.runner import (BaseModelFeatures, CellStore, RuleFeatures, build_method,
                                                cell_id, expand_methods, first_layer_of, rule_snapshots,
                                                run_rule_steps, run_study)
from metaplastic.core.evaluation.study import (STUDY_DEFAULTS, STUDY_SECTIONS, DatasetSpec, load_study,
                                               resolve_study)
from metaplastic.core.evaluation.study_data import (PreparedData, ScoringLabels, SeedSplit,
                                                    prepare_dataset, sample_few_shot, seed_split)
from metaplastic.core.interfaces import (EvalMethod, EvaluationError, FeatureModel, TrainingProblem, UnlabelledPool,
                                         unlabelled_batch)

__all__ = [
    "BaseModelFeatures", "CellStore", "DatasetSpec", "EvalMethod", "EvaluationError", "FeatureModel",
    "PreparedData", "READOUTS", "RuleFeatures", "STUDY_DEFAULTS", "STUDY_SECTIONS", "ScoringLabels",
    "SeedSplit", "TrainingProblem", "UnlabelledPool", "build_method", "cell_id", "compare",
    "compute_features", "expand_methods", "first_layer_of", "load_study", "logistic_readout", "predict",
    "prepare_dataset", "readout_args", "report_markdown", "resolve_study", "ridge_readout",
    "rule_snapshots", "run_rule_steps", "run_study", "sample_few_shot", "seed_split", "summarise",
    "unlabelled_batch", "write_results",
]
