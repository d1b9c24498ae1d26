"""Tree helpers of the core: leaf paths, the 0-d stand-in, which leaves are prunable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import filters
from jaxprune.typing import PyTree


def path_str(keypath: Sequence[Any]) -> str:
    """Renders a JAX key path as ``a/b/0/c``, dropping NNX ``Variable`` ``.value`` keys.

    Example:
      >>> from jax.tree_util import DictKey, GetAttrKey
      >>> path_str((DictKey("dense"), DictKey("kernel"), GetAttrKey("value")))
      'dense/kernel'
    """
    keys = [
        k for k in keypath if not (isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value")
    ]
    return jax.tree_util.keystr(tuple(keys), simple=True, separator="/")


def leaves_with_paths(tree: PyTree) -> tuple[list[str], list[Any], Any]:
    """Flattens a tree into (paths, leaves, treedef).

    Example:
      >>> leaves_with_paths({"a": 1, "b": [2, 3]})[0]
      ['a', 'b/0', 'b/1']
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(p) for p, _ in flat], [x for _, x in flat], treedef


def is_stand_in(leaf: Any) -> bool:
    """Whether a mask (or score) leaf is the 0-d stand-in of a non-prunable leaf."""
    return getattr(leaf, "ndim", 0) == 0


def stand_in() -> jax.Array:
    """The mask leaf of a parameter that is not prunable: a 0-d ``True``."""
    return jnp.ones((), jnp.bool_)


def prunable_flags(tree: PyTree, prunable: filters.FilterLike = None) -> list[bool]:
    """Which leaves of ``tree`` are prunable, in flattening order.

    A leaf is prunable when the filter keeps it and it has at least one
    dimension. Prunable leaves must hold floating-point numbers.

    Raises:
      TypeError: a leaf the filter keeps is not floating point.
      ValueError: no leaf is prunable.

    Example:
      >>> import numpy as np
      >>> prunable_flags({"kernel": np.ones((2, 3)), "bias": np.ones(3)})
      [False, True]
    """
    keep = filters.as_filter(prunable)
    paths, leaves, _ = leaves_with_paths(tree)
    flags = []
    for path, leaf in zip(paths, leaves):
        flag = getattr(leaf, "ndim", 0) >= 1 and bool(keep(path, leaf))
        if flag and not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"Parameter {path!r} has dtype {leaf.dtype}; only floating-point "
                "parameters can be pruned. Exclude it with prunable=... (keeping the "
                "default's kernels: jaxprune.filters.all_of(jaxprune.filters.kernels, "
                "jaxprune.filters.not_(" + repr(path) + ")))."
            )
        flags.append(flag)
    require_prunable(paths, flags)
    return flags


def require_prunable(paths: Sequence[str], flags: Sequence[bool]) -> None:
    """Raises a ValueError naming the paths seen when no leaf is prunable."""
    if any(flags):
        return
    shown = ", ".join(repr(p) for p in paths[:12]) or "none"
    more = f" (and {len(paths) - 12} more)" if len(paths) > 12 else ""
    raise ValueError(
        "Nothing to prune: no leaf is prunable. By default only leaves with two "
        "or more dimensions (Dense/Conv kernels) are; pass prunable= (a path "
        f"regex or a filter from jaxprune.filters) to choose. Leaves seen: {shown}{more}."
    )


def matched_leaves(
    tree: PyTree, reference: PyTree, tree_name: str, ref_name: str
) -> tuple[list[str], list[Any], list[Any]]:
    """Pairs the leaves of two trees path by path (NNX wrappers ignored).

    Returns:
      (paths, tree leaves, reference leaves), in the reference's order.

    Raises:
      ValueError: naming the first path where the structures differ.
    """
    paths, leaves, _ = leaves_with_paths(tree)
    ref_paths, ref_leaves, _ = leaves_with_paths(reference)
    if paths != ref_paths:
        for i in range(max(len(paths), len(ref_paths))):
            a = paths[i] if i < len(paths) else None
            b = ref_paths[i] if i < len(ref_paths) else None
            if a != b:
                break
        if b is None or (a is not None and a not in ref_paths):
            where = f"{tree_name} has a leaf at {a!r} that {ref_name} does not have"
        else:
            where = f"{ref_name} has a leaf at {b!r} that {tree_name} does not have"
        raise ValueError(
            f"The structure of {tree_name} does not match {ref_name}: {where} "
            f"({len(paths)} vs {len(ref_paths)} leaves). Build {tree_name} from the "
            f"same parameter tree as {ref_name}."
        )
    return paths, leaves, ref_leaves
