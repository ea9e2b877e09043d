"""Data sources: where datasets come from (`DataSource`). File name = registered name."""
