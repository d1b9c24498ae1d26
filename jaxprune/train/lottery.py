"""The lottery-ticket driver: iterative magnitude pruning trained with the engine.

Round 0 trains the dense network (every seed at once) and keeps its rewind point
(step k; k = 0 is the initialisation). Each later round prunes a fraction of the
ticket's remaining weights by magnitude (`jaxprune.lottery.prune_round`), rewinds
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
ticket masks); ``results.json`` and ``lottery.png``. Rerun the same call to resume:
finished rounds are read back, the interrupted one resumes at its step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
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
from jaxprune import filters, lottery, masks
from jaxprune.train.checkpoint import restore_checkpoint
from jaxprune.train.fit import fit
from jaxprune.train.maskio import save_mask
from jaxprune.train.options import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.plots import plot_accuracy_vs_remaining
from jaxprune.train.rundir import RunDir, write_json
from jaxprune.train.state import (
    TrainState,
    apply_model,
    create_train_state,
    ensemble_axes,
    member,
    stack_states,
    step_of,
)

__all__ = ["IMPSettings", "IMPStalled", "run_imp", "VARIANTS", "REWINDS"]

VARIANTS = ("ticket", "random_reinit", "random_pruning", "one_shot", "kd_ticket")
REWINDS = ("weights", "lr", "finetune")
_REINIT_SEED = 100_003  # offset of the fresh initialisations of random_reinit


class IMPStalled(UserWarning):
    """IMP stopped early: a round would prune nothing (the target is out of reach)."""


@dataclasses.dataclass(frozen=True)
class IMPSettings:
    """How to prune, rewind and compare.

    Attributes:
      rate: fraction of the remaining weights pruned per round (0.2 in the paper).
      rate_scale: per-layer multipliers of ``rate`` by path regex, e.g.
        ``{"head/": 0.5}`` prunes the output layer at half rate.
      distribution: ``"uniform"`` (layer-wise ranking) or ``"global"``.
      exclude: path regexes of kernels never pruned (nor counted), e.g. ``("head/",)``
        for "conv layers only"; the default prunes every Dense and Conv kernel.
      target: stop after the round leaving at most this fraction of the weights.
      rounds: or a fixed number of pruning rounds (overrides ``target``).
      rewind: ``"weights"`` (rewind to step ``rewind_step``), ``"lr"`` (keep the
        trained weights, rewind the schedule to ``rewind_step``) or ``"finetune"``
        (keep training the trained weights for ``steps - rewind_step`` steps).
      rewind_step: k; 0 is the original ticket.
      rewind_optimizer: also rewind the optimizer state (default: a fresh one).
      variants: which of VARIANTS to train every round (``ticket`` always).
      kd_temperature, kd_alpha: distillation settings of ``kd_ticket``.
    """

    rate: float = 0.2
    rate_scale: Mapping[str, float] = dataclasses.field(default_factory=dict)
    distribution: str = "uniform"
    exclude: Sequence[str] = ()
    target: float = 0.036
    rounds: int | None = None
    rewind: str = "weights"
    rewind_step: int = 0
    rewind_optimizer: bool = False
    variants: Sequence[str] = ("ticket", "random_reinit", "random_pruning")
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9

    def __post_init__(self):
        if not 0 < self.rate < 1:
            raise ValueError(f"IMP rate must be in (0, 1), got {self.rate}.")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or "ticket" not in self.variants:
            raise ValueError(f"variants must include 'ticket' and come from {VARIANTS}; got {bad}.")
        if self.rewind not in REWINDS:
            raise ValueError(f"rewind must be one of {REWINDS}, got {self.rewind!r}.")
        if self.rewind == "finetune" and set(self.variants) - {"ticket", "one_shot"}:
            raise ValueError(
                "rewind='finetune' continues from trained weights; only 'ticket' and "
                "'one_shot' make sense with it."
            )
        if self.distribution not in ("uniform", "global"):
            raise ValueError(
                f"distribution must be 'uniform' or 'global', got {self.distribution!r}."
            )
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must not repeat, got {tuple(self.variants)}.")
        if not 0 < self.target < 1:
            raise ValueError(
                f"target (the fraction of the weights left when IMP stops) must be in (0, 1), "
                f"got {self.target}; e.g. 0.036 for 3.6%."
            )
        rounds = self.rounds
        integer = isinstance(rounds, (int, np.integer)) and not isinstance(rounds, bool)
        if rounds is not None and not (integer and rounds >= 1):
            raise ValueError(f"rounds must be None or an integer >= 1, got {rounds!r}.")
        if not 0 < self.kd_temperature < float("inf"):
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}.")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(
                f"kd_alpha (the weight of the distillation term) must be in [0, 1], "
                f"got {self.kd_alpha}."
            )

    def prunable(self) -> filters.Filter:
        """The kernels IMP prunes: all Dense/Conv kernels but the excluded ones."""
        if not self.exclude:
            return filters.kernels
        return filters.all_of(filters.kernels, filters.not_(list(self.exclude)))

    def overrides(self) -> dict[str, Callable[[Any], Any]]:
        """``rate_scale`` as :func:`jaxprune.topk_mask` overrides."""
        return {pat: (lambda s, c=float(c): s * c) for pat, c in self.rate_scale.items()}


def run_imp(
    make_model: Callable[[int], nnx.Module],
    inner_tx: optax.GradientTransformation,
    train_data: Any,
    eval_data: Any,
    *,
    workdir: str,
    seeds: Sequence[int] = (0, 1, 2),
    settings: IMPSettings = IMPSettings(),
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
        evaluated at the end of every round.
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
      variant's test accuracy per seed; the dense accuracies.

    Raises:
      ValueError: bad settings, a ``rate_scale`` pattern that matches no prunable kernel
        or scales the rate to 1 or more, or ``eval_data`` without a "test" split; all
        before any training.

    Warns:
      IMPStalled: a round would prune no weight (the target is out of reach): the loop
        stops there and the results hold the rounds done.

    Example:
      >>> results = run_imp(lambda s: models.create("mnist1d_mlp", rngs=nnx.Rngs(s)),
      ...                   optax.adam(1e-3), train, test, workdir="runs/lt", batch_size=100,
      ...                   steps=3000)  # doctest: +SKIP
    """
    if not 0 <= settings.rewind_step < steps:
        raise ValueError(f"rewind_step must be in [0, steps={steps}), got {settings.rewind_step}.")
    if isinstance(eval_data, Mapping) and "test" not in eval_data:
        raise ValueError(
            f"run_imp reports every round's accuracy on the split named 'test'; eval_data "
            f"has {sorted(eval_data)}. Pass {{'test': dataset, ...}} or one dataset."
        )
    run = RunDir(workdir)
    run.create()
    run.check_or_write_config(
        {
            "config": _jsonable(config),
            "imp": _jsonable(dataclasses.asdict(settings)),
            "seeds": list(seeds),
            "batch_size": batch_size,
            "steps": steps,
            "data_seed": data_seed,
        }
    )
    # One transform object for every member of every round; its initial mask is dense.
    tx = jaxprune.masked(
        inner_tx, functools.partial(masks.dense_mask, prunable=settings.prunable())
    )
    k = settings.rewind_step
    fit_args = dict(
        batch_size=batch_size,
        seed=data_seed,
        eval=Evaluation(data=eval_data, every=eval_every),
        augment=augment,
        logging=Logging(progress=progress),
        parallel=Parallel(mesh=mesh, ensemble=True),
    )
    init = stack_states([create_train_state(make_model(s), tx, seed=s) for s in seeds])

    @jax.jit  # one program for every round (the same shapes), compiled once
    def prune(params, mask):
        return jax.vmap(
            lambda p, m: lottery.prune_round(
                p,
                m,
                settings.rate,
                distribution=settings.distribution,
                overrides=settings.overrides() or None,
            ),
            in_axes=(ensemble_axes(params), ensemble_axes(mask)),
            out_axes=ensemble_axes(mask),  # shared stand-ins stay shared: the same input next round
        )(params, mask)

    # Traced once before the dense training: a rate_scale pattern that matches nothing, or
    # a scaled rate >= 1, fails now rather than after round 0.
    jax.eval_shape(prune, init.params, jaxprune.mask_of(init.opt_state))
    dense_dir = os.path.join(workdir, "round_00")
    dense = fit(
        init,
        train_data,
        workdir=dense_dir,
        steps=steps,
        checkpoints=Checkpointing(
            every=checkpoint_every, keep_last=1, keep={"rewind": k} if k else ()
        ),
        **fit_args,
    )
    rewind_point = restore_checkpoint(dense_dir, init, "rewind") if k else init
    reinit = stack_states(
        [create_train_state(make_model(s + _REINIT_SEED), tx, seed=s) for s in seeds]
    )
    results = {
        "dense": {"accuracy": _accuracy(dense.results), "steps": steps},
        "rounds": [],
        "variants": list(settings.variants),
        "seeds": list(seeds),
    }
    trained = dense.state
    mask = jaxprune.mask_of(trained.opt_state)  # dense; placed as fit left it, as later masks are
    kept = masks.sparsity_report(member(mask, 0)).kept

    for r in range(1, 10_000):
        mask = prune(trained.params, mask)
        report = masks.sparsity_report(member(mask, 0))
        if report.kept == kept:
            warnings.warn(
                f"IMP stopped before round {r}: pruning a fraction {settings.rate} of what is "
                f"left removes no weight any more (the kept counts round back to themselves: "
                f"{report.kept} of {report.size} weights, {1 - report.sparsity:.4f} left), so "
                f"target={settings.target} is out of reach; the results hold the rounds done. "
                "Raise the rate or the target.",
                IMPStalled,
                stacklevel=2,
            )
            break
        kept = report.kept
        members, names = _members(
            settings, tx, r, mask, rewind_point, trained, dense.state, reinit, seeds
        )
        round_dir = os.path.join(workdir, f"round_{r:02d}")
        start, total = _schedule(settings, steps)
        loss_fn, aux = _distillation(settings, names, dense.state, len(seeds))
        out = fit(
            _at(stack_states(members), start),
            train_data,
            workdir=round_dir,
            steps=total,
            loss_fn=loss_fn,
            aux=aux,
            config={"round": r, "members": names},
            checkpoints=Checkpointing(every=checkpoint_every, keep_last=1),
            **fit_args,
        )
        for i, s in enumerate(seeds):
            save_mask(os.path.join(round_dir, f"mask_seed{s}.npz"), member(mask, i))
        accuracy = np.asarray(_accuracy(out.results)).reshape(len(settings.variants), len(seeds))
        results["rounds"].append(
            {
                "round": r,
                "remaining": 1.0 - report.sparsity,
                "remaining_per_layer": {l.path: l.kept / l.size for l in report.leaves},
                "accuracy": {v: accuracy[j].tolist() for j, v in enumerate(settings.variants)},
            }
        )
        _write(workdir, results)
        if progress:
            mean = {v: float(np.mean(a)) for v, a in results["rounds"][-1]["accuracy"].items()}
            print(f"round {r}: {100 * (1 - report.sparsity):.1f}% remaining, test accuracy {mean}")
        j = settings.variants.index("ticket") * len(seeds)
        trained = member(out.state, slice(j, j + len(seeds)))  # the tickets
        done = settings.rounds is not None and r >= settings.rounds
        if done or (settings.rounds is None and 1.0 - report.sparsity <= settings.target):
            break
    _write(workdir, results)  # also when no round was run
    return results


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
                m = lottery.random_pruning(jax.random.key(1_000_003 * r + s), m)
            elif v == "one_shot":
                m = lottery.one_shot_like(
                    member(dense, i).params, m, distribution=settings.distribution
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


def _schedule(settings: IMPSettings, steps: int) -> tuple[int | None, int]:
    """(start step override, total steps) of a pruning round."""
    if settings.rewind == "finetune":
        return steps, 2 * steps - settings.rewind_step
    return None, steps


def _at(state: TrainState, step: int | None = None) -> TrainState:
    """The state at `step` (default: its own): its step count and its optimizer's
    schedule counts (a fresh optimizer's schedules start at 0; a ticket rewound to k
    must go on from k)."""
    step = step_of(state) if step is None else step
    opt_state = jaxprune.transforms.base.map_schedule_counts(
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


def _write(workdir: str, results: dict[str, Any]) -> None:
    write_json(os.path.join(workdir, "results.json"), results)
    curves = {
        v: (
            [1.0] + [r["remaining"] for r in results["rounds"]],
            [results["dense"]["accuracy"]] + [r["accuracy"][v] for r in results["rounds"]],
        )
        for v in results["variants"]
    }
    plot_accuracy_vs_remaining(
        curves,
        os.path.join(workdir, "lottery.png"),
        dense=results["dense"]["accuracy"],
        title="Iterative magnitude pruning",
    )


def _jsonable(obj: Any) -> Any:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    return json.loads(json.dumps(obj, default=str))
