"""Optax gradient transformations that train under a mask.

One line in an existing optax chain::

    tx = jaxprune.masked(optax.adamw(1e-3, weight_decay=1e-4), mask)

Gradients are masked before the inner optimizer (so momentum, Adam moments,
factored statistics and gradient clipping only ever see the subnetwork), and the
final update is ``where(mask, u, -params)``: since ``x + (-x)`` is exactly
``+0.0``, pruned weights are exactly zero after every ``optax.apply_updates``,
with no hook to remember, whatever the optimizer does (weight decay included).
The mask lives in the optimizer state, so it is checkpointed and sharded with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprune import masks, placement

_MASK_STATES: list[type] = []


def register_mask_state(cls: type) -> type:
  """Marks a NamedTuple state class whose ``mask`` field :func:`mask_of` returns."""
  _MASK_STATES.append(cls)
  return cls


@register_mask_state
class MaskedState(NamedTuple):
  """State of :func:`masked`: the inner optimizer's state and the fixed mask."""

  inner_state: optax.OptState
  mask: Any


def mask_leaves_like(tree: Any, mask: Any) -> tuple[list[Any], list[Any], Any]:
  """The leaves of ``tree`` and ``mask`` side by side, and ``tree``'s treedef.

  Mask and tree are paired leaf by leaf in flattening order (NNX Variable
  wrappers, which ``nnx.Optimizer`` adds or strips, do not change it).
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  m_leaves = jax.tree_util.tree_leaves(mask)
  if len(m_leaves) != len(leaves):
    raise ValueError(
        f"The mask has {len(m_leaves)} leaves but the updates have {len(leaves)}: "
        "build the mask from the parameters this optimizer trains.")
  return leaves, m_leaves, treedef


def where_mask(mask: Any, tree: Any, fill: Any = None) -> Any:
  """``where(mask, tree, fill)`` leaf by leaf (``fill`` a tree or None for zeros).

  Stand-in (0-d) mask leaves pass the leaf through untouched.
  """
  leaves, m_leaves, treedef = mask_leaves_like(tree, mask)
  fills = [None] * len(leaves) if fill is None else jax.tree_util.tree_leaves(fill)
  out = []
  for x, m, f in zip(leaves, m_leaves, fills):
    if masks.is_stand_in(m):
      out.append(x)
    else:
      m = placement.match_sharding(m, x)
      out.append(jnp.where(m, x, jnp.zeros((), x.dtype) if f is None else f.astype(x.dtype)))
  return treedef.unflatten(out)


def masked_update(updates: Any, mask: Any, params: Any | None) -> Any:
  """The final update under a mask: ``where(mask, u, -params)`` (or 0 without params)."""
  if params is None:
    return where_mask(mask, updates)
  return where_mask(mask, updates, jax.tree_util.tree_map(jnp.negative, params))


def masked(inner: optax.GradientTransformation, mask: Any) -> optax.GradientTransformationExtraArgs:
  """Trains under a fixed mask with any optax optimizer; pruned weights stay exactly 0.

  Args:
    inner: any optax optimizer (sgd, adam, adamw, lion, adafactor, a chain, an
      ``inject_hyperparams`` one...).
    mask: a boolean mask shaped like the parameters (see :func:`jaxprune.topk_mask`).

  Returns:
    A gradient transformation whose state is :class:`MaskedState`. Pass
    ``params`` to ``update`` so pruned weights are driven to exactly 0 (without
    them, pruned weights only stay where they are). Prune the initial parameters
    with :func:`jaxprune.apply_mask` (or they become 0 after the first step).

  Example:
    >>> import jax, jax.numpy as jnp, optax, jaxprune
    >>> params = {"w": jnp.ones((2, 2))}
    >>> mask = {"w": jnp.eye(2, dtype=bool)}
    >>> tx = jaxprune.masked(optax.sgd(0.5, momentum=0.9), mask)
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
    >>> optax.apply_updates(params, updates)["w"].tolist()
    [[0.5, 0.0], [0.0, 0.5]]
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    masks.check_mask(mask, params)
    p_leaves, m_leaves, treedef = mask_leaves_like(params, mask)
    m_leaves = [m if masks.is_stand_in(m) else placement.match_sharding(m, p)
                for m, p in zip(m_leaves, p_leaves)]
    return MaskedState(inner_state=inner.init(params), mask=treedef.unflatten(m_leaves))

  def update_fn(updates, state, params=None, **extra_args):
    grads = where_mask(state.mask, updates)
    updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
    return masked_update(updates, state.mask, params), MaskedState(inner_state, state.mask)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _find(tree: Any, fn) -> Any:
  """Depth-first search of an optimizer state for a registered mask state."""
  if isinstance(tree, tuple(_MASK_STATES)):
    return fn(tree)
  if isinstance(tree, (tuple, list)):
    children = list(tree)
  elif isinstance(tree, Mapping):
    children = list(tree.values())
  else:
    return None
  for child in children:
    found = _find(child, fn)
    if found is not None:
      return found
  return None


def mask_of(opt_state: Any) -> Any:
  """The mask held by a jaxprune transform inside an optimizer state.

  Searches chains, ``inject_hyperparams`` and ``nnx.Optimizer`` states; the
  outermost jaxprune state wins.

  Raises:
    ValueError: no jaxprune transform in the state.

  Example:
    >>> import jax.numpy as jnp, optax, jaxprune
    >>> mask = {"w": jnp.eye(2, dtype=bool)}
    >>> tx = optax.chain(optax.clip_by_global_norm(1.0), jaxprune.masked(optax.sgd(0.1), mask))
    >>> jaxprune.mask_of(tx.init({"w": jnp.ones((2, 2))}))["w"].tolist()
    [[True, False], [False, True]]
  """
  found = _find(opt_state, lambda s: (s.mask,))
  if found is None:
    raise ValueError(
        "No jaxprune mask in this optimizer state: build the optimizer with "
        "jaxprune.masked(...) (or another jaxprune transform).")
  return found[0]
