"""Masks: boolean pytrees with exactly the structure of the parameters.

A mask leaf is either a boolean array of the parameter's shape (``True`` = kept)
or, for a leaf that is not prunable (a bias, a normalisation scale, a step
counter), the 0-d stand-in ``True``: it keeps the tree structure equal to the
parameters' without spending memory, broadcasts in ``jnp.where``, and tells every
function here that the leaf takes no part in pruning.

Trees are matched leaf by leaf on their paths, with Flax NNX ``Variable``
wrappers ignored, so a mask built from ``nnx.state(model, nnx.Param)`` applies to
the pure state ``nnx.as_pure(...)`` and the other way round.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import filters, placement

# is_stand_in, leaves_with_paths and path_str stay importable from here for transforms/ and
# train/ until they import jaxprune._tree; none of them is public.
from jaxprune._tree import (
    is_stand_in,
    leaves_with_paths,
    matched_leaves,
    path_str,  # noqa: F401
    prunable_flags,
    require_prunable,
    stand_in,
)
from jaxprune.typing import Mask, PyTree

__all__ = [
    "LeafSparsity",
    "SparsityReport",
    "apply_mask",
    "check_mask",
    "dense_mask",
    "pack_mask",
    "sparsity",
    "sparsity_report",
    "unpack_mask",
]


def check_mask(mask: Mask, params: PyTree) -> list[bool]:
    """Checks that ``mask`` fits ``params``; returns which leaves it prunes.

    Raises:
      ValueError: different structure (the first differing path is named), a
        shape that is neither the parameter's nor the 0-d stand-in, a 0-d False
        leaf, or a mask that prunes nothing.
      TypeError: a non-boolean mask leaf, or a pruned leaf that is not
        floating point.

    Example:
      >>> import numpy as np
      >>> params = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
      >>> check_mask({"w": np.eye(2, dtype=bool), "b": np.array(True)}, params)
      [False, True]
    """
    paths, m_leaves, p_leaves = matched_leaves(mask, params, "mask", "params")
    flags = []
    for path, m, p in zip(paths, m_leaves, p_leaves):
        if getattr(m, "dtype", None) != jnp.bool_:
            raise TypeError(
                f"Mask leaf {path!r} has dtype {getattr(m, 'dtype', type(m).__name__)}; "
                "masks are boolean (True = kept). Scores become a mask through "
                "jaxprune.topk_mask."
            )
        pshape = tuple(getattr(p, "shape", ()))
        if m.ndim == 0:
            if not isinstance(m, jax.core.Tracer) and not bool(m):
                raise ValueError(
                    f"Mask leaf {path!r} is a 0-d False. A 0-d mask leaf is the stand-in "
                    "of a parameter that is not pruned (always True, the leaf kept whole); "
                    f"to prune the whole parameter, give it a mask of shape {pshape}, "
                    "all False."
                )
            flags.append(False)
            continue
        if tuple(m.shape) != pshape:
            raise ValueError(
                f"Mask leaf {path!r} has shape {tuple(m.shape)} but the parameter has "
                f"shape {pshape}; expected {pshape} (or the 0-d stand-in for a leaf "
                "that is not pruned)."
            )
        if not jnp.issubdtype(p.dtype, jnp.floating):
            raise TypeError(
                f"Parameter {path!r} has dtype {p.dtype}; only floating-point "
                "parameters can be masked. Give it the 0-d stand-in in the mask."
            )
        flags.append(True)
    require_prunable(paths, flags)
    return flags


def dense_mask(params: PyTree, prunable: filters.FilterLike = None) -> Mask:
    """A mask that keeps everything: all-True on prunable leaves, stand-ins elsewhere.

    Example:
      >>> import numpy as np
      >>> m = dense_mask({"w": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)})
      >>> m["w"].shape, m["b"].shape
      ((2, 3), ())
    """
    flags = prunable_flags(params, prunable)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef.unflatten(
        [jnp.ones(p.shape, jnp.bool_) if f else stand_in() for p, f in zip(leaves, flags)]
    )


def apply_mask(params: PyTree, mask: Mask) -> PyTree:
    """Sets pruned entries to exactly zero; non-prunable leaves pass unchanged.

    Example:
      >>> import numpy as np
      >>> params = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
      >>> mask = {"w": np.eye(2, dtype=bool), "b": np.array(True)}
      >>> apply_mask(params, mask)["w"].tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    check_mask(mask, params)
    p_leaves, treedef = jax.tree_util.tree_flatten(params)
    m_leaves = jax.tree_util.tree_leaves(mask)
    return treedef.unflatten(
        [
            p
            if is_stand_in(m)
            else jnp.where(placement.match_sharding(m, p), p, jnp.zeros((), p.dtype))
            for p, m in zip(p_leaves, m_leaves)
        ]
    )


def _pruned_leaves(mask: Mask) -> list[tuple[str, Any]]:
    paths, leaves, _ = leaves_with_paths(mask)
    out = [(p, m) for p, m in zip(paths, leaves) if not is_stand_in(m)]
    require_prunable(paths, [True] * len(out) + [False] * (len(paths) - len(out)))
    return out


def sparsity(mask: Mask) -> jax.Array:
    """Fraction of pruned entries over the prunable leaves (0-d float32; jit-safe).

    The prunable leaves are those with at least one dimension. A boolean leaf keeps
    its ``True`` entries; any other leaf (the parameters themselves, say) keeps its
    nonzero entries, as :func:`sparsity_report` counts them.

    Example:
      >>> import numpy as np
      >>> float(sparsity({"w": np.eye(2, dtype=bool), "b": np.array(True)}))
      0.5
      >>> float(sparsity({"w": np.array([[0.5, 0.0], [0.0, -2.0]])}))  # weights: nonzeros
      0.5
    """
    leaves = [m for _, m in _pruned_leaves(mask)]
    kept = sum(_kept(m).astype(jnp.float32) for m in leaves)
    total = float(sum(m.size for m in leaves))
    return 1.0 - kept / total


def _kept(leaf: Any) -> jax.Array:
    """The kept entries of a leaf, int32: its True entries, or its nonzeros if not boolean."""
    leaf = jnp.asarray(leaf)
    return jnp.sum(leaf if leaf.dtype == jnp.bool_ else leaf != 0, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class LeafSparsity:
    """Sparsity of one prunable leaf; the cost fields are filled by ``export.cost_report``.

    Attributes:
      macs: multiply-accumulates of the products with this leaf, dense (None: not counted).
      kept_macs: the same, masked: ``macs`` times the leaf's kept fraction.
      slimmed_macs: the same in the slimmed model (``jaxprune.slim``), counted on it.
      nbytes: the leaf's bytes, dense.
      kept_nbytes: the bytes of its kept values alone.
      slimmed_nbytes: the bytes of the slimmed leaf.
    """

    path: str
    shape: tuple[int, ...]
    size: int
    kept: int
    macs: int | None = None
    kept_macs: int | None = None
    nbytes: int | None = None
    kept_nbytes: int | None = None
    slimmed_macs: int | None = None
    slimmed_nbytes: int | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-leaf and total sparsity of a mask; ``str()`` renders a table, ``to_markdown()`` too."""

    leaves: tuple[LeafSparsity, ...]

    @property
    def size(self) -> int:
        return sum(l.size for l in self.leaves)

    @property
    def kept(self) -> int:
        return sum(l.kept for l in self.leaves)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.size if self.size else 0.0

    @property
    def macs(self) -> int | None:
        return self._total("macs")

    @property
    def kept_macs(self) -> int | None:
        return self._total("kept_macs")

    @property
    def slimmed_macs(self) -> int | None:
        return self._total("slimmed_macs")

    @property
    def nbytes(self) -> int | None:
        return self._total("nbytes")

    @property
    def kept_nbytes(self) -> int | None:
        return self._total("kept_nbytes")

    @property
    def slimmed_nbytes(self) -> int | None:
        return self._total("slimmed_nbytes")

    def _total(self, field: str) -> int | None:
        values = [getattr(l, field) for l in self.leaves]
        return None if None in values else sum(values)

    def _cost_columns(self) -> list[tuple[str, str]]:
        """(field, heading) of the cost columns that are filled in."""
        return [(f, h) for f, h in _COST_COLUMNS if self._total(f) is not None]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: per-leaf rows and the totals (cost fields when counted)."""
        out = {"size": self.size, "kept": self.kept, "sparsity": self.sparsity}
        out.update({f: getattr(self, f) for f, _ in self._cost_columns()})
        rows = [
            {k: v for k, v in dataclasses.asdict(l).items() if v is not None}
            | {"sparsity": l.sparsity}
            for l in self.leaves
        ]
        return {"leaves": rows, **out}

    def _table(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """The heading and the rows (the last one the total) as strings."""
        columns = self._cost_columns()

        def row(r: Any, path: str, shape: str) -> tuple[str, ...]:
            cost = [f"{getattr(r, f):,}" for f, _ in columns]
            return (path, shape, f"{r.size:,}", f"{r.kept:,}", f"{100 * r.sparsity:.2f}%", *cost)

        rows = [row(l, l.path, "x".join(map(str, l.shape))) for l in self.leaves]
        rows.append(row(self, "total", ""))
        head = ("path", "shape", "size", "kept", "sparsity", *(h for _, h in columns))
        return head, rows

    def __str__(self) -> str:
        head, rows = self._table()
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        fmt = lambda r: "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        )
        lines = [fmt(head), fmt(tuple("-" * w for w in widths))]
        lines += [fmt(r) for r in rows[:-1]] + [fmt(tuple("-" * w for w in widths)), fmt(rows[-1])]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The table of ``str()`` as a Markdown table, the total in bold.

        Example:
          >>> import numpy as np
          >>> print(sparsity_report({"w": np.eye(2, dtype=bool)}).to_markdown())
          | path | shape | size | kept | sparsity |
          |---|---|---:|---:|---:|
          | w | 2x2 | 4 | 2 | 50.00% |
          | **total** |  | 4 | 2 | 50.00% |
        """
        head, rows = self._table()
        line = lambda r: "| " + " | ".join(r) + " |"
        align = ["---", "---"] + ["---:"] * (len(head) - 2)
        rows[-1] = ("**total**", *rows[-1][1:])
        return "\n".join([line(head), "|" + "|".join(align) + "|", *map(line, rows)])


# Filled by export.cost_report: dense, masked and slimmed MACs, then bytes.
_COST_COLUMNS = (
    ("macs", "MACs"),
    ("kept_macs", "kept MACs"),
    ("slimmed_macs", "slimmed MACs"),
    ("nbytes", "bytes"),
    ("kept_nbytes", "kept bytes"),
    ("slimmed_nbytes", "slimmed bytes"),
)


def sparsity_report(mask: Mask) -> SparsityReport:
    """Per-leaf path, shape, size, kept count and sparsity of a mask (on the host).

    Example:
      >>> import numpy as np
      >>> r = sparsity_report({"w": np.eye(2, dtype=bool), "b": np.array(True)})
      >>> r.leaves[0].kept, r.sparsity
      (2, 0.5)
    """
    return SparsityReport(
        tuple(
            LeafSparsity(
                path,
                tuple(m.shape),
                int(m.size),
                int(np.count_nonzero(np.asarray(jax.device_get(m)))),
            )
            for path, m in _pruned_leaves(mask)
        )
    )


def pack_mask(mask: Mask) -> PyTree:
    """Packs a mask to 1 bit per entry (uint8 leaves), for checkpoints.

    Prunable leaves become flat uint8 arrays of ``ceil(size / 8)`` bytes; stand-ins
    become a 0-d uint8. :func:`unpack_mask` inverts it.

    Example:
      >>> import numpy as np
      >>> packed = pack_mask({"w": np.ones((4, 4), bool), "b": np.array(True)})
      >>> packed["w"].shape, packed["b"].shape
      ((2,), ())
    """
    leaves, treedef = jax.tree_util.tree_flatten(mask)
    return treedef.unflatten(
        [
            jnp.ones((), jnp.uint8)
            if is_stand_in(m)
            else jnp.packbits(jnp.ravel(placement._replicated(m)[0]))
            for m in leaves
        ]
    )


def unpack_mask(packed: PyTree, like: PyTree) -> Mask:
    """Unpacks :func:`pack_mask` output into a mask shaped like ``like`` (params or a mask).

    The result has the structure of ``like``; ``like`` may hold arrays or
    ``jax.ShapeDtypeStruct``s.

    Example:
      >>> import numpy as np
      >>> params = {"w": np.ones((4, 4), np.float32), "b": np.ones(4, np.float32)}
      >>> mask = {"w": np.eye(4, dtype=bool), "b": np.array(True)}
      >>> bool((unpack_mask(pack_mask(mask), params)["w"] == mask["w"]).all())
      True
    """
    paths, k_leaves, l_leaves = matched_leaves(packed, like, "packed mask", "like")
    out = []
    for path, k, l in zip(paths, k_leaves, l_leaves):
        if k.ndim == 0:
            out.append(stand_in())
            continue
        size = int(np.prod(l.shape))
        if k.shape != ((size + 7) // 8,) or k.dtype != jnp.uint8:
            raise ValueError(
                f"Packed mask leaf {path!r} has shape {tuple(k.shape)} and dtype "
                f"{k.dtype}; a parameter of shape {tuple(l.shape)} needs uint8 of shape "
                f"({(size + 7) // 8},). Was it packed from a mask of these parameters?"
            )
        m = jnp.unpackbits(k, count=size).reshape(l.shape).astype(jnp.bool_)
        out.append(placement.match_sharding(m, l))
    return jax.tree_util.tree_structure(like).unflatten(out)
