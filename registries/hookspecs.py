"""Hook specifications: the only way components enter metaplastic, and the one list of kinds.

Every hook returns a mapping ``{name: factory}``. A factory is called with the
component's config fields as keyword arguments (usually it is a frozen
dataclass). Built-in plugins and external packages implement the same hooks.
An external package advertises its module under the ``metaplastic``
entry-point group::

    [project.entry-points.metaplastic]
    my_plugin = "my_package.my_plugin"

Naming: hook ``metaplastic_<folder>`` ↔ built-ins in ``plugins/<folder>/`` ↔ kind (and,
for training components, config key) ``<folder>`` in the singular, e.g.
``metaplastic_update_rules`` ↔ ``plugins/update_rules/`` ↔ ``config.update_rule``.
The kinds are read off this module (`kinds()`), in the order of definition, which is
also the order in which a training config's components are built.
"""

import pluggy

PROJECT = "metaplastic"
HOOK_PREFIX = PROJECT + "_"
hookspec = pluggy.HookspecMarker(PROJECT)


def _spec(training: bool):
    """A hook specification; `training`: its kind is chosen by a training config (config.<kind>)."""

    def mark(function):
        function.training_component = training
        return hookspec(function)

    return mark


@_spec(training=True)
def metaplastic_base_models():
    """Return {name: factory} of `metaplastic.core.interfaces.BaseModel`s."""


@_spec(training=True)
def metaplastic_update_rules():
    """Return {name: factory} of `UpdateRule`s; the engine passes `base_model=`."""


@_spec(training=True)
def metaplastic_meta_objectives():
    """Return {name: factory} of `MetaObjective`s."""


@_spec(training=True)
def metaplastic_task_families():
    """Return {name: factory} of `TaskFamily`s."""


@_spec(training=True)
def metaplastic_gradient_estimators():
    """Return {name: factory} of `GradientEstimator`s; the engine passes `unroll=`."""


@_spec(training=False)
def metaplastic_genome_strategies():
    """Return {name: factory} of `GenomeStrategy`s (chosen by config.genome_strategy when config.trainer
    is "genome")."""


@_spec(training=False)
def metaplastic_data_sources():
    """Return {name: factory} of `DataSource`s; each is built with its `config.data_sources.<name>`
    fields (its defaults when the config has no such section) and asked for datasets in name order."""


@_spec(training=False)
def metaplastic_eval_methods():
    """Return {name: factory} of `EvalMethod`s (they train a representation for a study)."""


@_spec(training=False)
def metaplastic_pretrained_rules():
    """Return {name: loader} of shipped learned rules; loader() -> `core.rules.LearnedRule`."""


def _singular(folder: str) -> str:
    return folder[:-3] + "y" if folder.endswith("ies") else folder[:-1]


def kinds() -> dict[str, str]:
    """kind -> hook name, for every hook above (``update_rule`` -> ``metaplastic_update_rules``)."""
    hooks = [value for name, value in globals().items()
             if name.startswith(HOOK_PREFIX) and callable(value)]
    return {_singular(hook.__name__[len(HOOK_PREFIX):]): hook.__name__ for hook in hooks}


def folder(kind: str) -> str:
    """The plugins/ folder (= hook name without the prefix) of a kind."""
    return kinds()[kind][len(HOOK_PREFIX):]


def training_kinds() -> tuple[str, ...]:
    """Kinds a training config selects by name (config.<kind>), in build order."""
    return tuple(kind for kind, hook in kinds().items() if globals()[hook].training_component)
