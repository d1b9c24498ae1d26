"""The jitted selection: top-k keys per group of leaves, by the method that suits the backend."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxprune import _checks, _fastpath, placement
from jaxprune.select._counting import counting
from jaxprune.select._keys import Groups, order_keys
from jaxprune.select._radix import radix
from jaxprune.select._sort import sort

METHODS = ("auto", "radix", "sort", "count")


def check_method(method: str) -> None:
    """Raises a ValueError unless ``method`` names a selection method.

    Example:
      >>> check_method("radix")
    """
    _checks.check_choice(method, METHODS, "method")


@functools.partial(jax.jit, static_argnames=("index", "method"))
def _select_jit(scores, within, ks, index, method):
    keys, restore = [], []
    for s, w in zip(scores, within):
        s, back = placement._replicated(s)
        key = order_keys(s)
        if w is not None:
            key = jnp.where(placement._replicated(w)[0], key, jnp.uint32(0))
        keys.append(key)
        restore.append(back)
    groups = [(idx, ks[g]) for g, idx in enumerate(index)]
    kept = {"radix": radix, "sort": sort, "count": counting}[method](keys, groups)
    return [back(m) for back, m in zip(restore, kept)]


def select(
    scores: Sequence[jax.Array],
    within: Sequence[jax.Array | None],
    groups: Groups,
    method: str = "auto",
) -> list[jax.Array]:
    """Keeps the top-k scores of each group of leaves (jitted; cached per shapes).

    Args:
      scores: the candidate leaves' scores.
      within: per leaf, a boolean array of the entries that may be kept, or None.
      groups: ``(leaf indices, k)`` pairs; ``k`` may be traced.
      method: ``"auto"``, ``"radix"``, ``"sort"`` or ``"count"``.

    Returns:
      One boolean array per leaf.
    """
    check_method(method)
    if method == "auto":
        method = "radix" if _fastpath.on_cpu() else "sort"
    index = tuple(tuple(idx) for idx, _ in groups)
    ks = jnp.stack([jnp.asarray(k, jnp.int32) for _, k in groups])
    return _select_jit(list(scores), list(within), ks, index, method)
