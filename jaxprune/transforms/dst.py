"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

# A deprecated path: every name read here warns (module __getattr__ below).
__all__ = []

__getattr__ = module_getattr(
    "jaxprune.transforms.dst",
    {
        "GROW": "jaxprune.transforms._dst",
        "DSTState": "jaxprune.transforms._dst",
        "DSTTransformation": "jaxprune.transforms._dst",
        "rewire": "jaxprune.transforms._dst",
        "rigl": "jaxprune.transforms._dst",
        "set_training": "jaxprune.transforms._dst",
    },
)
