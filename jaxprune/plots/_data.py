"""Data pruning: test accuracy against the fraction of the training set kept."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from jaxprune.plots._base import _mean_and_band, _pyplot, _save


def plot_data_pruning(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]]],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "test accuracy",
) -> str:
    """Draws test accuracy against the % of training examples kept, one panel per dataset.

    Args:
      panels: panel title (a dataset) -> {curve name ("SCORE, hardest", "SCORE,
        easiest" or "random") -> (fractions kept, one list of per-seed values per
        fraction)}. Each line is the mean over seeds, its band the min-max range; a
        score has one colour, solid for the hardest kept, dashed for the easiest.
      path: where to write the PNG.
      title: the figure title.
      ylabel: the y axis label.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> curves = {"EL2N, hardest": ([0.3, 1.0], [[0.6, 0.62], [0.7, 0.71]]),
      ...           "random": ([0.3, 1.0], [[0.58, 0.6], [0.7, 0.71]])}
      >>> out = plot_data_pruning({"mnist1d": curves}, os.path.join(tempfile.mkdtemp(), "dp.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    if not panels:
        raise ValueError("plot_data_pruning: panels is empty; give at least one dataset.")
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.6 * len(panels), 4.2), dpi=120, squeeze=False
    )
    # One colour per score (the label before its comma), solid for the hardest examples
    # kept, dashed for the easiest, random dotted black.
    scores = list(dict.fromkeys(label.split(",")[0] for c in panels.values() for label in c))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for label, (kept, values) in curves.items():
            score = label.split(",")[0]
            style = {"color": cycle[scores.index(score) % len(cycle)]}
            style["ls"] = "--" if "easiest" in label else "-"
            if score == "random":
                style = {"color": "black", "ls": ":"}
            _mean_and_band(
                ax,
                100 * np.asarray(kept, np.float64),
                np.asarray(values, np.float64),
                label=label,
                **style,
            )
        ax.set_xlabel("% of training examples kept")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)
