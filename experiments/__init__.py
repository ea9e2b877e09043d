"""Experiment configs (data only): `train/` for `metaplastic train`, `eval/` for `metaplastic evaluate`.
Each module has `get_config(arg=None)` returning a ConfigDict; `:arg` picks a variant."""
