"""Permutation alignment: the hidden-unit permutations of any function, found in its
jaxpr, and the tools that use them (permute, weight / activation / Sinkhorn matching).

The core layer: jax, numpy and scipy only (no Flax); it works on Flax Linen variables,
NNX ``State``, Equinox models and plain dicts. The spec is derived from the traced
function, never written by hand.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxprune import rebasin
  >>> def mlp(v, x):
  ...     return jnp.maximum(x @ v["w1"], 0) @ v["w2"]
  >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 16)), "w2": jnp.ones((16, 2))}
  >>> spec = rebasin.permutation_spec(mlp, v, jnp.ones((1, 3)))
  >>> spec.sizes
  {'w1': 16}
"""

from jaxprune.rebasin._permute import (
    identity_permutation,
    invert_permutation,
    permute,
    random_permutation,
)
from jaxprune.rebasin._probe import UnitStats, apply_repaired, repair, unit_features, unit_stats
from jaxprune.rebasin._spec import AxisRef, PermutationGroup, PermutationSpec
from jaxprune.rebasin._trace import permutation_spec

__all__ = [
    "AxisRef",
    "PermutationGroup",
    "PermutationSpec",
    "UnitStats",
    "apply_repaired",
    "identity_permutation",
    "invert_permutation",
    "permutation_spec",
    "permute",
    "random_permutation",
    "repair",
    "unit_features",
    "unit_stats",
]
