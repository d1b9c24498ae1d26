"""`fit`'s options, grouped: evaluation, checkpointing, logging and parallelism.

Each group is a small frozen dataclass checked when it is built, so a wrong value
fails where it is written, before any run directory exists.

Example:
  >>> opts = Checkpointing(every=500, keep={"rewind": 100})
  >>> opts.keep_last, opts.keep
  (3, {'rewind': 100})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
import optax

__all__ = ["Checkpointing", "Evaluation", "Logging", "Parallel"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_count(owner: str, field: str, value: Any, *, optional: bool = False) -> None:
    """Raises a ValueError unless ``value`` is an integer >= 1 (or None if optional)."""
    if optional and value is None:
        return
    if not (_is_int(value) and value >= 1):
        also = "None or " if optional else ""
        raise ValueError(f"{owner}: {field} must be {also}an integer >= 1, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What `fit` evaluates, and how often.

    Attributes:
      data: a dataset or ``{split_name: dataset}``; a single one is named "test".
        Evaluated at the start, every ``every`` steps and at the end.
      every: steps between evaluations (None: start and end only).
      batch_size: examples per eval step (rounded up to the device count).

    Example:
      >>> Evaluation(every=250).batch_size
      1000
    """

    data: Any = None
    every: int | None = None
    batch_size: int = 1000

    def __post_init__(self):
        _check_count("Evaluation", "every", self.every, optional=True)
        _check_count("Evaluation", "batch_size", self.batch_size)
        if isinstance(self.data, Mapping) and "train" in self.data:
            raise ValueError(
                "Evaluation: eval split name 'train' is taken by the training metrics; "
                "name it e.g. 'train_eval'."
            )

    def splits(self) -> dict[str, Any]:
        """The datasets to evaluate, by split name.

        Example:
          >>> Evaluation(data={"val": [0]}).splits()
          {'val': [0]}
        """
        if self.data is None:
            return {}
        if isinstance(self.data, Mapping):
            return dict(self.data)
        return {"test": self.data}


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """When `fit` saves checkpoints, and which it keeps.

    Attributes:
      every: steps between checkpoints (also one at the start and the end).
      keep_last: how many recent checkpoints to keep.
      keep: checkpoints kept for good and saved even off the interval:
        ``{"rewind": 500}`` (load with ``restore_checkpoint(workdir, t, "rewind")``)
        or a collection of steps (stored sorted).

    Example:
      >>> Checkpointing(keep={30, 10}).keep
      (10, 30)
    """

    every: int = 1000
    keep_last: int = 3
    keep: Mapping[str, int] | Iterable[int] = ()

    def __post_init__(self):
        _check_count("Checkpointing", "every", self.every)
        _check_count("Checkpointing", "keep_last", self.keep_last)
        if isinstance(self.keep, Mapping):
            keep = dict(self.keep)
            steps = list(keep.values())
        else:
            plain = isinstance(self.keep, Iterable) and not isinstance(self.keep, (str, bytes))
            steps = list(self.keep) if plain else [self.keep]
            keep = tuple(sorted(int(s) for s in steps if _is_int(s)))
        if not all(_is_int(s) for s in steps):
            raise TypeError(
                f"Checkpointing: keep must map names to integer steps ({{'rewind': 500}}) or "
                f"list integer steps ((500, 1000)), got {self.keep!r}."
            )
        object.__setattr__(self, "keep", keep)


@dataclasses.dataclass(frozen=True)
class Logging:
    """What `fit` reports while it trains.

    Attributes:
      every: steps per train-metrics line (the mean over those steps).
      progress: show a tqdm progress bar.
      lr_schedule: optional schedule, only to log the learning rate (at the state's
        step; under RigL/SET the optimizer's own schedule lags by one step per mask
        update, as update steps skip the optimizer step).

    Example:
      >>> Logging(every=10, progress=False).every
      10
    """

    every: int = 100
    progress: bool = True
    lr_schedule: optax.Schedule | None = None

    def __post_init__(self):
        _check_count("Logging", "every", self.every)
        if not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"Logging: progress must be True or False, got {self.progress!r}.")
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise TypeError(
                f"Logging: lr_schedule must be a schedule `step -> lr` or None, got "
                f"{self.lr_schedule!r}."
            )


@dataclasses.dataclass(frozen=True)
class Parallel:
    """Where `fit` trains: the device mesh, the state's sharding, an ensemble axis.

    Attributes:
      mesh: device mesh; default all devices if the batch size divides evenly
        among them, else one device.
      sharding_rule: optional ``rule(path, leaf) -> PartitionSpec | None`` for the
        state (default: replicated).
      ensemble: the state is a stack of members (``stack_states``) trained at once
        with ``jax.vmap`` (and ``aux`` stacked the same way); on the same batches,
        or each on its own data order with ``fit(..., seed=(s0, s1, ...))``; metrics
        hold one value per member.

    Example:
      >>> Parallel(ensemble=True).mesh is None
      True
    """

    mesh: jax.sharding.Mesh | None = None
    sharding_rule: Callable | None = None
    ensemble: bool = False

    def __post_init__(self):
        if self.mesh is not None and not isinstance(self.mesh, jax.sharding.Mesh):
            raise TypeError(
                f"Parallel: mesh must be a jax.sharding.Mesh (make_mesh(k)) or None, got "
                f"{type(self.mesh).__name__}."
            )
        if self.sharding_rule is not None and not callable(self.sharding_rule):
            raise TypeError(
                f"Parallel: sharding_rule must be a function `(path, leaf) -> PartitionSpec` "
                f"or None, got {self.sharding_rule!r}."
            )
        if not isinstance(self.ensemble, (bool, np.bool_)):
            raise TypeError(f"Parallel: ensemble must be True or False, got {self.ensemble!r}.")


# The flat keywords `fit` took before the groups: old name -> (group keyword, field).
LEGACY = {
    "eval_data": ("eval", "data"),
    "eval_every": ("eval", "every"),
    "eval_batch_size": ("eval", "batch_size"),
    "checkpoint_every": ("checkpoints", "every"),
    "keep_last": ("checkpoints", "keep_last"),
    "keep": ("checkpoints", "keep"),
    "log_every": ("logging", "every"),
    "progress": ("logging", "progress"),
    "lr_schedule": ("logging", "lr_schedule"),
    "mesh": ("parallel", "mesh"),
    "sharding_rule": ("parallel", "sharding_rule"),
    "ensemble": ("parallel", "ensemble"),
}
GROUPS = {
    "eval": Evaluation,
    "checkpoints": Checkpointing,
    "logging": Logging,
    "parallel": Parallel,
}
