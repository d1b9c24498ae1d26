"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

__getattr__ = module_getattr(
    "jaxprune.transforms.ste",
    {
        "STEState": "jaxprune.transforms._ste",
        "straight_through": "jaxprune.transforms._ste",
    },
)
