"""`activation_matching`: align hidden units by how their activations correlate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxprune.rebasin._spec import PermutationSpec

__all__ = ["activation_matching"]

_METHODS = ("correlation", "product")


def activation_matching(
    spec: PermutationSpec,
    features_a: Mapping[str, Any],
    features_b: Mapping[str, Any],
    *,
    method: Literal["correlation", "product"] = "correlation",
) -> dict[str, jax.Array]:
    """The permutation of ``b``'s hidden units whose activations best match ``a``'s.

    Every group is matched on its own: ``P = argmax <P, C>`` by a linear assignment,
    with ``C[i, j]`` comparing unit ``i`` of ``a`` with unit ``j`` of ``b`` over the
    samples. ``"correlation"`` (the default, as in REPAIR's code, Jordan et al. 2023)
    is the correlation ``cov / (sigma_a sigma_b^T + 1e-4)``; ``"product"`` is
    ``E[z_a z_b^T]`` (Git Re-Basin's activation matching). Entries that are NaN (a
    dead unit) count as 0. A group missing from the features keeps the identity.

    Args:
      spec: from `permutation_spec`.
      features_a: group name -> features of model ``a`` with the units last,
        ``(..., size)`` (every leading axis is a sample), e.g. the post-ReLU outputs
        of each layer on the same training inputs as ``features_b``.
      features_b: the same for model ``b``, same groups and shapes.
      method: ``"correlation"`` or ``"product"``.

    Returns:
      Group name -> int32 permutation: ``permute(spec, perm, b)`` is ``b`` aligned to
      ``a`` (unit ``i`` of the aligned ``b`` is its old unit ``perm[i]``).

    Raises:
      ValueError: an unknown method, a group name the spec lacks, a group in only one
        of the dicts, or features whose shapes differ or whose last axis is not the
        group's size.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 8)), "w2": jnp.ones((8, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> x = jax.random.normal(jax.random.key(1), (64, 3))
      >>> za = jnp.maximum(x @ v["w1"], 0)
      >>> zb = za[:, ::-1]  # b: the same units in reverse order
      >>> rebasin.activation_matching(spec, {"w1": za}, {"w1": zb})["w1"].tolist()
      [7, 6, 5, 4, 3, 2, 1, 0]
    """
    if method not in _METHODS:
        raise ValueError(f"activation_matching: method must be one of {_METHODS}; got {method!r}.")
    for which, feats in (("features_a", features_a), ("features_b", features_b)):
        unknown = [name for name in feats if name not in spec.groups]
        if unknown:
            raise ValueError(
                f"activation_matching: {which} has groups the spec lacks: {unknown}; the "
                f"spec's groups are {spec.names}."
            )
    only = sorted(set(features_a) ^ set(features_b))
    if only:
        raise ValueError(
            f"activation_matching: the groups {only} have features in only one of "
            f"features_a and features_b; give both models' features for each group."
        )
    perm = {name: jnp.arange(g.size, dtype=jnp.int32) for name, g in spec.groups.items()}
    for name in features_a:
        n = spec.groups[name].size
        za = np.asarray(features_a[name], np.float64)
        zb = np.asarray(features_b[name], np.float64)
        if za.shape != zb.shape or za.ndim < 1 or za.shape[-1] != n:
            raise ValueError(
                f"activation_matching: the features of group {name!r} have shapes "
                f"{za.shape} (a) and {zb.shape} (b); both must be (..., {n}), units last."
            )
        cost = _similarity(za.reshape(-1, n), zb.reshape(-1, n), method)
        _, cols = linear_sum_assignment(cost, maximize=True)
        perm[name] = jnp.asarray(cols, jnp.int32)
    return perm


def _similarity(za: np.ndarray, zb: np.ndarray, method: str) -> np.ndarray:
    """``C[i, j]`` between unit ``i`` of ``za`` and unit ``j`` of ``zb``, ``(samples, n)``."""
    outer = za.T @ zb / za.shape[0]
    if method == "product":
        cost = outer
    else:
        mean_a, mean_b = za.mean(0), zb.mean(0)
        cov = outer - np.outer(mean_a, mean_b)
        cost = cov / (np.outer(za.std(0), zb.std(0)) + 1e-4)
    return np.nan_to_num(cost, nan=0.0, posinf=0.0, neginf=0.0)
