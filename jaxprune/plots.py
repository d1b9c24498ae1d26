"""Plots of accuracy against sparsity, as the papers draw them (PNG files).

An optional module: it needs matplotlib (the ``engine`` extra), imported only when a
plot is drawn, and ``import jaxprune`` does not import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "plot_accuracy_vs_remaining",
    "plot_dead_units",
    "plot_imp",
    "plot_instability",
    "plot_paths",
    "plot_rebasin",
    "plot_ticket_alignment",
]


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
    import matplotlib.ticker

    plt = _pyplot()
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


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f}, {len(values)} seeds"


def _in_range(tick: float, curves: Mapping[str, Any]) -> bool:
    xs = [100 * x for remaining, _ in curves.values() for x in remaining]
    return bool(xs) and min(xs) * 0.8 <= tick <= max(xs) * 1.2


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
    import matplotlib.ticker

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    dense = results["dense"][split]["dense"]["total"]
    rounds = results["rounds"]
    x = 100 * np.asarray([1.0] + [r["remaining"] for r in rounds], np.float64)
    for ax, rate in zip(axes, ("static", "dynamic")):
        for variant in results["variants"]:
            seeds = [dense[rate]["seeds"]]
            seeds += [r[split][variant]["total"][rate]["seeds"] for r in rounds]
            v = 100 * np.asarray(seeds, np.float64)
            (line,) = ax.plot(x, v.mean(axis=1), marker="o", ms=3, lw=1.5, label=variant)
            ax.fill_between(x, v.min(axis=1), v.max(axis=1), color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5) if x.min() * 0.8 <= t <= x.max() * 1.2]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("% of weights remaining (log scale)")
        ax.set_ylabel(f"{rate} dead-unit rate (%)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} ({split} examples)")
    return _save(plt, fig, path)


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
