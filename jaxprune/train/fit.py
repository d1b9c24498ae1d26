"""`fit`: the training loop, with metrics, checkpoints, automatic resume and progress.

Same command, same run directory: a rerun restores the newest readable
checkpoint, cuts `metrics.jsonl` back to its step, fast-forwards the data to the
same epoch and position, and continues. Per-step randomness comes from the
state (`fold_in(rng, step)`) and the data order from `(seed, epoch)`, so a run
killed at any point and resumed ends with the same parameters and metrics, bit
for bit on CPU, as one that was never interrupted.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxprune.train.checkpoint import Checkpoints
from jaxprune.train.rundir import RunDir, read_metrics
from jaxprune.train.sharding import (
    check_data_axis,
    make_mesh,
    place_state,
    shard_batch,
    state_sharding,
)
from jaxprune.train.state import TrainState, step_of
from jaxprune.train.steps import Augment, LossFn, evaluate, make_train_step
from jaxprune.transforms import rewire_schedule

__all__ = ["fit", "FitResult"]

log = logging.getLogger(__name__)


class FitResult(NamedTuple):
    """What `fit` returns: the final state and the contents of `results.json`."""

    state: TrainState
    results: dict[str, Any]


def fit(
    state: TrainState,
    train_data: Any,
    *,
    workdir: str,
    batch_size: int,
    steps: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    eval_data: Any = None,
    eval_every: int | None = None,
    eval_batch_size: int = 1000,
    log_every: int = 100,
    checkpoint_every: int = 1000,
    keep_last: int = 3,
    keep: Mapping[str, int] | Iterable[int] = (),
    augment: Augment | None = None,
    loss_fn: LossFn | None = None,
    aux: Any = None,
    lr_schedule: optax.Schedule | None = None,
    mesh: jax.sharding.Mesh | None = None,
    sharding_rule: Callable | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
    batches: Callable[..., Iterator[dict[str, np.ndarray]]] | None = None,
    ensemble: bool = False,
) -> FitResult:
    """Trains `state` on `train_data`, writing a resumable run directory.

    The run directory holds `config.json`, `metrics.jsonl` (a line per logged
    step and per evaluation), `checkpoints/` and, at the end, `results.json`.
    Training starts at `state.step` (non-zero for a rewound state) unless the
    directory already has checkpoints, in which case it resumes from the newest.
    Under RigL or SET (`state.tx` from `jaxprune.rigl` / `set_training`) the loop tells
    each step whether it rewires (`rewire=state.tx.rewires_at(t)`): two compiled
    steps, the ordinary one a plain masked step.

    Args:
      state: the initial state (its structure also serves as restore template).
      train_data: a dataset with numpy `x`, `y` (`jaxprune.data.load(...)`).
      workdir: the run directory.
      batch_size: global batch size; the last partial batch of an epoch is dropped.
      steps: total optimizer steps; or give `epochs` instead.
      epochs: total epochs (steps = epochs * (len(train_data) // batch_size)).
      seed: data-order seed (the state's rng drives augmentation).
      eval_data: a dataset or `{split_name: dataset}`; a single one is "test".
        Evaluated at the start, every `eval_every` steps and at the end.
      eval_every: steps between evaluations (None: start and end only).
      eval_batch_size: examples per eval step (rounded up to the device count).
      log_every: steps per train-metrics line (the mean over those steps).
      checkpoint_every: steps between checkpoints (also one at start and end).
      keep_last: how many recent checkpoints to keep.
      keep: checkpoints kept for good and saved even off the interval:
        `{"rewind": 500}` (load with `restore_checkpoint(workdir, t, "rewind")`)
        or a set of steps.
      augment: optional `augment(rng, x)` applied to each training batch.
      loss_fn: optional `loss_fn(logits, batch, aux)` replacing cross-entropy.
      aux: passed to `loss_fn` at every step (e.g. a teacher `TrainState`).
      lr_schedule: optional schedule, only to log the learning rate (at `state.step`;
        under RigL/SET the optimizer's own schedule lags by one step per mask update,
        as update steps skip the optimizer step).
      mesh: device mesh; default all devices if `batch_size` divides evenly
        among them, else one device.
      sharding_rule: optional `rule(path, leaf) -> PartitionSpec | None` for the
        state (default: replicated).
      config: the experiment config, stored in `config.json`; a rerun with a
        different config on the same directory is refused.
      progress: show a tqdm progress bar.
      batches: the batch iterator, `jaxprune.data.batches` by default.
      ensemble: `state` is a stack of members (`stack_states`) trained at once
        with `jax.vmap` on the same batches (and `aux` stacked the same way);
        metrics hold one value per member.

    Returns:
      `FitResult(state, results)`.

    Raises:
      FloatingPointError: a non-finite loss or parameter; the message names the
        step, and the run directory keeps its last good checkpoint.

    Example:
      >>> train = jaxprune.data.load("mnist1d", "train")  # doctest: +SKIP
      >>> state = create_train_state(model, optax.adam(1e-3))  # doctest: +SKIP
      >>> out = fit(state, train, workdir="runs/mlp", batch_size=100, epochs=5,
      ...           eval_data=jaxprune.data.load("mnist1d", "test"))  # doctest: +SKIP
      >>> out.results["eval"]["test"]["accuracy"]  # doctest: +SKIP
    """
    if batches is None:
        from jaxprune.data import batches  # Lazily: data pulls in optional deps.
    n_train = len(train_data.y)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be a positive integer, got {batch_size!r}.")
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"fit: batch_size={batch_size} exceeds the {n_train} training examples.")
    if (steps is None) == (epochs is None):
        raise ValueError(f"fit: give exactly one of steps or epochs (got {steps}, {epochs}).")
    total = steps if steps is not None else epochs * steps_per_epoch
    start_step = step_of(state)
    if not isinstance(total, (int, np.integer)) or total <= start_step:
        what = f"steps={steps!r}" if steps is not None else f"epochs={epochs!r} ({total} steps)"
        raise ValueError(
            f"fit: {what} leaves nothing to train: the state is at step {start_step}; give "
            "more steps (or epochs) than that, as an integer."
        )
    if min(log_every, checkpoint_every, eval_every or 1) < 1:
        raise ValueError("fit: log_every, checkpoint_every and eval_every must be >= 1.")
    evals = _eval_splits(eval_data)
    mesh = _default_mesh(batch_size) if mesh is None else mesh
    check_data_axis(mesh, batch_size)  # before the run directory is written
    n_dev = mesh.devices.size
    eval_batch_size = math.ceil(eval_batch_size / n_dev) * n_dev
    lead = jax.process_index() == 0

    run = RunDir(workdir)
    settings = dict(
        batch_size=batch_size,
        steps=total,
        seed=seed,
        log_every=log_every,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        keep=_jsonable_keep(keep),
        eval_splits=sorted(evals),
    )
    if lead:
        run.create()
        run.check_or_write_config({"config": _as_dict(config), "fit": settings})

    state = place_state(state, mesh, sharding_rule)
    place = lambda b: shard_batch(b, mesh)  # noqa: E731
    shardings, treedef = jax.tree.flatten(state_sharding(state, mesh, sharding_rule))
    step_fn = _train_step(augment, loss_fn, ensemble, tuple(shardings), treedef)
    ckpts = Checkpoints(run.checkpoints, keep_last=keep_last, keep=keep)
    keep_steps = set(ckpts.keep.values())
    try:
        restored = ckpts.restore_latest(state)
    except ValueError:
        ckpts.close()  # before the error goes up: no orbax threads left behind
        raise
    start = start_step if restored is None else step_of(restored[0])
    window = _Window(restored[1].get("pending", []) if restored else [], start)
    # Wall time and examples of the training before this process's part (a resumed run's
    # results time the whole run, not the last segment).
    before = (restored[1] if restored else {}).get("timing", {"wall_s": 0.0, "examples": 0})
    saved = dict(before)  # the timing in the newest checkpoint: the last one's goes in results
    if restored is not None:
        state = restored[0]
    # RigL and SET: the host tells each step whether it rewires, counting from the
    # optimizer's own step count, so that the ordinary steps are plain masked steps.
    rewires_at = rewire_schedule(state.tx)
    count = int(np.ravel(state.opt_state.count)[0]) if rewires_at else 0
    if lead:
        # After a restore, the lines up to its step are already on disk; without
        # one, any lines are leftovers of a run killed before its first checkpoint.
        run.truncate_metrics(start if restored else start - 1)

    def evaluate_all(step: int) -> None:
        records = [
            {
                "step": step,
                "epoch": step / steps_per_epoch,
                "split": name,
                **evaluate(state, ds, batch_size=eval_batch_size, place=place, ensemble=ensemble),
            }
            for name, ds in evals.items()
        ]
        if lead:
            run.append_metrics(records)

    def stop_if_nonfinite() -> None:
        bad = window.first_nonfinite()
        if bad is not None:
            raise _nonfinite(f"the loss is {bad[1]} at step {bad[0]}", ckpts)

    def checkpoint(step: int) -> None:
        stop_if_nonfinite()
        if not bool(_all_finite(state.params)):
            raise _nonfinite(f"the parameters are not finite after step {step}", ckpts)
        saved.update(timing())
        ckpts.save(step, state, {"pending": window.host_values(), "timing": dict(saved)})

    def timing() -> dict[str, float]:
        wall = before["wall_s"] + time.perf_counter() - t_start
        return {"wall_s": wall, "examples": before["examples"] + seen}

    bar = tqdm(
        total=total, initial=start, disable=not (progress and lead), unit="step", dynamic_ncols=True
    )
    t_start, seen = time.perf_counter(), 0
    t_log, seen_log = t_start, 0
    try:
        if restored is None:
            if evals:
                evaluate_all(start)
            checkpoint(start)
        for epoch, batch in _stream(
            batches, train_data, batch_size, seed, start, total, steps_per_epoch
        ):
            rewire = rewires_at(count) if rewires_at else None
            count += 1
            state, metrics = step_fn(state, place(batch), aux, rewire=rewire)
            window.add(metrics)
            done = window.step
            seen += batch_size
            bar.update(1)
            if done % log_every == 0 or done == total:
                stop_if_nonfinite()
                record = window.flush(epoch=done / steps_per_epoch)
                if lr_schedule is not None:
                    record["lr"] = float(lr_schedule(done - 1))
                if lead:
                    run.append_metrics([record])
                now = time.perf_counter()
                rate = (seen - seen_log) / max(now - t_log, 1e-9)
                t_log, seen_log = now, seen
                bar.set_postfix(
                    epoch=epoch,
                    loss=f"{np.mean(record['loss']):.4f}",
                    acc=f"{np.mean(record['accuracy']):.3f}",
                    ex_s=f"{rate:,.0f}",
                )
            if evals and ((eval_every and done % eval_every == 0) or done == total):
                stop_if_nonfinite()
                evaluate_all(done)
            if done % checkpoint_every == 0 or done in keep_steps or done == total:
                checkpoint(done)
        ckpts.wait()
    finally:
        bar.close()
        ckpts.close()
    results = _results(run, total, steps_per_epoch, **saved)
    if lead:
        run.write_results(results)
    return FitResult(state, results)


@functools.lru_cache(maxsize=8)
def _train_step(augment, loss_fn, ensemble, shardings, treedef):
    """The jitted step for these settings, one object per settings, so that fits in
    one process (IMP's rounds, a resumed run, a notebook's reruns) share its compiled
    programs: the state's structure, its `tx` included, still picks the program."""
    return make_train_step(
        augment=augment,
        loss_fn=loss_fn,
        state_sharding=jax.tree.unflatten(treedef, shardings),
        ensemble=ensemble,
    )


class _Window:
    """Per-step train metrics since the last log line; kept in checkpoints."""

    def __init__(self, pending: list[list[float]], step: int):
        self.items: list[Any] = [tuple(p) for p in pending]
        self.step = step  # The step of the newest item: updates applied so far.

    def add(self, metrics: Mapping[str, jax.Array]) -> None:
        self.items.append(metrics)  # Device values; not synced until needed.
        self.step += 1

    def host_values(self) -> list[list[Any]]:
        """`[loss, accuracy]` per step: floats, or lists of one per ensemble member."""
        self.items = [
            item
            if isinstance(item, tuple)
            else (np.asarray(item["loss"]).tolist(), np.asarray(item["accuracy"]).tolist())
            for item in self.items
        ]
        return [list(item) for item in self.items]

    def first_nonfinite(self) -> tuple[int, Any] | None:
        """`(step, loss)` of the first non-finite loss in the window, if any."""
        values = self.host_values()
        for offset, (loss, _) in enumerate(values):
            if not np.all(np.isfinite(loss)):
                return self.step - len(values) + offset + 1, loss
        return None

    def flush(self, epoch: float) -> dict[str, Any]:
        values = np.asarray(self.host_values(), np.float64)
        self.items = []
        return {
            "step": self.step,
            "epoch": epoch,
            "split": "train",
            "loss": values[:, 0].mean(axis=0).tolist(),
            "accuracy": values[:, 1].mean(axis=0).tolist(),
        }


def _stream(batches, data, batch_size, seed, start, total, steps_per_epoch):
    """Yields `(epoch, batch)` for steps `start .. total-1`, resuming mid-epoch."""
    epoch, position = divmod(start, steps_per_epoch)
    step = start
    while step < total:
        for batch in batches(
            data,
            batch_size,
            seed=seed,
            epoch=epoch,
            start_step=position,
            shuffle=True,
            drop_remainder=True,
        ):
            yield epoch, batch
            step += 1
            if step == total:
                return
        epoch, position = epoch + 1, 0


@jax.jit
def _all_finite(params: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(params)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _nonfinite(what: str, ckpts: Checkpoints) -> FloatingPointError:
    steps = ckpts.steps()
    return FloatingPointError(
        f"fit: {what}; stopping. Checkpoints never hold non-finite values: the last "
        f"good one is step {steps[-1] if steps else 'none'} in {ckpts.directory}. The "
        "same command would fail the same way; change the learning rate, the "
        "initialisation or the data, and train in a new workdir."
    )


def _results(run: RunDir, total: int, steps_per_epoch: int, examples: int, wall_s: float):
    """results.json: final metrics from metrics.jsonl, so resumed runs agree; the wall
    time and throughput of the training kept (over every segment of a resumed run)."""
    records = read_metrics(run.metrics) if jax.process_index() == 0 else []
    final = [r for r in records if r["step"] == total]
    return {
        "step": total,
        "epoch": total / steps_per_epoch,
        "train": next((r for r in final if r["split"] == "train"), None),
        "eval": {r["split"]: r for r in final if r["split"] != "train"},
        "timing": {"wall_s": wall_s, "examples_per_s": examples / wall_s if wall_s > 0 else None},
    }


def _eval_splits(eval_data: Any) -> dict[str, Any]:
    if eval_data is None:
        return {}
    if isinstance(eval_data, Mapping):
        if "train" in eval_data:
            raise ValueError(
                "fit: eval split name 'train' is taken by the training metrics; "
                "name it e.g. 'train_eval'."
            )
        return dict(eval_data)
    return {"test": eval_data}


def _default_mesh(batch_size: int) -> jax.sharding.Mesh:
    n = jax.device_count()
    if batch_size % n:
        log.warning(
            "batch size %d does not divide among %d devices; training on one "
            "device (pass mesh=make_mesh(k) to choose).",
            batch_size,
            n,
        )
        return make_mesh(1)
    return make_mesh()


def _jsonable_keep(keep: Any) -> Any:
    return dict(keep) if isinstance(keep, Mapping) else sorted(int(s) for s in keep)


def _as_dict(config: Any) -> Any:
    if config is None:
        return None
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)
