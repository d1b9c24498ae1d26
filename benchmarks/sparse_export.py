"""Inference through sparse layouts as ratios to the dense masked network in the same run.

LeNet-300-100 (784-300-100-10, ``models.create("lenet300_100")``), its three kernels
masked by global magnitude at each sparsity; one jitted forward pass per call:

- ``dense``: the masked network with dense kernels (zeros multiplied);
- ``dense (again)``: the very same function timed again: its ratio (ideally 1.00)
  shows the noise of the measurement;
- ``bcoo``: the same ``apply_fn`` through ``export.sparse_apply`` on
  ``export.to_bcoo`` kernels (``bcoo_dot_general``);
- ``2:4 nm_matmul`` (at 50% only, the sparsity of 2:4): a 2:4 magnitude mask
  (``nm_mask``) and every layer through ``export.nm_matmul`` (kept values and
  positions), against the dense network under that same 2:4 mask.

Batch 128 and batch 1. Variants are interleaved round by round (every other round
backwards); each number is the median over rounds of the mean time per call, and the
paired ratio the median of each round's time over the dense time of that round.
``--json`` writes the numbers with the machine and the versions.

Usage:
  python benchmarks/sparse_export.py [--rounds 15] [--calls 50]
      [--sparsities 0.5,0.9,0.95,0.99] [--batches 128,1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402

import jaxprune  # noqa: E402
from jaxprune import export, models  # noqa: E402


def _network():
    graphdef, params = nnx.split(models.create("lenet300_100", rngs=nnx.Rngs(0)), nnx.Param)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), nnx.as_pure(params)


def _nm_apply(p, x):
    """LeNet-300-100's forward pass with every kernel an ``export.NMKernel``."""
    h = x.reshape(x.shape[0], -1)
    for layer in p["hidden"].values():
        h = jax.nn.relu(export.nm_matmul(h, layer["kernel"]) + layer["bias"])
    return export.nm_matmul(h, p["head"]["kernel"]) + p["head"]["bias"]


def _nm_params(params, mask):
    def one(path, p):
        names = [getattr(k, "key", None) for k in path]
        if names[-1] != "kernel":
            return p
        m = mask
        for n in names:
            m = m[n]
        return export.to_nm(p, m, 2, 4)

    return jax.tree_util.tree_map_with_path(one, nnx.to_pure_dict(params))


def variants(sparsity: float, batch: int) -> dict:
    apply, params = _network()
    x = jax.random.normal(jax.random.key(1), (batch, 28, 28, 1))
    dense_fn = jax.jit(apply)
    if sparsity is None:  # 2:4
        mask = jaxprune.nm_mask(jaxprune.scores.magnitude(params), 2, 4)
        nm = _nm_params(jaxprune.apply_mask(params, mask), nnx.to_pure_dict(mask))
        masked = jaxprune.apply_mask(params, mask)
        return {
            "dense": (dense_fn, (masked, x)),
            "dense (again)": (dense_fn, (masked, x)),
            "2:4 nm_matmul": (jax.jit(_nm_apply), (nm, x)),
        }
    mask = jaxprune.magnitude_mask(params, sparsity)
    masked = jaxprune.apply_mask(params, mask)
    return {
        "dense": (dense_fn, (masked, x)),
        "dense (again)": (dense_fn, (masked, x)),
        "bcoo": (jax.jit(export.sparse_apply(apply)), (export.to_bcoo(params, mask), x)),
    }


def run(sparsity, batch, rounds, calls) -> dict:
    vs = variants(sparsity, batch)
    want = np.asarray(vs["dense"][0](*vs["dense"][1]))
    for k, (fn, args) in vs.items():  # compile, warm up, and check the outputs agree
        got = np.asarray(jax.block_until_ready(fn(*args)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=k)
    times = {k: [] for k in vs}
    order = list(vs)
    for r in range(rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            fn, args = vs[k]
            t0 = time.perf_counter()
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - t0) / calls)
    med = {k: float(np.median(v)) for k, v in times.items()}
    paired = {k: np.asarray(v) / np.asarray(times["dense"]) for k, v in times.items()}
    return {
        "us": {k: 1e6 * v for k, v in med.items()},
        "ratio_to_dense": {k: v / med["dense"] for k, v in med.items()},
        "paired_ratio": {k: float(np.median(v)) for k, v in paired.items()},
        "paired_quartiles": {
            k: [float(np.percentile(v, 25)), float(np.percentile(v, 75))] for k, v in paired.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=50, help="calls per variant per round")
    parser.add_argument("--sparsities", default="0.5,0.9,0.95,0.99")
    parser.add_argument("--batches", default="128,1")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    info = overhead.machine()
    print(
        f"{info['cpu']} ({info['cpu_count']} cores), backend {info['backend']}, jax {info['jax']}"
    )
    results = []
    for batch in map(int, args.batches.split(",")):
        cases = [float(s) for s in args.sparsities.split(",")]
        for sparsity in cases + ([None] if 0.5 in cases else []):
            r = run(sparsity, batch, args.rounds, args.calls)
            results.append({"batch": batch, "sparsity": sparsity or "2:4", **r})
            for k in r["us"]:
                if k == "dense":
                    continue
                q1, q3 = r["paired_quartiles"][k]
                print(
                    f"batch {batch:4d}  sparsity {sparsity or '2:4':>4}  {k:<14} "
                    f"{r['us'][k]:9.1f} us  dense {r['us']['dense']:9.1f} us  "
                    f"ratio {r['ratio_to_dense'][k]:5.2f}x  paired {r['paired_ratio'][k]:5.2f}x "
                    f"({q1:.2f}-{q3:.2f})"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "settings": vars(args), "results": results}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
