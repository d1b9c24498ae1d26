"""Git Re-Basin and REPAIR: the barrier between independently trained networks, aligned.

    python -m experiments.rebasin --workdir=runs/rebasin
    python -m experiments.rebasin --workdir=runs/rb_smoke \
        --config=experiments/configs/rebasin.py:smoke
    python -m experiments.rebasin --workdir=runs/rb_resnet \
        --config=experiments/configs/rebasin.py:resnet_fashion_bn

Ainsworth, Hayase & Srinivasa, 2023, "Git Re-Basin"; Jordan et al., 2023, "REPAIR"; Pena
et al., 2023, "Re-basin via implicit Sinkhorn differentiation". Per width: `2 * pairs`
networks, each with its own initialisation and data order, train as one vmapped stack
(`fit(seed=...)`); for every pair (a, b) and every method (naive: the identity; weight,
activation or Sinkhorn matching) b is permuted to a and the loss and error along the
straight line are measured on the test set and on the training set, without and with
REPAIR (`train.evaluate_aligned_path`; for batch-norm models the statistics reset).
Writes `results.json` (curves, endpoints, barriers under both references, matching wall
times, per pair), `results.md` (mean ± sample std over pairs) and `rebasin_<split>.png`
into --workdir; each pair's records are written as it finishes, so a rerun resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from ml_collections import ConfigDict

from experiments import sweeps
from experiments.configs.rebasin import METHODS
from jaxprune import rebasin, train
from jaxprune.analysis import barrier
from jaxprune.plots import plot_rebasin

HERE = os.path.dirname(os.path.abspath(__file__))
SPLITS = ("test", "train")
REFERENCES = ("linear", "mean")


def run(
    config: ConfigDict, workdir: str, *, progress: bool = True, command: str | None = None
) -> dict[str, Any]:
    """Runs (or resumes) the study `config` describes in `workdir`; returns the results."""
    _check(config)
    train_ds, test_ds = sweeps.datasets(config)
    run_dir = train.RunDir(workdir)
    run_dir.create()
    run_dir.check_or_write_config({"config": train.rundir.jsonable(config)})
    start = time.perf_counter()
    splits = {"test": test_ds, "train": _head(train_ds, config.train_eval_examples)}
    rows = []
    for w in config.widths:
        print(f"width x{w}", flush=True)
        rows += _study_width(
            config, w, os.path.join(workdir, f"width{w:03d}"), train_ds, splits, progress
        )
    command = command or (
        f"python -m experiments.rebasin --workdir={workdir} "
        f"--config=experiments/configs/rebasin.py:{config.name}"
    )
    results = {
        "title": f"Re-basin of {config.model} on {config.dataset}",
        "command": command,
        "widths": list(config.widths),
        "pairs": config.pairs,
        "methods": list(config.methods),
        "alphas": np.linspace(0.0, 1.0, config.alphas).tolist(),
        "steps": config.steps,
        "repair_kind": "reset" if any(r["bn_reestimated"] for r in rows) else "repair",
        "rows": rows,
        "config": config.to_dict(),
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter() - start,  # this call only
    }
    if sweeps.write_results(run_dir, workdir, results, table(results)):
        for split in SPLITS:
            plot_rebasin(results, os.path.join(workdir, f"rebasin_{split}.png"), split=split)
    return results


def _check(config: ConfigDict) -> None:
    sweeps.check_methods(config.methods, METHODS)
    if not (isinstance(config.pairs, int) and config.pairs >= 1):
        raise ValueError(f"config.pairs={config.pairs!r}: give a positive number of pairs, e.g. 3.")
    sweeps.check_seeds_and_length(ConfigDict(dict(config, seeds=tuple(range(2 * config.pairs)))))
    if config.alphas < 3:
        raise ValueError(f"config.alphas={config.alphas}: give 3 or more points, e.g. 25.")
    if len(config.widths) > 1 and config.width_override not in ("hidden", "width"):
        raise ValueError(
            f"config.width_override={config.width_override!r}: a sweep over widths "
            f"{tuple(config.widths)} needs 'hidden' (MLP) or 'width' (ResNet)."
        )


def _head(ds: Any, n: int) -> Any:
    """The first `n` examples of a split (x and y only)."""
    return types.SimpleNamespace(x=np.asarray(ds.x)[:n], y=np.asarray(ds.y)[:n])


def _model_config(config: ConfigDict, w: int) -> ConfigDict:
    """`config` with the model `w` times as wide (`width_override` says how)."""
    c = config.copy_and_resolve_references()
    with c.unlocked():
        if c.width_override == "hidden":
            c.model_overrides.hidden = tuple(w * h for h in c.model_overrides.hidden)
        elif c.width_override == "width":
            c.model_overrides.width = w * c.model_overrides.get("width", 1)
    return c


def _study_width(config, w, wdir, train_ds, splits, progress) -> list[dict[str, Any]]:
    """The records of every pair at width multiplier `w` (read back when measured)."""
    stack = _train(_model_config(config, w), wdir, train_ds, progress)
    rows = []
    for j in range(config.pairs):
        done = os.path.join(wdir, f"pair{j:02d}.json")
        if os.path.exists(done):
            with open(done) as f:
                rows += json.load(f)
            continue
        a, b = train.member(stack, 2 * j), train.member(stack, 2 * j + 1)
        records = measure_pair(config, a, b, train_ds, splits, pair=j)
        for r in records:
            r["width"] = w
        if jax.process_index() == 0:
            train.rundir.write_json(done, records)
        for r in records:
            print(_line(r), flush=True)
        rows += records
    return rows


def _train(config: ConfigDict, wdir: str, train_ds: Any, progress: bool) -> train.TrainState:
    """The `2 * pairs` networks: member i from initialisation i in data order i, vmapped."""
    seeds = list(range(2 * config.pairs))
    make_model = sweeps.model_maker(config, train_ds.num_classes)
    tx = train.optimizer(config.optim, train.lr_schedule(config.optim))
    stack = train.stack_states([train.create_train_state(make_model(s), tx, seed=s) for s in seeds])
    out = train.fit(
        stack,
        train_ds,
        workdir=os.path.join(wdir, "train"),
        steps=sweeps.total_steps(config, len(train_ds)),
        batch_size=config.batch_size,
        seed=seeds,
        checkpoints=train.Checkpointing(every=config.checkpoint_every, keep_last=1),
        logging=train.Logging(progress=progress),
        parallel=train.Parallel(ensemble=True),
        config={"model_overrides": config.model_overrides.to_dict()},
    )
    return out.state


def measure_pair(
    config: ConfigDict,
    a: train.TrainState,
    b: train.TrainState,
    train_ds: Any,
    splits: dict,
    *,
    pair: int,
) -> list[dict[str, Any]]:
    """Per method and REPAIR flag: b aligned to a, the path's curves and barriers on `splits`."""
    spec = train.state_spec(a, train_ds.x[:1])
    records = []
    for method in config.methods:
        t0 = time.perf_counter()
        perm = jax.block_until_ready(_match(method, config, spec, a, b, train_ds, pair))
        match_s = time.perf_counter() - t0
        aligned = train.align_state(spec, perm, b)
        for repair in (False, True):
            paths = train.evaluate_aligned_path(
                a,
                aligned,
                splits,
                alphas=config.alphas,
                repair=repair,
                repair_data=train_ds,
                repair_batches=config.repair_batches,
                repair_batch_size=config.repair_batch_size,
                batch_size=config.eval_batch_size,
            )
            record = {"pair": pair, "seeds": [2 * pair, 2 * pair + 1], "method": method}
            record.update(repair=repair, match_wall_s=match_s)
            record["bn_reestimated"] = any(p.bn_reestimated for p in paths.values())
            record.update({split: _curve_record(p) for split, p in paths.items()})
            records.append(record)
    return records


def _match(method, config, spec, a, b, train_ds, pair):
    """The permutation aligning `b` to `a` by `method` (naive: the identity)."""
    va, vb = (a.params, a.model_state), (b.params, b.model_state)
    key = jax.random.key(pair)
    if method == "naive":
        return rebasin.identity_permutation(spec)
    if method == "weight":  # the weights only, as Git Re-Basin (not batch statistics)
        return rebasin.weight_matching(
            spec, (a.params, ()), (b.params, ()), key=key, max_iter=config.weight_max_iter
        )
    f = train.state_apply(a)
    if method == "activation":
        x = jnp.asarray(train_ds.x[: config.match_examples])
        return rebasin.activation_matching(
            spec, rebasin.unit_features(spec, f, va, x), rebasin.unit_features(spec, f, vb, x)
        )
    s = config.sinkhorn
    n = max(1, min(len(train_ds.y) // s.batch_size, 10))
    batches = [
        (jnp.asarray(train_ds.x[i * s.batch_size : (i + 1) * s.batch_size]),
         jnp.asarray(train_ds.y[i * s.batch_size : (i + 1) * s.batch_size]))
        for i in range(n)
    ]  # fmt: skip
    loss_fn = lambda v, batch: train.cross_entropy(f(v, batch[0]), batch[1])  # noqa: E731
    return rebasin.sinkhorn_matching(
        spec,
        va,
        vb,
        loss_fn,
        batches,
        key=key,
        steps=s.steps,
        lr=s.lr,
        objective=s.objective,
        iterations=s.iterations,
    )


def _curve_record(path: train.PathResult) -> dict[str, Any]:
    """The curves, endpoints and barriers (both references) of one evaluated path."""
    out: dict[str, Any] = {}
    for metric in ("loss", "error"):
        curve = np.asarray(getattr(path, metric), np.float64)
        out[metric] = curve.tolist()
        out[f"{metric}_endpoints"] = [float(curve[0]), float(curve[-1])]
        out[f"{metric}_barrier"] = {
            ref: float(barrier(curve, path.alphas, reference=ref)) for ref in REFERENCES
        }
    return out


def _cell(values, scale=1.0) -> str:
    v = scale * np.asarray(values, np.float64)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.2f} ± {std:.2f}"


def _line(r: dict[str, Any]) -> str:
    t = r["test"]
    return (
        f"  pair {r['pair']} {r['method']}{' +repair' if r['repair'] else ''}: test error "
        f"barrier {100 * t['error_barrier']['linear']:.2f} points, loss barrier "
        f"{t['loss_barrier']['linear']:.3f} (matching {r['match_wall_s']:.1f} s)"
    )


def table(results: dict[str, Any]) -> str:
    """The markdown tables, one per barrier reference: barriers (mean ± sample std over
    pairs) per method x repair."""
    return "\n\n".join(_table(results, ref) for ref in REFERENCES)


def _table(results: dict[str, Any], reference: str) -> str:
    sweep = len(results["widths"]) > 1
    fix = "statistics reset" if results["repair_kind"] == "reset" else "REPAIR"
    head = (["width"] if sweep else []) + ["method", fix]
    head += [f"{s} error barrier (points)" for s in SPLITS]
    head += [f"{s} loss barrier" for s in SPLITS] + ["matching (s)"]
    lines = [
        f"# {results['title']} ({reference} reference)",
        "",
        f"`{results['command']}`",
        "",
        f"Barriers along the linear path from a to b aligned to a ({reference!r} reference: "
        + (
            "max_a v(a) - ((1 - a) v(0) + a v(1))"
            if reference == "linear"
            else "max_a v(a) - (v(0) + v(1)) / 2"
        )
        + f", interior points), mean ± sample std over {results['pairs']} pairs of "
        f"independently initialised networks (each its own data order), "
        f"{len(results['alphas'])} points per path, {results['steps']} training steps. "
        + (
            "With batch norm, the repaired path re-estimates the batch statistics at every "
            "point (REPAIR's reset); without, they are interpolated."
            if fix != "REPAIR"
            else "REPAIR rescales every hidden unit to the interpolated endpoint statistics."
        ),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for w in results["widths"]:
        for method in results["methods"]:
            for repair in (False, True):
                rs = [
                    r
                    for r in results["rows"]
                    if r["width"] == w and r["method"] == method and r["repair"] == repair
                ]
                cells = ([f"x{w}"] if sweep else []) + [method, "yes" if repair else "no"]
                cells += [
                    _cell([r[s]["error_barrier"][reference] for r in rs], 100) for s in SPLITS
                ]
                cells += [_cell([r[s]["loss_barrier"][reference] for r in rs]) for s in SPLITS]
                cells.append(_cell([r["match_wall_s"] for r in rs]))
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    start = time.time()
    command = "python -m experiments.rebasin " + " ".join(sys.argv[1:])
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress, command=command)
    print("\n" + table(results))
    print(f"\n{time.time() - start:.0f} s; results.json, results.md and plots in {FLAGS.workdir}")


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/rebasin.py:smoke",
        default=os.path.join(HERE, "configs", "rebasin.py"),
    )
    app.run(main)
