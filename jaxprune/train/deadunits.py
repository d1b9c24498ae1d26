"""Dead ReLU units of every member of an ensemble state, measured on a batch of inputs."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprune import models
from jaxprune.analysis import dead_unit_rate
from jaxprune.train.state import TrainState, ensemble_axes, members_of

__all__ = ["member_dead_units"]

RATES = ("static", "dynamic")


@functools.partial(jax.jit, static_argnums=0)
def _unit_maxima(graphdef: nnx.GraphDef, params: Any, model_state: Any, x: jax.Array) -> Any:
    """Every member's largest output of every hidden ReLU unit per example: (members,
    batch, units) per layer. A unit is inactive on an example when this is <= 0, as
    `dead_unit_rate` decides it from all of the unit's positions."""

    def one(p, s):
        model = nnx.merge(graphdef, p, s)
        model.eval()
        return {
            k: jnp.max(v.reshape(v.shape[0], -1, v.shape[-1]), axis=1)
            for k, v in models.features(model, x).items()
        }

    axes = (ensemble_axes(params), ensemble_axes(model_state))
    return jax.vmap(one, in_axes=axes)(params, model_state)


def member_dead_units(
    state: TrainState, x: np.ndarray, *, batch_size: int = 1000
) -> list[dict[str, Any]]:
    """The dead-unit rates of every member of an ensemble state (``stack_states``) on ``x``.

    The hidden ReLU outputs come from ``jaxprune.models.features`` (zoo models), in
    evaluation mode; the rates from ``jaxprune.analysis.dead_unit_rate``: *static* (units
    inactive on every example of ``x``) and *dynamic* (the fraction of units inactive on
    an example, averaged over ``x``: Liu et al. 2022's dead-neuron rate).

    Args:
      state: an ensemble of one or more members.
      x: the inputs, all of them measured (in chunks of ``batch_size``).
      batch_size: examples per forward pass.

    Returns:
      Per member: ``{"total": {"static", "dynamic"}, "per_layer": {path: {"units",
      "static", "dynamic"}}}``, the rates as floats in [0, 1].

    Example:
      >>> rates = member_dead_units(out.state, test.x)  # doctest: +SKIP
      >>> rates[0]["total"]["dynamic"]  # doctest: +SKIP
      0.62
    """
    parts = [
        _unit_maxima(state.graphdef, state.params, state.model_state, x[i : i + batch_size])
        for i in range(0, len(x), batch_size)
    ]
    maxima = jax.tree.map(lambda *a: np.concatenate(a, axis=1), *parts)
    rates = []
    for i in range(members_of(state)):
        dead = dead_unit_rate(jax.tree.map(lambda a, i=i: a[i], maxima))
        rates.append(
            {
                "total": {r: float(getattr(dead, r)) for r in RATES},
                "per_layer": {
                    path: {"units": layer.units, **{r: float(getattr(layer, r)) for r in RATES}}
                    for path, layer in dead.per_layer.items()
                },
            }
        )
    return rates


def dead_units_record(
    state: TrainState, eval_data: Any, variants: Sequence[str], n_seeds: int
) -> dict[str, Any]:
    """A round's ``dead_units`` entry: per variant, the test split's total static and
    dynamic rates per seed (members variant-major, as the IMP driver stacks them)."""
    test = eval_data["test"] if isinstance(eval_data, Mapping) else eval_data
    rates = member_dead_units(state, np.asarray(test.x))
    return {
        v: {r: [m["total"][r] for m in rates[j * n_seeds : (j + 1) * n_seeds]] for r in RATES}
        for j, v in enumerate(variants)
    }
