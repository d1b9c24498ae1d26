"""Is a vmapped ensemble faster than its members one by one? Time per member of a train step.

For each model, one jitted train step of a single member (Adam under `jaxprune.masked`,
batch 60, Fashion-MNIST-shaped inputs) and of an ensemble of `--members` stacked members
(`make_train_step(ensemble=True)`, as `fit(..., ensemble=True)` runs it) are timed,
interleaved round by round; every number is the median over rounds of the mean time
per call. The ratio > 1 means the ensemble is slower per member than one model alone.
`--transform rigl` times RigL (90%, ERK) instead, on steps without a mask update: the
members share their step counter (`stack_states` keeps equal integer scalars unstacked),
so under `vmap` RigL's mask update (a loop of at most one iteration) stays a branch and
the ensemble skips the update too.

Usage:
  python benchmarks/ensemble.py [--models lenet300_100:18,lenet5:3] [--rounds 5] [--calls 40]
      [--transform masked|rigl]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxprune
from jaxprune import models, train


def timer(step, state, batch, calls: int):
    """A function timing `calls` steps from `state` (compiled once beforehand)."""
    jax.block_until_ready(step(state, batch, None))

    def run() -> float:
        s = state
        t = time.perf_counter()
        for _ in range(calls):
            s, _ = step(s, batch, None)
        jax.block_until_ready(s)
        return (time.perf_counter() - t) / calls

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet300_100:18,lenet5:3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40, help="steps per timing (< 100)")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--transform", choices=("masked", "rigl"), default="masked")
    args = parser.parse_args()
    if args.transform == "rigl":  # the first update would be at step 100: never reached
        tx = jaxprune.rigl(optax.adam(1e-3), 0.9, end_step=10**6, key=jax.random.key(0))
    else:
        tx = jaxprune.masked(optax.adam(1e-3), jaxprune.dense_mask)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.normal(size=(args.batch, 28, 28, 1)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32),
    }
    print(f"{'model':<14} {'members':>7} {'1 model':>10} {'ensemble':>10} {'per member':>11} ratio")
    for spec in args.models.split(","):
        name, n = spec.split(":")
        states = [
            train.create_train_state(models.create(name, rngs=nnx.Rngs(i)), tx, seed=i)
            for i in range(int(n))
        ]
        one = timer(train.make_train_step(), states[0], batch, args.calls)
        many = timer(
            train.make_train_step(ensemble=True), train.stack_states(states), batch, args.calls
        )
        times = np.array([[one(), many()] for _ in range(args.rounds)])
        t1, tn = np.median(times, axis=0)
        print(
            f"{name:<14} {n:>7} {1e3 * t1:>8.2f}ms {1e3 * tn:>8.2f}ms {1e3 * tn / int(n):>9.2f}ms "
            f"{tn / int(n) / t1:.2f}"
        )


if __name__ == "__main__":
    main()
