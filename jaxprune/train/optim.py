"""Learning-rate schedules and optimizers the papers use, built from a config.

Each helper returns a plain optax object. `lr_schedule(config)` and
`optimizer(config)` read a flat mapping (a dict or an `ml_collections.ConfigDict`)
with the keys listed in their docstrings, so experiment configs stay data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxprune import filters

__all__ = [
    "constant",
    "step_decay",
    "cosine",
    "linear_warmup",
    "lr_schedule",
    "optimizer",
]


def constant(learning_rate: float) -> optax.Schedule:
    """A constant learning rate.

    Example:
      >>> float(constant(1.2e-3)(10_000))
      0.0012
    """
    return optax.constant_schedule(learning_rate)


def step_decay(
    learning_rate: float, boundaries: Sequence[int], factor: float | Sequence[float] = 0.1
) -> optax.Schedule:
    """Piecewise constant: multiply by `factor` at each step in `boundaries`.

    Args:
      learning_rate: the initial rate.
      boundaries: increasing steps at which the rate drops (the new rate applies
        from that step on).
      factor: one multiplier for every boundary, or one per boundary.

    Example (RigL's WRN-22-2: 0.1, divided by 5 at 30K, 60K and 90K steps):
      >>> s = step_decay(0.1, [30_000, 60_000, 90_000], 0.2)
      >>> [round(float(s(t)), 6) for t in (0, 30_000, 95_000)]
      [0.1, 0.02, 0.0008]
    """
    boundaries = [int(b) for b in boundaries]
    factors = [float(factor)] * len(boundaries) if _is_number(factor) else list(factor)
    if len(factors) != len(boundaries):
        raise ValueError(
            f"step_decay: got {len(boundaries)} boundaries but {len(factors)} factors; "
            "give one factor per boundary or a single number."
        )
    if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or any(b < 0 for b in boundaries):
        raise ValueError(
            f"step_decay: boundaries must be non-negative and increasing, got {boundaries}."
        )
    return optax.piecewise_constant_schedule(learning_rate, dict(zip(boundaries, factors)))


def cosine(learning_rate: float, total_steps: int, end_value: float = 0.0) -> optax.Schedule:
    """Cosine decay from `learning_rate` at step 0 to `end_value` at `total_steps`.

    Example:
      >>> round(float(cosine(0.1, 100)(50)), 6)
      0.05
    """
    if total_steps <= 0:
        raise ValueError(f"cosine: total_steps must be positive, got {total_steps}.")
    alpha = end_value / learning_rate if learning_rate else 0.0
    return optax.cosine_decay_schedule(learning_rate, total_steps, alpha=alpha)


def linear_warmup(schedule: optax.Schedule, warmup_steps: int) -> optax.Schedule:
    """Scales `schedule(t)` by `min(1, t / warmup_steps)`: a linear ramp from 0.

    The wrapped schedule keeps counting from step 0, so decay boundaries stay at
    the absolute steps a paper gives (as in open_lth's warmup).

    Example:
      >>> s = linear_warmup(constant(0.1), 10)
      >>> [round(float(s(t)), 6) for t in (0, 5, 10, 20)]
      [0.0, 0.05, 0.1, 0.1]
    """
    if warmup_steps <= 0:
        return schedule
    return lambda t: schedule(t) * jnp.minimum(1.0, t / warmup_steps)


_SCHEDULE_KEYS = {
    "learning_rate",
    "schedule",
    "boundaries",
    "decay_factor",
    "total_steps",
    "end_value",
    "warmup_steps",
}


def lr_schedule(config: Mapping[str, Any]) -> optax.Schedule:
    """Builds a learning-rate schedule from a flat config.

    Keys: `learning_rate` (required); `schedule`: "constant" (default), "step"
    (needs `boundaries`, optional `decay_factor`, default 0.1) or "cosine" (needs
    `total_steps`, optional `end_value`); `warmup_steps` (default 0) adds a
    linear warmup. Other keys are ignored only if they belong to `optimizer`.

    Example:
      >>> s = lr_schedule({"learning_rate": 0.1, "schedule": "step",
      ...                  "boundaries": [32_000, 48_000], "warmup_steps": 500})
      >>> round(float(s(250)), 6), round(float(s(40_000)), 6)
      (0.05, 0.01)
    """
    cfg = _as_dict(config, _SCHEDULE_KEYS | _OPTIMIZER_KEYS, "lr_schedule")
    if "learning_rate" not in cfg:
        raise KeyError("lr_schedule: the config has no 'learning_rate'; add one, e.g. 1e-3.")
    lr = float(cfg["learning_rate"])
    name = cfg.get("schedule", "constant")
    if name == "constant":
        schedule = constant(lr)
    elif name == "step":
        if "boundaries" not in cfg:
            raise KeyError("lr_schedule: schedule 'step' needs 'boundaries' (a list of steps).")
        schedule = step_decay(lr, cfg["boundaries"], cfg.get("decay_factor", 0.1))
    elif name == "cosine":
        if "total_steps" not in cfg:
            raise KeyError("lr_schedule: schedule 'cosine' needs 'total_steps'.")
        schedule = cosine(lr, int(cfg["total_steps"]), float(cfg.get("end_value", 0.0)))
    else:
        raise ValueError(
            f"lr_schedule: unknown schedule {name!r}; use 'constant', 'step' or 'cosine'."
        )
    return linear_warmup(schedule, int(cfg.get("warmup_steps", 0)))


_OPTIMIZER_KEYS = {
    "optimizer",
    "momentum",
    "weight_decay",
    "weight_decay_on",
    "b1",
    "b2",
    "eps",
    "grad_clip_norm",
}


def optimizer(
    config: Mapping[str, Any], schedule: optax.ScalarOrSchedule | None = None
) -> optax.GradientTransformation:
    """Builds an optax optimizer from a flat config.

    Keys: `optimizer`: "sgd", "momentum", "nesterov", "adam" or "adamw";
    `momentum` (default 0.9 for momentum/nesterov); `b1`, `b2`, `eps` for Adam;
    `weight_decay` (default 0): L2 added to the gradient for sgd/momentum/
    nesterov/adam (as the papers' code does), decoupled for adamw;
    `weight_decay_on`: "all" parameters (default, as PyTorch's optimizers in the
    lottery-ticket code) or "kernels" only (leaves with 2 or more dimensions, as
    RigL's code regularises);
    `grad_clip_norm` (optional): clip by global norm first. The learning rate is
    `schedule`, or `lr_schedule(config)` when not given.

    Example (Frankle & Carbin's LeNet-300-100):
      >>> tx = optimizer({"optimizer": "adam", "learning_rate": 1.2e-3})
    """
    cfg = _as_dict(config, _SCHEDULE_KEYS | _OPTIMIZER_KEYS, "optimizer")
    lr = lr_schedule(cfg) if schedule is None else schedule
    name = cfg.get("optimizer", "sgd")
    wd = float(cfg.get("weight_decay", 0.0))
    on = cfg.get("weight_decay_on", "all")
    if on not in ("all", "kernels"):
        raise ValueError(f"optimizer: weight_decay_on must be 'all' or 'kernels', got {on!r}.")
    decay_mask = None if on == "all" else _kernels
    parts = []
    if cfg.get("grad_clip_norm") is not None:
        parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))
    if wd and name != "adamw":
        parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    adam_args = {k: float(cfg[k]) for k in ("b1", "b2", "eps") if k in cfg}
    if name == "sgd":
        parts.append(optax.sgd(lr))
    elif name in ("momentum", "nesterov"):
        parts.append(optax.sgd(lr, float(cfg.get("momentum", 0.9)), nesterov=name == "nesterov"))
    elif name == "adam":
        parts.append(optax.adam(lr, **adam_args))
    elif name == "adamw":
        parts.append(optax.adamw(lr, weight_decay=wd, mask=decay_mask, **adam_args))
    else:
        raise ValueError(
            f"optimizer: unknown optimizer {name!r}; use 'sgd', 'momentum', "
            "'nesterov', 'adam' or 'adamw'."
        )
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


def _kernels(params: Any) -> Any:
    """The weight-decay mask of `weight_decay_on="kernels"`: `jaxprune.filters.kernels`."""
    return jax.tree.map(lambda x: filters.kernels("", x), params)


def _as_dict(config: Any, known: set[str], where: str) -> dict[str, Any]:
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise KeyError(f"{where}: unknown config keys {unknown}; known keys are {sorted(known)}.")
    return cfg


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float))
