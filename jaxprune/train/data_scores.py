"""Scores of training examples for data pruning: EL2N, GraNd and forgetting events.

EL2N and GraNd (Paul, Ganguli & Dziugaite, 2021, "Deep Learning on a Data Diet"):
the error vector norm ||softmax(f(x)) - onehot(y)||_2 and the loss-gradient norm
||grad_w loss(x, y)||_2 of each example, averaged over models trained from several
seeds for a few epochs (or, for GraNd at initialisation, over fresh models).
Forgetting events (Toneva et al., 2019, "An Empirical Study of Example Forgetting
during Deep Neural Network Learning"): how often an example goes from correctly
classified to misclassified between two evaluations. High scores are hard examples.

Every function takes a `TrainState` or a stack of them (`stack_states`, with
`ensemble=True`): the members are the seeds scores are averaged over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxprune.train.state import TrainState, apply_model, member, members_of
from jaxprune.train.steps import make_train_step

__all__ = [
    "ScoringRun",
    "correctness",
    "el2n_scores",
    "forgetting_events",
    "grand_scores",
    "train_for_scores",
]


def _members(state: TrainState, ensemble: bool) -> list[TrainState]:
    if not ensemble:
        return [state]
    return [member(state, i) for i in range(members_of(state))]


def _batches(dataset: Any, batch_size: int, where: str) -> Iterator[tuple[int, np.ndarray, Any]]:
    """`(count, x, y)` of consecutive batches, the last padded to `batch_size` (one program)."""
    x, y = np.asarray(dataset.x), np.asarray(dataset.y)
    if len(y) == 0 or batch_size < 1:
        raise ValueError(
            f"{where}: need a non-empty dataset and a positive batch_size, got {len(y)} "
            f"examples and batch_size={batch_size}."
        )
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        pad = batch_size - len(yb)
        yield (
            len(yb),
            np.concatenate([xb, np.zeros((pad, *x.shape[1:]), x.dtype)]),
            np.concatenate([yb, np.zeros(pad, y.dtype)]),
        )


def _per_example(
    fn: Callable[[TrainState, jax.Array, jax.Array], jax.Array],
    state: TrainState,
    dataset: Any,
    batch_size: int,
    ensemble: bool,
    where: str,
) -> np.ndarray:
    """`fn(state, x, y)` per example, shape (members, N) (members = 1 without `ensemble`)."""
    out = []
    for single in _members(state, ensemble):
        values = [
            np.asarray(fn(single, jnp.asarray(xb), jnp.asarray(yb)))[:n]
            for n, xb, yb in _batches(dataset, batch_size, where)
        ]
        out.append(np.concatenate(values))
    return np.stack(out)


@jax.jit
def _el2n(state: TrainState, x: jax.Array, y: jax.Array) -> jax.Array:
    logits, _ = apply_model(state, x, train=False)
    error = jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[-1])
    return jnp.linalg.norm(error, axis=-1)


@jax.jit
def _grand(state: TrainState, x: jax.Array, y: jax.Array) -> jax.Array:
    def loss(params, xi, yi):
        logits, _ = apply_model(state, xi[None], train=False, params=params)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yi[None])[0]

    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(state.params, x, y)
    squares = [jnp.sum(jnp.square(g).reshape(len(y), -1), axis=1) for g in jax.tree.leaves(grads)]
    return jnp.sqrt(sum(squares))


@jax.jit
def _correct(state: TrainState, x: jax.Array, y: jax.Array) -> jax.Array:
    logits, _ = apply_model(state, x, train=False)
    return jnp.argmax(logits, -1) == y


def el2n_scores(
    state: TrainState, dataset: Any, *, batch_size: int = 1000, ensemble: bool = False
) -> np.ndarray:
    """EL2N: ||softmax(f(x)) - onehot(y)||_2 per example, averaged over the members.

    Args:
      state: a train state, or a stack of them with `ensemble=True` (one per seed).
      dataset: anything with numpy `x` and `y` (a `jaxprune.data.Dataset`).
      batch_size: examples per forward pass.
      ensemble: `state` is a stack of members; the score is their mean.

    Returns:
      float array (N,); high = hard.

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(nnx.Linear(16, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> scores = el2n_scores(state, testing.synthetic_dataset(50))
      >>> scores.shape, bool((scores >= 0).all() and (scores <= 2 ** 0.5).all())
      ((50,), True)
    """
    return _per_example(_el2n, state, dataset, batch_size, ensemble, "el2n_scores").mean(0)


def grand_scores(
    state: TrainState, dataset: Any, *, batch_size: int = 128, ensemble: bool = False
) -> np.ndarray:
    """GraNd: ||grad_w loss(x, y)||_2 over every parameter, per example, averaged over members.

    Per-example gradients come from `jax.vmap` over one batch at a time, so memory
    grows with `batch_size` x parameters, not with the dataset; members are scored
    one after another. At initialisation (fresh states) this is "GraNd at init".

    Args:
      state: a train state, or a stack of them with `ensemble=True` (one per seed).
      dataset: anything with numpy `x` and `y`.
      batch_size: examples whose gradients are held at once.
      ensemble: `state` is a stack of members; the score is their mean.

    Returns:
      float array (N,) of gradient norms; high = hard.

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state, testing
      >>> model = nnx.Linear(16, 4, rngs=nnx.Rngs(0))
      >>> state = create_train_state(model, optax.sgd(0.1))
      >>> grand_scores(state, testing.synthetic_dataset(50), batch_size=16).shape
      (50,)
    """
    return _per_example(_grand, state, dataset, batch_size, ensemble, "grand_scores").mean(0)


def correctness(
    state: TrainState, dataset: Any, *, batch_size: int = 1000, ensemble: bool = False
) -> np.ndarray:
    """Whether each member classifies each example correctly (eval mode).

    Returns:
      bool array (members, N) with `ensemble`, else (N,).

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(nnx.Linear(16, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> correctness(state, testing.synthetic_dataset(50)).dtype
      dtype('bool')
    """
    out = _per_example(_correct, state, dataset, batch_size, ensemble, "correctness")
    return out if ensemble else out[0]


def forgetting_events(correct: np.ndarray | Sequence[Any]) -> np.ndarray:
    """Forgetting events per example from correctness records, as Toneva et al. count them.

    An event is a correct -> incorrect transition between two consecutive records
    (evaluations). An example never classified correctly in any record counts as
    forgotten infinitely often (`inf`), so it ranks above every learnt one, as in
    the paper; with several members (seeds) the counts are averaged, so an example
    never learnt by one member scores `inf` too.

    Args:
      correct: bool array (T, N), or (T, members, N): record t of each example.

    Returns:
      float array (N,): mean count over members, `inf` for never-learnt examples.

    Example:
      >>> forgetting_events([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]).tolist()
      [2.0, inf, 1.0]
    """
    c = np.asarray(correct)
    if c.ndim not in (2, 3) or c.shape[0] < 1:
        raise ValueError(
            f"forgetting_events: correct must be (T, N) or (T, members, N) with T >= 1 "
            f"records, got shape {c.shape}."
        )
    if c.dtype != np.bool_ and not np.isin(c, (0, 1)).all():
        raise ValueError(
            "forgetting_events: correct must hold booleans (or 0 / 1), got values "
            f"{np.unique(c)[:5].tolist()}."
        )
    c = c.astype(bool).reshape(c.shape[0], -1, c.shape[-1])
    events = np.sum(c[:-1] & ~c[1:], axis=0).astype(np.float64)
    events[~c.any(axis=0)] = np.inf
    return events.mean(axis=0)


class ScoringRun(NamedTuple):
    """What `train_for_scores` returns.

    Attributes:
      snapshots: epoch -> the state after that many epochs (0: the initial state).
      correct: bool (epochs + 1, [members,] N): correctness on the training data at
        the start and after every epoch (the records `forgetting_events` counts).
      state: the state at the end.
    """

    snapshots: dict[int, TrainState]
    correct: np.ndarray
    state: TrainState


def train_for_scores(
    state: TrainState,
    dataset: Any,
    *,
    epochs: int,
    batch_size: int,
    snapshots: Sequence[int] = (),
    seed: int = 0,
    ensemble: bool = False,
    eval_batch_size: int = 1000,
    progress: bool = False,
) -> ScoringRun:
    """Trains the scoring models, recording every example's correctness after each epoch.

    The models (a stack of seeds with `ensemble=True`, trained at once by `vmap` on
    the same batches) train with `state.tx` and the engine's step; the states after
    the epochs in `snapshots` are kept for EL2N and GraNd "early in training", and
    the per-epoch records give forgetting events. Nothing is written to disk: this
    is minutes of work, so a caller caches the scores, not the models.

    Args:
      state: the initial state (or stack of states).
      dataset: the training data (numpy `x`, `y`).
      epochs: epochs to train (the last partial batch of each is dropped).
      batch_size: training batch size.
      snapshots: epochs (0..epochs) whose states to keep.
      seed: data-order seed (`jaxprune.data.batches`).
      ensemble: `state` is a stack of members.
      eval_batch_size: examples per correctness pass.
      progress: show a progress bar over epochs.

    Returns:
      A `ScoringRun`.

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(nnx.Linear(16, 4, rngs=nnx.Rngs(0)), optax.adam(1e-2))
      >>> run = train_for_scores(state, testing.synthetic_dataset(64), epochs=2, batch_size=16,
      ...                        snapshots=(1,))
      >>> run.correct.shape, sorted(run.snapshots)
      ((3, 64), [1])
    """
    from jaxprune.data import batches  # Lazily: data pulls in optional deps.

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_for_scores: epochs={epochs!r}; expected a positive int.")
    bad = [e for e in snapshots if not 0 <= e <= epochs]
    if bad:
        raise ValueError(
            f"train_for_scores: snapshots {bad} are outside 0..{epochs} (epochs={epochs})."
        )
    step = make_train_step(ensemble=ensemble)
    check = dict(batch_size=eval_batch_size, ensemble=ensemble)
    kept = {0: state} if 0 in snapshots else {}
    records = [correctness(state, dataset, **check)]
    for epoch in tqdm(range(epochs), disable=not progress, unit="epoch", desc="scoring models"):
        for batch in batches(dataset, batch_size, seed=seed, epoch=epoch):
            state, _ = step(state, jax.tree.map(jnp.asarray, batch))
        records.append(correctness(state, dataset, **check))
        if epoch + 1 in snapshots:
            kept[epoch + 1] = state
    return ScoringRun(snapshots=kept, correct=np.stack(records), state=state)
