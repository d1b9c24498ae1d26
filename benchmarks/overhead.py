"""Cost of sparsity as ratios to a dense training step measured in the same run.

Models: the MLP 784-300-100-10 (LeNet-300-100) and a ResNet-20-shaped CNN
(CIFAR ResNet-20, 32x32x3 inputs); batch 128, SGD momentum 0.9, 90% sparsity
(uniform magnitude). Timed, interleaved round by round so that machine noise
hits every variant alike:

- ``dense``: a jitted SGD step (forward, backward, update);
- ``dense (again)``: the very same step timed as another variant, so its ratio
  (ideally 1.00) shows the noise of the measurement;
- ``masked``: the same step with ``jaxprune.masked`` (fixed mask);
- ``mask update``: one whole-model magnitude mask update alone (scores, exact
  top-k, apply the mask);
- ``step + mask update``: a training step that also recomputes the mask and
  puts it in the optimizer state (what a pruning schedule does on its update
  steps);
- ``gradual every 100`` / ``RigL every 100``: throughput of
  ``jaxprune.gradual_magnitude`` / ``jaxprune.rigl`` over 100 consecutive steps,
  one of which updates the mask;
- ``RigL every 100 (host-scheduled)``: the same, with the training loop telling
  each step whether it rewires (``rewire=tx.rewires_at(t)``, static): two compiled
  steps, the ordinary one a plain masked step;
- ``RigL ordinary step``: a RigL step that does not update the mask (the first
  update is never reached): what the other 99 steps of ``RigL every 100`` cost;
- ``RigL update step``: the step in which RigL drops and grows (ERK, 90%,
  update every 100), on the state after 100 training steps, repeated on the
  same inputs (donated, as in training: a copy made before timing per call);
- ``RigL update step (host-scheduled)``: the same step told by the host that it
  rewires (``rewire=True``, static): the update step's own program, no branch;
- ``RigL updating every step``: RigL with an update at every step (chained):
  grown weights stay 0 until dropped, a worst case of ties for the drop;
- ``straight-through``: a ``jaxprune.straight_through`` step (top-k every step);
- ``straight-through (SR-STE)``: the same with ``pruned_decay=2e-4``, and
  ``straight-through 2:4 (SR-STE)`` with a 2:4 mask instead of the top-k (both timed
  only when named in ``--variants``).

Every number is the median over rounds of the mean time per call, divided by
the dense step's timed with as many calls per round (``dense (100 calls)`` is
the reference of the throughput rows); the paired ratio is the median over
rounds of each round's time over that dense time in the same round (with its
quartiles), which slow changes in the machine's load move less. Rounds run the
variants forwards and backwards in turn. Prints a table; ``--json`` writes the
numbers with the machine and the versions.

Usage:
  python benchmarks/overhead.py [--models mlp,cnn] [--rounds 15] [--calls 10]
      [--variants "masked,RigL update step"] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxprune
from jaxprune import models

SPARSITY = 0.9
# Variants timed only when named in --variants (not part of the default tables).
OPT_IN = ("straight-through (SR-STE)", "straight-through 2:4 (SR-STE)")
BATCH = 128


def _setup(name: str) -> tuple[Any, Any, Any, dict[str, jax.Array]]:
    """Model graph, params, other state (batch stats) and one batch."""
    rngs = nnx.Rngs(0)
    if name == "mlp":
        model = models.create("lenet300_100", rngs=rngs)
        x = jax.random.normal(jax.random.key(1), (BATCH, 784))
    else:
        model = models.create("resnet20", rngs=rngs)
        x = jax.random.normal(jax.random.key(1), (BATCH, 32, 32, 3))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.as_pure(params), nnx.as_pure(rest)
    batch = {"x": x, "y": jax.random.randint(jax.random.key(2), (BATCH,), 0, 10)}
    return graphdef, params, rest, batch


def _train_step(graphdef, tx) -> Callable:
    def loss_fn(params, rest, batch):
        model = nnx.merge(graphdef, params, rest)
        logits = model(batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, nnx.as_pure(nnx.state(model, nnx.Not(nnx.Param)))

    def step(params, rest, opt_state, batch, rewire=None):
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, batch)
        extra = {} if rewire is None else {"rewire": rewire}
        updates, opt_state = tx.update(grads, opt_state, params, **extra)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    return step


# function, arguments, calls per round (None: --calls)
Variant = tuple[Callable, tuple, int | None]


def _variants(name: str, method: str = "auto") -> dict[str, Variant]:
    graphdef, params, rest, batch = _setup(name)
    sgd = optax.sgd(0.01, momentum=0.9)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), SPARSITY)
    tx = jaxprune.masked(sgd, mask)
    sparse_params = jaxprune.apply_mask(params, mask)
    masked_step = _train_step(graphdef, tx)

    def update_mask(params):
        new = jaxprune.topk_mask(jaxprune.scores.magnitude(params), SPARSITY, method=method)
        return jaxprune.apply_mask(params, new), new

    def step_and_update(params, rest, opt_state, batch):
        params, rest, opt_state, loss = masked_step(params, rest, opt_state, batch)
        params, new = update_mask(params)
        return params, rest, opt_state._replace(jaxprune_mask=new), loss

    def train(tx, p=sparse_params, calls=None):
        step = jax.jit(_train_step(graphdef, tx), donate_argnums=(0, 1, 2))
        return step, (p, rest, tx.init(p), batch), calls

    key, never = jax.random.key(0), 10**9
    dense = train(sgd, params)

    def rigl(update_every, begin_step=0):
        return jaxprune.rigl(
            sgd,
            SPARSITY,
            end_step=never,
            key=key,
            update_every=update_every,
            begin_step=begin_step,
            method=method,
        )

    return {
        "dense": dense,
        # The same dense step timed again: the noise floor of the ratios.
        "dense (again)": (dense[0], (params, rest, sgd.init(params), batch), None),
        "masked": train(tx),
        "mask update": (jax.jit(update_mask), (sparse_params,), None),
        "step + mask update": (
            jax.jit(step_and_update, donate_argnums=(0, 1, 2)),
            (sparse_params, rest, tx.init(sparse_params), batch),
            None,
        ),
        # Throughput over 100 steps, one of which updates the mask.
        "gradual every 100": train(
            jaxprune.gradual_magnitude(
                sgd, SPARSITY, begin_step=0, end_step=never, update_every=100, method=method
            ),
            calls=100,
        ),
        "RigL every 100": train(rigl(100), calls=100),
        "RigL every 100 (host-scheduled)": _host_scheduled(graphdef, rigl(100), train),
        "RigL ordinary step": train(rigl(100, begin_step=never // 2)),
        "RigL update step": _at_update(graphdef, rigl(100), (sparse_params, rest, batch)),
        "RigL update step (host-scheduled)": _at_update(
            graphdef, rigl(100), (sparse_params, rest, batch), rewire=True
        ),
        # Every step an update: grown weights stay 0 until dropped again, so the drop
        # meets ties at 0 (the slower tie-breaking path of the selection).
        "RigL updating every step": train(rigl(1)),
        "straight-through": train(jaxprune.straight_through(sgd, SPARSITY, method=method)),
        "straight-through (SR-STE)": train(
            jaxprune.straight_through(sgd, SPARSITY, method=method, pruned_decay=2e-4)
        ),
        "straight-through 2:4 (SR-STE)": train(
            # the kernels whose input axis splits into runs of 4 (not the CNN's first conv)
            jaxprune.straight_through(sgd, n_m=(2, 4), pruned_decay=2e-4, prunable=_splits_by_4)
        ),
    }


def _splits_by_4(path: str, leaf: Any) -> bool:
    """A kernel whose input axis (-2) is a multiple of 4 (prunable for 2:4)."""
    return jaxprune.filters.kernels(path, leaf) and leaf.shape[-2] % 4 == 0


class HostScheduled:
    """A training step whose host loop tells RigL which steps rewire: one jitted step
    per value of the static ``rewire`` flag, chosen by ``tx.rewires_at(t)`` with ``t``
    counted here (the state it is given must start at count 0 and be chained)."""

    def __init__(self, graphdef, tx):
        self.tx, self.t = tx, 0
        self.step = jax.jit(
            _train_step(graphdef, tx), static_argnames="rewire", donate_argnums=(0, 1, 2)
        )

    def __call__(self, *args):
        rewire = self.tx.rewires_at(self.t)
        self.t += 1
        return self.step(*args, rewire=rewire)

    def lower(self, *args):
        """The ordinary step's lowering (``anatomy.py`` compiles what it traces)."""
        return self.step.lower(*args, rewire=False)


def _host_scheduled(graphdef, tx, train) -> Variant:
    _, args, _ = train(tx)
    fn = HostScheduled(graphdef, tx)
    jax.block_until_ready(fn.step(*_copy(args), rewire=True))  # compile the update step
    return fn, args, 100


def _at_update(graphdef, tx, start: tuple, steps: int = 100, rewire: bool | None = None) -> Variant:
    """The training step at which ``tx`` updates its mask, after ``steps`` steps that
    trained the weights under the mask (``rewire``: what the host tells that step,
    static; None: the transform decides on the device). Every call repeats that one
    step on the same inputs, donated as in training: each call gets its own copy,
    made before the timing starts (see :func:`_time_calls`)."""
    step = jax.jit(_train_step(graphdef, tx), static_argnames="rewire")
    params, rest, batch = start
    args = (params, rest, tx.init(params), batch)
    for _ in range(steps):
        args = (*step(*args)[:3], batch)
    before = jaxprune.mask_of(args[2])
    after = jaxprune.mask_of(step(*args, rewire=rewire)[2])  # rewire=None: compiled already
    if jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), before, after)):
        raise RuntimeError(f"the step after {steps} steps does not update the mask")
    at_update = functools.partial(_train_step(graphdef, tx), rewire=rewire)
    return Repeat(jax.jit(at_update, donate_argnums=(0, 1, 2))), args, None


class Repeat(NamedTuple):
    """A donating function called on the same arguments at every call."""

    fn: Callable


def _copy(args: tuple) -> tuple:
    return jax.tree.map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, args)


def _time_calls(fn: Callable | Repeat, args: tuple, calls: int) -> tuple[float, tuple]:
    """Mean seconds per call over ``calls`` calls: train steps feed their outputs to the
    next call; a :class:`Repeat` gets a fresh copy of its arguments at every call."""
    if isinstance(fn, Repeat):
        copies = [_copy(args) for _ in range(calls)]
        jax.block_until_ready(copies)
        start = time.perf_counter()
        jax.block_until_ready([fn.fn(*a) for a in copies])
        return (time.perf_counter() - start) / calls, args
    chain = len(args) == 4
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn(*args)
        if chain:
            args = (*out[:3], args[3])
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls, args


def run(
    model: str,
    rounds: int,
    calls: int,
    only: list[str] | None = None,
    method: str = "auto",
    variants: dict[str, Variant] | None = None,
) -> dict[str, Any]:
    """Times the variants of one model (or ``variants``, which must hold ``"dense"``);
    returns ms per call and ratios to dense."""
    variants = _variants(model, method) if variants is None else dict(variants)
    if only:
        unknown = sorted(set(only) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in only or k == "dense"}
    else:
        variants = {k: v for k, v in variants.items() if k not in OPT_IN}
    # The time per call depends on how many calls a round chains (on a busy 2-core VM
    # the dense step ran 3-8% slower per call chained 100 times than 20 times), so every
    # variant is compared with the dense step timed with its own number of calls per round.
    reference = {}
    for k, (_, _, n) in list(variants.items()):
        n = n or calls
        reference[k] = "dense" if n == calls else f"dense ({n} calls)"
        if reference[k] not in variants:
            variants[reference[k]] = (variants["dense"][0], variants["dense"][1], n)
            reference[reference[k]] = reference[k]
    state = {k: _copy(a) for k, (_, a, _) in variants.items()}
    for k, (fn, _, _) in variants.items():  # compile and warm up
        _, state[k] = _time_calls(fn, state[k], 3)
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(rounds):
        # Every other round backwards, so that no variant always follows the same one.
        for k in order if r % 2 == 0 else order[::-1]:
            fn, _, n = variants[k]
            t, state[k] = _time_calls(fn, state[k], n or calls)
            times[k].append(t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    # Each round's time over the dense step's in that round: robust to slow drifts in
    # the machine's load, which move a whole round.
    paired = {k: np.asarray(v) / np.asarray(times[reference[k]]) for k, v in times.items()}
    return {
        "reference": reference,
        "ms": {k: 1e3 * v for k, v in med.items()},
        "ratio_to_dense": {k: v / med[reference[k]] for k, v in med.items()},
        "paired_ratio": {k: float(np.median(v)) for k, v in paired.items()},
        "paired_quartiles": {
            k: [float(np.percentile(v, 25)), float(np.percentile(v, 75))] for k, v in paired.items()
        },
        "spread": {k: [1e3 * float(np.min(v)), 1e3 * float(np.max(v))] for k, v in times.items()},
    }


def _cpu_model() -> str | None:
    """The CPU's model name, where /proc/cpuinfo tells it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What ran the benchmark: devices, CPU, versions."""
    import flax

    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "jaxprune": jaxprune.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def report(name: str, r: dict[str, Any]) -> None:
    """Prints the table of one model's results (as returned by :func:`run`)."""
    print(f"\n{name}: dense step {r['ms']['dense']:.3f} ms")
    w = max(26, *map(len, r["ms"]))
    print(f"  {'':<{w}} {'median':>11}  {'ratio':>6}        paired ratio (quartiles)")
    for k in r["ms"]:
        lo, hi = r["spread"][k]
        q1, q3 = r["paired_quartiles"][k]
        print(
            f"  {k:<{w}} {r['ms'][k]:8.3f} ms  {r['ratio_to_dense'][k]:6.2f}x dense"
            f"  {r['paired_ratio'][k]:5.2f}x ({q1:.2f}-{q3:.2f})"
            f"   (rounds {lo:.3f}-{hi:.3f} ms)"
            + (f"  vs {r['reference'][k]}" if r["reference"][k] not in ("dense", k) else "")
        )


def parser_for(doc: str, rounds: int, calls: int) -> argparse.ArgumentParser:
    """The options every timing script shares: models, rounds, calls, json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma list of mlp, cnn")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--calls", type=int, default=calls, help="calls per variant per round")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser


def main() -> None:
    parser = parser_for(__doc__, rounds=15, calls=10)
    parser.add_argument(
        "--variants", default="", help="comma list of variants to time (default: all)"
    )
    parser.add_argument(
        "--method",
        default="auto",
        help="selection method of every mask update (topk_mask, gradual, RigL, "
        "straight-through): auto, radix, sort, count",
    )
    args = parser.parse_args()
    info = machine()
    print(
        f"backend {info['backend']} ({info['device_kind']}), jax {info['jax']}, "
        f"{args.rounds} rounds x {args.calls} calls, sparsity {SPARSITY}, batch {BATCH}"
    )
    results = {}
    for name in args.models.split(","):
        only = [v for v in args.variants.split(",") if v]
        results[name] = r = run(name, args.rounds, args.calls, only, args.method)
        report(name, r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "settings": vars(args) | {"sparsity": SPARSITY, "batch": BATCH},
                    "results": results,
                },
                f,
                indent=2,
            )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
