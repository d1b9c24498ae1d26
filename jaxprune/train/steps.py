"""Jitted train and eval steps on `TrainState`, and whole-split evaluation.

The step functions are pure functions of pytrees, so the same function runs
under `jax.jit`, `jax.vmap` (many seeds at once) and with sharded inputs (data
parallel): nothing in them knows about devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.train.state import TrainState, apply_model, ensemble_axes

__all__ = [
    "Augment",
    "LossFn",
    "cross_entropy",
    "make_train_step",
    "make_eval_step",
    "train_step",
    "eval_step",
    "evaluate",
]

Batch = Mapping[str, jax.Array]
Augment = Callable[[jax.Array, jax.Array], jax.Array]
"""`augment(rng, x) -> x`: a pure data augmentation (see `jaxprune.data.augmentation_for`)."""


class LossFn(Protocol):
    """`loss_fn(logits, batch, aux) -> scalar`: replaces the default cross-entropy.

    `batch` is the (augmented) batch; `aux` is whatever the caller passes to the
    step, e.g. a teacher's `TrainState` for knowledge distillation.
    """

    def __call__(self, logits: jax.Array, batch: Batch, aux: Any) -> jax.Array: ...


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels.

    Example:
      >>> float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log(4)
      1.386...
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _default_loss(logits: jax.Array, batch: Batch, aux: Any) -> jax.Array:
    del aux
    return cross_entropy(logits, batch["y"])


def step_rng(state: TrainState) -> jax.Array:
    """The key for the current step: `fold_in(state.rng, state.step)`."""
    return jax.random.fold_in(state.rng, state.step)


def make_train_step(
    *,
    augment: Augment | None = None,
    loss_fn: LossFn | None = None,
    donate: bool = False,
    state_sharding: Any = None,
    ensemble: bool = False,
    member_batches: bool = False,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """Builds a jitted `step(state, batch, aux=None, rewire=None) -> (state, metrics)`.

    The step computes the loss (cross-entropy unless `loss_fn` is given) and the
    accuracy on `batch["y"]`, takes one optimizer step with `state.tx`, and
    increments `state.step`. Batch statistics come from the batch (train mode).
    `rewire`, a Python bool, goes to the optimizer's update as `rewire=` (static: one
    program per value), for RigL and SET told by the host which steps rewire
    (`state.tx.rewires_at(t)`; `fit` does it).

    Args:
      augment: optional `augment(rng, x)`, applied to `batch["x"]` with the key
        `fold_in(fold_in(state.rng, state.step), 0)`, so every step draws anew
        and a resumed run draws the same numbers.
      loss_fn: optional `loss_fn(logits, batch, aux) -> scalar` replacing the
        default loss; add `cross_entropy(logits, batch["y"])` yourself to keep it.
      donate: donate the input state's buffers (saves memory; the caller must
        not use the old state afterwards).
      state_sharding: optional sharding pytree for the state; pins the output
        state to it (data parallel keeps parameters where they are).
      ensemble: the state is a stack of members (`stack_states`), trained at
        once on the same batch with `jax.vmap`; `aux`, if any, is stacked too.
        The metrics then have one value per member.
      member_batches: with `ensemble`, every member has its own batch: the batch
        arrays carry a leading member axis (`(members, batch, ...)`), mapped by
        `vmap` like the state (children that differ only in their data order).

    Returns:
      The jitted step; `metrics` holds scalar `loss` and `accuracy`.

    Example:
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state
      >>> state = create_train_state(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> noisy = lambda rng, x: x + 0.1 * jax.random.normal(rng, x.shape)
      >>> step = make_train_step(augment=noisy)
      >>> state, metrics = step(state, {"x": jnp.ones((8, 4)), "y": jnp.zeros(8, jnp.int32)})
      >>> int(state.step), sorted(metrics)
      (1, ['accuracy', 'loss'])
    """
    loss_fn = _default_loss if loss_fn is None else loss_fn

    def step(state: TrainState, batch: Batch, aux: Any = None, rewire: bool | None = None):
        batch = dict(batch)
        if augment is not None:
            batch["x"] = augment(jax.random.fold_in(step_rng(state), 0), batch["x"])

        def objective(params):
            logits, model_state = apply_model(state, batch["x"], train=True, params=params)
            return loss_fn(logits, batch, aux), (logits, model_state)

        (loss, (logits, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        extra = {} if rewire is None else {"rewire": rewire}
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params, **extra)
        new_state = state.replace(
            params=optax.apply_updates(state.params, updates),
            model_state=model_state,
            opt_state=opt_state,
            step=state.step + 1,
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
        return new_state, {"loss": loss, "accuracy": accuracy}

    if member_batches and not ensemble:
        raise ValueError(
            "make_train_step: member_batches=True needs ensemble=True (a batch per member "
            "of a stack of states); got ensemble=False."
        )
    if ensemble:
        step = _vmapped_train_step(step, batch_axis=0 if member_batches else None)
    out_shardings = None if state_sharding is None else (state_sharding, None)
    return jax.jit(
        step,
        donate_argnums=(0,) if donate else (),
        out_shardings=out_shardings,
        static_argnames="rewire",
    )


def make_eval_step(
    ensemble: bool = False, *, loss_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None
) -> Callable[[TrainState, Batch], dict[str, jax.Array]]:
    """Builds a jitted `eval_step(state, batch) -> sums` in eval mode.

    `batch` may carry a float `"weight"` per example (0 for padding); the step
    returns sums (`loss_sum`, `correct`, `count`), so batches add up exactly.
    With `ensemble=True` the state is a stack of members and every sum has one
    value per member. `loss_fn(logits, labels) -> per-example losses` replaces
    the softmax cross-entropy.

    Example:
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state
      >>> state = create_train_state(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> sums = make_eval_step()(state, {"x": jnp.ones((8, 4)), "y": jnp.zeros(8, jnp.int32)})
      >>> float(sums["count"])
      8.0
    """

    per_example = optax.softmax_cross_entropy_with_integer_labels if loss_fn is None else loss_fn

    def step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
        logits, _ = apply_model(state, batch["x"], train=False)
        weight = batch.get("weight", jnp.ones(batch["y"].shape, jnp.float32))
        losses = per_example(logits, batch["y"])
        correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
        return {
            "loss_sum": jnp.sum(losses * weight),
            "correct": jnp.sum(correct * weight),
            "count": jnp.sum(weight),
        }

    if ensemble:
        single = step

        def step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
            return jax.vmap(single, in_axes=(ensemble_axes(state), None))(state, batch)

    return jax.jit(step)


def _vmapped_train_step(single: Callable, batch_axis: int | None = None) -> Callable:
    """The train step of an ensemble: members batched, shared scalars not, aux per member;
    the batch shared (`batch_axis=None`) or one per member (its axis `batch_axis`)."""

    def step(state: TrainState, batch: Batch, aux: Any = None, rewire: bool | None = None):
        axes = ensemble_axes(state)
        aux_axes = None if aux is None else ensemble_axes(aux)
        member = functools.partial(single, rewire=rewire)
        vmapped = jax.vmap(member, in_axes=(axes, batch_axis, aux_axes), out_axes=(axes, 0))
        return vmapped(state, batch, aux)

    return step


train_step = make_train_step()
"""The default jitted train step: cross-entropy, no augmentation."""

eval_step = make_eval_step()
"""The default jitted eval step."""

ensemble_eval_step = make_eval_step(ensemble=True)
"""The jitted eval step of a stack of members (`stack_states`)."""


def evaluate(
    state: TrainState,
    dataset: Any,
    *,
    batch_size: int = 1000,
    place: Callable[[dict[str, np.ndarray]], Batch] | None = None,
    ensemble: bool = False,
) -> dict[str, Any]:
    """Loss and accuracy of `state` over a whole split, every example counted once.

    The last partial batch is padded to `batch_size` with zero-weight examples,
    so one compiled step serves the whole split.

    Args:
      state: the train state (its model runs in eval mode).
      dataset: anything with numpy `x` and `y` arrays (a `jaxprune.data.Dataset`).
      batch_size: examples per eval step.
      place: optional function putting a numpy batch on devices (e.g.
        `functools.partial(shard_batch, mesh=mesh)`); default: `jnp.asarray`.
      ensemble: `state` is a stack of members; loss and accuracy become lists.

    Returns:
      `{"loss": mean loss, "accuracy": fraction correct, "count": examples}`.

    Example:
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(nnx.Linear(16, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> result = evaluate(state, testing.synthetic_dataset(250), batch_size=100)
      >>> result["count"], 0.0 <= result["accuracy"] <= 1.0
      (250, True)
    """
    x, y = np.asarray(dataset.x), np.asarray(dataset.y)
    n = len(y)
    if n == 0 or batch_size <= 0:
        raise ValueError(
            f"evaluate: need a non-empty dataset and a positive batch_size, got "
            f"{n} examples and batch_size={batch_size}."
        )
    place = (lambda b: jax.tree.map(jnp.asarray, b)) if place is None else place
    step = ensemble_eval_step if ensemble else eval_step
    return summed_eval(step, state, (place(b) for b in padded_batches(x, y, batch_size)))


def padded_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> Iterator[dict[str, Any]]:
    """The numpy eval batches of a split; the last padded with zero-weight examples."""
    n = len(y)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pad = batch_size - (stop - start)
        weight = np.concatenate([np.ones(stop - start, np.float32), np.zeros(pad, np.float32)])
        yield {
            "x": np.concatenate([x[start:stop], np.zeros((pad, *x.shape[1:]), x.dtype)]),
            "y": np.concatenate([y[start:stop], np.zeros(pad, y.dtype)]),
            "weight": weight,
        }


def summed_eval(step: Callable, state: TrainState, batches: Iterable[Batch]) -> dict[str, Any]:
    """`evaluate`'s result from an eval step run over `batches` (sums added in float64)."""
    totals = [step(state, batch) for batch in batches]
    sums = jax.tree.map(lambda *v: np.sum(np.asarray(v, np.float64), axis=0), *totals)
    count = int(np.max(sums["count"]))
    return {
        "loss": (sums["loss_sum"] / count).tolist(),
        "accuracy": (sums["correct"] / count).tolist(),
        "count": count,
    }
