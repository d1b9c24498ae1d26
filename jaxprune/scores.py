"""Scores: pytrees shaped like the parameters, higher = more worth keeping.

Every function returns full float32 arrays on the prunable leaves and the 0-d
stand-in ``0.0`` on the others, so :func:`jaxprune.topk_mask` knows which leaves
take part. ``prunable`` chooses the leaves (default: ndim >= 2, i.e. Dense and
Conv kernels).

Example:
  >>> import jax, jaxprune
  >>> params = {"w": jax.numpy.array([[1.0, -3.0], [0.5, 2.0]]), "b": jax.numpy.ones(2)}
  >>> jaxprune.scores.magnitude(params)["w"].tolist()
  [[1.0, 3.0], [0.5, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import filters, masks

PyTree = Any


def _stand_in() -> jax.Array:
    return jnp.zeros((), jnp.float32)


def score_tree(
    fn: Callable[..., jax.Array], *trees: PyTree, prunable: filters.FilterLike = None
) -> PyTree:
    """Applies ``fn(leaf, *other_leaves)`` on the prunable leaves of ``trees[0]``.

    The building block of score functions; the result is float32, with 0-d
    stand-ins on the leaves that are not prunable.

    Example:
      >>> import numpy as np
      >>> t = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
      >>> score_tree(lambda w: 2 * w, t)["b"].shape
      ()
    """
    flags = masks.prunable_flags(trees[0], prunable)
    leaves, treedef = jax.tree_util.tree_flatten(trees[0])
    others = [treedef.flatten_up_to(t) for t in trees[1:]]
    out = [
        fn(x, *(o[i] for o in others)).astype(jnp.float32) if f else _stand_in()
        for i, (x, f) in enumerate(zip(leaves, flags))
    ]
    return treedef.unflatten(out)


def magnitude(params: PyTree, *, prunable: filters.FilterLike = None) -> PyTree:
    """|w|: magnitude pruning, the lottery-ticket criterion.

    Example:
      >>> import numpy as np
      >>> magnitude({"w": -np.ones((2, 2), np.float32)})["w"].tolist()
      [[1.0, 1.0], [1.0, 1.0]]
    """
    return score_tree(jnp.abs, params, prunable=prunable)


def random(key: jax.Array, params: PyTree, *, prunable: filters.FilterLike = None) -> PyTree:
    """Uniform random scores: random pruning (each leaf its own key, folded from ``key``).

    Example:
      >>> import jax, numpy as np
      >>> s = random(jax.random.key(0), {"w": np.ones((3, 3), np.float32)})
      >>> s["w"].shape
      (3, 3)
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = treedef.unflatten([jax.random.fold_in(key, i) for i in range(len(leaves))])
    return score_tree(lambda w, k: jax.random.uniform(k, w.shape), params, keys, prunable=prunable)


def snip(
    loss_fn: Callable[..., Any],
    params: PyTree,
    batch: Any,
    *,
    prunable: filters.FilterLike = None,
    normalize: bool = True,
    has_aux: bool = False,
) -> PyTree:
    """SNIP connection sensitivity |g * w| on one batch (Lee et al. 2019).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)`` with
        ``has_aux``).
      params: the (initial) parameters to score.
      batch: one minibatch (the paper uses 100 examples on MNIST, 128 on CIFAR).
      prunable: which leaves are scored.
      normalize: divide by the sum over all prunable leaves, as the paper does
        (the ranking is the same either way).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.array([[1.0, -2.0]])}
      >>> loss = lambda p, x: jnp.sum(x @ p["w"])
      >>> snip(loss, params, jnp.array([[3.0]]), normalize=False)["w"].tolist()
      [[3.0, 6.0]]
    """
    grads = jax.grad(loss_fn, has_aux=has_aux)(params, batch)
    if has_aux:
        grads = grads[0]
    s = score_tree(lambda w, g: jnp.abs(g * w), params, grads, prunable=prunable)
    if not normalize:
        return s
    total = sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(s))
    return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else x / total, s)
