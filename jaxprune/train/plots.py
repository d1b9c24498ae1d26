"""Deprecated: the plots moved to :mod:`jaxprune.plots` (the engine no longer plots)."""

from __future__ import annotations

import warnings
from typing import Any

__all__: list[str] = []

_MOVED = ("plot_accuracy_vs_remaining",)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"jaxprune.train.plots.{name} moved to jaxprune.plots.{name}; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
        from jaxprune import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
