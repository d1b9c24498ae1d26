"""Where arrays live: keep masks sharded like their parameters, in Auto and Explicit modes.

Under ``jax.sharding.AxisType.Explicit`` meshes (the default of
``jax.make_mesh``), reshapes of a sharded axis need an explicit output
sharding. The selection code therefore works on a replicated copy of each
explicitly sharded leaf and puts the result back on the leaf's sharding. Under
Auto meshes (and on one device) nothing is done: XLA's propagation shards the
computation itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from jaxprune import _deprecation

__all__ = ["explicit_sharding", "match_sharding"]


def explicit_sharding(x: Any) -> NamedSharding | None:
    """The sharding of ``x`` if it is explicitly sharded over some mesh axis, else None.

    Example:
      >>> import jax.numpy as jnp
      >>> explicit_sharding(jnp.ones(3)) is None
      True
    """
    try:
        sharding = jax.typeof(x).sharding
    except (TypeError, AttributeError):
        return None
    spec = getattr(sharding, "spec", None)
    if spec is None or all(s is None for s in spec):
        return None
    return sharding


def _replicated(x: jax.Array) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """A replicated copy of an explicitly sharded array, and how to shard a result back.

    Internal (named apart from :func:`jaxprune.train.replicated`, a mesh's replicated
    sharding).

    Example:
      >>> import jax.numpy as jnp
      >>> y, back = _replicated(jnp.ones(3))
      >>> back(y * 2).tolist()
      [2.0, 2.0, 2.0]
    """
    sharding = explicit_sharding(x)
    if sharding is None:
        return x, lambda y: y
    whole = NamedSharding(sharding.mesh, PartitionSpec())
    return jax.sharding.reshard(x, whole), lambda y: jax.sharding.reshard(y, sharding)


def match_sharding(x: jax.Array, like: Any) -> jax.Array:
    """Places ``x`` (same shape as ``like``) on ``like``'s sharding, when it has one.

    Concrete arrays (NumPy ones too) are moved with ``device_put``; inside ``jit``, explicitly
    sharded values are resharded; otherwise ``x`` is returned as it is.

    Example:
      >>> import jax.numpy as jnp
      >>> match_sharding(jnp.zeros(2), jnp.ones(2)).tolist()
      [0.0, 0.0]
    """
    if isinstance(like, jax.Array) and not isinstance(like, jax.core.Tracer):
        if isinstance(x, jax.core.Tracer) or getattr(x, "sharding", None) == like.sharding:
            return x
        return jax.device_put(x, like.sharding)  # a jax.Array, or NumPy (a loaded mask)
    sharding = explicit_sharding(like)
    if sharding is None or explicit_sharding(x) == sharding:
        return x
    return jax.sharding.reshard(x, sharding)


__getattr__ = _deprecation.module_getattr(
    __name__, {"replicated": ("it is internal, with no public successor", lambda: _replicated)}
)
