"""Inference time of slimmed models (whole units removed, `jaxprune.slim`) as ratios to the
dense model timed in the same run, interleaved round by round.

LeNet-300-100 (batch 1024 of 28x28x1) and Conv-4 (batch 256 of 32x32x3), eval mode, the
forward pass jitted; units pruned by `jaxprune.unit_mask` on the L1 norm of each unit's
weights (uniform: every group keeps round((1 - s) * size) units), at 50/75/90% of units
removed. Each round times every variant once (the median of ``--calls`` calls, after a
warm-up call); the ratios are medians over rounds of (variant / dense of that round).

Usage:
  python benchmarks/structured.py --rounds 5 --calls 20 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxprune  # noqa: E402
from jaxprune import models, rebasin  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402  (the benchmarks' one machine record)

MODELS = {"lenet300_100": (1024, (28, 28, 1)), "conv4": (256, (32, 32, 3))}
SPARSITIES = (0.5, 0.75, 0.9)


def _variants(name: str) -> tuple[dict[str, tuple], jax.Array]:
    """Variant name -> (jitted forward, variables) for dense and each sparsity; the input."""
    model = models.create(name, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)
    batch, shape = MODELS[name]
    x = jax.random.normal(jax.random.key(0), (batch, *shape))
    fn = jax.jit(lambda v, x: nnx.merge(graphdef, v)(x))
    spec = rebasin.permutation_spec(lambda v, x: nnx.merge(graphdef, v)(x), state, x[:2])
    scores = jaxprune.unit_scores(spec, nnx.state(model, nnx.Param))
    out = {"dense": (fn, state)}
    for s in SPARSITIES:
        mask = jaxprune.unit_mask(spec, scores, s, tree=state)
        out[f"{int(s * 100)}% units removed"] = (fn, jaxprune.slim(spec, state, mask))
    return out, x


def _time(fn, v, x, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(v, x).block_until_ready()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report = {"backend": jax.default_backend(), "machine": overhead.machine(), "models": {}}
    for name in MODELS:
        variants, x = _variants(name)
        for fn, v in variants.values():
            fn(v, x).block_until_ready()  # compile
        rows: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for k, (fn, v) in variants.items():
                rows[k].append(_time(fn, v, x, args.calls))
        dense = rows["dense"]
        result = {}
        for k, ts in rows.items():
            n = sum(leaf.size for leaf in jax.tree.leaves(variants[k][1]))
            ratio = statistics.median(t / d for t, d in zip(ts, dense))
            result[k] = {"params": int(n), "ms": 1e3 * statistics.median(ts), "ratio": ratio}
            print(f"{name:14s} {k:20s} {n:9d} params  {result[k]['ms']:8.3f} ms  x{ratio:.3f}")
        report["models"][name] = result
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
