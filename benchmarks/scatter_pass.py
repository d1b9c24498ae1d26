"""One histogram pass of the radix selection alone, by the fraction of candidates.

The pass counts the top 11 bits of 235,200 keys (the MLP's first layer) that are
candidates, in 2,048 bins of 4 interleaved copies, by a scatter-add. The other
keys are either counted in spare slots spread by position (``spare``, what
:mod:`jaxprune.select` does) or given an index past the end, which the scatter
skips (``skipped``): a branch in the scatter's loop, which the CPU predicts badly
where candidates and the others are mixed. Absolute times of one machine, for
choosing between the two (run it with ``PYTHONPATH=<checkout>``).

Usage:
  python benchmarks/scatter_pass.py [--rounds 9] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune import select

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from select_cost import time_rounds  # noqa: E402

N = 784 * 300
BINS = 2048


def histogram_pass(skip: bool):
    """The pass over keys (0 = not a candidate), as jitted function of the keys."""
    copies, spare = select.COPIES, select.SPARE
    slots = BINS * copies

    def f(key):
        valid = key != 0
        b = ((key >> 21) & (BINS - 1)).astype(jnp.int32)
        pos = lax.iota(jnp.int32, key.size)
        at = b * copies + (pos & (copies - 1))
        if skip:
            return jnp.zeros(slots, jnp.int32).at[jnp.where(valid, at, slots)].add(1, mode="drop")
        at = jnp.where(valid, at, slots + (pos & (spare - 1)))
        return jnp.zeros(slots + spare, jnp.int32).at[at].add(1, mode="promise_in_bounds")

    return jax.jit(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, jax {jax.__version__}, {N} keys")
    scores = jax.random.uniform(jax.random.key(0), (N,))
    passes = {"spare": histogram_pass(False), "skipped": histogram_pass(True)}
    for fraction in (0.01, 0.1, 0.3, 0.5, 0.9):
        chosen = jax.random.uniform(jax.random.key(1), (N,)) < fraction
        key = jnp.where(chosen, select.order_keys(scores), jnp.uint32(0))
        ms = {
            name: np.median(time_rounds(f, (key,), args.rounds, args.calls))
            for name, f in passes.items()
        }
        print(
            f"candidates {fraction:4.0%}   " + "   ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
        )


if __name__ == "__main__":
    main()
