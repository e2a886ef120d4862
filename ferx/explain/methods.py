"""The registry of explanation methods: one record per method, declared beside its code.

Each family module registers its methods when :mod:`ferx.explain` is imported —
:mod:`ferx.explain.native` (``native``), :mod:`ferx.explain.cam` (pytorch-grad-cam) and
:mod:`ferx.explain.attributions` (Captum). Everything that lists or describes methods reads the
records: ``ferx explain --method`` and its help, the app's method choices, the "slow" warnings and
the one-line reading under every map. Adding a method is one registration in its family's module.

A record says what Captum says of an attribution class (``has_convergence_delta``,
``multiplies_by_inputs``) for ferx's purposes: whether its values are signed, whether it ignores
the target class, whether it is slow, and how to read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn as nn

from ferx.explain.maps import ExplanationMap
from ferx.registry import Registry

UNITS = "arbitrary units"  # a colour bar's numbers where a method (or native map) declares nothing else
FAMILIES = {"native": "Native attention", "cam": "CAM family (pytorch-grad-cam)", "captum": "Captum attributions"}


@dataclass(frozen=True)
class MethodOptions:
    """Settings a caller may tune across methods; each method reads the ones it has."""

    ig_steps: int = 32  # Integrated Gradients: path points (the default everywhere: ferx explain, the app)


# run(model, x, targets=..., contrast=..., options=...) -> one map per image of x
Runner = Callable[..., list[ExplanationMap]]


@dataclass(frozen=True)
class ExplanationMethod:
    name: str
    family: Literal["native", "cam", "captum"]
    title: str  # for people: "Grad-CAM", "Integrated Gradients"
    signed: bool  # negative values are evidence against the target
    class_agnostic: bool  # the map does not depend on the target class
    cost: Literal["light", "heavy"]  # heavy: seconds per map on CPU, run only when asked for
    reading: str  # one line under every map: what it is and how to read it
    run: Runner
    units: str = UNITS  # what its colour bar's numbers are (native maps: each model's NativeMap says)
    aliases: tuple[str, ...] = ()
    offered: bool = True  # listed among the app's choices (every method stays available by name)

    def __call__(self, model: nn.Module, x: torch.Tensor, *, targets=None, contrast=None,
                 options: MethodOptions = MethodOptions()) -> list[ExplanationMap]:
        return self.run(model, x, targets=targets, contrast=contrast, options=options)


METHODS: Registry[ExplanationMethod] = Registry("explanation method", "methods", missing=ValueError)
_ALIASES: Registry[str] = Registry("explanation method alias", "aliases", missing=ValueError)  # alias -> name


def register_method(method: ExplanationMethod) -> ExplanationMethod:
    for alias in method.aliases:
        if alias in METHODS:
            raise ValueError(f"alias {alias!r} of {method.name} is another method's name")
        _ALIASES.add(alias, method.name)
    return METHODS.add(method.name, method)


def _in_order() -> list[ExplanationMethod]:
    """Family by family (native, CAM, Captum), each in registration order."""
    return sorted(METHODS.records(), key=lambda m: list(FAMILIES).index(m.family))


def list_methods(family: str | None = None, *, offered: bool | None = None, cost: str | None = None) -> list[str]:
    """Method names, family by family, optionally of one family / offered in the app / of one cost."""
    return [m.name for m in _in_order() if (family is None or m.family == family)
            and (offered is None or m.offered == offered) and (cost is None or m.cost == cost)]


def get_method(name: str) -> ExplanationMethod:
    """The record of a method by name or alias (any case)."""
    key = name.lower()
    key = _ALIASES.get(key) if key in _ALIASES else key
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {method_help()}")
    return METHODS.get(key)


def method_help() -> str:
    """Every method name, with its aliases in brackets (the CLI's help and error messages)."""
    return ", ".join(m.name + (f" ({', '.join(m.aliases)})" if m.aliases else "") for m in _in_order())


def _native(map_method: str):
    """The :class:`NativeMap` a model declares under this name, or None."""
    from ferx.models import get_model_info, list_models

    return next((n for m in list_models() for n in get_model_info(m).native_maps if n.name == map_method), None)


def map_title(map_method: str) -> str:
    """A map's name for people: its method's title ("Grad-CAM"), or the title its model declares for a
    native map ("MassAtt block 2"); the key itself for a map nobody declared."""
    if map_method in METHODS:
        return METHODS.get(map_method).title
    native = _native(map_method)
    return native.title if native else map_method


def map_caption(m: ExplanationMap) -> str:
    """A map's name for people with the class it explains: "Grad-CAM → happy", "MassAtt block 2"."""
    what = map_title(m.method)
    if m.target_label is not None or m.target is not None:
        what += f" → {m.target_label or m.target}"
    if m.contrast is not None:
        what += f" vs {m.contrast_label or m.contrast}"
    return what


def units(map_method: str) -> str:
    """What the numbers on a map's colour bar are: its method's units, or its native map's."""
    if map_method in METHODS:
        return METHODS.get(map_method).units
    native = _native(map_method)
    return native.units if native else UNITS


def reading(map_method: str) -> str:
    """How to read a map: its method's reading, or for a native map the reading its model declares."""
    if map_method in METHODS:
        return METHODS.get(map_method).reading
    native = _native(map_method)
    return native.reading if native else ""
