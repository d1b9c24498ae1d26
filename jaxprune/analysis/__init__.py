"""Linear mode connectivity and what pruning does to a network: interpolation between
two networks, the barrier on the path, mask overlap and dead units; and the intrinsic
dimension of a dataset.

Pure functions of pytrees and arrays (no Flax): they work on Flax Linen ``params``,
NNX ``State`` (wrapped or pure), Equinox models and plain dicts, under ``jit`` and
``vmap``.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxprune import analysis
  >>> a, b = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  >>> path = analysis.interpolate(a, b, jnp.linspace(0, 1, 5))
  >>> losses = jnp.array([1.0, 1.5, 1.8, 1.2, 1.0])  # measured along the path
  >>> round(float(analysis.barrier(losses)), 4)
  0.8
"""

from jaxprune.analysis._barrier import barrier
from jaxprune.analysis._dead import DeadUnits, LayerDeadUnits, dead_unit_rate
from jaxprune.analysis._dimension import intrinsic_dimension
from jaxprune.analysis._interpolate import interpolate
from jaxprune.analysis._overlap import LayerOverlap, MaskOverlap, mask_overlap

__all__ = [
    "DeadUnits",
    "LayerDeadUnits",
    "LayerOverlap",
    "MaskOverlap",
    "barrier",
    "dead_unit_rate",
    "interpolate",
    "intrinsic_dimension",
    "mask_overlap",
]
