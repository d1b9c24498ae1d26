"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

__getattr__ = module_getattr(
    "jaxprune.transforms.inplace",
    {
        "run_if": "jaxprune._fastpath",
        "skippable_update": "jaxprune._fastpath",
    },
)
