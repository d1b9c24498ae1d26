"""Type aliases for annotating code that uses jaxprune.

Example:
  >>> from jaxprune.typing import Mask, Params
  >>> def prune(params: Params, mask: Mask) -> Params: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

PyTree = Any
"""Any pytree: nested dicts, lists, tuples, NamedTuples, Flax NNX ``State``, Equinox modules."""

Params = PyTree
"""A pytree of parameter arrays (Linen ``params``, NNX ``State``, an Equinox model, a dict)."""

Mask = PyTree
"""A pytree of boolean arrays shaped like the parameters (``True`` = kept), 0-d ``True``
stand-ins on the leaves that are not pruned."""

Scores = PyTree
"""A pytree of scores shaped like the parameters (higher = more worth keeping), 0-d
stand-ins on the leaves that are not scored."""

PRNGKey = jax.Array
"""A JAX random key: ``jax.random.key(0)`` (typed) or ``jax.random.PRNGKey(0)`` (raw)."""

Filter = Callable[[str, Any], bool]
"""Which leaves are prunable: ``(path, leaf) -> bool`` (see :mod:`jaxprune.filters`)."""

FilterLike = None | str | Sequence[str] | Filter
"""A filter, a path regex or a list of them, or ``None`` (the default: Dense/Conv kernels)."""

Override = float | Callable[[Any], Any]
"""A per-layer sparsity: a fixed fraction, or a function of the base sparsity."""

Distribution = str | Mapping[str, float]
"""``"uniform"``, ``"global"``, ``"er"``, ``"erk"``, or a mapping path regex -> sparsity."""

Schedule = Callable[[Any], jax.Array]
"""Sparsity (or a fraction) as a function of the step."""

__all__ = [
    "Distribution",
    "Filter",
    "FilterLike",
    "Mask",
    "Override",
    "PRNGKey",
    "Params",
    "PyTree",
    "Schedule",
    "Scores",
]
