"""Building blocks of the score functions: per-leaf maps, SynFlow's raw flow, score checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import filters
from jaxprune._tree import prunable_flags
from jaxprune.typing import Params, PyTree, Scores


def stand_in() -> jax.Array:
    """The score leaf of a leaf that is not scored: a 0-d float32 zero."""
    return jnp.zeros((), jnp.float32)


def score_tree(
    fn: Callable[..., jax.Array], *trees: PyTree, prunable: filters.FilterLike = None
) -> Scores:
    """Applies ``fn(leaf, *other_leaves)`` on the prunable leaves of ``trees[0]``.

    The building block of score functions; the result is float32, with 0-d
    stand-ins on the leaves that are not prunable.

    Example:
      >>> import numpy as np
      >>> t = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
      >>> score_tree(lambda w: 2 * w, t)["b"].shape
      ()
    """
    flags = prunable_flags(trees[0], prunable)
    leaves, treedef = jax.tree_util.tree_flatten(trees[0])
    others = [treedef.flatten_up_to(t) for t in trees[1:]]
    out = [
        fn(x, *(o[i] for o in others)).astype(jnp.float32) if f else stand_in()
        for i, (x, f) in enumerate(zip(leaves, flags))
    ]
    return treedef.unflatten(out)


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """The shape of SynFlow's all-ones input as a tuple; raises a ValueError if it is not one.

    Example:
      >>> check_input_shape([1, 40])
      (1, 40)
    """
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else None
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"synflow: input_shape must be the shape of one input batch, positive integers "
            f"with the batch dimension first, e.g. (1, 28, 28, 1); got {input_shape!r}."
        )
    return shape


def synflow_raw(
    apply_fn: Callable[[Params, jax.Array], Any],
    params: Params,
    input_shape: Sequence[int],
    flags: Sequence[bool],
    dtype: Any = None,
) -> list[jax.Array | None]:
    """``|w dR/dw|`` of the |w| network on ones, in ``dtype``; None on leaves not flagged.

    The building block of :func:`synflow` (and of iterative SynFlow, which jits
    it once); ``params`` are used as given (mask them first).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    cast = lambda x: x.astype(dtype) if dtype is not None else x
    absolute = [
        cast(jnp.abs(x)) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else x for x in leaves
    ]
    first = next(x for x, f in zip(absolute, flags) if f)
    ones = jnp.ones(tuple(input_shape), first.dtype)

    def flow(ls):
        return jnp.sum(apply_fn(treedef.unflatten(ls), ones))

    grads = jax.grad(flow)(absolute)
    return [jnp.abs(g * w) if f else None for w, g, f in zip(absolute, grads, flags)]


def scale_to_float32(raw: Sequence[jax.Array | None]) -> list[jax.Array | None]:
    """Scales non-negative scores by ``2^-e`` so the largest is in [0.5, 1), then to float32.

    An exact power of two keeps the order of all scores that stay normal numbers.
    """
    present = [s for s in raw if s is not None]
    top = jnp.max(jnp.stack([jnp.max(s) for s in present]))
    _, e = jnp.frexp(jnp.where(top > 0, top, 1))
    return [None if s is None else jnp.ldexp(s, -e).astype(jnp.float32) for s in raw]


def _finite_scores(scores: Sequence[jax.Array | None], nonfinite: str) -> list[jax.Array]:
    """The concrete, non-empty scores, after a FloatingPointError(``nonfinite``) if one
    holds inf or NaN; an empty list under jit (nothing can be checked there)."""
    present = [s for s in scores if s is not None and s.size]
    if any(isinstance(s, jax.core.Tracer) for s in present):
        return []
    if not all(bool(jnp.all(jnp.isfinite(s))) for s in present):
        raise FloatingPointError(nonfinite)
    return present


# The largest float32 SynFlow score below which smaller ones have flushed to 0.
_UNDERFLOW = 2.0**-100


def check_finite(scores: Sequence[jax.Array | None], where: str, float64: bool = False) -> None:
    """Raises FloatingPointError when concrete SynFlow scores hold inf or NaN, are all 0, or
    (in float32) are so small that the smaller ones underflowed (no-op under jit)."""
    present = _finite_scores(
        scores,
        f"{where}: the synaptic flow overflowed (a score or R is inf or NaN): the "
        "product of |w| over the layers exceeds the float range. Pass float64=True "
        "(double precision, as the paper's code can), or score a shallower network.",
    )
    if not present:
        return
    top = max(float(jnp.max(s)) for s in present)
    if top == 0.0 or (not float64 and top < _UNDERFLOW):
        raise FloatingPointError(
            f"{where}: the largest score is {top:.3g}: the synaptic flow underflowed float32 "
            "(the product of |w| over the layers is below its range) or the network "
            "is disconnected (no path from input to output keeps a weight). Pass "
            "float64=True (double precision, as the paper's code can)."
        )


def check_scores(scores: Any, where: str, what: str) -> None:
    """Raises when concrete gradient-based scores (SNIP, GraSP) are not finite or all 0,
    since top-k would then pick by position; ``what`` says where the scores come from.
    A no-op under jit."""
    present = _finite_scores(
        [s for s in jax.tree_util.tree_leaves(scores) if s.ndim],
        f"{where}: a score is inf or NaN ({what}): check the batch and the loss for "
        "inf/NaN (and the parameters).",
    )
    if present and all(not bool(jnp.any(s != 0)) for s in present):
        raise ValueError(
            f"{where}: every score is 0 ({what} vanish for every prunable weight on this "
            "batch: a constant loss, an all-zero batch, dead units?): there is nothing to "
            "rank. Score a batch of real examples."
        )
