"""Sparse training at a fixed sparsity: RigL vs SET vs static vs gradual magnitude vs
straight-through vs dense.

    python -m experiments.dynamic_sparse --config=experiments/configs/dynamic_sparse.py \
        --workdir=runs/dst_mnist1d
    python -m experiments.dynamic_sparse \
        --config=experiments/configs/dynamic_sparse.py:lenet5_fashion \
        --config.sparsities="(0.9,)" --workdir=runs/dst_lenet5

Methods: `static` (a random ERK mask, fixed), `set` and `rigl` (the same initial
mask per seed, rewired every `dst.update_every` steps until `dst.end_fraction` of
training, drop fraction `dst.drop_fraction` decayed by a cosine), `gmp` (dense
start, magnitude pruning on Zhu & Gupta's cubic schedule), `ste` (straight-through:
dense weights in the optimizer state, every forward pass with their top-k at the
target sparsity from the first update on, distributed like the initial masks) and
`dense`; and, only when `--config.methods` names them, `srste` (straight-through with
SR-STE's decay of the pruned dense weights, `srste.pruned_decay`), `ste_nm` and
`srste_nm` (the same two with an N:M mask along the kernels' input axis instead of
the ERK top-k: n = (1 - sparsity) * `nm.m` of every `nm.m`, so 0.5 and 0.75 with
m = 4; every kernel's input size must split into runs of m) and `static_nm` (a
random N:M mask, fixed). Each (sparsity, method) trains its seeds as one vmapped
ensemble, or one by one with `--config.ensemble=False`. Rerunning the same command
skips finished cells and resumes the others. Writes results.json, results.md and
accuracy_vs_sparsity.png into --workdir.
"""

from __future__ import annotations

from typing import Any

import jax
from absl import app
from ml_collections import ConfigDict

import jaxprune
from experiments import sweeps
from jaxprune import train

METHODS = (
    "dense",
    "static",
    "set",
    "rigl",
    "gmp",
    "ste",
    "srste",
    "static_nm",
    "ste_nm",
    "srste_nm",
)
NM_METHODS = ("static_nm", "ste_nm", "srste_nm")
LABELS = {
    "dense": "dense",
    "static": "static (random ERK)",
    "set": "SET (ERK)",
    "rigl": "RigL (ERK)",
    "gmp": "gradual magnitude",
    "ste": "straight-through (ERK)",
    "srste": "SR-STE (ERK)",
    "static_nm": "static N:M (random)",
    "ste_nm": "straight-through N:M",
    "srste_nm": "SR-STE N:M",
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
    if method in ("dense", "static", "static_nm"):
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
    if method in ("ste", "srste", "ste_nm", "srste_nm"):
        decay = config.srste.pruned_decay if method.startswith("srste") else 0.0
        if method in NM_METHODS:
            return jaxprune.straight_through(
                inner, n_m=nm_of(sparsity, config.nm.m), pruned_decay=decay
            )
        return jaxprune.straight_through(
            inner, sparsity, distribution=config.distribution, pruned_decay=decay
        )
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}.")


def nm_of(sparsity: float, m: int) -> tuple[int, int]:
    """The N:M pattern of a sparsity: ``(n, m)`` with ``n = (1 - sparsity) * m``, which
    must be a whole number from 1 to m.

    Example:
      >>> nm_of(0.5, 4), nm_of(0.75, 4), nm_of(0.9, 10)
      ((2, 4), (1, 4), (1, 10))
    """
    n = (1 - sparsity) * m
    if abs(n - round(n)) > 1e-6 or not 1 <= round(n) <= m:
        raise ValueError(
            f"The N:M methods {NM_METHODS} keep n = (1 - sparsity) * nm.m of every nm.m "
            f"weights: sparsity {sparsity} with nm.m = {m} gives n = {n:g}, not a whole "
            f"number from 1 to {m}. With nm.m = {m} choose sparsities from "
            f"{[round(1 - k / m, 6) for k in range(1, m)]}, or another nm.m."
        )
    return round(n), m


def init_state(config: ConfigDict, member: sweeps.Member, tx, num_classes: int):
    """The member's initial state: its seed's init; static, SET and RigL start from the same
    random mask (per seed), SET and RigL rewire with the seed's own key; static N:M from
    the random N:M mask of the same scores."""
    model = sweeps.model_maker(config, num_classes)(member.seed)
    state = train.create_train_state(model, tx, seed=member.seed)
    if member.method not in ("static", "set", "rigl", "static_nm"):
        return state
    key = jax.random.fold_in(jax.random.key(member.seed), MASK_KEY)
    scores = jaxprune.scores.random(key, state.params)
    if member.method == "static_nm":
        return sweeps.with_mask(
            state, jaxprune.nm_mask(scores, *nm_of(member.sparsity, config.nm.m))
        )
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
    if any(m in NM_METHODS for m in config.methods):
        for s in config.sparsities:  # before any training
            nm_of(s, config.nm.m)
    train_ds, test_ds = sweeps.datasets(config)
    steps = sweeps.total_steps(config, len(train_ds))
    decay = f"decay {config.srste.pruned_decay:g}"
    return sweeps.run_sweep(
        config,
        workdir,
        methods=METHODS,
        labels={
            **LABELS,
            "srste": f"SR-STE (ERK, {decay})",
            "static_nm": f"static N:M (m = {config.nm.m}, random)",
            "ste_nm": f"straight-through N:M (m = {config.nm.m})",
            "srste_nm": f"SR-STE N:M (m = {config.nm.m}, {decay})",
        },
        title=f"Sparse training: {config.model} on {config.dataset}",
        tx_key=lambda m: m.method,
        make_tx=lambda m: make_tx(config, m.method, m.sparsity, steps),
        init_state=lambda m, tx: init_state(config, m, tx, train_ds.num_classes),
        data_splits=(train_ds, test_ds),
        cell_config={"experiment": "dynamic_sparse", "gmp_window": gmp_window(config, steps)},
        method_fields={"srste": ("srste", "srste_nm"), "nm": NM_METHODS},
        progress=progress,
    )


if __name__ == "__main__":
    sweeps.define_flags("experiments/configs/dynamic_sparse.py:lenet5_fashion")
    app.run(sweeps.main(run))
