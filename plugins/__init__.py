"""Built-in components. Every module here is registered through the same pluggy
hooks an external package implements (see `metaplastic.registries.hookspecs`)."""
