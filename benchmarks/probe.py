"""Why a sparse step costs more than a dense one where kernels are cheap: a probe.

On a GPU the steps of the benchmark models are short enough that the host's work
(launching kernels, handing buffers to and from the compiled program, waiting for a
loop predicate) can cost more than the kernels. This times, as ``overhead.py`` does
(ratios to a dense step in the same run), variants that take one such cost apart:

- ``masked``: ``jaxprune.masked`` (the mask is in the optimizer state: one more input
  and output buffer per parameter, 0-d stand-ins for the unprunable ones included);
- ``masked (mask a constant)``: the same arithmetic with the mask closed over, so the
  compiled program takes no mask buffers;
- ``dense + N scalars``: the dense step with as many 0-d arrays passed through its
  optimizer state as ``masked`` has mask leaves (the buffers alone, no arithmetic);
- ``RigL every 100``: RigL as shipped (its update in ``inplace.run_if``: an
  at-most-once ``while_loop`` on the CPU, a ``lax.cond`` on a GPU);
- ``RigL every 100 (lax.cond)``: the same with the update under ``lax.cond`` on every
  backend (on a GPU, the same program as shipped);
- ``RigL every 100 (branch as a select)``: the update computed at every step and
  kept only on update steps (``where``): no branch, so no predicate for the host
  to wait for, at the price of a selection's kernels every step.

Usage:
  python benchmarks/probe.py [--models mlp,cnn] [--rounds 10] [--calls 20] [--json out.json]
      [--variants "RigL every 100,RigL every 100 (branch as a select)"]
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import optax

import jaxprune
from jaxprune.transforms import base, inplace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402


def constant_masked(inner: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
    """``jaxprune.masked``'s arithmetic with ``mask`` closed over instead of in the state."""

    def update(grads, state, params=None):
        u, state = inner.update(base.where_mask(mask, grads), state, params)
        return base.masked_update(u, mask, params), state

    return optax.GradientTransformation(inner.init, update)


def with_scalars(inner: optax.GradientTransformation, n: int) -> optax.GradientTransformation:
    """``inner`` with ``n`` 0-d arrays passed through its state untouched."""

    def init(params):
        return inner.init(params), tuple(jax.numpy.ones((), bool) for _ in range(n))

    def update(grads, state, params=None):
        u, s = inner.update(grads, state[0], params)
        return u, (s, state[1])

    return optax.GradientTransformation(init, update)


@contextlib.contextmanager
def replaced_run_if(run_if):
    """While active, ``inplace.run_if`` is ``run_if`` (for tracing a variant)."""
    saved = inplace.run_if
    inplace.run_if = run_if
    try:
        yield
    finally:
        inplace.run_if = saved


def cond_run_if():
    """``inplace.run_if`` as a ``lax.cond``."""
    return replaced_run_if(lambda pred, fn, carry: jax.lax.cond(pred, fn, lambda c: c, carry))


def select_run_if():
    """``inplace.run_if`` as ``where(pred, fn(carry), carry)``: ``fn`` runs every time."""

    def run_if(pred, fn, carry):
        return jax.tree.map(lambda new, old: jnp.where(pred, new, old), fn(carry), carry)

    return replaced_run_if(run_if)


def variants(name: str) -> dict[str, overhead.Variant]:
    graphdef, params, rest, batch = overhead._setup(name)
    sgd = optax.sgd(0.01, momentum=0.9)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), overhead.SPARSITY)
    sparse = jaxprune.apply_mask(params, mask)
    n = len(jax.tree_util.tree_leaves(mask))

    def train(tx, p=sparse, calls=None, traced_under=contextlib.nullcontext):
        step = overhead._train_step(graphdef, tx)

        def traced(*args):
            with traced_under():
                return step(*args)

        return jax.jit(traced, donate_argnums=(0, 1, 2)), (p, rest, tx.init(p), batch), calls

    def rigl():
        return jaxprune.rigl(sgd, overhead.SPARSITY, end_step=10**9, key=jax.random.key(0))

    return {
        "dense": train(sgd, params),
        "dense (again)": train(sgd, params),
        "masked": train(jaxprune.masked(sgd, mask)),
        "masked (mask a constant)": train(constant_masked(sgd, mask)),
        f"dense + {n} scalars": train(with_scalars(sgd, n), params),
        "RigL every 100": train(rigl(), calls=100),
        "RigL every 100 (lax.cond)": train(rigl(), calls=100, traced_under=cond_run_if),
        "RigL every 100 (branch as a select)": train(rigl(), calls=100, traced_under=select_run_if),
    }


def main() -> None:
    parser = overhead.parser_for(__doc__, rounds=10, calls=20)
    parser.add_argument("--variants", default="", help="comma list of variants (default: all)")
    args = parser.parse_args()
    only = [v for v in args.variants.split(",") if v]
    info = overhead.machine()
    print(f"backend {info['backend']} ({info['device_kind']}), jax {info['jax']}")
    results = {}
    for name in args.models.split(","):
        results[name] = r = overhead.run(
            name, args.rounds, args.calls, only, variants=variants(name)
        )
        overhead.report(name, r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "settings": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
