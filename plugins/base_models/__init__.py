"""Base models: the networks an update rule trains (`BaseModel`). One module per model; file name = registered name."""
