"""Cost of permutation alignment (`jaxprune.rebasin`), in seconds and as a ratio to one
dense training step of the same model timed in the same run.

Timed, interleaved round by round so that machine noise hits every variant alike
(each variant called once before the first round: compilation and first-call costs are
recorded apart, as ``first_call_s``):

- ``weight matching``: `rebasin.weight_matching` of two independently initialised
  models (seeds 0 and 1), on their parameters (`nnx.Param`), default ``max_iter``;
- ``planted permutation``: the same of model 0 and model 0 under a random permutation
  of every group (`rebasin.random_permutation`); checked to recover its inverse;
- ``permutation_spec``: tracing the model's spec from its jaxpr (eval mode, one
  example input);
- ``dense step``: one jitted training step (SGD momentum 0.9, batch of random data,
  ``--batch``), the reference of the ratios: each round the mean over enough calls to
  take ``--min-time`` seconds.

Models: LeNet-300-100 (784 inputs), ResNet-20 x4 (``models.create("resnet20",
width=4)``, 32x32x3) and ResNet-56 (32x32x3). Every number is the median over
``--rounds`` rounds of one call; a ratio is the median of each round's time over that
round's dense step of the same model. The sweeps of each matching are recorded
(``return_info=True``).

Usage:
  python benchmarks/rebasin.py [--rounds 5] [--batch 128] [--min-time 0.5]
      [--out benchmarks/results/rebasin_cpu_1.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402

from jaxprune import models, rebasin  # noqa: E402


class Model(NamedTuple):
    """A zoo model as timed here: its registry name, overrides and one input's shape."""

    name: str
    overrides: dict[str, Any]
    shape: tuple[int, ...]


MODELS = {
    "lenet300_100": Model("lenet300_100", {}, (784,)),
    "resnet20x4": Model("resnet20", {"width": 4}, (32, 32, 3)),
    "resnet56": Model("resnet56", {}, (32, 32, 3)),
}
# What is timed for each model: (matching of two inits, a planted permutation, spec).
TIMED = {
    "lenet300_100": ("weight matching", "planted permutation"),
    "resnet20x4": ("weight matching", "planted permutation"),
    "resnet56": ("permutation_spec",),
}


def build(m: Model, seed: int) -> tuple[Any, Any]:
    """The model in eval mode, split: (graphdef, state)."""
    model = models.create(m.name, rngs=nnx.Rngs(seed), **m.overrides)
    model.eval()
    return nnx.split(model)


def spec_of(m: Model, graphdef: Any, state: Any) -> rebasin.PermutationSpec:
    """The model's permutation spec, traced from one example input."""
    return rebasin.permutation_spec(
        lambda v, x: nnx.merge(graphdef, v)(x), state, jnp.ones((1, *m.shape))
    )


def params_of(graphdef: Any, state: Any) -> Any:
    """The parameters (`nnx.Param`) of a split model: what weight matching compares."""
    return nnx.state(nnx.merge(graphdef, state), nnx.Param)


def dense_step(m: Model, batch: int) -> Callable[[], Any]:
    """One jitted dense SGD-momentum training step; each call advances the state."""
    model = models.create(m.name, rngs=nnx.Rngs(0), **m.overrides)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.as_pure(params), nnx.as_pure(rest)
    tx = optax.sgd(0.1, momentum=0.9)
    step = jax.jit(overhead._train_step(graphdef, tx))
    data = {
        "x": jax.random.normal(jax.random.key(1), (batch, *m.shape)),
        "y": jax.random.randint(jax.random.key(2), (batch,), 0, 10),
    }
    carry = [params, rest, tx.init(params)]

    def call() -> Any:
        out = step(*carry, data)
        carry[:] = out[:3]
        return out[3]

    return call


def matching(spec, a, b) -> Callable[[], Any]:
    """`weight_matching` of ``b`` to ``a``, returning ``(perm, info)``."""
    return lambda: rebasin.weight_matching(spec, a, b, return_info=True)


def variants(name: str, m: Model, batch: int) -> tuple[dict[str, Callable[[], Any]], dict]:
    """The timed calls of one model and what they are checked against."""
    graphdef, state = build(m, 0)
    spec = spec_of(m, graphdef, state)
    out = {"dense step": dense_step(m, batch)}
    facts: dict[str, Any] = {
        "groups": {g: spec.groups[g].size for g in spec.names},
        "params": int(sum(np.size(x) for x in jax.tree.leaves(params_of(graphdef, state)))),
    }
    if "permutation_spec" in TIMED[name]:
        out["permutation_spec"] = lambda: spec_of(m, graphdef, state)
    if "weight matching" in TIMED[name]:
        a = params_of(graphdef, state)
        b = params_of(*build(m, 1))
        out["weight matching"] = matching(spec, a, b)
    if "planted permutation" in TIMED[name]:
        a = params_of(graphdef, state)
        plant = rebasin.random_permutation(jax.random.key(1), spec)
        out["planted permutation"] = matching(spec, a, rebasin.permute(spec, plant, a))
        facts["planted"] = rebasin.invert_permutation(plant)
    return out, facts


def timed(fn: Callable[[], Any], calls: int = 1) -> tuple[float, Any]:
    """Mean seconds of one call over ``calls`` calls, and the last call's result."""
    start = time.perf_counter()
    for _ in range(calls):
        out = jax.block_until_ready(fn())
    return (time.perf_counter() - start) / calls, out


def calls_for(fn: Callable[[], Any], min_time: float) -> int:
    """How many calls of ``fn`` take at least ``min_time`` seconds (one at least)."""
    return max(1, int(np.ceil(min_time / timed(fn)[0])))


def recovered(found: dict, expected: dict) -> bool:
    """Whether a matching found exactly the expected permutation of every group."""
    return all(np.array_equal(np.asarray(found[g]), np.asarray(expected[g])) for g in expected)


def summary(seconds: list[float], dense: list[float]) -> dict[str, Any]:
    """Median seconds and the median (and range) of the per-round ratio to a dense step."""
    t, ratio = np.asarray(seconds), np.asarray(seconds) / np.asarray(dense)
    return {
        "seconds": seconds,
        "median_s": float(np.median(t)),
        "ratio_to_dense_step": float(np.median(ratio)),
        "ratio_range": [float(ratio.min()), float(ratio.max())],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="batch of the dense step")
    parser.add_argument(
        "--min-time", type=float, default=0.5, help="seconds a round's dense-step timing lasts"
    )
    parser.add_argument("--out", default=None, help="write the results here (JSON)")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be >= 5 (a median of at least 5 repeats)")
    info = overhead.machine()
    print(f"backend {info['backend']} ({info['device_kind']}), {info['cpu']}, {args.rounds} rounds")

    calls, facts, first, last = {}, {}, {}, {}
    for name, m in MODELS.items():
        calls[name], facts[name] = variants(name, m, args.batch)
        for v, fn in calls[name].items():  # warm-up: compile, first call
            first[name, v], last[name, v] = timed(fn)
            print(f"{name}: {v}: first call {first[name, v]:.3f}s")
    # Dense-step calls per round, from one compiled call's time.
    repeats = {n: calls_for(calls[n]["dense step"], args.min_time) for n in MODELS}
    load = [os.getloadavg()]
    seconds = {key: [] for key in first}
    order = list(first)
    for r in range(args.rounds):
        for name, v in order if r % 2 == 0 else order[::-1]:
            n = repeats[name] if v == "dense step" else 1
            s, last[name, v] = timed(calls[name][v], n)
            seconds[name, v].append(s)
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {v} {seconds[n, v][-1]:.3f}s" for n, v in order)
        )

    load.append(os.getloadavg())
    results: dict[str, Any] = {}
    print(f"\n{'':<34} {'median':>9} {'x dense step (range)':>24} {'sweeps':>7}")
    for name, v in order:
        r = summary(seconds[name, v], seconds[name, "dense step"])
        r["first_call_s"] = first[name, v]
        if v == "dense step":
            r["calls_per_round"] = repeats[name]
        if v in ("weight matching", "planted permutation"):
            perm, minfo = last[name, v]
            r["sweeps"], r["objective"] = minfo.sweeps, minfo.objective
        if v == "planted permutation":
            r["recovered"] = recovered(perm, facts[name]["planted"])
        results.setdefault(name, {})[v] = r
        sweeps = f"{r['sweeps']:>7d}" if "sweeps" in r else ""
        lo, hi = r["ratio_range"]
        print(
            f"{name + ': ' + v:<34} {r['median_s']:8.4f}s {r['ratio_to_dense_step']:9.2f}x "
            f"({lo:.2f}-{hi:.2f}) {sweeps}" + ("  recovered" if r.get("recovered") else "")
        )
    for name in MODELS:
        facts[name].pop("planted", None)
    if args.out:
        settings = vars(args) | {
            "models": {n: m._asdict() for n, m in MODELS.items()},
            "dense_step": "SGD momentum 0.9, random data, train mode",
            "matched": "nnx.Param leaves; seeds 0 and 1; planted: random_permutation(key(1))",
        }
        with open(args.out, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "load_average": {"before": load[0], "after": load[1]},
                    "settings": settings,
                    "models": facts,
                    "results": results,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
