"""Shipped learned rules: every folder here with `rule.json` + `theta.npz` (plus its curve, config and
model card) is registered by `shipped.py` as `pretrained:<folder>`."""
