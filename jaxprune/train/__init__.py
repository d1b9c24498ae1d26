"""The training engine: TrainState, jitted steps, schedules, checkpoints, `fit`.

Example:
  >>> from jaxprune import train
  >>> state = train.create_train_state(model, train.optimizer(cfg), seed=0)  # doctest: +SKIP
  >>> out = train.fit(state, ds, workdir="runs/a", batch_size=60, steps=1000,
  ...                 eval=train.Evaluation(data=test, every=250))  # doctest: +SKIP
"""

from jaxprune.train.checkpoint import Checkpoints, CheckpointWarning, restore_checkpoint
from jaxprune.train.colt import run_colt
from jaxprune.train.data_scores import (
    ScoringRun,
    correctness,
    el2n_scores,
    forgetting_events,
    grand_scores,
    train_for_scores,
)
from jaxprune.train.deadunits import member_dead_units
from jaxprune.train.fit import FitResult, fit
from jaxprune.train.instability import imp_tickets, instability, train_children
from jaxprune.train.maskio import load_mask, save_mask
from jaxprune.train.optim import constant, cosine, linear_warmup, lr_schedule, optimizer, step_decay
from jaxprune.train.options import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.paths import PathResult, evaluate_path, reestimate_batch_stats
from jaxprune.train.rebasin import align_state, evaluate_aligned_path, state_apply, state_spec
from jaxprune.train.rundir import RunDir, read_metrics
from jaxprune.train.sharding import make_mesh, place_state, replicated, shard_batch, state_sharding
from jaxprune.train.state import (
    TrainState,
    apply_model,
    create_train_state,
    ensemble_axes,
    member,
    stack_states,
    to_model,
)
from jaxprune.train.steps import (
    cross_entropy,
    eval_step,
    evaluate,
    make_eval_step,
    make_train_step,
    train_step,
)

__all__ = [
    "CheckpointWarning",
    "Checkpointing",
    "Checkpoints",
    "Evaluation",
    "FitResult",
    "Logging",
    "Parallel",
    "PathResult",
    "RunDir",
    "ScoringRun",
    "TrainState",
    "align_state",
    "apply_model",
    "constant",
    "correctness",
    "cosine",
    "create_train_state",
    "cross_entropy",
    "el2n_scores",
    "ensemble_axes",
    "eval_step",
    "evaluate",
    "evaluate_aligned_path",
    "evaluate_path",
    "fit",
    "forgetting_events",
    "grand_scores",
    "imp_tickets",
    "instability",
    "linear_warmup",
    "load_mask",
    "lr_schedule",
    "make_eval_step",
    "make_mesh",
    "make_train_step",
    "member",
    "member_dead_units",
    "optimizer",
    "place_state",
    "read_metrics",
    "reestimate_batch_stats",
    "replicated",
    "restore_checkpoint",
    "run_colt",
    "save_mask",
    "shard_batch",
    "stack_states",
    "state_apply",
    "state_sharding",
    "state_spec",
    "step_decay",
    "to_model",
    "train_children",
    "train_for_scores",
    "train_step",
]
