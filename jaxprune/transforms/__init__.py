"""Optax gradient transformations: train under a mask, prune on a schedule, RigL, SET, STE."""

from jaxprune.transforms.base import (
    map_per_parameter,
    mask_of,
    register_mask_state,
    replace_mask,
    reset_where,
    zero_where,
)
from jaxprune.transforms.dst import DSTState, DSTTransformation, rewire, rigl, set_training
from jaxprune.transforms.gradual import GradualState, gradual_magnitude
from jaxprune.transforms.masked import MaskedState, masked, static_sparse
from jaxprune.transforms.ste import STEState, straight_through

__all__ = [
    "DSTState",
    "DSTTransformation",
    "GradualState",
    "MaskedState",
    "STEState",
    "gradual_magnitude",
    "map_per_parameter",
    "mask_of",
    "masked",
    "register_mask_state",
    "replace_mask",
    "reset_where",
    "rewire",
    "rigl",
    "set_training",
    "static_sparse",
    "straight_through",
    "zero_where",
]
