"""Genome strategies: evolution strategies over a rule's genome (`GenomeStrategy`), used when
config.trainer = "genome" (`core.genome`). The built-ins wrap evosax (`core.evolution.EvosaxStrategy`).
File name = registered name."""
