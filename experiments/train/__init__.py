"""Training configs: `default.py` documents every field; the others start from it."""
