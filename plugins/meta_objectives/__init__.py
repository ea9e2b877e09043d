"""Meta-objectives: score a rule's features with labels (`MetaObjective`). File name = registered name."""
