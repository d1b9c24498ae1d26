"""How much two masks agree: intersection over union, against chance."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxprune._tree import is_stand_in, matched_leaves
from jaxprune.analysis._table import table
from jaxprune.typing import Mask


class LayerOverlap(NamedTuple):
    """The overlap of two masks on one layer: kept counts, intersection, union, IoUs."""

    size: int
    kept_a: int
    kept_b: int
    intersection: int
    union: int
    iou: float
    random_iou: float


class MaskOverlap(NamedTuple):
    """Per-layer and total overlap of two masks; ``str()`` renders a table."""

    per_layer: dict[str, LayerOverlap]
    iou: float
    random_iou: float

    def __str__(self) -> str:
        def row(name: str, size: int, kept_a: int, kept_b: int, iou: float, rand: float):
            return (name, f"{size:,}", f"{kept_a:,}", f"{kept_b:,}", f"{iou:.4f}", f"{rand:.4f}")

        layers = self.per_layer.values()
        rows = [
            row(p, l.size, l.kept_a, l.kept_b, l.iou, l.random_iou)
            for p, l in self.per_layer.items()
        ]
        sums = [
            sum(l.size for l in layers),
            sum(l.kept_a for l in layers),
            sum(l.kept_b for l in layers),
        ]
        total = row("total", *sums, self.iou, self.random_iou)
        return table(("path", "size", "kept a", "kept b", "iou", "random iou"), rows, total)


def _ratio(num: float, den: float) -> float:
    # Two masks that keep nothing on a layer agree on it.
    return float(num / den) if den else 1.0


def _expected(kept_a: int, kept_b: int, size: int) -> tuple[float, float]:
    """E|A & B| and E|A | B| for random masks with these kept counts."""
    inter = kept_a * kept_b / size if size else 0.0
    return inter, kept_a + kept_b - inter


def mask_overlap(a: Mask, b: Mask) -> MaskOverlap:
    """The intersection over union of the kept entries of two masks, per layer and in total.

    Beside it, what two random masks with the same per-layer kept counts give: per
    layer ``E|A & B| = k_a k_b / n``, and the random IoU is the ratio of expectations
    ``E|A & B| / (k_a + k_b - E|A & B|)`` (the total likewise, summed over layers).
    0-d stand-in leaves (parameters not pruned) are skipped. A layer where both masks
    keep nothing has IoU 1.

    Args:
      a: a mask (a pytree of boolean arrays).
      b: a mask with the same structure and shapes.

    Returns:
      A `MaskOverlap`: ``per_layer`` maps each leaf path to a `LayerOverlap`; ``iou``
      and ``random_iou`` are the totals over all layers.

    Raises:
      ValueError: the masks differ in structure or in a leaf's shape.
      TypeError: a leaf is not boolean.

    Example:
      >>> import numpy as np
      >>> a = {"w": np.array([[True, True], [False, False]]), "b": np.array(True)}
      >>> b = {"w": np.array([[True, False], [True, False]]), "b": np.array(True)}
      >>> r = mask_overlap(a, b)
      >>> round(r.iou, 4), round(r.random_iou, 4), list(r.per_layer)
      (0.3333, 0.3333, ['w'])
    """
    paths, a_leaves, b_leaves = matched_leaves(a, b, "a", "b")
    per_layer: dict[str, LayerOverlap] = {}
    for path, x, y in zip(paths, a_leaves, b_leaves):
        for name, leaf in (("a", x), ("b", y)):
            if np.asarray(leaf).dtype != np.bool_:
                raise TypeError(
                    f"Mask {name} has dtype {np.asarray(leaf).dtype} at {path!r}; masks are "
                    "boolean (True = kept). Pass masks, e.g. from jaxprune.topk_mask."
                )
        if is_stand_in(x) and is_stand_in(y):
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            raise ValueError(
                f"Masks a and b differ at {path!r}: shapes {x.shape} and {y.shape}. Compare "
                "masks of the same parameters (a 0-d leaf is the stand-in of one not pruned)."
            )
        kept_a, kept_b, inter = int(x.sum()), int(y.sum()), int((x & y).sum())
        union = kept_a + kept_b - inter
        e_inter, e_union = _expected(kept_a, kept_b, x.size)
        per_layer[path] = LayerOverlap(
            x.size, kept_a, kept_b, inter, union, _ratio(inter, union), _ratio(e_inter, e_union)
        )
    layers = per_layer.values()
    inter = sum(l.intersection for l in layers)
    union = sum(l.union for l in layers)
    expected = [_expected(l.kept_a, l.kept_b, l.size) for l in layers]
    return MaskOverlap(
        per_layer,
        _ratio(inter, union),
        _ratio(sum(e for e, _ in expected), sum(u for _, u in expected)),
    )
