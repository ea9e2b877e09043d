"""Update rules: UnsupervisedUpdate(φ, x; θ) (`UpdateRule`), built around a base model. File name = registered name."""
