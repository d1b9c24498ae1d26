"""Old module paths of the transforms package, kept for one release: they warn on use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from jaxprune import _deprecation


def module_getattr(old: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the old module ``old``: ``names`` maps each name it
    held to the private module that holds it now; reading one warns with a
    DeprecationWarning saying where to import it from (``jaxprune.transforms`` for the
    public names)."""
    from jaxprune import transforms

    def entry(name: str, home: str) -> tuple[str, Callable[[], Any]]:
        if name in transforms.__all__:
            instead = f"use jaxprune.transforms.{name}"
        else:
            instead = f"{name} is private now; copy it if you need it"
        return instead, lambda: getattr(importlib.import_module(home), name)

    return _deprecation.module_getattr(old, {n: entry(n, h) for n, h in names.items()})
