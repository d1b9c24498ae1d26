"""The lottery-ticket driver: iterative magnitude pruning trained with the engine.

Round 0 trains the dense network (every seed at once) and keeps its rewind point
(step k; k = 0 is the initialisation). Each later round prunes a fraction of the
ticket's remaining weights (or whole units, or blocks: ``IMPSettings.granularity``) by
magnitude (`jaxprune.lottery.prune_round`), rewinds
the survivors to step k, and trains every variant of every seed together as one
vmapped ensemble:

- ``ticket``: the rewound subnetwork (weights and batch statistics from step k,
  a fresh optimizer unless ``rewind_optimizer``; schedule and data fast-forward to k);
- ``random_reinit``: the same mask on a fresh initialisation;
- ``random_pruning``: a random mask with the same per-layer counts, rewound weights;
- ``one_shot``: the trained dense network pruned at once to the same counts;
- ``kd_ticket``: the ticket trained on the trained dense model's soft labels.

Layout of ``workdir``: ``config.json``; ``round_00/`` (the dense run, with its
rewind checkpoint); ``round_NN/`` (one run directory per round, its final
checkpoint holding every member's weights and mask, and ``mask_seed<S>.npz`` for the
ticket masks); ``results.json`` (draw it with :func:`jaxprune.plots.plot_imp`). With
``IMPSettings(validation=n)``, n training examples are held out as a split "val" and
every round records each member's step of minimum validation loss. Rerun
the same call to resume: finished rounds are read back, the interrupted one resumes at
its step.

The driver reads in three parts: :func:`plan_imp` decides what is trained (members,
each round's schedule, when to stop) from the settings alone; :func:`run_imp` trains
the rounds; the reporting helpers turn each round into its line of ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxprune
from jaxprune import lottery, masks
from jaxprune.data.dataset import subset_indices
from jaxprune.train._ap import round_pruner, round_start
from jaxprune.train._imp_plan import IMPPlan, IMPSettings, later_settings, plan_imp
from jaxprune.train.checkpoint import restore_checkpoint
from jaxprune.train.deadunits import dead_units_record
from jaxprune.train.fit import fit
from jaxprune.train.maskio import save_mask
from jaxprune.train.options import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.rundir import RunDir, read_metrics, write_json
from jaxprune.train.state import (
    TrainState,
    apply_model,
    create_train_state,
    ensemble_axes,
    member,
    stack_states,
    step_of,
)

__all__ = [
    "IMPPlan",
    "IMPSettings",
    "IMPStalled",
    "imp_initial_states",
    "later_settings",
    "plan_imp",
    "run_imp",
]

_REINIT_SEED = 100_003  # offset of the fresh initialisations of random_reinit


class IMPStalled(UserWarning):
    """IMP stopped early: a round would prune nothing (the target is out of reach)."""


def imp_initial_states(
    make_model: Callable[[int], Any],
    inner_tx: optax.GradientTransformation,
    settings: IMPSettings,
    seeds: Sequence[int],
) -> TrainState:
    """The stack of initial states `run_imp` trains: one per seed, under one masked
    transform whose initial mask is dense. It is also the template every checkpoint of
    its run directory restores into.

    Args:
      make_model: `seed -> nnx.Module`, as given to `run_imp`.
      inner_tx: the optimizer, as given to `run_imp`.
      settings: the run's `IMPSettings` (which leaves are prunable).
      seeds: the run's seeds, in order.

    Returns:
      A `stack_states` of one `TrainState` per seed.

    Example:
      >>> states = imp_initial_states(make_model, optax.adam(1e-3), IMPSettings(), (0, 1))  # doctest: +SKIP
    """
    # One transform object for every member of every round; its initial mask is dense.
    tx = jaxprune.masked(
        inner_tx, functools.partial(masks.dense_mask, prunable=settings.prunable())
    )
    return stack_states([create_train_state(make_model(s), tx, seed=s) for s in seeds])


def run_imp(
    make_model: Callable[[int], nnx.Module],
    inner_tx: optax.GradientTransformation,
    train_data: Any,
    eval_data: Any,
    *,
    workdir: str,
    seeds: Sequence[int] = (0, 1, 2),
    settings: IMPSettings = IMPSettings(),  # noqa: B008 (frozen: a shared default is safe)
    batch_size: int,
    steps: int,
    data_seed: int = 0,
    augment: Callable | None = None,
    eval_every: int | None = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Runs iterative magnitude pruning with baselines; resumable; returns ``results.json``.

    Args:
      make_model: ``seed -> nnx.Module``, a freshly initialised model.
      inner_tx: the optimizer (one object; it is wrapped with ``jaxprune.masked``).
      train_data, eval_data: datasets (``jaxprune.data.load``); the test split is
        evaluated at the end of every round (and every ``eval_every`` steps).
        ``settings.validation`` examples of ``train_data`` are held out as the split
        "val" of ``eval_data``.
      workdir: the run directory.
      seeds: model seeds; all train at once.
      settings: pruning and rewinding (:class:`IMPSettings`).
      batch_size, steps: the training of every round (``steps`` in total, from step 0).
      data_seed: data order (the same in every round and for every member).
      augment: optional jittable ``augment(rng, x)``.
      eval_every, checkpoint_every, progress, mesh: passed to :func:`jaxprune.train.fit`.
      config: the experiment's config, recorded in ``config.json``.

    Returns:
      The results: per round the fraction of weights remaining (total and per layer:
      the first seed's, which with ``distribution="global"`` differs from the others'
      layer by layer; every seed's mask is in ``round_NN/mask_seed<S>.npz``) and every
      variant's test accuracy per seed; the dense accuracies. With
      ``settings.validation``, also ``min_val_loss`` for the dense run and per round
      and variant: per seed, the ``step`` of minimum validation loss (the first
      evaluated step attaining it), that ``val_loss`` and the ``val_accuracy`` and
      ``test_accuracy`` there. With ``settings.record_dead_units``, ``dead_units``: the
      dense run's and, per round and variant, every seed's static and dynamic dead-unit
      rate on the test split. With ``settings.ap_share``, each round prunes by
      :func:`jaxprune.tickets.ap_prune_round` from the weights the tickets started from.

    Raises:
      ValueError: bad settings, a ``rate_scale`` pattern that matches no prunable kernel
        or scales the rate to 1 or more, ``eval_data`` without a "test" split, or
        ``settings.validation`` without ``eval_every``, with a split "val" already in
        ``eval_data`` or not below the number of training examples; all before any
        training.

    Warns:
      IMPStalled: a round would prune no weight (the target is out of reach): the loop
        stops there and the results hold the rounds done.

    Example:
      >>> results = run_imp(lambda s: models.create("mnist1d_mlp", rngs=nnx.Rngs(s)),
      ...                   optax.adam(1e-3), train, test, workdir="runs/lt", batch_size=100,
      ...                   steps=3000)  # doctest: +SKIP
    """
    if isinstance(eval_data, Mapping) and "test" not in eval_data:
        raise ValueError(
            f"run_imp reports every round's accuracy on the split named 'test'; eval_data "
            f"has {sorted(eval_data)}. Pass {{'test': dataset, ...}} or one dataset."
        )
    train_data, eval_data = _hold_out(settings, train_data, eval_data, eval_every)
    plan = plan_imp(
        settings,
        seeds=seeds,
        batch_size=batch_size,
        steps=steps,
        data_seed=data_seed,
        config=config,
    )
    run = RunDir(workdir)
    run.create()
    run.check_or_write_config(plan.record, later=later_settings("imp", "config.imp"))
    fit_args = dict(
        batch_size=batch_size,
        seed=data_seed,
        eval=Evaluation(data=eval_data, every=eval_every),
        augment=augment,
        logging=Logging(progress=progress),
        parallel=Parallel(mesh=mesh, ensemble=True),
    )
    init = imp_initial_states(make_model, inner_tx, settings, plan.seeds)
    tx = init.tx  # the one transform of every member of every round
    prune = round_pruner(settings, _pruner(settings))  # (params, mask, start)
    # Traced once before the dense training: a rate_scale pattern that matches nothing, or
    # a scaled rate >= 1, fails now rather than after round 0.
    jax.eval_shape(prune, init.params, jaxprune.mask_of(init.opt_state), init.params)
    dense = fit(
        init,
        train_data,
        workdir=os.path.join(workdir, "round_00"),
        steps=plan.steps,
        checkpoints=Checkpointing(every=checkpoint_every, keep_last=1, keep=plan.dense_keep),
        **fit_args,
    )
    rewind_point = (
        restore_checkpoint(os.path.join(workdir, "round_00"), init, "rewind")
        if plan.dense_keep
        else init
    )
    reinit = stack_states(
        [create_train_state(make_model(s + _REINIT_SEED), tx, seed=s) for s in plan.seeds]
    )
    results = _new_results(plan, dense.results, _run_dir(workdir, 0, settings))
    if settings.record_dead_units:
        results["dense"]["dead_units"] = dead_units_record(
            dense.state, eval_data, ("dense",), len(plan.seeds)
        )["dense"]
    start = rewind_point.params  # what the round's tickets started from (for AP)
    trained = dense.state
    mask = jaxprune.mask_of(trained.opt_state)  # dense; placed as fit left it, as later masks are
    kept = masks.sparsity_report(member(mask, 0)).kept
    for r in range(1, 10_000):
        mask = prune(trained.params, mask, start)
        report = masks.sparsity_report(member(mask, 0))
        if report.kept == kept:
            warnings.warn(_stalled(r, settings, report), IMPStalled, stacklevel=2)
            break
        kept = report.kept
        members = _members(
            settings, tx, r, mask, rewind_point, trained, dense.state, reinit, plan.seeds
        )[0]
        start = round_start(settings, members, len(plan.seeds), start)
        loss_fn, aux = _distillation(settings, plan.names, dense.state, len(plan.seeds))
        round_dir = os.path.join(workdir, f"round_{r:02d}")
        out = fit(
            _at(stack_states(members), plan.round_start),
            train_data,
            workdir=round_dir,
            steps=plan.round_steps,
            loss_fn=loss_fn,
            aux=aux,
            config={"round": r, "members": list(plan.names)},
            checkpoints=Checkpointing(every=checkpoint_every, keep_last=1),
            **fit_args,
        )
        for i, s in enumerate(plan.seeds):
            save_mask(os.path.join(round_dir, f"mask_seed{s}.npz"), member(mask, i))
        results["rounds"].append(
            _round_record(r, report, out.results, plan, _run_dir(workdir, r, settings))
        )
        if settings.record_dead_units:
            results["rounds"][-1]["dead_units"] = dead_units_record(
                out.state, eval_data, plan.variants, len(plan.seeds)
            )
        _write(workdir, results)
        if progress:
            print(_round_line(results["rounds"][-1]))
        j = settings.variants.index("ticket") * len(plan.seeds)
        trained = member(out.state, slice(j, j + len(plan.seeds)))  # the tickets
        if plan.last_round(r, 1.0 - report.sparsity):
            break
    _write(workdir, results)  # also when no round was run
    return results


def _pruner(settings: IMPSettings) -> Callable[[Any, Any], Any]:
    """One pruning round of every member at once, jitted: one program for every round
    (the same shapes), compiled once."""

    @jax.jit
    def prune(params, mask):
        return jax.vmap(
            lambda p, m: lottery.prune_round(
                p,
                m,
                settings.rate,
                distribution=settings.distribution,
                overrides=settings.overrides() or None,
                granularity=settings.granularity,
            ),
            in_axes=(ensemble_axes(params), ensemble_axes(mask)),
            out_axes=ensemble_axes(mask),  # shared stand-ins stay shared: the same input next round
        )(params, mask)

    return prune


def _members(settings, tx, r, mask, rewind_point, trained, dense, reinit, seeds):
    """The states of one round, variant-major: [v0 seeds..., v1 seeds..., ...]."""
    members, names = [], []
    for v in settings.variants:
        for i, s in enumerate(seeds):
            m = member(mask, i)
            base = member(rewind_point, i)
            if settings.rewind in ("lr", "finetune") and v in ("ticket", "kd_ticket", "one_shot"):
                # The trained weights go on: the tickets', or the dense network's for one_shot.
                source = dense if v == "one_shot" else trained
                base = member(source, i).replace(step=base.step, rng=base.rng)
            if v == "random_reinit":
                base = member(reinit, i).replace(step=base.step)
            elif v == "random_pruning":
                m = jaxprune.random_like(
                    jax.random.key(1_000_003 * r + s), m, granularity=settings.granularity
                )
            elif v == "one_shot":
                m = lottery.one_shot_like(
                    member(dense, i).params,
                    m,
                    distribution=settings.distribution,
                    granularity=settings.granularity,
                )
            members.append(_masked_state(base, tx, m, settings.rewind_optimizer))
            names.append(f"{v}/seed{s}")
    return members, names


def _masked_state(base: TrainState, tx, mask, rewind_optimizer: bool) -> TrainState:
    params = jaxprune.apply_mask(base.params, mask)
    opt_state = base.opt_state if rewind_optimizer else tx.init(params)
    return base.replace(
        params=params, opt_state=jaxprune.transforms.replace_mask(opt_state, mask), tx=tx
    )


def _at(state: TrainState, step: int | None = None) -> TrainState:
    """The state at `step` (default: its own): its step count and its optimizer's
    schedule counts (a fresh optimizer's schedules start at 0; a ticket rewound to k
    must go on from k)."""
    step = step_of(state) if step is None else step
    opt_state = jaxprune.transforms.map_schedule_counts(
        state.opt_state, lambda c: jnp.full_like(c, step)
    )
    return state.replace(step=jnp.full_like(state.step, step), opt_state=opt_state)


def _distillation(settings, names, dense, n_seeds):
    """The KD loss and its per-member aux (teacher, weight), or (None, None)."""
    if "kd_ticket" not in settings.variants:
        return None, None
    t, alpha = settings.kd_temperature, settings.kd_alpha
    copies = len(names) // n_seeds
    teachers = jax.tree.map(lambda x: x if x.ndim == 0 else jnp.concatenate([x] * copies), dense)
    weights = jnp.asarray([alpha if n.startswith("kd_ticket/") else 0.0 for n in names])

    def loss_fn(logits, batch, aux):
        teacher, weight = aux
        teacher_logits, _ = apply_model(teacher, batch["x"], train=False)
        return lottery.distillation_loss(
            logits, teacher_logits, batch["y"], temperature=t, alpha=weight
        )

    return loss_fn, (teachers, weights)


def _accuracy(results: Mapping[str, Any]) -> list[float]:
    value = results["eval"]["test"]["accuracy"]
    return value if isinstance(value, list) else [value]


def _hold_out(settings: IMPSettings, train_data: Any, eval_data: Any, eval_every: int | None):
    """(training data, eval splits): ``settings.validation`` training examples, drawn with
    ``settings.validation_seed``, moved into the eval split "val"; unchanged without."""
    n = settings.validation
    if not n:
        return train_data, eval_data
    if eval_every is None:
        raise ValueError(
            f"eval_every must be set with validation={n}; got None (run_imp). The step of "
            "minimum validation loss is read from the evaluations every eval_every steps: "
            "pass e.g. eval_every=500."
        )
    splits = dict(eval_data) if isinstance(eval_data, Mapping) else {"test": eval_data}
    if "val" in splits:
        raise ValueError(
            f"eval_data must not hold a split named 'val' with validation={n}; got "
            f"{sorted(splits)} (run_imp). The held-out examples are that split: rename yours."
        )
    size = len(train_data.y)
    if n >= size:
        raise ValueError(
            f"validation must be below the {size} training examples; got {n} (run_imp). "
            "Hold out fewer examples."
        )
    held = subset_indices(size, n, settings.validation_seed)
    rest = np.setdiff1d(np.arange(size), held)
    return _take(train_data, rest, size), {**splits, "val": _take(train_data, held, size)}


def _take(ds: Any, index: np.ndarray, size: int) -> Any:
    """The examples ``index`` of a dataclass dataset (every array field of ``size`` rows)."""
    if not dataclasses.is_dataclass(ds):
        raise TypeError(
            f"train_data must be a dataclass dataset (jaxprune.data.load) to hold out "
            f"validation examples; got {type(ds).__name__} (run_imp). Pass a "
            "jaxprune.data.Dataset, or split it yourself and set validation=0."
        )
    return dataclasses.replace(
        ds,
        **{
            f.name: getattr(ds, f.name)[index]
            for f in dataclasses.fields(ds)
            if isinstance(getattr(ds, f.name), np.ndarray) and len(getattr(ds, f.name)) == size
        },
    )


def _run_dir(workdir: str, r: int, settings: IMPSettings) -> str | None:
    """Round r's run directory, where its validation losses are read; None without them."""
    return os.path.join(workdir, f"round_{r:02d}") if settings.validation else None


def _min_val_loss(run_dir: str) -> dict[str, list]:
    """Per member: the first evaluated step of minimum loss on the split "val", that loss,
    and the "val" and "test" accuracies there, from the run's metrics.jsonl."""
    records = read_metrics(run_dir)
    val = [r for r in records if r["split"] == "val"]
    test = {r["step"]: r for r in records if r["split"] == "test"}
    column = lambda rs, key: np.asarray([np.atleast_1d(r[key]) for r in rs])  # (evals, members)
    best = np.argmin(column(val, "loss"), axis=0)  # the first of equal minima
    at = [(val[i], test[val[i]["step"]], m) for m, i in enumerate(best)]
    return {
        "step": [v["step"] for v, _, _ in at],
        "val_loss": [float(np.atleast_1d(v["loss"])[m]) for v, _, m in at],
        "val_accuracy": [float(np.atleast_1d(v["accuracy"])[m]) for v, _, m in at],
        "test_accuracy": [float(np.atleast_1d(t["accuracy"])[m]) for _, t, m in at],
    }


def _new_results(
    plan: IMPPlan, dense: Mapping[str, Any], run_dir: str | None = None
) -> dict[str, Any]:
    """The results before the first pruning round: the dense accuracies (and, given the
    dense run's directory, its steps of minimum validation loss)."""
    record = {"accuracy": _accuracy(dense), "steps": plan.steps}
    if run_dir is not None:
        record["min_val_loss"] = _min_val_loss(run_dir)
    return {
        "dense": record,
        "rounds": [],
        "variants": list(plan.variants),
        "seeds": list(plan.seeds),
    }


def _round_record(
    r: int, report: Any, results: Mapping[str, Any], plan: IMPPlan, run_dir: str | None = None
):
    """A round's line of the results: weights remaining, each variant's accuracy per seed
    (and, given the round's directory, its steps of minimum validation loss)."""
    per_variant = lambda values: {
        v: np.asarray(values).reshape(len(plan.variants), len(plan.seeds))[j].tolist()
        for j, v in enumerate(plan.variants)
    }
    record = {
        "round": r,
        "remaining": 1.0 - report.sparsity,
        "remaining_per_layer": {l.path: l.kept / l.size for l in report.leaves},
        "accuracy": per_variant(_accuracy(results)),
    }
    if run_dir is not None:
        best = {key: per_variant(values) for key, values in _min_val_loss(run_dir).items()}
        record["min_val_loss"] = {v: {key: best[key][v] for key in best} for v in plan.variants}
    return record


def _round_line(record: Mapping[str, Any]) -> str:
    mean = {v: float(np.mean(a)) for v, a in record["accuracy"].items()}
    return (
        f"round {record['round']}: {100 * record['remaining']:.1f}% remaining, test accuracy {mean}"
    )


def _stalled(r: int, settings: IMPSettings, report: Any) -> str:
    return (
        f"IMP stopped before round {r}: pruning a fraction {settings.rate} of what is "
        f"left removes no weight any more (the kept counts round back to themselves: "
        f"{report.kept} of {report.size} weights, {1 - report.sparsity:.4f} left), so "
        f"target={settings.target} is out of reach; the results hold the rounds done. "
        "Raise the rate or the target."
    )


def _write(workdir: str, results: dict[str, Any]) -> None:
    write_json(os.path.join(workdir, "results.json"), results)
