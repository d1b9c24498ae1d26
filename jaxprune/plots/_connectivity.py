"""Instability against the rewind step and the error along linear paths."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxprune.plots._base import _pyplot, _save


def _style(row: Mapping[str, Any], colors: dict[float, str]) -> dict[str, Any]:
    """One colour per sparsity (a ticket and its random pruning alike), random pruning dashed."""
    color = colors.setdefault(row["remaining"], f"C{len(colors)}")
    return {"color": color, "lw": 1.5, "ls": "--" if row["variant"] == "random_pruning" else "-"}


def _kind(row: Mapping[str, Any]) -> str:
    if row["variant"] == "dense":
        return "dense"
    return f"{row['variant'].replace('_', ' ')} {100 * row['remaining']:.1f}%"


def plot_instability(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Instability to SGD noise against the rewind step",
) -> str:
    """Draws the results of ``experiments/instability.py``: instability (the test error
    barrier between two children as Frankle et al. 2020 define it) and the children's test
    accuracy against the rewind step k (symmetric-log x axis, so k = 0 is drawn), one line
    per network (dense, tickets and random pruning per sparsity; random pruning dashed).

    Args:
      results: the study's ``results.json``, loaded: ``rows`` with ``k``, ``variant``,
        ``remaining``, ``instability`` and ``accuracy`` (one value per seed).
      path: where to write the PNG.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> row = lambda k, b: {"k": k, "variant": "dense", "remaining": 1.0,
      ...                     "instability": [b, b], "accuracy": [0.9, 0.91]}
      >>> results = {"rows": [row(0, 0.1), row(100, 0.01)]}
      >>> out = plot_instability(results, os.path.join(tempfile.mkdtemp(), "inst.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    kinds = list(dict.fromkeys(_kind(r) for r in results["rows"]))
    colors: dict[float, str] = {}
    ks = sorted({r["k"] for r in results["rows"]})
    for kind in kinds:
        rows = sorted((r for r in results["rows"] if _kind(r) == kind), key=lambda r: r["k"])
        x = [r["k"] for r in rows]
        style = dict(marker="o", ms=3, **_style(rows[0], colors))
        for ax, values in (
            (left, [100 * np.asarray(r["instability"], np.float64) for r in rows]),
            (right, [100 * np.asarray(r["accuracy"], np.float64) for r in rows]),
        ):
            mean = [v.mean() for v in values]
            (line,) = ax.plot(x, mean, label=kind, **style)
            lo, hi = [v.min() for v in values], [v.max() for v in values]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    left.axhline(2.0, color="black", lw=0.8, ls=":", label="stable: < 2 points")
    left.set_ylabel("instability (test error barrier, points)")
    right.set_ylabel("test accuracy of the children (%)")
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=max(1, min((k for k in ks if k > 0), default=1)))
        ax.set_xlabel("rewind step k (symmetric log scale)")
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(title)
    return _save(plt, fig, path)


def plot_paths(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    ks: Sequence[int] | None = None,
    title: str = "Test error along the path between two children",
) -> str:
    """Draws the test error along the linear path between children, one panel per k, one
    line per network (the mean over seeds).

    Args:
      results: the study's ``results.json`` (``alphas``; ``rows`` with ``k``,
        ``variant``, ``remaining`` and ``paths``, each with its ``error`` curve).
      path: where to write the PNG.
      ks: the rewind steps to draw (default: every k of the results).

    Raises:
      ValueError: a k the results do not hold.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> row = {"k": 0, "variant": "dense", "remaining": 1.0,
      ...        "paths": [{"error": [0.1, 0.3, 0.1]}]}
      >>> results = {"alphas": [0.0, 0.5, 1.0], "rows": [row]}
      >>> out = plot_paths(results, os.path.join(tempfile.mkdtemp(), "paths.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    measured = sorted({r["k"] for r in results["rows"]})
    ks = measured if ks is None else list(ks)
    if not ks or set(ks) - set(measured):
        raise ValueError(
            f"ks must name rewind steps the results hold; got {ks}, the results hold "
            f"{measured} (plot_paths). Pick some of those."
        )
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(ks), figsize=(4 * len(ks), 3.6), dpi=120, squeeze=False)
    alphas = np.asarray(results["alphas"], np.float64)
    colors: dict[float, str] = {}
    for ax, k in zip(axes[0], ks):
        for r in (r for r in results["rows"] if r["k"] == k):
            curves = 100 * np.asarray([p["error"] for p in r["paths"]], np.float64)
            ax.plot(alphas, curves.mean(axis=0), label=_kind(r), **_style(r, colors))
        ax.set_title(f"k = {k}")
        ax.set_xlabel("interpolation alpha")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test error (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(plt, fig, path)
