"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

# A deprecated path: every name read here warns (module __getattr__ below).
__all__ = []

__getattr__ = module_getattr(
    "jaxprune.transforms.base",
    {
        "check_shapes": "jaxprune.transforms._base",
        "check_update_args": "jaxprune.transforms._base",
        "map_per_parameter": "jaxprune.transforms._base",
        "map_schedule_counts": "jaxprune.transforms._base",
        "mask_leaves_like": "jaxprune.transforms._base",
        "mask_of": "jaxprune.transforms._base",
        "masked_update": "jaxprune.transforms._base",
        "register_mask_state": "jaxprune.transforms",
        "own_copy": "jaxprune.transforms._base",
        "place_mask": "jaxprune.transforms._base",
        "replace_mask": "jaxprune.transforms._base",
        "reset_where": "jaxprune.transforms._base",
        "resolve_mask": "jaxprune.transforms._base",
        "where_mask": "jaxprune.transforms._base",
        "zero_where": "jaxprune.transforms._base",
    },
)
