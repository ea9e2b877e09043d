"""Field documentation as data: a dataclass field's one-line doc lives in its metadata, where
`metaplastic config` reads it, instead of in a source comment.

    @dataclasses.dataclass(frozen=True)
    class MyRule(UpdateRule):
        hidden: int = documented(16, "units of the per-neuron network")
        sizes: tuple[int, ...] = documented((8, 16), "one entry per level")

`documented` is `dataclasses.field` with a `doc`; it works for `flax.struct.dataclass` too (pass
`metadata={"pytree_node": False}` for a static field). `field_docs(cls)` reads the docs back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

DOC_KEY = "doc"
_MUTABLE = (list, dict, set)


def documented(default: Any = dataclasses.MISSING, doc: str = "", *,
               default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
               metadata: dict | None = None, **field_options) -> Any:
    """A dataclass field with default `default` (or `default_factory`) whose metadata holds `doc`.

    A list, dict or set default becomes a factory of copies (a dataclass refuses a mutable default)."""
    if not isinstance(doc, str) or not doc.strip():
        raise ValueError(f"documented(): doc must be a non-empty string, got {doc!r}")
    if "\n" in doc.strip():
        raise ValueError(f"documented(): doc must be one line, got {doc!r}")
    if default is not dataclasses.MISSING and default_factory is not dataclasses.MISSING:
        raise ValueError("documented(): give default or default_factory, not both")
    if isinstance(default, _MUTABLE):
        value, default = default, dataclasses.MISSING
        default_factory = lambda: type(value)(value)  # noqa: E731 - a fresh copy per instance
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={**(metadata or {}), DOC_KEY: doc.strip()}, **field_options)


def field_docs(cls: type) -> dict[str, str]:
    """{field name: doc} of a dataclass's documented fields, in field order; a field that a subclass
    redeclares without a doc keeps its base's. {} for anything that is not a dataclass."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return {}
    docs = {}
    for field in dataclasses.fields(cls):
        doc = field.metadata.get(DOC_KEY) or next(
            (base.__dataclass_fields__[field.name].metadata.get(DOC_KEY) for base in cls.__mro__[1:]
             if field.name in getattr(base, "__dataclass_fields__", {})
             and base.__dataclass_fields__[field.name].metadata.get(DOC_KEY)), None)
        if doc:
            docs[field.name] = doc
    return docs


def nested_field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """{dotted name: doc} of a dataclass's fields and, for a field whose default is itself a dataclass
    (a section), of that section's fields as 'section.field', in field order; a section's own doc is
    under 'section'."""
    docs = {}
    own = field_docs(cls)
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        if field.name in own:
            docs[name] = own[field.name]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            docs.update(nested_field_docs(type(default), name + "."))
    return docs
