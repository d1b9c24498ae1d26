"""Old module paths of the transforms package, kept for one release: they warn on use."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def module_getattr(old: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the old module ``old``: ``names`` maps each name it
    held to the private module that holds it now; reading one warns with a
    DeprecationWarning saying where to import it from."""
    from jaxprune import transforms

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        if name in transforms.__all__:
            advice = f"use jaxprune.transforms.{name}"
        else:
            advice = f"{name} is private now; copy it if you need it"
        warnings.warn(
            f"{old} is deprecated and goes in the next release: {advice}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
