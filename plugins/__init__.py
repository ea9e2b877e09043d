"""Built-in components, one folder per kind (folder = hook = config key, file name = registered
name). Every module is registered through the same pluggy hooks an external package implements
(see `metaplastic.registries.hookspecs`). A plugin imports `metaplastic.core` and
`metaplastic.registries`, never another plugin."""
