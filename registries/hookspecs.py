"""Hook specifications: the only way components enter metaplastic.

Every hook returns a mapping ``{name: factory}``. A factory is called with the
component's config fields as keyword arguments (usually it is a frozen
dataclass). Built-in plugins and external packages implement the same hooks.
An external package advertises its module under the ``metaplastic``
entry-point group::

    [project.entry-points.metaplastic]
    my_plugin = "my_package.my_plugin"
"""

import pluggy

PROJECT = "metaplastic"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def metaplastic_base_models():
    """Return {name: factory} of `metaplastic.core.interfaces.BaseModel`s."""


@hookspec
def metaplastic_update_rules():
    """Return {name: factory} of `UpdateRule`s."""


@hookspec
def metaplastic_meta_objectives():
    """Return {name: factory} of `MetaObjective`s."""


@hookspec
def metaplastic_task_families():
    """Return {name: factory} of `TaskFamily`s."""


@hookspec
def metaplastic_data_sources():
    """Return {name: factory} of `DataSource`s."""


@hookspec
def metaplastic_gradient_estimators():
    """Return {name: factory} of `GradientEstimator`s."""


@hookspec
def metaplastic_eval_methods():
    """Return {name: factory} of evaluation methods (feature extractors)."""


@hookspec
def metaplastic_pretrained_rules():
    """Return {name: loader} of shipped learned rules; loader() -> (rule, theta)."""
