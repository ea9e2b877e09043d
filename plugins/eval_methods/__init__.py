"""Evaluation methods: what a study compares (`EvalMethod`): learned rules and baselines. File name = registered name."""
