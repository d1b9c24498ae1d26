"""Sparse double descent: a metric of iteratively pruned networks against sparsity, one
line per label noise, one panel per retraining mode (He et al., 2022)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxprune.plots._base import _log_remaining_axis, _mean_and_band, _pyplot, _save

_YLABELS = {
    "test_accuracy": "test accuracy (%)",
    "memorisation": "accuracy on the flipped training labels (%)",
    "train_accuracy": "train accuracy (%)",
}


def plot_double_descent(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    metric: str = "test_accuracy",
    title: str = "Sparse double descent",
) -> str:
    """Draws `metric` against % of weights remaining (log x axis, sparser to the right):
    one panel per retraining mode, one line per label noise (mean over seeds, min-max band).

    Args:
      results: ``experiments/double_descent.py``'s ``results.json``, loaded: ``runs``,
        each with ``noise``, ``retrain`` and ``rounds`` (round 0 the dense network),
        each round with ``remaining`` and, under `metric`, the per-seed values as
        ``seeds`` (or None: a run without that metric, e.g. no noise for memorisation,
        is left out).
      path: where to write the PNG.
      metric: a metric of the rounds; accuracies are drawn in %, distances as they are.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> rounds = lambda a: [{"remaining": f, "test_accuracy": {"seeds": [a, a + 0.01]}}
      ...                     for f in (1.0, 0.8, 0.64)]
      >>> results = {"runs": {"noise0_weights": {"noise": 0.0, "retrain": "weights",
      ...                                         "rounds": rounds(0.6)},
      ...                     "noise0.2_weights": {"noise": 0.2, "retrain": "weights",
      ...                                           "rounds": rounds(0.5)}}}
      >>> out = plot_double_descent(results, os.path.join(tempfile.mkdtemp(), "dd.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    runs = [r for r in results["runs"].values() if r["rounds"] and r["rounds"][0][metric]]
    if not runs:
        raise ValueError(
            f"metric {metric!r} has no values in any run of the results (plot_double_descent); "
            "memorisation needs a run with label noise."
        )
    retrains = list(dict.fromkeys(r["retrain"] for r in runs))
    scale = 100.0 if metric in _YLABELS else 1.0
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(retrains), figsize=(5.5 * len(retrains), 4.2), dpi=120, squeeze=False
    )
    for ax, retrain in zip(axes[0], retrains):
        xs = []
        for r in (r for r in runs if r["retrain"] == retrain):
            x = 100 * np.asarray([rnd["remaining"] for rnd in r["rounds"]], np.float64)
            seeds = [rnd[metric]["seeds"] for rnd in r["rounds"]]
            _mean_and_band(
                ax, x, scale * np.asarray(seeds, np.float64), label=f"noise {100 * r['noise']:g}%"
            )
            xs.append(x)
        _log_remaining_axis(ax, np.concatenate(xs))
        ax.set_ylabel(_YLABELS.get(metric, metric))
        ax.set_title(f"retraining: {retrain}")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)
