"""The COLT driver: cyclic overlapping lottery tickets trained with the engine.

Hossain et al. 2022, "COLT: Cyclic Overlapping Lottery Tickets for Faster Pruning of
Convolutional Neural Networks". The training data is split once into ``segments``
parts (a seeded random split of the examples). Every round, for every seed, one copy
per segment is trained from the same initialisation under the current mask on its
segment alone; each copy is pruned by magnitude and the next mask keeps the weights
all copies keep (their overlap, :func:`jaxprune.tickets.overlap_prune_round`), sized to
IMP's count of the round: the same sparsity as an IMP round at the same rate. The
survivors are rewound to the initialisation and the next round trains the segments
again (the cycle). To compare with IMP, every round's overlap (the COLT ticket) is also
trained on the whole training data, as IMP trains its tickets, and its test accuracy is
the round's.

Steps: a round trains every segment for ``segment_steps`` (default ``steps //
segments``, so the search costs IMP's ``steps`` a round) and the ticket for ``steps``.

Layout of ``workdir``: ``config.json``; ``round_NN/segment_J/`` (the copies of segment
J, every seed at once), ``round_NN/ticket/`` (the COLT tickets on the whole data),
``round_NN/mask_seed<S>.npz``; ``results.json``. Rerun the same call to resume.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

import jaxprune
from jaxprune import masks, tickets
from jaxprune.train._imp_plan import IMPSettings, later_settings, plan_imp
from jaxprune.train.deadunits import dead_units_record
from jaxprune.train.fit import fit
from jaxprune.train.lottery import (
    IMPStalled,
    _accuracy,
    _masked_state,
    _round_line,
    _stalled,
    _take,
    _write,
    imp_initial_states,
)
from jaxprune.train.maskio import save_mask
from jaxprune.train.options import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.rundir import RunDir
from jaxprune.train.state import ensemble_axes, member, stack_states

__all__ = ["run_colt", "segment_indices"]


def segment_indices(size: int, segments: int, seed: int = 0) -> list[np.ndarray]:
    """The examples of each segment: a seeded random split into near-equal parts, sorted.

    Example:
      >>> [len(s) for s in segment_indices(10, 3)]
      [4, 3, 3]
    """
    if not (isinstance(segments, int) and 1 <= segments <= size):
        raise ValueError(
            f"segments must be an integer in [1, {size}] (the training examples); got "
            f"{segments!r} (run_colt). COLT splits the data in e.g. 2 segments."
        )
    order = np.random.default_rng(seed).permutation(size)
    return [np.sort(part) for part in np.array_split(order, segments)]


def run_colt(
    make_model: Callable[[int], nnx.Module],
    inner_tx: optax.GradientTransformation,
    train_data: Any,
    eval_data: Any,
    *,
    workdir: str,
    seeds: Sequence[int] = (0, 1, 2),
    settings: IMPSettings = IMPSettings(variants=("ticket",)),  # noqa: B008 (frozen)
    segments: int = 2,
    segment_steps: int | None = None,
    split_seed: int = 0,
    batch_size: int,
    steps: int,
    data_seed: int = 0,
    eval_every: int | None = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs COLT (cyclic overlapping lottery tickets); resumable; returns ``results.json``.

    Args:
      make_model, inner_tx, train_data, eval_data: as for ``run_imp``.
      workdir, seeds, batch_size, data_seed: as for ``run_imp``.
      steps: the training of a ticket on the whole data.
      eval_every, checkpoint_every, progress, config: as for ``run_imp``.
      settings: ``rate``, ``rate_scale``, ``distribution``, ``exclude``, ``target`` /
        ``rounds`` and ``record_dead_units`` as for IMP; COLT rewinds to the
        initialisation and trains tickets only.
      segments: the number K of data segments.
      segment_steps: the training of each segment's copy (default ``steps // K``).
      split_seed: the seed of the split into segments.

    Returns:
      ``{"method": "colt", "segments", "seeds", "variants": ["ticket"], "steps", "rounds"}``;
      per round: ``remaining`` (total, and per layer of the first seed), ``accuracy``
      (``{"ticket": per seed}``: the overlap trained on the whole data),
      ``segment_remaining`` (each segment's own mask, first seed) and
      ``segment_accuracy`` (per segment, per seed: the copies' test accuracy); with
      ``settings.record_dead_units``, the tickets' ``dead_units``.

    Raises:
      ValueError: settings COLT does not take (rewinding other than to the
        initialisation, variants besides ``ticket``, ``ap_share``, ``validation``), bad
        ``segments`` or ``segment_steps``; all before any training.

    Example:
      >>> results = run_colt(lambda s: models.create("mnist1d_mlp", rngs=nnx.Rngs(s)),
      ...                    optax.adam(1e-2), train, test, workdir="runs/colt",
      ...                    batch_size=100, steps=6000)  # doctest: +SKIP
    """
    _check(settings)
    size = len(train_data.y)
    split = segment_indices(size, segments, split_seed)
    segment_steps = steps // segments if segment_steps is None else segment_steps
    if not (isinstance(segment_steps, int) and segment_steps >= 1):
        raise ValueError(
            f"segment_steps must be a positive integer; got {segment_steps!r} (run_colt, "
            f"steps={steps}, segments={segments})."
        )
    parts = [_take(train_data, i, size) for i in split]
    plan = plan_imp(
        settings,
        seeds=seeds,
        batch_size=batch_size,
        steps=steps,
        data_seed=data_seed,
        config=config,
    )
    record = {
        **plan.record,
        "colt": {"segments": segments, "segment_steps": segment_steps, "split_seed": split_seed},
    }
    run = RunDir(workdir)
    run.create()
    run.check_or_write_config(record, later=later_settings("imp", "config.imp"))
    fit_args = dict(
        batch_size=batch_size,
        seed=data_seed,
        eval=Evaluation(data=eval_data, every=eval_every),
        logging=Logging(progress=progress),
        parallel=Parallel(ensemble=True),
    )
    init = imp_initial_states(make_model, inner_tx, settings, plan.seeds)
    prune = _overlap_pruner(settings)
    mask = jaxprune.mask_of(init.opt_state)
    kept = masks.sparsity_report(member(mask, 0)).kept
    results = {
        "method": "colt",
        "segments": segments,
        "seeds": list(plan.seeds),
        "variants": ["ticket"],
        "steps": {"segment": segment_steps, "ticket": steps},
        "rounds": [],
    }
    n = len(plan.seeds)
    for r in range(1, 10_000):
        round_dir = os.path.join(workdir, f"round_{r:02d}")
        copies = [
            fit(
                _under(init, mask, n),
                part,
                workdir=os.path.join(round_dir, f"segment_{j}"),
                steps=segment_steps,
                config={"round": r, "segment": j},
                checkpoints=Checkpointing(every=checkpoint_every, keep_last=1),
                **fit_args,
            )
            for j, part in enumerate(parts)
        ]
        mask, seg_masks = prune([c.state.params for c in copies], mask)
        report = masks.sparsity_report(member(mask, 0))
        if report.kept == kept:
            warnings.warn(_stalled(r, settings, report), IMPStalled, stacklevel=2)
            break
        kept = report.kept
        out = fit(
            _under(init, mask, n),
            train_data,
            workdir=os.path.join(round_dir, "ticket"),
            steps=steps,
            config={"round": r, "ticket": True},
            checkpoints=Checkpointing(every=checkpoint_every, keep_last=1),
            **fit_args,
        )
        for i, s in enumerate(plan.seeds):
            save_mask(os.path.join(round_dir, f"mask_seed{s}.npz"), member(mask, i))
        line = {
            "round": r,
            "remaining": 1.0 - report.sparsity,
            "remaining_per_layer": {l.path: l.kept / l.size for l in report.leaves},
            "accuracy": {"ticket": _accuracy(out.results)},
            "segment_remaining": [
                1.0 - masks.sparsity_report(member(m, 0)).sparsity for m in seg_masks
            ],
            "segment_accuracy": [_accuracy(c.results) for c in copies],
        }
        if settings.record_dead_units:
            line["dead_units"] = dead_units_record(out.state, eval_data, ("ticket",), n)
        results["rounds"].append(line)
        _write(workdir, results)
        if progress:
            print("COLT " + _round_line(line))
        if plan.last_round(r, 1.0 - report.sparsity):
            break
    _write(workdir, results)
    return results


def _check(settings: IMPSettings) -> None:
    bad = {
        "rewind": settings.rewind != "weights" or settings.rewind_step != 0,
        "variants": tuple(settings.variants) != ("ticket",),
        "ap_share": bool(settings.ap_share),
        "validation": bool(settings.validation),
    }
    if any(bad.values()):
        raise ValueError(
            f"run_colt trains tickets rewound to the initialisation only; the settings "
            f"differ at {[k for k, v in bad.items() if v]} (IMPSettings). Pass rewind="
            "'weights', rewind_step=0, variants=('ticket',), ap_share=0, validation=0."
        )


def _under(init: Any, mask: Any, n: int) -> Any:
    """Every seed's initial state under its mask (a fresh optimizer), stacked."""
    return stack_states(
        [_masked_state(member(init, i), init.tx, member(mask, i), False) for i in range(n)]
    )


def _overlap_pruner(settings: IMPSettings) -> Callable[[Sequence[Any], Any], Any]:
    """The overlap round of every seed at once, jitted."""

    @jax.jit
    def prune(params, mask):
        def one(m, *ps):
            return tickets.overlap_prune_round(
                list(ps),
                m,
                settings.rate,
                distribution=settings.distribution,
                overrides=settings.overrides() or None,
            )

        axes = ensemble_axes(mask)
        return jax.vmap(
            one,
            in_axes=(axes, *(ensemble_axes(p) for p in params)),
            out_axes=(axes, [axes] * len(params)),
        )(mask, *params)

    return prune
