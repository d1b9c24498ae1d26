"""Compile time and run time of one exact selection alone, on the MLP's three layers
(or ResNet-20's 22 kernels, ``--model resnet20``).

Cases: ``topk`` (90% sparsity in every layer, magnitude scores), ``drop`` (RigL's
drop: 70% of a random 10% kept, ``within`` the mask) and ``grow`` (RigL's growth:
30% of that count among the other 90%). Compile time is the fastest of ``--compiles``
fresh compilations (a new program each, so no cache hit); run time the median over
``--rounds`` rounds of ``--calls`` calls; ``kernels`` counts the compiled
program's fusions, scatters, dots, gathers and reduces (what XLA:CPU compiles one
by one; a count that does not depend on the machine's load). Absolute times, for
comparing library versions on one machine (run it with ``PYTHONPATH=<checkout>``),
not ratios.

Usage:
  python benchmarks/select_cost.py [--methods radix,sort] [--model mlp] [--rounds 30] [--calls 20]
"""

from __future__ import annotations

import argparse
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import select

SHAPES = {
    "mlp": [(784, 300), (300, 100), (100, 10)],
    "resnet20": [(3, 3, 3, 16)]
    + [(3, 3, 16, 16)] * 6
    + [(3, 3, 16, 32), (3, 3, 32, 32), (1, 1, 16, 32)]
    + [(3, 3, 32, 32)] * 4
    + [(3, 3, 32, 64), (3, 3, 64, 64), (1, 1, 32, 64)]
    + [(3, 3, 64, 64)] * 4
    + [(64, 10)],
}
KERNELS = ("fusion", "scatter", "dot", "gather", "reduce")


def cases(shapes) -> dict[str, tuple[list, list, list[int]]]:
    """Scores, within masks and per-layer counts of each case."""
    w = [jnp.abs(jax.random.normal(jax.random.key(i), s)) for i, s in enumerate(shapes)]
    m = [jax.random.uniform(jax.random.key(9 + i), s) < 0.1 for i, s in enumerate(shapes)]
    active = [int(x.sum()) for x in m]
    return {
        "topk": (w, [None] * len(w), [round(0.1 * x.size) for x in w]),
        "drop": (w, m, [int(a * 0.7) for a in active]),
        "grow": (w, [~x for x in m], [int(a * 0.3) for a in active]),
    }


def time_rounds(f, args: tuple, rounds: int, calls: int) -> list[float]:
    """Milliseconds per call of ``f(*args)``, one mean per round of ``calls`` calls."""
    jax.block_until_ready(f(*args))
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            res = f(*args)
        jax.block_until_ready(res)
        out.append((time.perf_counter() - t) / calls * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="radix,sort")
    parser.add_argument("--model", default="mlp", choices=sorted(SHAPES))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--compiles", type=int, default=3)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, jax {jax.__version__}")
    for name, (scores, within, ks) in cases(SHAPES[args.model]).items():
        groups = [((i,), k) for i, k in enumerate(ks)]
        for method in args.methods.split(","):
            compiles = []
            for i in range(args.compiles):  # i makes every program new
                f = jax.jit(lambda s, i=i: (select.select(s, within, groups, method), i))
                t = time.perf_counter()
                hlo = f.lower(scores).compile().as_text()
                compiles.append(time.perf_counter() - t)
            ops = re.findall(r"= \S+ ([\w-]+)\(", hlo)
            kernels = sum(op in KERNELS for op in ops)
            f = jax.jit(lambda s: select.select(s, within, groups, method))
            rounds = time_rounds(f, (scores,), args.rounds, args.calls)
            print(
                f"{name:5s} {method:6s} compile {min(compiles):.2f} s ({kernels} kernels)   "
                f"run {np.median(rounds):.3f} ms (rounds {min(rounds):.3f}-{max(rounds):.3f})"
            )


if __name__ == "__main__":
    main()
