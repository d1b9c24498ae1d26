"""Accuracy against sparsity and dead units, as the lottery and pruning papers draw them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxprune.plots._base import _log_remaining_axis, _mean_and_band, _pyplot, _save, _spread


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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if dense is not None and len(dense):
        d = np.asarray(dense, np.float64)
        ax.axhline(d.mean(), color="black", lw=1.2, ls="--", label=f"dense ({_spread(d)})")
        ax.axhspan(d.min(), d.max(), color="black", alpha=0.08)
    for name, (remaining, values) in curves.items():
        x = 100 * np.asarray(remaining, np.float64)
        _mean_and_band(ax, x, np.asarray(values, np.float64), label=name)
    _log_remaining_axis(
        ax, 100 * np.concatenate([np.asarray(r, np.float64) for r, _ in curves.values()])
    )
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


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


def plot_dead_units(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    split: str = "test",
    title: str = "Dead ReLU units across IMP rounds",
) -> str:
    """Draws the results of ``experiments/dead_units.py``: the static and the dynamic
    dead-unit rate (two panels) against % of weights remaining (log x axis, sparser to
    the right), one line per variant (mean over seeds, min-max band), starting at the
    dense network.

    Args:
      results: the script's ``results.json``, loaded: ``variants``; ``dense`` and each
        of ``rounds`` with ``remaining`` and, under `split`, per variant (``"dense"``
        for the dense network) ``total`` with ``static`` and ``dynamic``, each holding
        the per-seed values as ``seeds``.
      path: where to write the PNG.
      split: the examples the rates were measured on (``"test"`` or ``"train"``).
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> rates = lambda s, d: {"total": {"static": {"seeds": [s, s]},
      ...                                 "dynamic": {"seeds": [d, d + 0.01]}}}
      >>> results = {"variants": ["ticket"],
      ...            "dense": {"remaining": 1.0, "test": {"dense": rates(0.0, 0.4)}},
      ...            "rounds": [{"remaining": 0.5, "test": {"ticket": rates(0.05, 0.5)}}]}
      >>> out = plot_dead_units(results, os.path.join(tempfile.mkdtemp(), "dead.png"))
      >>> os.path.getsize(out) > 0
      True
    """

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    dense = results["dense"][split]["dense"]["total"]
    rounds = results["rounds"]
    x = 100 * np.asarray([1.0] + [r["remaining"] for r in rounds], np.float64)
    for ax, rate in zip(axes, ("static", "dynamic")):
        for variant in results["variants"]:
            seeds = [dense[rate]["seeds"]]
            seeds += [r[split][variant]["total"][rate]["seeds"] for r in rounds]
            _mean_and_band(ax, x, 100 * np.asarray(seeds, np.float64), label=variant)
        _log_remaining_axis(ax, x)
        ax.set_ylabel(f"{rate} dead-unit rate (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} ({split} examples)")
    return _save(plt, fig, path)
