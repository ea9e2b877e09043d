"""Task families: distributions over unsupervised learning problems (`TaskFamily`). File name = registered name."""
