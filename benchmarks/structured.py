"""Slimmed models (whole units removed, `jaxprune.slim`) against the dense and the masked
model: inference and training step time, parameter bytes and MACs, as ratios to the dense
model timed in the same run, interleaved round by round.

LeNet-300-100 (28x28x1 inputs; batch 1024 for inference, 128 for training) and Conv-4
(32x32x3; batch 256 for inference, 64 for training); units pruned
by `jaxprune.unit_mask` on the L1 norm of each unit's weights (uniform: every group keeps
round((1 - s) * size) units), at 50/75/90% of units removed. Per model and sparsity:

- inference (eval mode, the forward pass jitted): ``masked`` runs the dense shapes with
  the unit mask applied (pruned weights exactly 0), ``slimmed`` the smaller variables;
- a training step (forward, backward, adam update; jitted, in train mode): ``dense``;
  ``masked``: ``jaxprune.masked(adam, mask)`` from the masked weights; ``slimmed``: plain
  adam on the slimmed variables;
- ``unit mask update``: ``unit_scores`` and ``unit_mask`` (75%) of the whole model,
  jitted, against the dense training step;
- bytes of the variables each variant holds (``masked``: its kept values too), and the
  MACs per example of each (`jaxprune.cost_report` with ``slimmed=``).

Each round times every variant (forwards in even rounds, backwards in odd ones): the
median of ``--calls`` calls after a warm-up (training steps go on from their outputs).
A ratio is the median over rounds of (variant / dense of that round), with the range
over rounds. The JSON holds the machine (``overhead.machine()``) and the load
average before and after.

Usage:
  python benchmarks/structured.py --rounds 5 --calls 5 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxprune  # noqa: E402
from jaxprune import export, models, rebasin  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402  (the machine record and the train step)

# Model -> (inference batch, training batch, input shape).
MODELS = {"lenet300_100": (1024, 128, (28, 28, 1)), "conv4": (256, 64, (32, 32, 3))}
SPARSITIES = (0.5, 0.75, 0.9)
UPDATE_SPARSITY = 0.75

# Variant name -> (function, arguments); the dense variant of a table is its reference.
Variants = dict[str, tuple[Any, tuple]]


def _nbytes(tree: Any) -> int:
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(tree)))


def _setup(name: str) -> tuple[Variants, Variants, dict[str, Any]]:
    """The inference and the training variants of a model, and their bytes and MACs."""
    model = models.create(name, rngs=nnx.Rngs(0))
    model.eval()
    eval_def, params, rest = nnx.split(model, nnx.Param, ...)
    model.train()
    train_def = nnx.graphdef(model)
    variables = (nnx.as_pure(params), nnx.as_pure(rest))
    batch, train_batch, shape = MODELS[name]
    x = jax.random.normal(jax.random.key(0), (batch, *shape))
    labels = jax.random.randint(jax.random.key(1), (train_batch,), 0, 10)
    data = {"x": x[:train_batch], "y": labels}
    forward = lambda v, x: nnx.merge(eval_def, *v)(x)  # noqa: E731
    spec = rebasin.permutation_spec(forward, variables, x[:2])
    scores = jaxprune.unit_scores(spec, variables)
    infer = jax.jit(forward)
    adam = optax.adam(1e-3)

    def train(tx: optax.GradientTransformation, v: tuple) -> tuple[Any, tuple]:
        step = jax.jit(overhead._train_step(train_def, tx))
        return step, (v[0], v[1], tx.init(v[0]), data)

    inference: Variants = {"dense": (infer, (variables, x))}
    training: Variants = {"dense": train(adam, variables)}
    costs: dict[str, Any] = {"dense": {"bytes": _nbytes(variables)}}
    for s in SPARSITIES:
        mask = jaxprune.unit_mask(spec, scores, s, tree=variables)
        masked, small = jaxprune.apply_mask(variables, mask), jaxprune.slim(spec, variables, mask)
        pct = f"{round(100 * s)}%"
        inference[f"masked {pct}"] = (infer, (masked, x))
        inference[f"slimmed {pct}"] = (infer, (small, x))
        training[f"masked {pct}"] = train(jaxprune.masked(adam, mask[0]), masked)
        training[f"slimmed {pct}"] = train(adam, small)
        r = export.cost_report(forward, variables, mask, x[:1], slimmed=small)
        costs["dense"]["macs"] = r.macs
        costs[f"masked {pct}"] = {
            "bytes": _nbytes(masked),
            "kept_bytes": _nbytes(variables) - r.nbytes + r.kept_nbytes,
            "macs": r.kept_macs,
        }
        costs[f"slimmed {pct}"] = {"bytes": _nbytes(small), "macs": r.slimmed_macs}

    def update(v: tuple) -> Any:
        return jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, v), UPDATE_SPARSITY, tree=v)

    training["unit mask update"] = (jax.jit(update), (variables,))
    return inference, training, costs


def _time(fn: Any, args: tuple, calls: int) -> tuple[float, tuple]:
    """The median seconds of ``calls`` calls (robust to a busy machine's spikes); a
    training step (four arguments) goes on from its own output."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
        if len(args) == 4:
            args = (*out[:3], args[3])
    return statistics.median(times), args


def _rounds(variants: Variants, rounds: int, calls: int) -> dict[str, dict[str, Any]]:
    """Per variant: median ms per call, and the median and range over rounds of the
    ratio to the ``dense`` variant's time in the same round."""
    state = {k: args for k, (_, args) in variants.items()}
    for k, (fn, _) in variants.items():  # compile and warm up
        _, state[k] = _time(fn, state[k], 1)
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            t, state[k] = _time(variants[k][0], state[k], calls)
            times[k].append(t)
    out = {}
    for k, ts in times.items():
        ratios = [t / d for t, d in zip(ts, times["dense"])]
        out[k] = {
            "ms": 1e3 * statistics.median(ts),
            "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "backend": jax.default_backend(),
        "machine": overhead.machine(),
        "load_average_before": os.getloadavg(),
        "rounds": args.rounds,
        "calls": args.calls,
        "models": {},
    }
    for name in MODELS:
        inference, training, costs = _setup(name)
        result = {
            "costs": costs,
            "inference": _rounds(inference, args.rounds, args.calls),
            "training": _rounds(training, args.rounds, args.calls),
        }
        for kind in ("inference", "training"):
            for k, r in result[kind].items():
                lo, hi = r["ratio_range"]
                print(
                    f"{name:13s} {kind:9s} {k:16s} {r['ms']:9.3f} ms  x{r['ratio']:.3f}"
                    f" ({lo:.3f}-{hi:.3f})"
                )
        for k, c in costs.items():
            print(f"{name:13s} {k:16s} {c['bytes']:>11,} bytes  {c['macs']:>12,} MACs/example")
        report["models"][name] = result
    report["load_average_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
