"""Numerical and file helpers shared by the engine and the plugins: ridge regression, image
resampling, atomic file writes."""
