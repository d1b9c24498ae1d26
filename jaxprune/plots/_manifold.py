"""Prunability against the intrinsic dimension of the data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxprune.plots._base import _log_remaining_axis, _mean_and_band, _pyplot, _save


def plot_prunability(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "How far IMP prunes, against the data's intrinsic dimension",
) -> str:
    """Draws the results of ``experiments/prunability.py``: the % of weights left at the
    sparsest round within tolerance of dense against the intrinsic dimension (left; mean
    over seeds, min-max band, log y axis), and test accuracy against % of weights
    remaining, one line per dimension (right).

    Args:
      results: the script's ``results.json``, loaded: ``tolerance`` and ``dims``, each
        with ``dim``, ``remaining`` (per seed), ``dense`` (per-seed accuracy) and
        ``rounds`` (``remaining``, ``accuracy`` per seed).
      path: where to write the PNG.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> row = lambda d, left: {"dim": d, "remaining": [left, left * 1.2],
      ...     "dense": [0.9, 0.9], "rounds": [{"remaining": 0.5, "accuracy": [0.9, 0.88]}]}
      >>> results = {"tolerance": 0.01, "dims": [row(2, 0.05), row(8, 0.2)]}
      >>> out = plot_prunability(results, os.path.join(tempfile.mkdtemp(), "p.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    rows = results["dims"]
    dims = np.asarray([r["dim"] for r in rows], np.float64)
    kept = 100 * np.asarray([r["remaining"] for r in rows], np.float64)
    _mean_and_band(left, dims, kept, color="k")
    left.set(xscale="log", yscale="log", xlabel="intrinsic dimension d (log scale)")
    left.set_xticks(dims, [f"{d:g}" for d in dims])
    lo, hi = kept.min() / 1.5, kept.max() * 1.5
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
    left.set_yticks(ticks, [f"{t:g}" for t in ticks])
    left.minorticks_off()
    left.set_ylabel(f"% of weights left, within {100 * results['tolerance']:g} pt of dense")
    left.grid(True, alpha=0.3)
    every = []
    for r in rows:
        x = 100 * np.asarray([1.0] + [q["remaining"] for q in r["rounds"]], np.float64)
        acc = [r["dense"]] + [q["accuracy"] for q in r["rounds"]]
        _mean_and_band(right, x, 100 * np.asarray(acc, np.float64), label=f"d = {r['dim']}")
        every.append(x)
    _log_remaining_axis(right, np.concatenate(every))
    right.set_ylabel("test accuracy (%)")
    right.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)
