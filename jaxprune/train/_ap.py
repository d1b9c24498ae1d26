"""AP in the IMP driver: the round's pruner given the weights the round started from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxprune import tickets
from jaxprune.train._imp_plan import IMPSettings
from jaxprune.train.state import ensemble_axes, stack_states


def round_pruner(
    settings: IMPSettings, plain: Callable[[Any, Any], Any]
) -> Callable[[Any, Any, Any], Any]:
    """``prune(params, mask, start)`` of every member at once: ``plain(params, mask)``
    without AP, else :func:`jaxprune.tickets.ap_prune_round` (jitted, vmapped)."""
    if not settings.ap_share:
        return lambda params, mask, start: plain(params, mask)
    if settings.granularity != "element":
        raise ValueError(
            f"ap_share={settings.ap_share} prunes single weights; got granularity="
            f"{settings.granularity!r} (IMPSettings). Use one of them."
        )

    @jax.jit
    def prune(params, mask, start):
        return jax.vmap(
            lambda p, m, s: tickets.ap_prune_round(
                p,
                s,
                m,
                settings.rate,
                ap_share=settings.ap_share,
                distribution=settings.distribution,
                overrides=settings.overrides() or None,
            ),
            in_axes=(ensemble_axes(params), ensemble_axes(mask), ensemble_axes(start)),
            out_axes=ensemble_axes(mask),
        )(params, mask, start)

    return prune


def round_start(settings: IMPSettings, members: Sequence[Any], n_seeds: int, start: Any) -> Any:
    """The tickets' weights at the start of the round just trained: the rewind point with
    ``rewind="weights"`` (``start`` as it was), else the trained weights they went on from."""
    if not settings.ap_share or settings.rewind == "weights":
        return start
    j = settings.variants.index("ticket") * n_seeds
    return stack_states(list(members[j : j + n_seeds])).params
