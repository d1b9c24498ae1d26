"""Shared pieces of the plots: matplotlib on demand, saving, bands and axes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: str | os.PathLike) -> str:
    """Lays out `fig`, writes it to `path` and closes it; returns `path` as a string."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f}, {len(values)} seeds"


def _mean_and_band(ax: Any, x: np.ndarray, values: np.ndarray, **style: Any) -> None:
    """The mean over the last axis of `values` as a line, its min-max range as a band."""
    (line,) = ax.plot(x, values.mean(axis=1), marker="o", ms=3, lw=1.5, **style)
    ax.fill_between(x, values.min(axis=1), values.max(axis=1), color=line.get_color(), alpha=0.15)


def _log_remaining_axis(ax: Any, x: np.ndarray) -> None:
    """A log x axis of % of weights remaining, sparser to the right, ticked in round numbers."""
    import matplotlib.ticker

    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5) if x.min() * 0.8 <= t <= x.max() * 1.2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("% of weights remaining (log scale)")
    ax.grid(True, which="major", alpha=0.3)
