"""Structured pruning: fine-tuned against scratch training, per model and method."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxprune.plots._base import _pyplot, _save

ARMS = {"fine_tuned": "fine-tuned", "scratch_e": "Scratch-E", "scratch_b": "Scratch-B"}
STYLES = {"fine_tuned": "-", "scratch_e": "--", "scratch_b": ":"}


def plot_scratch_vs_finetuned(results: dict[str, Any], path: str | os.PathLike) -> str:
    """Test accuracy against unit sparsity, one panel per model: every method's fine-tuned,
    Scratch-E and Scratch-B runs (mean, error bars one sample std over seeds), dense dashed.

    Args:
      results: records as `experiments/rethinking.py` writes them: ``models`` and
        ``rows``, each row with ``model``, ``method`` (``"dense"`` or a pruning method),
        ``arm``, ``sparsity`` and ``test_accuracy``.
      path: the PNG file to write.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> rows = [dict(model="m", method="dense", arm="dense", sparsity=0.0,
      ...              test_accuracy=0.9)]
      >>> rows += [dict(model="m", method="l1", arm=a, sparsity=0.5, test_accuracy=0.8)
      ...          for a in ("fine_tuned", "scratch_e")]
      >>> out = os.path.join(tempfile.mkdtemp(), "r.png")
      >>> plot_scratch_vs_finetuned({"models": ["m"], "rows": rows}, out) == out
      True
    """
    plt = _pyplot()
    models = list(results["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in results["rows"] if r["model"] == model]
        dense = [r["test_accuracy"] for r in rows if r["arm"] == "dense" and r["method"] == "dense"]
        if dense:
            ax.axhline(100 * np.mean(dense), color="k", ls="--", lw=1, label="dense")
        methods = list(dict.fromkeys(r["method"] for r in rows if r["arm"] != "dense"))
        for i, method in enumerate(methods):
            color = f"C{i}"
            for arm, label in ARMS.items():
                of = [r for r in rows if r["method"] == method and r["arm"] == arm]
                if not of:
                    continue
                xs = sorted({r["sparsity"] for r in of})
                vals = [
                    100 * np.asarray([r["test_accuracy"] for r in of if r["sparsity"] == x])
                    for x in xs
                ]
                ax.errorbar(
                    xs,
                    [v.mean() for v in vals],
                    yerr=[v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals],
                    color=color,
                    ls=STYLES[arm],
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"{method} {label}",
                )
        ax.set_title(model)
        ax.set_xlabel("fraction of units removed")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a model with no finished run yet
            ax.legend(fontsize=6)
    return _save(plt, fig, path)
