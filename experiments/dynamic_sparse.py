"""Sparse training at a fixed sparsity: RigL vs SET vs static vs gradual magnitude vs
straight-through vs dense.

    python experiments/dynamic_sparse.py --config=experiments/configs/dynamic_sparse.py \
        --workdir=runs/dst_mnist1d
    python experiments/dynamic_sparse.py \
        --config=experiments/configs/dynamic_sparse.py:lenet5_fashion \
        --config.sparsities="(0.9,)" --workdir=runs/dst_lenet5

Methods: `static` (a random ERK mask, fixed), `set` and `rigl` (the same initial
mask per seed, rewired every `dst.update_every` steps until `dst.end_fraction` of
training, drop fraction `dst.drop_fraction` decayed by a cosine), `gmp` (dense
start, magnitude pruning on Zhu & Gupta's cubic schedule), `ste` (straight-through:
dense weights in the optimizer state, every forward pass with their top-k at the
target sparsity from the first update on, distributed like the initial masks),
`srste` (the same with SR-STE's decay of the pruned dense weights,
`srste.pruned_decay`; not in the configs' default `methods`) and `dense`. Each
(sparsity, method) trains its seeds as one vmapped ensemble, or one by one with
`--config.ensemble=False`. Rerunning the same command skips finished cells
and resumes the others. Writes results.json, results.md and accuracy_vs_sparsity.png
into --workdir.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
from absl import app
from ml_collections import ConfigDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeps  # noqa: E402

import jaxprune  # noqa: E402
from jaxprune import train  # noqa: E402

METHODS = ("dense", "static", "set", "rigl", "gmp", "ste", "srste")
LABELS = {
    "dense": "dense",
    "static": "static (random ERK)",
    "set": "SET (ERK)",
    "rigl": "RigL (ERK)",
    "gmp": "gradual magnitude",
    "ste": "straight-through (ERK)",
    "srste": "SR-STE (ERK)",
}
MASK_KEY = 0xE4C  # the random initial masks fold this into the seed's key


def gmp_window(config: ConfigDict, steps: int) -> tuple[int, int]:
    """Gradual magnitude pruning's (begin, end) steps: end lies on the update grid, so the
    final sparsity is reached at the last update.

    Example:
      >>> cfg = ConfigDict(dict(gmp=dict(begin_fraction=0.1, end_fraction=0.75, update_every=100)))
      >>> gmp_window(cfg, 10_000)
      (1000, 7500)
    """
    g = config.gmp
    begin = round(g.begin_fraction * steps)
    updates = max(1, int((g.end_fraction * steps - begin) // g.update_every))
    return begin, begin + updates * g.update_every


def make_tx(config: ConfigDict, method: str, sparsity: float, steps: int):
    """The optimizer of one method at one sparsity (shared by the seeds of a cell)."""
    inner = train.optimizer(config.optim, train.lr_schedule(config.optim))
    if method in ("dense", "static"):
        return jaxprune.masked(inner, jaxprune.dense_mask)  # static: masks set per member
    if method in ("rigl", "set"):
        dst = config.dst
        build = jaxprune.rigl if method == "rigl" else jaxprune.set_training
        return build(
            inner,
            sparsity,
            end_step=round(dst.end_fraction * steps),
            key=jax.random.key(0),  # replaced per member
            update_every=dst.update_every,
            drop_fraction=dst.drop_fraction,
            distribution=config.distribution,
        )
    if method == "gmp":
        begin, end = gmp_window(config, steps)
        return jaxprune.gradual_magnitude(
            inner,
            sparsity,
            begin_step=begin,
            end_step=end,
            update_every=config.gmp.update_every,
            distribution=config.gmp.distribution,
        )
    if method in ("ste", "srste"):
        decay = config.srste.pruned_decay if method == "srste" else 0.0
        return jaxprune.straight_through(
            inner, sparsity, distribution=config.distribution, pruned_decay=decay
        )
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}.")


def init_state(config: ConfigDict, member: sweeps.Member, tx, num_classes: int):
    """The member's initial state: its seed's init; static, SET and RigL start from the same
    random mask (per seed), SET and RigL rewire with the seed's own key."""
    model = sweeps.model_maker(config, num_classes)(member.seed)
    state = train.create_train_state(model, tx, seed=member.seed)
    if member.method not in ("static", "set", "rigl"):
        return state
    key = jax.random.fold_in(jax.random.key(member.seed), MASK_KEY)
    scores = jaxprune.scores.random(key, state.params)
    state = sweeps.with_mask(
        state, jaxprune.topk_mask(scores, member.sparsity, config.distribution)
    )
    if isinstance(state.opt_state, jaxprune.DSTState):
        state = state.replace(opt_state=state.opt_state._replace(key=jax.random.fold_in(key, 1)))
    return state


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the sweep into `workdir`; returns the summary.

    Example:
      >>> from experiments.configs.dynamic_sparse import get_config  # doctest: +SKIP
      >>> run(get_config("smoke"), "/tmp/dst")["rigl"]["0.9"]["mean"]  # doctest: +SKIP
    """
    train_ds, test_ds = sweeps.datasets(config)
    steps = sweeps.total_steps(config, len(train_ds))
    return sweeps.run_sweep(
        config,
        workdir,
        methods=METHODS,
        labels={**LABELS, "srste": f"SR-STE (ERK, decay {config.srste.pruned_decay:g})"},
        title=f"Sparse training: {config.model} on {config.dataset}",
        tx_key=lambda m: m.method,
        make_tx=lambda m: make_tx(config, m.method, m.sparsity, steps),
        init_state=lambda m, tx: init_state(config, m, tx, train_ds.num_classes),
        data_splits=(train_ds, test_ds),
        cell_config={"experiment": "dynamic_sparse", "gmp_window": gmp_window(config, steps)},
        method_fields={"srste": "srste"},
        progress=progress,
    )


if __name__ == "__main__":
    sweeps.define_flags("experiments/configs/dynamic_sparse.py:lenet5_fashion")
    app.run(sweeps.main(run))
