"""Pruning at initialisation: SNIP, GraSP, SynFlow, magnitude and random masks, then training.

    python -m experiments.prune_at_init --config=experiments/configs/prune_at_init.py \
        --workdir=runs/pai_mnist1d
    python -m experiments.prune_at_init \
        --config=experiments/configs/prune_at_init.py:lenet_fashion \
        --config.sparsities="(0.95, 0.98)" --workdir=runs/pai_lenet

For every seed and sparsity each method prunes the seed's initial weights once
(exact counts, global ranking by default, biases dense) and the subnetwork is
trained with the config's optimizer; a dense net per seed is the baseline.
Methods: `snip` (train the same init, the paper's algorithm), `snip_fresh` (the
SNIP mask on a fresh init, what its public code does), `grasp`, `synflow`
(100 data-free rounds), `magnitude` (|w| at init) and `random` (uniform per
layer); and, only when `--config.methods` names them, `snip_shuffled`,
`grasp_shuffled` and `synflow_shuffled`: that method's mask shuffled at random
within each layer (`jaxprune.random_like`: the same per-layer counts, the random
baseline of Frankle, Dziugaite, Roy & Carbin, 2021, "Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?"), trained from the same init.
All methods and seeds of one sparsity train together as one vmapped ensemble
(`--config.ensemble=False` trains them one by one). Rerunning the same command
skips finished cells and resumes the others. Writes results.json, results.md and
accuracy_vs_sparsity.png into --workdir.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from absl import app
from ml_collections import ConfigDict

import jaxprune
from experiments import sweeps
from jaxprune import train

SHUFFLED = ("snip_shuffled", "grasp_shuffled", "synflow_shuffled")
METHODS = ("dense", "snip", "snip_fresh", "grasp", "synflow", "magnitude", "random", *SHUFFLED)
LABELS = {
    "dense": "dense",
    "snip": "SNIP (same init)",
    "snip_fresh": "SNIP (fresh init)",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "magnitude": "magnitude at init",
    "random": "random",
    "snip_shuffled": "SNIP, shuffled per layer",
    "grasp_shuffled": "GraSP, shuffled per layer",
    "synflow_shuffled": "SynFlow, shuffled per layer",
}
SHUFFLE_KEY = 0x5A18  # the within-layer shuffles fold this into the seed's key
FRESH = 10_000  # a fresh init for seed s is drawn from seed s + FRESH
MASK_KEY = 0x5A17  # random masks fold this into the seed's key


def score_batch(train_ds: Any, size: int, seed: int) -> dict[str, np.ndarray]:
    """The minibatch SNIP and GraSP score on: `size` random training examples."""
    idx = np.random.default_rng([seed, MASK_KEY]).permutation(len(train_ds.y))[:size]
    return {"x": train_ds.x[idx], "y": train_ds.y[idx]}


def init_mask(config: ConfigDict, member: sweeps.Member, state: train.TrainState, train_ds: Any):
    """The mask `member.method` finds on the initial weights of `state`."""
    s, method = member.sparsity, member.method
    if method in SHUFFLED:  # the method's per-layer counts, placed at random
        base = dataclasses.replace(member, method=method[: -len("_shuffled")])
        found = init_mask(config, base, state, train_ds)
        key = jax.random.fold_in(jax.random.key(member.seed), SHUFFLE_KEY)
        return jaxprune.random_like(key, found)
    options = dict(distribution=config.distribution)

    def loss_fn(params, batch, temperature=1.0):
        logits, _ = train.apply_model(state, batch["x"], train=True, params=params)
        return train.cross_entropy(logits / temperature, batch["y"])

    def apply_fn(params, x):
        return train.apply_model(state, x, train=False, params=params)[0]

    batch = score_batch(train_ds, config.score_batch_size, member.seed)
    if method in ("snip", "snip_fresh"):
        return jaxprune.snip_mask(loss_fn, state.params, batch, s, **options)
    if method == "grasp":
        return jaxprune.grasp_mask(
            loss_fn, state.params, batch, s, temperature=config.grasp_temperature, **options
        )
    if method == "synflow":
        shape = (1, *train_ds.x.shape[1:])
        return jaxprune.synflow_mask(
            apply_fn, state.params, shape, s, rounds=config.synflow_rounds, **options
        )
    if method == "magnitude":
        return jaxprune.magnitude_mask(state.params, s, **options)
    if method == "random":
        key = jax.random.fold_in(jax.random.key(member.seed), MASK_KEY)
        return jaxprune.random_mask(key, state.params, s, distribution=config.random_distribution)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}.")


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the sweep into `workdir`; returns the summary.

    Example:
      >>> from experiments.configs.prune_at_init import get_config  # doctest: +SKIP
      >>> run(get_config("smoke"), "/tmp/pai")["snip"]["0.9"]["mean"]  # doctest: +SKIP
    """
    train_ds, test_ds = sweeps.datasets(config)
    inner = train.optimizer(config.optim, train.lr_schedule(config.optim))
    tx = jaxprune.masked(inner, jaxprune.dense_mask)  # one object: members differ in masks

    def init_state(member: sweeps.Member, tx: optax.GradientTransformation) -> train.TrainState:
        model = sweeps.model_maker(config, train_ds.num_classes)(member.seed)
        state = train.create_train_state(model, tx, seed=member.seed)
        if member.method == "dense":
            return state
        mask = init_mask(config, member, state, train_ds)
        if member.method == "snip_fresh":
            fresh = sweeps.model_maker(config, train_ds.num_classes)(member.seed + FRESH)
            state = train.create_train_state(fresh, tx, seed=member.seed)
        return sweeps.with_mask(state, mask)

    return sweeps.run_sweep(
        config,
        workdir,
        methods=METHODS,
        labels=LABELS,
        title=f"Pruning at initialisation: {config.model} on {config.dataset}",
        tx_key=lambda m: "dense" if m.method == "dense" else "masked",
        make_tx=lambda m: tx,
        init_state=init_state,
        data_splits=(train_ds, test_ds),
        cell_config={"experiment": "prune_at_init", "fresh_seed_offset": FRESH},
        progress=progress,
    )


if __name__ == "__main__":
    sweeps.define_flags("experiments/configs/prune_at_init.py:lenet_fashion")
    app.run(sweeps.main(run))
