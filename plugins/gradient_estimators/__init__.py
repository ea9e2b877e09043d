"""Gradient estimators: meta-gradients from truncated unrolls (`GradientEstimator`), built around a
`core.unroll.TruncatedUnroll`; shared maths in `core.estimation`. File name = registered name."""
