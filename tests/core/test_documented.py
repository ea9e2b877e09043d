"""`documented` fields: the doc is in the field's metadata, defaults and factories behave as with
`dataclasses.field`, bases' docs are inherited, flax.struct dataclasses work, bad docs are refused."""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import pytest

from metaplastic.core.documented import documented, field_docs, nested_field_docs


@dataclasses.dataclass(frozen=True)
class Base:
    size: int = documented(3, "how many")
    name: str = "plain"


@dataclasses.dataclass(frozen=True)
class Child(Base):
    size: int = 5                                     # redeclared without a doc: the base's doc stays
    tags: list = documented(["a"], "labels")          # mutable: a fresh copy per instance
    shape: tuple = documented(default_factory=lambda: (1, 2), doc="made by a factory")


@dataclasses.dataclass(frozen=True)
class Needs:
    required: str = documented(doc="no default")
    optional: int = documented(1, "has one")


def test_docs_live_in_metadata_and_defaults_are_unchanged():
    fields = {f.name: f for f in dataclasses.fields(Base)}
    assert fields["size"].metadata["doc"] == "how many" and fields["size"].default == 3
    assert "doc" not in fields["name"].metadata
    assert field_docs(Base) == {"size": "how many"}  # a field without a doc has none


def test_subclasses_factories_and_required_fields():
    one, two = Child(), Child()
    assert (one.size, one.tags, one.shape) == (5, ["a"], (1, 2))
    assert one.tags is not two.tags
    assert field_docs(Child) == {"size": "how many", "tags": "labels", "shape": "made by a factory"}
    with pytest.raises(TypeError):
        Needs()  # a documented field without a default is still required
    assert Needs("x").optional == 1 and field_docs(Needs) == {"required": "no default", "optional": "has one"}
    assert list(field_docs(Child)) == [f.name for f in dataclasses.fields(Child) if f.name != "name"]


def test_flax_struct_dataclasses_keep_their_pytree_metadata():
    @flax.struct.dataclass
    class State:
        weights: jax.Array = documented(doc="leaves")
        width: int = documented(4, "static", metadata={"pytree_node": False})

    state = State(weights=jax.numpy.ones(2))
    assert len(jax.tree_util.tree_leaves(state)) == 1  # width is static, not a leaf
    assert field_docs(State) == {"weights": "leaves", "width": "static"}


def test_nested_sections_are_dotted():
    @dataclasses.dataclass(frozen=True)
    class Section:
        rate: float = documented(0.1, "step size")

    @dataclasses.dataclass(frozen=True)
    class Top:
        seed: int = documented(0, "the seed")
        section: Section = documented(default_factory=Section, doc="a section")

    assert nested_field_docs(Top) == {"seed": "the seed", "section": "a section", "section.rate": "step size"}


def test_not_a_dataclass_has_no_docs():
    assert field_docs(dict) == {} and field_docs(lambda x=1: x) == {}


@pytest.mark.parametrize("doc, message", [("", "non-empty"), ("  ", "non-empty"), (None, "non-empty"),
                                          ("two\nlines", "one line")])
def test_a_bad_doc_is_refused_in_one_line(doc, message):
    with pytest.raises(ValueError, match=message):
        documented(1, doc)


def test_default_and_factory_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        documented(1, "x", default_factory=int)
