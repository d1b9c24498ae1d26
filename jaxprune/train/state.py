"""The training state: a pytree of arrays built from a Flax NNX model.

`TrainState` holds everything that changes during training as pure arrays
(`params`, the non-parameter `model_state` such as batch statistics, the optax
`opt_state`, which also holds a mask, the `step` and an `rng` key), plus two
static fields (the NNX `graphdef` and the optax `tx`) that are part of the
pytree's structure, not its leaves. So one state goes through `jax.jit`,
`jax.vmap`, sharding and orbax checkpoints unchanged, and the step functions
rebuild the model with `nnx.merge` inside the trace.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = [
    "TrainState",
    "apply_model",
    "create_train_state",
    "ensemble_axes",
    "member",
    "stack_states",
    "to_model",
]


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Arrays that change while training, plus the static model graph and optimizer.

    Attributes:
      params: the model's `nnx.Param` values (an `nnx.State` of plain arrays).
      model_state: every other model variable (batch statistics, dropout RNG
        counters), also plain arrays.
      opt_state: the optax state; a mask, if any, lives here (`jaxprune.mask_of`).
      step: int32 scalar, the number of optimizer updates applied so far.
      rng: a typed `jax.random.key`; step `t` draws from `fold_in(rng, t)`.
      graphdef: the NNX graph definition (static).
      tx: the optax transformation (static).
    """

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    graphdef: nnx.GraphDef = dataclasses.field(metadata={"static": True})
    tx: optax.GradientTransformation = dataclasses.field(metadata={"static": True})

    def replace(self, **changes: Any) -> TrainState:
        """Returns a copy with the given fields replaced.

        Example:
          >>> state = create_train_state(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
          >>> int(state.replace(step=jnp.int32(5)).step)
          5
        """
        return dataclasses.replace(self, **changes)

    def arrays(self) -> dict[str, Any]:
        """The data fields as a dict (what a checkpoint stores)."""
        return {f: getattr(self, f) for f in DATA_FIELDS}


DATA_FIELDS = ("params", "model_state", "opt_state", "step", "rng")
jax.tree_util.register_dataclass(
    TrainState, data_fields=list(DATA_FIELDS), meta_fields=["graphdef", "tx"]
)


def create_train_state(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    *,
    seed: int | jax.Array = 0,
    mask: Any = None,
) -> TrainState:
    """Splits an NNX model into a `TrainState` and initialises the optimizer.

    Args:
      model: any `nnx.Module`; it is not modified.
      tx: any optax transformation (masking, RigL, ... composed by the caller).
      seed: an int or a `jax.random.key` for the state's rng (data augmentation).
      mask: optional pytree of bools with the structure of `params`; when given,
        `tx` is wrapped with `jaxprune.masked(tx, mask)` and the pruned weights
        are zeroed now, so the model starts sparse.

    Returns:
      A `TrainState` at step 0.

    Example:
      >>> model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
      >>> state = create_train_state(model, optax.adam(1e-3), seed=0)
      >>> int(state.step)
      0
    """
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    params, model_state = nnx.as_pure(params), nnx.as_pure(model_state)
    if mask is not None:
        import jaxprune  # Lazily: the core may not be importable in minimal installs.

        tx = jaxprune.masked(tx, mask)
        params = jaxprune.apply_mask(params, mask)
    rng = jax.random.key(int(seed)) if isinstance(seed, numbers.Integral) else seed
    if not jnp.issubdtype(getattr(rng, "dtype", None), jax.dtypes.prng_key):
        raise TypeError(
            f"create_train_state: seed must be an int or a typed jax.random.key, "
            f"got {type(seed).__name__} of dtype {getattr(seed, 'dtype', None)}; "
            "use an int or jax.random.key(seed)."
        )
    return TrainState(
        params=params,
        model_state=model_state,
        opt_state=tx.init(params),
        step=jnp.zeros((), jnp.int32),
        rng=rng,
        graphdef=graphdef,
        tx=tx,
    )


def step_of(state: TrainState) -> int:
    """The step of a state, on the host (of an ensemble: its members all share it)."""
    return int(np.max(np.asarray(state.step)))


def members_of(state: TrainState) -> int:
    """The number of members of a stack of states (`stack_states`): its parameters' leading axis."""
    return next(int(np.shape(x)[0]) for x in jax.tree.leaves(state.params) if np.ndim(x) > 0)


def to_model(state: TrainState, *, train: bool = False) -> nnx.Module:
    """Rebuilds the NNX model from a state, in train or eval mode.

    Example:
      >>> state = create_train_state(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> to_model(state)(jnp.ones((3, 4))).shape
      (3, 2)
    """
    model = nnx.merge(state.graphdef, state.params, state.model_state)
    if train:
        model.train()
    else:
        model.eval()
    return model


def apply_model(
    state: TrainState, x: jax.Array, *, train: bool = False, params: Any = None
) -> tuple[jax.Array, Any]:
    """Runs the model of `state` on `x`; pure, so it works under jit and grad.

    Args:
      state: the train state.
      x: a batch of inputs.
      train: train mode (batch statistics from the batch, updated) or eval mode.
      params: parameters to use instead of `state.params` (for `jax.grad`).

    Returns:
      `(logits, model_state)`, the latter updated in train mode.

    Example:
      >>> state = create_train_state(nnx.Linear(4, 2, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> logits, model_state = apply_model(state, jnp.ones((3, 4)))
      >>> logits.shape
      (3, 2)
    """
    params = state.params if params is None else params
    model = to_model(state.replace(params=params), train=train)
    logits = model(x)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return logits, nnx.as_pure(model_state)


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stacks states into one ensemble state (leading axis = member) for `fit(ensemble=True)`.

    Members train at once with `jax.vmap`: seeds, masks, baselines of a lottery
    ticket. They must share the model graph and the very same `tx` object
    (different masks live in the optimizer state, so one `jaxprune.masked` serves
    all; replace the mask with `jaxprune.transforms.replace_mask`).

    The step counters that every member holds alike (the state's `step`, optimizer
    states' `count`, `mini_step` and `gradient_step`) and the 0-d stand-ins of a
    `mask` stay shared, unstacked: inside the vmapped step they are not batched, so a
    transform's mask update on its step counter (RigL's at-most-once loop, gradual
    pruning's `lax.cond`) stays a real branch instead of running for every step. Other
    scalars are stacked (e.g. `optax.apply_if_finite`'s count of non-finite steps,
    which differs between members once they train).

    Example:
      >>> tx = optax.sgd(0.1)
      >>> states = [create_train_state(nnx.Linear(4, 2, rngs=nnx.Rngs(i)), tx, seed=i) for i in range(3)]
      >>> ensemble = stack_states(states)
      >>> ensemble.params["kernel"].shape, ensemble.step.shape
      ((3, 4, 2), ())
    """
    if not states:
        raise ValueError("stack_states: give at least one state.")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.tx is not first.tx or s.graphdef != first.graphdef:
            what = "optimizer object (tx)" if s.tx is not first.tx else "model graph"
            raise ValueError(
                f"stack_states: member {i} has another {what} than member 0; members must "
                "share one model architecture and one tx object (build tx once)."
            )
    return jax.tree_util.tree_map_with_path(_stack_leaf, *states)


# Names of the step counters members share (TrainState, optax, jaxprune states).
_COUNTERS = frozenset({"step", "count", "mini_step", "gradient_step"})


def _key_name(k: Any) -> str | None:
    return getattr(k, "name", getattr(k, "key", None))


def _stack_leaf(path: tuple[Any, ...], *xs: jax.Array) -> jax.Array:
    x = xs[0]
    names = [_key_name(k) for k in path]
    dtype = jnp.result_type(x)
    shared = jnp.ndim(x) == 0 and (
        (jnp.issubdtype(dtype, jnp.integer) and bool(names) and names[-1] in _COUNTERS)
        or (dtype == jnp.bool_ and "jaxprune_mask" in names)  # a mask's stand-ins
    )
    if shared and all(bool(y == x) for y in xs[1:]):
        return jnp.copy(x)  # its own buffer: a donating step must not delete member 0's
    return jnp.stack(xs)


def ensemble_axes(tree: Any) -> Any:
    """The `vmap` axes of an ensemble tree: None for shared (0-d) leaves, else 0.

    Example:
      >>> ensemble_axes({"w": jnp.ones((3, 2)), "count": jnp.int32(5)})
      {'count': None, 'w': 0}
    """
    return jax.tree.map(lambda x: None if jnp.ndim(x) == 0 else 0, tree)


def member(tree: Any, i: Any) -> Any:
    """Member `i` (an index or a slice) of an ensemble made by `stack_states`.

    Works on the state and on any tree taken from it (params, masks); shared leaves
    are returned as they are.

    Example:
      >>> tx = optax.sgd(0.1)
      >>> states = [create_train_state(nnx.Linear(4, 2, rngs=nnx.Rngs(i)), tx) for i in range(2)]
      >>> member(stack_states(states), 1).params["kernel"].shape
      (4, 2)
    """
    return jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else x[i], tree)
