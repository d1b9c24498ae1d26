"""What an IMP run trains, decided before any training: its settings and its plan.

:class:`IMPSettings` says how to prune, rewind and compare; :func:`plan_imp` turns them
into an :class:`IMPPlan` (the members of every round, each round's schedule, when the
run stops, its ``config.json``), a pure function of the settings.
``jaxprune.train.lottery.run_imp`` trains the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxprune import filters
from jaxprune._checks import is_integer
from jaxprune.select._granular import check_granularity
from jaxprune.train.rundir import jsonable

__all__ = ["IMPPlan", "IMPSettings", "later_settings", "plan_imp", "REWINDS", "VARIANTS"]

VARIANTS = ("ticket", "random_reinit", "random_pruning", "one_shot", "kd_ticket")
REWINDS = ("weights", "lr", "finetune")
# IMPSettings fields added after run directories were made, at the values that reproduce
# those runs: a directory recorded without them still resumes (`later_settings`).
LATER_FIELDS = {
    "validation": 0,
    "validation_seed": 0,
    "granularity": "element",
    "ap_share": 0.0,
    "record_dead_units": False,
}


def later_settings(*prefixes: str) -> dict[str, Any]:
    """The IMP settings added after runs were made, under each dotted prefix of a recorded
    config, with their old-behaviour defaults: the ``later`` of
    :meth:`jaxprune.train.RunDir.check_or_write_config`, so that older runs resume.

    Example:
      >>> later_settings("imp")["imp.granularity"]
      'element'
    """
    return {f"{p}.{k}": v for p in prefixes for k, v in LATER_FIELDS.items()}


@dataclasses.dataclass(frozen=True)
class IMPSettings:
    """How to prune, rewind and compare.

    Attributes:
      rate: fraction of the remaining weights pruned per round (0.2 in the paper).
      rate_scale: per-layer multipliers of ``rate`` by path regex, e.g.
        ``{"head/": 0.5}`` prunes the output layer at half rate.
      distribution: ``"uniform"`` (layer-wise ranking) or ``"global"``.
      granularity: what one pruned item is: ``"element"`` (one weight, the paper),
        ``"unit"`` (a kernel's output unit or channel: a slice of its last axis) or an
        ``(r, c)`` block of a kernel's last two axes, as in :func:`jaxprune.topk_mask`.
        ``rate`` is then the fraction of the remaining units (blocks) pruned per round;
        ``random_pruning`` removes as many random whole units per layer, ``one_shot``
        as many units of the dense network by their summed magnitudes.
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
      validation: training examples held out as a validation split named "val" (never
        trained on), the same for every round and member; evaluated with the test split
        every ``eval_every`` steps, and every member's step of minimum validation loss
        is recorded ("tickets learn faster", Frankle & Carbin, 2019). 0: none, and the
        run is what it was without this option.
      validation_seed: seed of the draw of the held-out examples.
      ap_share: AP (Liu et al. 2022): the fraction of every round's pruning budget taken
        from the kept negative weights that moved least over the round
        (:func:`jaxprune.tickets.ap_prune_round`; the paper's code: 0.1). 0: plain IMP.
      record_dead_units: record the static and dynamic dead-unit rates of every member
        on the test split at the end of every round (zoo models: ``models.features``).
    """

    rate: float = 0.2
    rate_scale: Mapping[str, float] = dataclasses.field(default_factory=dict)
    distribution: str = "uniform"
    granularity: str | tuple[int, int] = "element"
    exclude: Sequence[str] = ()
    target: float = 0.036
    rounds: int | None = None
    rewind: str = "weights"
    rewind_step: int = 0
    rewind_optimizer: bool = False
    variants: Sequence[str] = ("ticket", "random_reinit", "random_pruning")
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    validation: int = 0
    validation_seed: int = 0
    ap_share: float = 0.0
    record_dead_units: bool = False

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
        try:
            check_granularity(self.granularity)
        except ValueError as e:
            raise ValueError(f"{e} (IMPSettings.granularity)") from None
        if isinstance(self.granularity, list):  # a block read back from JSON
            object.__setattr__(self, "granularity", tuple(self.granularity))
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
        for name in ("validation", "validation_seed"):
            value = getattr(self, name)
            if not is_integer(value):
                raise TypeError(
                    f"{name} must be an integer; got {value!r} (IMPSettings). "
                    "Pass e.g. validation=5000 examples held out of the training data."
                )
            if value < 0:
                raise ValueError(
                    f"{name} must be >= 0; got {value} (IMPSettings). 0 holds out nothing."
                )
        if not 0 <= self.ap_share <= 1:
            raise ValueError(
                f"ap_share must be in [0, 1]; got {self.ap_share} (IMPSettings). It is the "
                "fraction of a round's budget AP prunes; the paper uses 0.1, 0 is plain IMP."
            )

    def prunable(self) -> filters.Filter:
        """The kernels IMP prunes: all Dense/Conv kernels but the excluded ones."""
        if not self.exclude:
            return filters.kernels
        return filters.all_of(filters.kernels, filters.not_(list(self.exclude)))

    def overrides(self) -> dict[str, Callable[[Any], Any]]:
        """``rate_scale`` as :func:`jaxprune.topk_mask` overrides."""
        return {pat: (lambda s, c=float(c): s * c) for pat, c in self.rate_scale.items()}


class IMPPlan(NamedTuple):
    """What :func:`run_imp` trains, decided from the settings before any training."""

    seeds: tuple[int, ...]
    variants: tuple[str, ...]  # trained every pruning round
    names: tuple[str, ...]  # the members of every pruning round, variant-major
    steps: int  # the dense training's
    round_start: int | None  # a pruning round's starting step (None: the members' own)
    round_steps: int  # the step a pruning round's training ends at
    # Checkpoints the dense run keeps: {"rewind": k} if k > 0, else none (an empty tuple,
    # as earlier releases stored it in config.json: their run directories still resume).
    dense_keep: dict[str, int] | tuple[()]
    rounds: int | None  # a fixed number of pruning rounds, or None: until `target`
    target: float  # the fraction of weights remaining at which IMP stops
    record: dict[str, Any]  # the experiment's `config.json`

    def last_round(self, r: int, remaining: float) -> bool:
        """Whether round `r`, leaving `remaining` of the weights, is the last."""
        if self.rounds is not None:
            return r >= self.rounds
        return remaining <= self.target


def plan_imp(
    settings: IMPSettings,
    *,
    seeds: Sequence[int],
    batch_size: int,
    steps: int,
    data_seed: int = 0,
    config: Mapping[str, Any] | None = None,
) -> IMPPlan:
    """The plan of an IMP run: its members, each round's schedule, when it stops.

    Args:
      settings: pruning and rewinding (:class:`IMPSettings`).
      seeds: model seeds.
      batch_size, steps: the training of every round (``steps`` in total, from step 0).
      data_seed: data order.
      config: the experiment's config, recorded in ``config.json``.

    Returns:
      An :class:`IMPPlan`.

    Raises:
      ValueError: ``rewind_step`` outside ``[0, steps)``.

    Example:
      >>> plan = plan_imp(IMPSettings(rewind_step=100), seeds=(0, 1), batch_size=60,
      ...                 steps=1000)
      >>> plan.names[:3], plan.dense_keep, plan.round_steps
      (('ticket/seed0', 'ticket/seed1', 'random_reinit/seed0'), {'rewind': 100}, 1000)
    """
    k = settings.rewind_step
    if not 0 <= k < steps:
        raise ValueError(f"rewind_step must be in [0, steps={steps}), got {k}.")
    seeds = tuple(seeds)
    start, total = _schedule(settings, steps)
    return IMPPlan(
        seeds=seeds,
        variants=tuple(settings.variants),
        names=tuple(f"{v}/seed{s}" for v in settings.variants for s in seeds),
        steps=steps,
        round_start=start,
        round_steps=total,
        dense_keep={"rewind": k} if k else (),
        rounds=settings.rounds,
        target=settings.target,
        record={
            "config": jsonable(config),
            "imp": jsonable(dataclasses.asdict(settings)),
            "seeds": list(seeds),
            "batch_size": batch_size,
            "steps": steps,
            "data_seed": data_seed,
        },
    )


def _schedule(settings: IMPSettings, steps: int) -> tuple[int | None, int]:
    """(start step override, total steps) of a pruning round."""
    if settings.rewind == "finetune":
        return steps, 2 * steps - settings.rewind_step
    return None, steps
