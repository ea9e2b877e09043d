"""Interfaces and the engine that uses only them."""
