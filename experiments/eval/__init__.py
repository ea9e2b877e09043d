"""Evaluation studies: `common.py` holds what every study shares; one study per file."""
