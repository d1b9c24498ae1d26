"""Cost of evaluating a linear path, as a ratio to one full evaluation of one model.

Two LeNet-300-100 states (different seeds) on the 10,000 Fashion-MNIST test images,
batch 1000. Timed, interleaved round by round so that machine noise hits every
variant alike (every program compiled before the first round):

- ``one model``: `train.evaluate` of one state, the reference (each round: the mean
  of `--repeats` calls, as the path's points are that many calls);
- ``path (vmapped)``: `train.evaluate_path` with `--points` points and its default
  chunk (on CPU 1 point per program call; elsewhere all points at once within the
  memory budget);
- ``path, chunk k``: the same with `chunk=k`, for each k of `--chunks`;
- ``points one by one``: each point's parameters interpolated (jitted) and
  evaluated alone with `train.evaluate`, point after point.

Every number is the median over rounds of the time of one call; the ratios are the
median (and range) over rounds of each round's time over that round's `one model`.
``vmapped / one by one`` below 1 means the vmapped path is faster.

Usage:
  python benchmarks/paths.py [--rounds 7] [--points 31] [--chunks 4,31]
      [--out benchmarks/results/paths_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402

from jaxprune import data, models, train  # noqa: E402


@jax.jit
def _point(pa, pb, alpha):
    return jax.tree.map(lambda x, y: (1 - alpha) * x + alpha * y, pa, pb)


def one_by_one(a: train.TrainState, b: train.TrainState, test, alphas, batch_size: int) -> list:
    """Each point interpolated and evaluated alone: the loop the vmapped path replaces."""
    out = []
    for alpha in alphas:
        state = a.replace(params=_point(a.params, b.params, jnp.float32(alpha)))
        out.append(train.evaluate(state, test, batch_size=batch_size)["loss"])
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--points", type=int, default=31)
    parser.add_argument("--chunks", default="4,31", help="comma list of chunk sizes")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="calls of one model per round")
    parser.add_argument("--out", default=None, help="write the results here (JSON)")
    args = parser.parse_args()
    test = data.load("fashion_mnist", "test")
    a, b = (
        train.create_train_state(models.create("lenet300_100", rngs=nnx.Rngs(i)), optax.sgd(0.1))
        for i in (0, 1)
    )
    alphas = np.linspace(0.0, 1.0, args.points)
    variants: dict[str, Callable[[], object]] = {
        "one model": lambda: [
            train.evaluate(a, test, batch_size=args.batch)["loss"] for _ in range(args.repeats)
        ],
        "path (vmapped)": lambda: (
            train.evaluate_path(a, b, test, alphas=args.points, batch_size=args.batch).loss
        ),
        "points one by one": lambda: one_by_one(a, b, test, alphas, args.batch),
    }
    for k in (int(c) for c in args.chunks.split(",") if c):
        variants[f"path, chunk {k}"] = lambda k=k: (
            train.evaluate_path(a, b, test, alphas=args.points, batch_size=args.batch, chunk=k).loss
        )
    info = overhead.machine()
    print(
        f"backend {info['backend']} ({info['device_kind']}), {info['cpu']}, "
        f"{len(test)} examples, {args.points} points, {args.rounds} rounds"
    )
    reference = np.asarray(variants["one model"]()[0])
    names = list(variants)
    path = np.asarray(variants["path (vmapped)"]())
    points = np.asarray(variants["points one by one"]())
    np.testing.assert_allclose(path, points, rtol=1e-4)  # the same numbers, or no comparison
    np.testing.assert_allclose(path[0], reference, rtol=1e-4)
    for n in names[3:]:  # compile the chunk variants before the first round
        variants[n]()
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            calls = args.repeats if n == "one model" else 1
            seconds[n].append(timed(variants[n]) / calls)
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {seconds[n][-1]:.3f}s" for n in names)
        )
    one = np.asarray(seconds["one model"])
    results = {}
    print(f"\n{'':<20} {'median':>9} {'ratio to one model (range)':>28}")
    for n in names:
        t = np.asarray(seconds[n])
        ratio = t / one
        results[n] = {
            "seconds": seconds[n],
            "median_s": float(np.median(t)),
            "ratio_to_one_model": float(np.median(ratio)),
            "ratio_range": [float(ratio.min()), float(ratio.max())],
        }
        print(
            f"{n:<20} {np.median(t):8.3f}s {np.median(ratio):9.2f}x "
            f"({ratio.min():.2f}-{ratio.max():.2f})"
        )
    vs = np.asarray(seconds["path (vmapped)"]) / np.asarray(seconds["points one by one"])
    summary = {
        "vmapped_over_one_by_one": float(np.median(vs)),
        "vmapped_over_one_by_one_range": [float(vs.min()), float(vs.max())],
        "default_chunk": train.paths._auto_chunk(a, test, args.batch, 0, args.points),
    }
    print(
        f"\nvmapped / one by one: {summary['vmapped_over_one_by_one']:.2f} "
        f"({vs.min():.2f}-{vs.max():.2f}); default chunk {summary['default_chunk']}"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "settings": vars(args) | {"model": "lenet300_100", "examples": len(test)},
                    "results": results,
                    "summary": summary,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
