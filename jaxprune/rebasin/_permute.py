"""Applying a permutation of hidden units to variables, masks and optimizer states."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxprune import _tree
from jaxprune.rebasin._spec import PermutationSpec, check_perm, spec_leaf, take
from jaxprune.typing import PyTree

__all__ = ["identity_permutation", "invert_permutation", "permute", "random_permutation"]

Permutation = dict[str, jax.Array]


def identity_permutation(spec: PermutationSpec) -> Permutation:
    """The permutation that moves nothing: name -> ``arange(size)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> {k: p.tolist() for k, p in rebasin.identity_permutation(spec).items()}
      {'w1': [0, 1, 2, 3]}
    """
    return {name: jnp.arange(g.size) for name, g in spec.groups.items()}


def random_permutation(key: jax.Array, spec: PermutationSpec) -> Permutation:
    """A uniformly random permutation of every group, one key folded per group.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> sorted(rebasin.random_permutation(jax.random.key(0), spec)["w1"].tolist())
      [0, 1, 2, 3]
    """
    return {
        name: jax.random.permutation(jax.random.fold_in(key, i), g.size)
        for i, (name, g) in enumerate(spec.groups.items())
    }


def invert_permutation(perm: Mapping[str, jax.Array]) -> Permutation:
    """The inverse of every permutation in ``perm``: ``permute`` by it undoes ``perm``."""
    return {name: jnp.argsort(jnp.asarray(p)) for name, p in perm.items()}


def permute(spec: PermutationSpec, perm: Mapping[str, jax.Array], tree: PyTree) -> PyTree:
    """``tree`` with the hidden units reordered: unit ``i`` of each group becomes ``perm[g][i]``.

    ``tree`` is the variables the spec was traced from, or any tree holding some of
    them: a mask (its 0-d stand-ins stay as they are), a params-only subset, an optax
    state (every leaf whose path ends with a spec leaf's path and has its shape is
    permuted, so Adam's moments move with their weights).

    Args:
      spec: from `permutation_spec`.
      perm: group name -> int array of its size (`random_permutation`,
        `weight_matching`, ...).
      tree: the pytree to reorder.

    Returns:
      A tree of the same structure.

    Raises:
      ValueError: ``perm`` does not fit ``spec``, a leaf at a spec path has another
        shape, or no leaf of ``tree`` is one the spec moves.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 4)), "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> p = rebasin.random_permutation(jax.random.key(1), spec)
      >>> x = jnp.ones((5, 3))
      >>> bool(jnp.allclose(apply(rebasin.permute(spec, p, v), x), apply(v, x)))
      True
    """
    perm = check_perm(spec, perm)
    paths, leaves, treedef = _tree.leaves_with_paths(tree)
    out, moved = [], 0
    for path, leaf in zip(paths, leaves):
        key = spec_leaf(path, leaf, spec)
        if key is None:
            out.append(leaf)
            continue
        for name, ref in spec.moves(key):
            leaf = take(leaf, ref, perm[name])
        moved += 1
        out.append(leaf)
    if not moved:
        raise ValueError(
            f"permute: no leaf of the tree is one the spec moves (spec leaves such as "
            f"{sorted(spec.shapes)[:3]}; tree leaves such as {paths[:3]}). Pass the "
            f"variables the spec was traced from, or a tree holding some of them."
        )
    return jax.tree_util.tree_unflatten(treedef, out)
