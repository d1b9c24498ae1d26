"""Permutation alignment: the hidden-unit permutations of any function, found in its
jaxpr, and the tools that use them (permute, weight / activation / Sinkhorn matching).

The core layer: jax, numpy and scipy only (no Flax); it works on Flax Linen variables,
NNX ``State``, Equinox models and plain dicts. The spec is derived from the traced
function, never written by hand.

Matching finds the permutation that aligns a model ``b`` to a model ``a``
(``permute(spec, perm, b)``): `weight_matching` (Git Re-Basin's coordinate descent on
the weights), `activation_matching` (per-layer linear assignment of the activations'
correlation) and `sinkhorn_matching` (soft permutations trained on the loss at the
midpoint). `unit_features` reads the hidden units' activations, and `unit_stats`,
`repair` and `apply_repaired` give an interpolated network back the statistics of its
endpoints (REPAIR), all from the same trace.

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

from jaxprune.rebasin._activations import activation_matching
from jaxprune.rebasin._permute import (
    identity_permutation,
    invert_permutation,
    permute,
    random_permutation,
)
from jaxprune.rebasin._probe import UnitStats, apply_repaired, repair, unit_features, unit_stats
from jaxprune.rebasin._sinkhorn import sinkhorn_matching
from jaxprune.rebasin._spec import AxisRef, PermutationGroup, PermutationSpec
from jaxprune.rebasin._trace import permutation_spec
from jaxprune.rebasin._weights import MatchingInfo, weight_matching

__all__ = [
    "AxisRef",
    "MatchingInfo",
    "PermutationGroup",
    "PermutationSpec",
    "UnitStats",
    "activation_matching",
    "apply_repaired",
    "identity_permutation",
    "invert_permutation",
    "permutation_spec",
    "permute",
    "random_permutation",
    "repair",
    "sinkhorn_matching",
    "unit_features",
    "unit_stats",
    "weight_matching",
]
