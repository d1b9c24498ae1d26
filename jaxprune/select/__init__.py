"""From scores to exact masks: top-k per layer or globally, N:M, random with equal counts.

The public API is :func:`topk_mask`, :func:`nm_mask` and :func:`random_like`; the
methods live in private modules (``_radix``, ``_sort``, ``_counting``), as does the
planning of the groups (``_plan``) and the jitted dispatch (``_engine``).

Exactly ``k`` entries are kept per group (see :mod:`jaxprune.distributions`),
the ``k`` largest scores, ties broken by position (the earlier leaf, then the
earlier flat index wins), NaN scores ranked below everything. Two algorithms
give the identical mask:

- ``"radix"`` (the CPU default): scores are mapped to order-preserving uint32
  keys and the k-th largest key is found by radix select, histogram passes of
  11/11/10 bits (the last one usually skipped): no sort, linear memory
  traffic, fast where sorting is slow.
- ``"sort"`` (the GPU/TPU default): stable sorts of all candidates by key, then
  by group, where accelerators sort fast.

Both run under ``jit`` and ``vmap``, with traced ``k``, and on sharded arrays;
but not under a ``vmap`` whose mapped axis is sharded on an Explicit mesh (an
ensemble with one member per device, ``jax.sharding.AxisType.Explicit``): JAX fails
to batch the radix select's conditional and the sort's gather there. Pass
``method="count"`` (a counting selection, the same mask) to the transforms then;
on an Auto mesh all three work.
"""

from jaxprune import _checks, _deprecation
from jaxprune.select import _keys, _plan

# check_method, check_nm, count and select stay importable from here for transforms/ and
# lottery until they import the private modules; none of them is public.
from jaxprune.select._engine import check_method, select  # noqa: F401
from jaxprune.select._keys import count  # noqa: F401
from jaxprune.select._nm import nm_mask
from jaxprune.select._topk import random_like, topk_mask

check_nm = _checks.check_nm

__all__ = ["nm_mask", "random_like", "topk_mask"]

__getattr__ = _deprecation.module_getattr(
    __name__,
    {
        "order_keys": ("it is internal", lambda: _keys.order_keys),
        "plan_groups": ("it is internal", lambda: _plan.plan_groups),
    },
)
