"""Numerical and file helpers shared by the engine and the plugins: ridge regression, image
resampling, normalisations with hand-written backward passes, atomic file writes."""
