"""Plots of accuracy against sparsity, as the papers draw them (PNG files).

An optional module: it needs matplotlib (the ``engine`` extra), imported only when a
plot is drawn, and ``import jaxprune`` does not import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_accuracy_vs_remaining", "plot_imp"]


def plot_accuracy_vs_remaining(
    curves: Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]],
    path: str | os.PathLike,
    *,
    dense: Sequence[float] | None = None,
    title: str = "",
    ylabel: str = "test accuracy",
) -> str:
    """Draws accuracy against % of weights remaining (log x axis, sparser to the right).

    Args:
      curves: name -> (fractions remaining, one list of per-seed values per point).
        The line is the mean over seeds, the band the min-max range.
      path: where to write the PNG.
      dense: per-seed values of the dense network, drawn as a horizontal line and band.
      title: the plot title.
      ylabel: the y axis label.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> out = plot_accuracy_vs_remaining(
      ...     {"ticket": ([1.0, 0.5, 0.25], [[0.9, 0.91], [0.92, 0.9], [0.85, 0.86]])},
      ...     os.path.join(tempfile.mkdtemp(), "curve.png"), dense=[0.9, 0.91])
      >>> os.path.getsize(out) > 0
      True
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if dense is not None and len(dense):
        d = np.asarray(dense, np.float64)
        ax.axhline(d.mean(), color="black", lw=1.2, ls="--", label=f"dense ({_spread(d)})")
        ax.axhspan(d.min(), d.max(), color="black", alpha=0.08)
    for name, (remaining, values) in curves.items():
        x = 100 * np.asarray(remaining, np.float64)
        v = np.asarray(values, np.float64)
        mean = v.mean(axis=1)
        (line,) = ax.plot(x, mean, marker="o", ms=3, lw=1.5, label=name)
        ax.fill_between(x, v.min(axis=1), v.max(axis=1), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("% of weights remaining (log scale)")
    ax.set_ylabel(ylabel)
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5) if _in_range(t, curves)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def plot_imp(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Iterative magnitude pruning",
) -> str:
    """Draws the results of ``jaxprune.train.lottery.run_imp``: every variant's test
    accuracy against % of weights remaining, the dense network as a line.

    Args:
      results: what ``run_imp`` returns (or its ``results.json``, loaded).
      path: where to write the PNG.
      title: the plot title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> results = {"variants": ["ticket"], "dense": {"accuracy": [0.9, 0.92]},
      ...            "rounds": [{"remaining": 0.5, "accuracy": {"ticket": [0.91, 0.9]}}]}
      >>> out = plot_imp(results, os.path.join(tempfile.mkdtemp(), "lottery.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    dense = results["dense"]["accuracy"]
    rounds = results["rounds"]
    curves = {
        v: ([1.0] + [r["remaining"] for r in rounds], [dense] + [r["accuracy"][v] for r in rounds])
        for v in results["variants"]
    }
    return plot_accuracy_vs_remaining(curves, path, dense=dense, title=title)


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f}, {len(values)} seeds"


def _in_range(tick: float, curves: Mapping[str, Any]) -> bool:
    xs = [100 * x for remaining, _ in curves.values() for x in remaining]
    return bool(xs) and min(xs) * 0.8 <= tick <= max(xs) * 1.2
