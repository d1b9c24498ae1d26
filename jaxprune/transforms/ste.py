"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

# A deprecated path: every name read here warns (module __getattr__ below).
__all__ = []

__getattr__ = module_getattr(
    "jaxprune.transforms.ste",
    {
        "STEState": "jaxprune.transforms._ste",
        "straight_through": "jaxprune.transforms._ste",
    },
)
