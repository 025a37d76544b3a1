"""Model families: a new kind of model (GroupViT's image tower, AudioCLIP's audio tower) plugs in here.

A family knows the architecture names it builds and how to build one. ``create_model(name)``
and ``CLIPPretraining(architecture=name)`` build any registered architecture, and
``load_clip`` rebuilds a lit-clip checkpoint by the architecture name it records, so a family
needs no edits to the CLIP class, the loader or the methods::

    register_family(ModelFamily("toy", lambda: ["Toy-1"], lambda name, **options: CLIP(config, visual=ToyTower(), **options)))

The CLIP family (OpenAI / open_clip geometries and their ``-quickgelu`` variants, ``lit_clip.models.clip``)
registers itself.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelFamily:
    """``build(name, **options)`` makes a randomly initialised model of one of ``architectures()`` (a function,
    so that names added later, such as a new entry of the CLIP family's table, count at once)."""

    name: str
    architectures: Callable[[], list[str]]
    build: Callable[..., nn.Module]


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> None:
    """Add ``family``; an architecture name may belong to one family only."""
    taken = {name: other.name for other in _FAMILIES.values() if other.name != family.name for name in other.architectures()}
    clashes = sorted(set(family.architectures()) & set(taken))
    if clashes:
        raise ValueError(f"architectures {clashes} of family {family.name!r} are already {taken[clashes[0]]!r}'s")
    _FAMILIES[family.name] = family


def family_of(architecture: str) -> ModelFamily:
    """The family that builds ``architecture``."""
    for family in _FAMILIES.values():
        if architecture in family.architectures():
            return family
    raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(architecture_names())}")


def architecture_names() -> list[str]:
    """Every architecture of every family."""
    return sorted(name for family in _FAMILIES.values() for name in family.architectures())


def create_model(architecture: str, **options) -> nn.Module:
    """A randomly initialised model of a named architecture, built by its family."""
    return family_of(architecture).build(architecture, **options)
