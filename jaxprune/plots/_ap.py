"""The plot of experiments/ap_colt.py: IMP, IMP + AP and COLT against sparsity."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxprune.plots._base import _log_remaining_axis, _mean_and_band, _pyplot, _save

_LABELS = {"imp": "IMP", "ap": "IMP + AP", "colt": "COLT"}


def plot_ap_colt(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "IMP, IMP + AP and COLT",
) -> str:
    """Draws the results of ``experiments/ap_colt.py``: test accuracy, the paired
    differences to IMP and the dynamic dead-unit rate (three panels) against % of weights
    remaining (log x axis, sparser to the right), one line per arm (mean over seeds,
    min-max band).

    Args:
      results: the script's ``results.json``, loaded: ``arms``; ``dense`` with
        ``accuracy`` and ``dead_units``; each of ``rounds`` with ``remaining``,
        ``accuracy`` and ``dead_units`` per arm and ``paired`` per ``"<arm> - imp"``,
        each statistic holding the per-seed values as ``seeds``.
      path: where to write the PNG.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> s = lambda *v: {"seeds": list(v)}
      >>> arm = {"imp": s(0.6, 0.62), "ap": s(0.61, 0.6), "colt": s(0.59, 0.6)}
      >>> dnr = {a: {"dynamic": s(0.6, 0.62)} for a in arm}
      >>> results = {"arms": ["imp", "ap", "colt"],
      ...            "dense": {"accuracy": s(0.65, 0.66), "dead_units": {"dynamic": s(0.7, 0.7)}},
      ...            "rounds": [{"remaining": 0.5, "accuracy": arm, "dead_units": dnr,
      ...                        "paired": {"ap - imp": s(0.01, -0.02), "colt - imp": s(0, 0)}}]}
      >>> out = plot_ap_colt(results, os.path.join(tempfile.mkdtemp(), "ap.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=120)
    rounds, dense = results["rounds"], results["dense"]
    x = 100 * np.asarray([1.0] + [r["remaining"] for r in rounds], np.float64)
    pct = lambda seeds: 100 * np.asarray(seeds, np.float64)  # noqa: E731
    for i, arm in enumerate(results["arms"]):
        style = {"label": _LABELS.get(arm, arm), "color": f"C{i}"}  # one colour an arm
        acc = [dense["accuracy"]["seeds"]] + [r["accuracy"][arm]["seeds"] for r in rounds]
        _mean_and_band(axes[0], x, pct(acc), **style)
        dnr = [dense["dead_units"]["dynamic"]["seeds"]]
        dnr += [r["dead_units"][arm]["dynamic"]["seeds"] for r in rounds]
        _mean_and_band(axes[2], x, pct(dnr), **style)
        if arm != "imp":
            diff = [r["paired"][f"{arm} - imp"]["seeds"] for r in rounds]
            style["label"] += " - IMP"
            _mean_and_band(axes[1], x[1:], pct(diff), **style)
    axes[1].axhline(0.0, color="gray", lw=0.8)
    for ax, ylabel in zip(
        axes,
        ("test accuracy (%)", "paired difference to IMP (points)", "dynamic dead-unit rate (%)"),
    ):
        _log_remaining_axis(ax, x)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)
