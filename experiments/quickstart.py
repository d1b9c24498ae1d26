"""A first sparse run: a one-shot lottery ticket on MNIST-1D.

Trains the MNIST-1D MLP dense, prunes 90% of its weights by magnitude (ERK
distribution), then retrains the survivors from their initial values (the
ticket) and, as the baseline, from a fresh initialisation with the same mask.
Uses only the core API in a plain optax loop: ``topk_mask``, ``apply_mask``,
``masked``.

  python -m experiments.quickstart [--sparsity 0.9] [--epochs 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from tqdm import tqdm

import jaxprune
from jaxprune import data, models


def train(graphdef, params, mask, train_set, test_set, *, epochs, seed, desc):
    """Adam under the mask; returns the final parameters and test accuracy."""
    tx = jaxprune.masked(optax.adam(1e-3), mask)
    opt_state = tx.init(params)

    def loss_fn(p, x, y):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    accuracy = jax.jit(lambda p, x, y: jnp.mean(jnp.argmax(nnx.merge(graphdef, p)(x), -1) == y))
    bar = tqdm(range(epochs), desc=desc, leave=False)
    for epoch in bar:
        for batch in data.batches(train_set, 100, seed=seed, epoch=epoch):
            params, opt_state, loss = step(params, opt_state, batch["x"], batch["y"])
        bar.set_postfix(loss=f"{float(loss):.3f}")
    return params, float(accuracy(params, test_set.x, test_set.y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    train_set, test_set = data.load("mnist1d", "train"), data.load("mnist1d", "test")
    graphdef, init = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(args.seed)))
    _, fresh = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(args.seed + 1000)))
    common = dict(train_set=train_set, test_set=test_set, epochs=args.epochs, seed=args.seed)

    dense_mask = jaxprune.dense_mask(init)
    trained, dense_acc = train(graphdef, init, dense_mask, desc="dense", **common)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(trained), args.sparsity, "erk")
    print(jaxprune.sparsity_report(mask))
    _, ticket_acc = train(
        graphdef, jaxprune.lottery.rewind(init, mask), mask, desc="ticket", **common
    )
    _, reinit_acc = train(
        graphdef, jaxprune.lottery.random_reinit(fresh, mask), mask, desc="random reinit", **common
    )
    print(f"\nMNIST-1D MLP, {args.epochs} epochs, seed {args.seed}, test accuracy:")
    print(f"  dense                         {dense_acc:.3f}")
    print(f"  ticket at {100 * (1 - args.sparsity):.0f}% weights (rewound)  {ticket_acc:.3f}")
    print(f"  same mask, fresh init         {reinit_acc:.3f}")
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
