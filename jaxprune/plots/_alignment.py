"""Permutation alignment: paths per re-basin method, and tickets of two seeds aligned."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxprune.plots._base import _log_remaining_axis, _mean_and_band, _pyplot, _save


def plot_rebasin(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    split: str = "test",
    width: int | None = None,
    title: str = "",
) -> str:
    """Draws the loss and error along the path of each re-basin method, without and with
    REPAIR: the mean over pairs, the band the min-max range.

    Args:
      results: the study's ``results.json`` (``alphas``, ``widths``, ``repair_kind`` and
        ``rows`` with ``width``, ``method``, ``repair`` and per split the ``loss`` and
        ``error`` curves).
      path: where to write the PNG.
      split: the split whose curves are drawn (``"test"`` or ``"train"``).
      width: the width multiplier drawn (default: the largest of the results).
      title: the figure title (default: from the results).

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> row = lambda m, r: {"width": 1, "method": m, "repair": r,
      ...                     "test": {"loss": [0.1, 0.9, 0.1], "error": [0.1, 0.5, 0.1]}}
      >>> results = {"alphas": [0.0, 0.5, 1.0], "widths": [1], "repair_kind": "repair",
      ...            "rows": [row(m, r) for m in ("naive", "weight") for r in (False, True)]}
      >>> out = plot_rebasin(results, os.path.join(tempfile.mkdtemp(), "rebasin.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    width = max(results["widths"]) if width is None else width
    rows = [r for r in results["rows"] if r["width"] == width]
    if not rows:
        raise ValueError(
            f"width must be one the results hold; got {width}, the results hold "
            f"{results['widths']} (plot_rebasin)."
        )
    fix = "statistics reset" if results.get("repair_kind") == "reset" else "REPAIR"
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=120, sharex=True)
    alphas = np.asarray(results["alphas"], np.float64)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for col, repair in enumerate((False, True)):
        for row, (metric, scale, label) in enumerate(
            (("error", 100.0, f"{split} error (%)"), ("loss", 1.0, f"{split} loss"))
        ):
            ax = axes[row][col]
            for i, method in enumerate(methods):
                curves = scale * np.asarray(
                    [
                        r[split][metric]
                        for r in rows
                        if r["method"] == method and r["repair"] == repair
                    ],
                    np.float64,
                )
                if not len(curves):
                    continue
                ax.plot(alphas, curves.mean(0), color=f"C{i}", lw=1.5, label=method)
                ax.fill_between(alphas, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.15)
            ax.set_title(f"{'with' if repair else 'without'} {fix}")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if row == 1:
                ax.set_xlabel("interpolation alpha (a to aligned b)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or f"{results.get('title', 'Re-basin')}, width x{width}")
    return _save(plt, fig, path)


def plot_ticket_alignment(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    reference: str = "linear",
    title: str = "Lottery tickets of two seeds, aligned by weight matching",
) -> str:
    """Draws the results of ``experiments/rebasin_tickets.py`` against % of weights
    remaining (log x axis, sparser to the right): the total mask overlap (IoU) of each
    pair before and after each alignment, with two random masks' expectation; the test
    error and loss barriers between the pair's trained networks per alignment, the dense
    pair's (round 0) as horizontal lines. Lines are means over the pairs, bands min-max.

    Args:
      results: the study's ``results.json``, loaded: ``alignments``; ``rounds`` (round 0
        the dense pair) with ``remaining`` and ``pairs``, each with ``overlap[a]["iou"]``
        and ``["random_iou"]`` and ``barrier[a]["error_barrier"][reference]`` (and
        ``"loss_barrier"``) per alignment ``a``.
      path: where to write the PNG.
      reference: the barrier reference, ``"linear"`` or ``"mean"``.
      title: the figure title.

    Returns:
      ``path`` as a string.

    Example:
      >>> import tempfile, os
      >>> pair = lambda iou, b: {"overlap": {"none": {"iou": iou, "random_iou": 0.2}},
      ...     "barrier": {"none": {"error_barrier": {"linear": b}, "loss_barrier": {"linear": b}}}}
      >>> results = {"alignments": ["none"], "rounds": [
      ...     {"remaining": 1.0, "pairs": [pair(1.0, 0.1), pair(1.0, 0.12)]},
      ...     {"remaining": 0.5, "pairs": [pair(0.4, 0.05), pair(0.45, 0.06)]}]}
      >>> out = plot_ticket_alignment(results, os.path.join(tempfile.mkdtemp(), "a.png"))
      >>> os.path.getsize(out) > 0
      True
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=120)
    dense, rounds = results["rounds"][0], results["rounds"][1:]
    x = 100 * np.asarray([r["remaining"] for r in rounds], np.float64)
    per_pair = lambda rs, f: np.asarray([[f(p) for p in r["pairs"]] for r in rs], np.float64)
    draw = lambda ax, v, **style: _mean_and_band(ax, x, v, **style)
    random = per_pair(rounds, lambda p: p["overlap"]["none"]["random_iou"])
    draw(axes[0], 100 * random, label="random masks", color="black", ls=":")
    for j, a in enumerate(results["alignments"]):
        color = f"C{j}"
        draw(
            axes[0], 100 * per_pair(rounds, lambda p: p["overlap"][a]["iou"]), label=a, color=color
        )
        for ax, metric, scale in ((axes[1], "error", 100.0), (axes[2], "loss", 1.0)):
            value = lambda p: scale * p["barrier"][a][f"{metric}_barrier"][reference]
            draw(ax, per_pair(rounds, value), label=a, color=color)
            ax.axhline(np.mean([value(p) for p in dense["pairs"]]), color=color, lw=1, ls="--")
    axes[0].set_ylabel("mask overlap (total IoU, %)")
    axes[1].set_ylabel(f"test error barrier ({reference}, points)")
    axes[2].set_ylabel(f"test loss barrier ({reference})")
    for ax in axes:
        _log_remaining_axis(ax, x)
    axes[0].legend(fontsize=8, title="alignment of b")
    axes[1].legend(fontsize=8, title="dashed: dense pair")
    fig.suptitle(title)
    return _save(plt, fig, path)
