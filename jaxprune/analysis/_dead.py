"""Dead units: ReLU units that output nothing, on every example or per example."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxprune._tree import leaves_with_paths
from jaxprune.analysis._table import table
from jaxprune.typing import PyTree


class LayerDeadUnits(NamedTuple):
    """One layer's units and the fractions of them that are dead (static, dynamic)."""

    units: int
    static: jax.Array
    dynamic: jax.Array


class DeadUnits(NamedTuple):
    """Dead-unit rates per layer and in total (weighted by units); ``str()`` renders a table."""

    per_layer: dict[str, LayerDeadUnits]
    static: jax.Array
    dynamic: jax.Array

    def __str__(self) -> str:
        def row(name: str, units: int, static: Any, dynamic: Any) -> tuple[str, ...]:
            return (
                name,
                f"{units:,}",
                f"{100 * float(static):.2f}%",
                f"{100 * float(dynamic):.2f}%",
            )

        rows = [row(p, l.units, l.static, l.dynamic) for p, l in self.per_layer.items()]
        units = sum(l.units for l in self.per_layer.values())
        total = row("total", units, self.static, self.dynamic)
        return table(("path", "units", "static", "dynamic"), rows, total)


def _inactive(path: str, x: Any, threshold: float) -> jax.Array:
    """(batch, units): whether each unit is inactive (every position <= threshold) per example."""
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"activations at {path!r} must have the batch first and units last, with at least "
            f"one example: (batch, units) or (batch, ..., channels); got shape {x.shape}."
        )
    return jnp.all(x.reshape(x.shape[0], -1, x.shape[-1]) <= threshold, axis=1)


def dead_unit_rate(activations: PyTree, *, threshold: float = 0.0) -> DeadUnits:
    """The fractions of dead units in post-activation features, per layer and in total.

    A unit is the last axis (a neuron of a dense layer, a channel of a conv layer) and is
    inactive on an example when all its positions are ``<= threshold``. The *static*
    rate is the fraction of units inactive on every example of the batch; the *dynamic*
    rate is the fraction of units inactive on an example, averaged over the batch (the
    dynamic dead-neuron rate of Liu et al. 2022, "AP: selective activation for
    de-sparsifying pruned neural networks"). Totals weight the layers by their units.

    Args:
      activations: post-activation features, batch first and units last (dense
        ``(batch, units)``, conv ``(batch, h, w, channels)``), or a pytree of them, one
        per layer (such as ``jaxprune.models.features(model, x)``).
      threshold: the largest output that counts as inactive (0 for ReLU).

    Returns:
      A `DeadUnits`: ``per_layer`` maps each leaf path to a `LayerDeadUnits`; ``static``
      and ``dynamic`` are the totals. The rates are 0-d arrays (it works under ``jit``).

    Raises:
      ValueError: an array has fewer than 2 axes or an empty batch; no arrays.

    Example:
      >>> import numpy as np
      >>> h = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])  # 2 examples, 3 units
      >>> r = dead_unit_rate({"dense": h})
      >>> round(float(r.static), 4), round(float(r.dynamic), 4)  # unit 0; 2 of 3 each
      (0.3333, 0.6667)
    """
    paths, leaves, _ = leaves_with_paths(activations)
    if not leaves:
        raise ValueError(
            "activations holds no arrays; pass a (batch, ..., units) array or a pytree of them."
        )
    per_layer = {}
    for path, x in zip(paths, leaves):
        off = _inactive(path or "activations", x, threshold)
        per_layer[path or "activations"] = LayerDeadUnits(
            off.shape[-1], jnp.mean(jnp.all(off, axis=0)), jnp.mean(off)
        )
    layers = per_layer.values()
    units = sum(l.units for l in layers)
    static = sum(l.static * l.units for l in layers) / units
    dynamic = sum(l.dynamic * l.units for l in layers) / units
    return DeadUnits(per_layer, static, dynamic)
