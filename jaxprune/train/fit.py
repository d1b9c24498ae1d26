"""`fit`: the training loop, with metrics, checkpoints, automatic resume and progress.

Same command, same run directory: a rerun restores the newest readable
checkpoint, cuts `metrics.jsonl` back to its step, fast-forwards the data to the
same epoch and position, and continues. Per-step randomness comes from the
state (`fold_in(rng, step)`) and the data order from `(seed, epoch)`, so a run
killed at any point and resumed ends with the same parameters and metrics, bit
for bit on CPU, as one that was never interrupted.

An ensemble (`Parallel(ensemble=True)`) trains every member on the same batches,
or each on its own data order with `seed=(s0, s1, ...)`: the members' batches are
stacked on a leading axis that the vmapped step maps like the state (children of
one state that differ only in their SGD noise, as instability analysis needs).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxprune.train.checkpoint import Checkpoints
from jaxprune.train.options import GROUPS, LEGACY, Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.rundir import RunDir, jsonable, read_metrics
from jaxprune.train.sharding import (
    DATA_AXIS,
    check_data_axis,
    make_mesh,
    place_state,
    shard_batch,
    state_sharding,
)
from jaxprune.train.state import TrainState, members_of, step_of
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
    seed: int | Sequence[int] = 0,
    eval: Evaluation = Evaluation(),  # noqa: B008 (frozen: a shared default is safe)
    checkpoints: Checkpointing = Checkpointing(),  # noqa: B008
    logging: Logging = Logging(),  # noqa: B008
    parallel: Parallel = Parallel(),  # noqa: B008
    augment: Augment | None = None,
    loss_fn: LossFn | None = None,
    aux: Any = None,
    config: Mapping[str, Any] | None = None,
    batches: Callable[..., Iterator[dict[str, np.ndarray]]] | None = None,
    **deprecated: Any,
) -> FitResult:
    """Trains `state` on `train_data`, writing a resumable run directory.

    The run directory holds `config.json`, `metrics.jsonl` (a line per logged
    step and per evaluation), `checkpoints/` and, at the end, `results.json`.
    Training starts at `state.step` (non-zero for a rewound state) unless the
    directory already has checkpoints, in which case it resumes from the newest.
    Under RigL or SET (`state.tx` from `jaxprune.rigl` / `set_training`) the loop tells
    each step whether it rewires (`rewire_schedule(state.tx)`): two compiled
    steps, the ordinary one a plain masked step.

    Args:
      state: the initial state (its structure also serves as restore template).
      train_data: a dataset with numpy `x`, `y` (`jaxprune.data.load(...)`).
      workdir: the run directory.
      batch_size: global batch size; the last partial batch of an epoch is dropped.
      steps: total optimizer steps; or give `epochs` instead.
      epochs: total epochs (steps = epochs * (len(train_data) // batch_size)).
      seed: data-order seed (the state's rng drives augmentation); for an ensemble,
        a sequence of one seed per member gives each member its own data order
        (its batches stacked on a leading member axis); resuming fast-forwards
        every member's order.
      eval: what to evaluate and how often (:class:`Evaluation`).
      checkpoints: when to save checkpoints and which to keep (:class:`Checkpointing`).
      logging: metric lines, progress bar, learning rate (:class:`Logging`).
      parallel: device mesh, state sharding, ensembles (:class:`Parallel`).
      augment: optional `augment(rng, x)` applied to each training batch.
      loss_fn: optional `loss_fn(logits, batch, aux)` replacing cross-entropy.
      aux: passed to `loss_fn` at every step (e.g. a teacher `TrainState`).
      config: the experiment config, stored in `config.json`; a rerun with a
        different config on the same directory is refused.
      batches: the batch iterator, `jaxprune.data.batches` by default.
      **deprecated: the flat keywords of earlier releases (`eval_data`, `eval_every`,
        `eval_batch_size`, `checkpoint_every`, `keep_last`, `keep`, `log_every`,
        `progress`, `lr_schedule`, `mesh`, `sharding_rule`, `ensemble`): they still
        work, with a DeprecationWarning naming the group that replaces them.

    Returns:
      `FitResult(state, results)`.

    Raises:
      FloatingPointError: a non-finite loss or parameter; the message names the
        step, and the run directory keeps its last good checkpoint.

    Example:
      >>> train = jaxprune.data.load("mnist1d", "train")  # doctest: +SKIP
      >>> state = create_train_state(model, optax.adam(1e-3))  # doctest: +SKIP
      >>> out = fit(state, train, workdir="runs/mlp", batch_size=100, epochs=5,
      ...           eval=Evaluation(data=jaxprune.data.load("mnist1d", "test")))  # doctest: +SKIP
      >>> out.results["eval"]["test"]["accuracy"]  # doctest: +SKIP
    """
    groups = _with_legacy_keywords(
        deprecated, eval=eval, checkpoints=checkpoints, logging=logging, parallel=parallel
    )
    eval, checkpoints, logging, parallel = (groups[name] for name in GROUPS)
    if batches is None:
        from jaxprune.data import batches  # Lazily: data pulls in optional deps.
    plan = _plan(state, train_data, batch_size, steps, epochs, eval, parallel, seed)
    run = RunDir(workdir)
    if plan.lead:
        run.create()
        settings = dict(
            batch_size=batch_size,
            steps=plan.total,
            seed=jsonable(seed),
            log_every=logging.every,
            eval_every=eval.every,
            checkpoint_every=checkpoints.every,
            keep=jsonable(checkpoints.keep),
            eval_splits=sorted(plan.evals),
        )
        run.check_or_write_config({"config": jsonable(config), "fit": settings})

    state = place_state(state, plan.mesh, parallel.sharding_rule)
    shardings, treedef = jax.tree.flatten(state_sharding(state, plan.mesh, parallel.sharding_rule))
    step_fn = _train_step(
        augment,
        loss_fn,
        parallel.ensemble,
        plan.member_seeds is not None,
        tuple(shardings),
        treedef,
    )
    ckpts = Checkpoints(run.checkpoints, keep_last=checkpoints.keep_last, keep=checkpoints.keep)
    try:
        state, session = _resume(state, run, ckpts, plan, parallel.ensemble)
        bar = tqdm(
            total=plan.total,
            initial=session.start,
            disable=not (logging.progress and plan.lead),
            unit="step",
            dynamic_ncols=True,
        )
        try:
            order = (batches, train_data, batch_size)
            position = (session.start, plan.total, plan.per_epoch)
            stream = (
                _stream(*order, seed, *position)
                if plan.member_seeds is None
                else _member_stream(*order, plan.member_seeds, *position)
            )
            state = _loop(state, stream, step_fn, aux, session, plan, checkpoints, logging, bar)
            ckpts.wait()
        finally:
            bar.close()
    finally:
        ckpts.close()  # also before an error goes up: no orbax threads left behind
    results = _results(run, plan.total, plan.per_epoch, **session.saved)
    if plan.lead:
        run.write_results(results)
    return FitResult(state, results)


class _Plan(NamedTuple):
    """The checked numbers of a `fit` call, before anything is written."""

    total: int  # the step training ends at
    start: int  # the state's own step
    per_epoch: int  # steps per epoch
    batch_size: int
    evals: dict[str, Any]  # split name -> dataset
    eval_every: int | None
    eval_batch_size: int  # rounded up to the device count
    mesh: jax.sharding.Mesh
    lead: bool  # this process writes the run directory
    member_seeds: tuple[int, ...] | None  # one data order per ensemble member, or None


def _plan(state, train_data, batch_size, steps, epochs, eval, parallel, seed) -> _Plan:
    """Checks the run's length and devices; raises a ValueError saying what to change."""
    n_train = len(train_data.y)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be a positive integer, got {batch_size!r}.")
    per_epoch = n_train // batch_size
    if per_epoch < 1:
        raise ValueError(f"fit: batch_size={batch_size} exceeds the {n_train} training examples.")
    if (steps is None) == (epochs is None):
        raise ValueError(f"fit: give exactly one of steps or epochs (got {steps}, {epochs}).")
    total = steps if steps is not None else epochs * per_epoch
    start = step_of(state)
    if not isinstance(total, (int, np.integer)) or total <= start:
        what = f"steps={steps!r}" if steps is not None else f"epochs={epochs!r} ({total} steps)"
        raise ValueError(
            f"fit: {what} leaves nothing to train: the state is at step {start}; give "
            "more steps (or epochs) than that, as an integer."
        )
    mesh = _default_mesh(batch_size) if parallel.mesh is None else parallel.mesh
    check_data_axis(mesh, batch_size)  # before the run directory is written
    member_seeds = _member_seeds(seed, state, parallel.ensemble)
    n_dev = mesh.devices.size
    return _Plan(
        total=total,
        start=start,
        per_epoch=per_epoch,
        batch_size=batch_size,
        evals=eval.splits(),
        eval_every=eval.every,
        eval_batch_size=math.ceil(eval.batch_size / n_dev) * n_dev,
        mesh=mesh,
        lead=jax.process_index() == 0,
        member_seeds=member_seeds,
    )


def _member_seeds(seed, state, ensemble) -> tuple[int, ...] | None:
    """The per-member data-order seeds, checked, or None for one shared order."""
    if _is_seed(seed):
        return None
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence):
        raise TypeError(
            f"seed must be a non-negative integer or a sequence of them (one per ensemble "
            f"member); got {seed!r} (fit)."
        )
    if not all(_is_seed(s) for s in seed):
        raise ValueError(
            f"seed must hold non-negative integers, one per ensemble member; got {seed!r} (fit)."
        )
    if not ensemble:
        raise ValueError(
            f"seed must be one integer unless the state is an ensemble; got {seed!r} (fit). "
            "Pass parallel=Parallel(ensemble=True) with a stacked state (stack_states)."
        )
    members = members_of(state)
    if len(seed) != members:
        raise ValueError(
            f"seed must give one data order per ensemble member ({members}); got "
            f"{len(seed)}: {tuple(seed)!r} (fit). Give {members} seeds."
        )
    return tuple(int(s) for s in seed)


def _is_seed(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0


def _with_legacy_keywords(deprecated: Mapping[str, Any], **groups: Any) -> dict[str, Any]:
    """The option groups with the flat keywords of earlier releases folded in (warned)."""
    unknown = sorted(set(deprecated) - set(LEGACY))
    if unknown:
        raise TypeError(f"fit() got an unexpected keyword argument {unknown[0]!r}.")
    if not deprecated:
        return groups
    changes: dict[str, dict[str, Any]] = {}
    for old, value in deprecated.items():
        group, field = LEGACY[old]
        changes.setdefault(group, {})[field] = value
    spelled = ", ".join(
        f"{group}={GROUPS[group].__name__}(" + ", ".join(f"{field}=..." for field in fields) + ")"
        for group, fields in changes.items()
    )
    warnings.warn(
        f"fit({', '.join(f'{k}=...' for k in deprecated)}) is deprecated; pass {spelled} "
        "(from jaxprune.train) instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return {
        name: dataclasses.replace(value, **changes.get(name, {})) for name, value in groups.items()
    }


class _Session:
    """One process's part of a run: its checkpoints, metric window, timing and evaluation."""

    def __init__(self, run, ckpts, plan, ensemble, start, restored):
        self.run, self.ckpts, self.plan, self.ensemble = run, ckpts, plan, ensemble
        self.start = start
        self.window = _Window(restored[1].get("pending", []) if restored else [], start)
        # Wall time and examples of the training before this process's part (a resumed
        # run's results time the whole run, not the last segment).
        extra = restored[1] if restored else {}
        self.before = extra.get("timing", {"wall_s": 0.0, "examples": 0})
        # The timing in the newest checkpoint: the last one's goes in the results.
        self.saved = dict(self.before)
        self.t_start, self.seen = time.perf_counter(), 0

    def place(self, batch: Any) -> Any:
        if self.plan.member_seeds is None:
            return shard_batch(batch, self.plan.mesh)
        # A batch per member: the examples (axis 1) are split over the devices.
        sharding = NamedSharding(self.plan.mesh, PartitionSpec(None, DATA_AXIS))
        return {
            k: jax.make_array_from_process_local_data(sharding, v, v.shape)
            for k, v in batch.items()
        }

    def evaluate(self, state: TrainState, step: int) -> None:
        """Evaluates every split at `step` and appends the records to the metrics."""
        records = [
            {
                "step": step,
                "epoch": step / self.plan.per_epoch,
                "split": name,
                **evaluate(
                    state,
                    ds,
                    batch_size=self.plan.eval_batch_size,
                    # Every member sees the same evaluation batch, with their own data
                    # orders too: no member axis to place.
                    place=functools.partial(shard_batch, mesh=self.plan.mesh),
                    ensemble=self.ensemble,
                ),
            }
            for name, ds in self.plan.evals.items()
        ]
        if self.plan.lead:
            self.run.append_metrics(records)

    def stop_if_nonfinite(self) -> None:
        bad = self.window.first_nonfinite()
        if bad is not None:
            raise _nonfinite(f"the loss is {bad[1]} at step {bad[0]}", self.ckpts)

    def checkpoint(self, state: TrainState, step: int) -> None:
        """Saves `state` at `step`, refusing non-finite values."""
        self.stop_if_nonfinite()
        if not bool(_all_finite(state.params)):
            raise _nonfinite(f"the parameters are not finite after step {step}", self.ckpts)
        self.saved.update(self.timing())
        extra = {"pending": self.window.host_values(), "timing": dict(self.saved)}
        self.ckpts.save(step, state, extra)

    def timing(self) -> dict[str, float]:
        wall = self.before["wall_s"] + time.perf_counter() - self.t_start
        return {"wall_s": wall, "examples": self.before["examples"] + self.seen}


def _resume(state, run, ckpts, plan, ensemble) -> tuple[TrainState, _Session]:
    """The state to train from (the newest checkpoint's, if any) and the session."""
    restored = ckpts.restore_latest(state)
    start = plan.start if restored is None else step_of(restored[0])
    if restored is not None:
        state = restored[0]
    if plan.lead:
        # After a restore, the lines up to its step are already on disk; without
        # one, any lines are leftovers of a run killed before its first checkpoint.
        run.truncate_metrics(start if restored else start - 1)
    session = _Session(run, ckpts, plan, ensemble, start, restored)
    if restored is None:
        if plan.evals:
            session.evaluate(state, start)
        session.checkpoint(state, start)
    return state, session


def _loop(state, stream, step_fn, aux, session, plan, checkpoints, logging, bar) -> TrainState:
    """Trains over `stream`, logging, evaluating and checkpointing on their intervals."""
    # RigL and SET: the host tells each step whether it rewires, counting from the
    # optimizer's own step count, so that the ordinary steps are plain masked steps.
    rewires_at = rewire_schedule(state.tx)
    count = int(np.ravel(state.opt_state.count)[0]) if rewires_at else 0
    keep_steps = set(session.ckpts.keep.values())
    t_log, seen_log = session.t_start, 0
    for epoch, batch in stream:
        rewire = rewires_at(count) if rewires_at else None
        count += 1
        state, metrics = step_fn(state, session.place(batch), aux, rewire=rewire)
        session.window.add(metrics)
        done = session.window.step
        session.seen += plan.batch_size
        bar.update(1)
        if done % logging.every == 0 or done == plan.total:
            session.stop_if_nonfinite()
            record = session.window.flush(epoch=done / plan.per_epoch)
            if logging.lr_schedule is not None:
                record["lr"] = float(logging.lr_schedule(done - 1))
            if plan.lead:
                session.run.append_metrics([record])
            now = time.perf_counter()
            rate = (session.seen - seen_log) / max(now - t_log, 1e-9)
            t_log, seen_log = now, session.seen
            bar.set_postfix(
                epoch=epoch,
                loss=f"{np.mean(record['loss']):.4f}",
                acc=f"{np.mean(record['accuracy']):.3f}",
                ex_s=f"{rate:,.0f}",
            )
        if plan.evals and ((plan.eval_every and done % plan.eval_every == 0) or done == plan.total):
            session.stop_if_nonfinite()
            session.evaluate(state, done)
        if done % checkpoints.every == 0 or done in keep_steps or done == plan.total:
            session.checkpoint(state, done)
    return state


@functools.lru_cache(maxsize=8)
def _train_step(augment, loss_fn, ensemble, member_batches, shardings, treedef):
    """The jitted step for these settings, one object per settings, so that fits in
    one process (IMP's rounds, a resumed run, a notebook's reruns) share its compiled
    programs: the state's structure, its `tx` included, still picks the program."""
    return make_train_step(
        augment=augment,
        loss_fn=loss_fn,
        state_sharding=jax.tree.unflatten(treedef, shardings),
        ensemble=ensemble,
        member_batches=member_batches,
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


def _member_stream(batches, data, batch_size, seeds, start, total, steps_per_epoch):
    """Yields `(epoch, batch)` with one data order per member, stacked on a leading axis."""
    streams = [_stream(batches, data, batch_size, s, start, total, steps_per_epoch) for s in seeds]
    for items in zip(*streams):
        yield items[0][0], {k: np.stack([b[k] for _, b in items]) for k in items[0][1]}


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
