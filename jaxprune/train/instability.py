"""Instability analysis: children that differ only in SGD noise, and the barrier between them.

Frankle, Dziugaite, Roy & Carbin, 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis": train a network to step k once; train two copies from there to
the end that differ only in their data order (and augmentation draws); evaluate the
network along the straight line between the two. The network is *stable* at k when
the error barrier on that line (its maximum minus the endpoints' mean) is under 2
points. The same holds for a sparse subnetwork: an IMP ticket rewound to k and its
two children trained under its mask.

:func:`train_children` trains the children of one state (or of a stack of states) as
one vmapped ensemble, each with its own data order (``fit(..., seed=(s0, s1))``),
resumable like any `fit`. :func:`imp_tickets` rebuilds the tickets of a round of
:func:`jaxprune.train.lottery.run_imp` from what it saved (the rewind checkpoint and
the round's masks), without training anything again. :func:`instability` measures
the paths between the children.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import jaxprune
from jaxprune.analysis import barrier
from jaxprune.train.checkpoint import restore_checkpoint
from jaxprune.train.fit import fit
from jaxprune.train.lottery import _at, _masked_state
from jaxprune.train.maskio import load_mask
from jaxprune.train.options import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.paths import evaluate_path
from jaxprune.train.state import TrainState, member, members_of, stack_states

__all__ = ["imp_tickets", "instability", "train_children"]


def train_children(
    parent: TrainState,
    train_data: Any,
    *,
    workdir: str,
    steps: int,
    batch_size: int,
    data_seeds: Sequence[int] = (1, 2),
    stacked: bool = False,
    augment: Any = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    config: Any = None,
) -> TrainState:
    """Trains children of `parent` to step `steps`, one per data order, as one vmapped stack.

    The children start from `parent` as it is (its step k, its optimizer state and
    schedule counts: training goes on from k) and differ only in their SGD noise:
    child `j` sees the data in the order of `data_seeds[j]` and draws its augmentation
    from `fold_in(parent.rng, data_seeds[j])`. Equal seeds give equal children, bit
    for bit. The run directory resumes like any `fit`'s.

    Args:
      parent: the state at step k; with `stacked`, a stack of `n` states
        (`stack_states`: several initialisations, or tickets) whose children all
        train at once.
      train_data: the training set (numpy `x`, `y`).
      workdir: the children's run directory.
      steps: the step the children's training ends at (the parent run's total).
      batch_size: examples per step.
      data_seeds: one data-order seed per child.
      stacked: `parent` is a stack of states.
      augment: optional jittable `augment(rng, x)`.
      checkpoint_every, progress, mesh, config: as for :func:`jaxprune.train.fit`.

    Returns:
      The children, stacked child-major: member `j * n + i` is the child of parent `i`
      in data order `data_seeds[j]` (`n = 1` unless `stacked`).

    Example:
      >>> from flax import nnx
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> import tempfile
      >>> parent = create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)),
      ...                             optax.sgd(0.1))
      >>> children = train_children(parent, testing.synthetic_dataset(64), steps=4,
      ...                           batch_size=16, workdir=tempfile.mkdtemp(), progress=False)
      >>> children.params["hidden"]["kernel"].shape
      (2, 16, 8)
    """
    seeds = tuple(data_seeds)
    if len(seeds) < 1:
        raise ValueError(f"data_seeds must name at least one data order; got {data_seeds!r}.")
    parents = [member(parent, i) for i in range(members_of(parent))] if stacked else [parent]
    children = [p.replace(rng=jax.random.fold_in(p.rng, s)) for s in seeds for p in parents]
    out = fit(
        stack_states(children),
        train_data,
        workdir=workdir,
        steps=steps,
        batch_size=batch_size,
        seed=[s for s in seeds for _ in parents],
        augment=augment,
        checkpoints=Checkpointing(every=checkpoint_every, keep_last=1),
        logging=Logging(progress=progress),
        parallel=Parallel(mesh=mesh, ensemble=True),
        eval=Evaluation(),
        config=config,
    )
    return out.state


def imp_tickets(
    imp_workdir: str, template: TrainState, round: int, *, random_key: jax.Array | None = None
) -> TrainState:
    """The tickets of round `round` of a `run_imp` directory, rewound to its rewind point.

    Nothing is trained: the weights at step k come from the dense run's checkpoint
    "rewind" (k > 0) or from `template` (k = 0: the initialisation), the masks from
    `round_NN/mask_seed<S>.npz`. As `run_imp` builds a round's tickets: the survivors
    of the rewound weights, a fresh optimizer (or the rewound one, if the run rewound
    it) whose schedule counts, like the step, stand at k.

    Args:
      imp_workdir: the directory `run_imp` wrote (rewinding "weights").
      template: `run_imp`'s initial stack: one state per seed of the run
        (`create_train_state(make_model(s), tx, seed=s)`, stacked), `tx` built as
        `run_imp` builds it (`jaxprune.masked(inner_tx, dense_mask)`).
      round: the pruning round (1, 2, ...) whose masks to use.
      random_key: if given, each mask is replaced by a random one with the same
        per-layer counts (`jaxprune.random_like`): the random-pruning baseline.

    Returns:
      The stack of tickets, one per seed of the run, at step k.

    Raises:
      ValueError: the run did not rewind weights, or `template` has another number
        of members than the run has seeds.
      FileNotFoundError: the round's masks are not there (the round has not run).
    """
    with open(os.path.join(imp_workdir, "config.json")) as f:
        record = json.load(f)
    imp, seeds = record["imp"], record["seeds"]
    if imp["rewind"] != "weights":
        raise ValueError(
            f"imp_tickets: the run in {imp_workdir} rewinds {imp['rewind']!r}; tickets rewound "
            "to step k need rewind='weights'."
        )
    if members_of(template) != len(seeds):
        raise ValueError(
            f"imp_tickets: template has {members_of(template)} members, the run in {imp_workdir} "
            f"has seeds {seeds}; stack one initial state per seed, in that order."
        )
    k = imp["rewind_step"]
    rewound = (
        restore_checkpoint(os.path.join(imp_workdir, "round_00"), template, "rewind")
        if k
        else template
    )
    round_dir = os.path.join(imp_workdir, f"round_{round:02d}")
    members = []
    for i, s in enumerate(seeds):
        base = member(rewound, i)
        mask = load_mask(os.path.join(round_dir, f"mask_seed{s}.npz"), base.params)
        if random_key is not None:
            mask = jaxprune.random_like(jax.random.fold_in(random_key, i), mask)
        members.append(_masked_state(base, template.tx, mask, imp["rewind_optimizer"]))
    return _at(stack_states(members))


def instability(
    children: TrainState,
    test_data: Any,
    *,
    parents: int = 1,
    alphas: int = 31,
    bn_data: Any = None,
    bn_batches: int = 10,
    bn_batch_size: int = 500,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """The error and loss barriers between children of the same parent, with their curves.

    Every pair of data orders of every parent is a path; each is evaluated at `alphas`
    evenly spaced points (endpoints included). Both barrier conventions are reported
    (`jaxprune.analysis.barrier`, over the interior points, signed, never clipped):
    ``"mean"`` (the maximum minus the endpoints' mean) and ``"linear"`` (the rise
    above the chord, Entezari et al. 2021). ``"instability"`` is Frankle et al.
    2020's definition: the maximum of the test error over the whole path, endpoints
    included, minus the endpoints' mean (so never below 0).

    Args:
      children: the stack :func:`train_children` returns (child-major).
      test_data: the data the paths are evaluated on.
      parents: the number of parents `n` of the stack (`n` > 1 for a stacked parent).
      alphas: points on each path.
      bn_data: training data to re-estimate batch statistics at every point (models
        with batch norm; required for them).
      bn_batches, bn_batch_size: how much of `bn_data` the statistics are averaged
        over (:func:`jaxprune.train.evaluate_path`).
      batch_size: examples per evaluation step.

    Returns:
      ``{"alphas", "paths": [one per pair: "parent", "orders", the "error", "loss"
      curves, "error_barrier" and "loss_barrier" ({"mean": ..., "linear": ...}),
      "instability", "accuracy" of its two endpoints], "error_barrier",
      "loss_barrier", "instability" (means over the paths), "accuracy" (mean over
      the endpoints), "bn_reestimated"}``.

    Example:
      >>> out = instability(children, test, alphas=11)  # doctest: +SKIP
      >>> out["error_barrier"]["mean"] < 0.02  # stable  # doctest: +SKIP
    """
    size = members_of(children)
    if parents < 1 or size % parents or size // parents < 2:
        raise ValueError(
            f"parents must divide the {size} children into at least two data orders each; "
            f"got parents={parents!r}. Pass the n of train_children's stacked parent."
        )
    orders = size // parents
    paths = []
    for i in range(parents):
        for a, b in itertools.combinations(range(orders), 2):
            path = evaluate_path(
                member(children, a * parents + i),
                member(children, b * parents + i),
                test_data,
                alphas=alphas,
                batch_size=batch_size,
                bn_data=bn_data,
                bn_batches=bn_batches,
                bn_batch_size=bn_batch_size,
            )
            paths.append(_path_record(i, (a, b), path))
    return {
        "alphas": np.asarray(path.alphas).tolist(),
        "paths": paths,
        **{
            f"{metric}_barrier": {
                ref: float(np.mean([p[f"{metric}_barrier"][ref] for p in paths]))
                for ref in _REFERENCES
            }
            for metric in ("error", "loss")
        },
        "instability": float(np.mean([p["instability"] for p in paths])),
        "accuracy": float(np.mean([p["accuracy"] for p in paths])),
        "bn_reestimated": bool(path.bn_reestimated),
    }


_REFERENCES = ("mean", "linear")


def _path_record(parent: int, orders: tuple[int, int], path: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"parent": parent, "orders": list(orders)}
    for metric in ("error", "loss"):
        curve = np.asarray(getattr(path, metric), np.float64)
        record[metric] = curve.tolist()
        record[f"{metric}_barrier"] = {
            ref: float(barrier(curve, path.alphas, reference=ref)) for ref in _REFERENCES
        }
    error = record["error"]
    # Frankle et al.'s maximum runs over [0, 1]: an endpoint may be the highest point.
    record["instability"] = max(record["error_barrier"]["mean"], abs(error[0] - error[-1]) / 2)
    record["accuracy"] = [float(path.accuracy[0]), float(path.accuracy[-1])]
    return record
