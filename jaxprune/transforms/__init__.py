"""Optax gradient transformations: train under a mask, prune on a schedule, RigL, SET, STE.

The public API is the flat list below (``__all__``); the modules behind it are
private. ``jaxprune.transforms.masked`` is the function :func:`masked`: the module of
that name is gone (it shadowed the function). The other old module paths
(``jaxprune.transforms.base``, ``.dst``, ``.gradual``, ``.ste``, ``.inplace``) still
resolve for one release, warning with a ``DeprecationWarning`` on every name read.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from jaxprune.transforms._base import (
    map_per_parameter,
    map_schedule_counts,
    mask_of,
    replace_mask,
    reset_where,
    zero_where,
)
from jaxprune.transforms._dst import (
    DSTState,
    DSTTransformation,
    rewire,
    rewire_schedule,
    rigl,
    set_training,
)
from jaxprune.transforms._gradual import (
    GradualState,
    MovementState,
    gradual_magnitude,
    gradual_prune,
)
from jaxprune.transforms._masked import MaskedState, masked, static_sparse
from jaxprune.transforms._ste import STEState, straight_through

__all__ = [
    "DSTState",
    "DSTTransformation",
    "GradualState",
    "MaskedState",
    "MovementState",
    "STEState",
    "gradual_magnitude",
    "gradual_prune",
    "map_per_parameter",
    "map_schedule_counts",
    "mask_of",
    "masked",
    "replace_mask",
    "reset_where",
    "rewire",
    "rewire_schedule",
    "rigl",
    "set_training",
    "static_sparse",
    "straight_through",
    "zero_where",
]

# Old module paths, kept for one release as modules that warn on every name read.
_OLD_MODULES = ("base", "dst", "gradual", "inplace", "ste")


def __getattr__(name: str) -> Any:
    if name in _OLD_MODULES:
        return importlib.import_module(f"jaxprune.transforms.{name}")
    if name == "register_mask_state":
        warnings.warn(
            "jaxprune.transforms.register_mask_state is deprecated and does nothing: "
            "mask_of finds a mask by its field name, so name your state's mask field "
            "'jaxprune_mask' instead of registering the class.",
            DeprecationWarning,
            stacklevel=2,
        )
        return _register_mask_state
    raise AttributeError(f"module 'jaxprune.transforms' has no attribute {name!r}")


def _register_mask_state(cls: type) -> type:
    """The deprecated class decorator: returns ``cls`` unchanged."""
    return cls
