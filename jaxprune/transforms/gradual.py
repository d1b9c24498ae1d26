"""Deprecated module path: import from :mod:`jaxprune.transforms` (see its docstring)."""

from jaxprune.transforms._deprecated import module_getattr

__getattr__ = module_getattr(
    "jaxprune.transforms.gradual",
    {
        "GradualState": "jaxprune.transforms._gradual",
        "gradual_magnitude": "jaxprune.transforms._gradual",
        "need_params": "jaxprune.transforms._gradual",
    },
)
