"""Instability analysis: is a network (or an IMP ticket) rewound to step k stable to SGD noise?

    python -m experiments.instability --workdir=runs/instability
    python -m experiments.instability --workdir=runs/inst_smoke \
        --config=experiments/configs/instability.py:smoke
    python -m experiments.instability --workdir=runs/inst_resnet \
        --config=experiments/configs/instability.py:resnet_fashion_bn

Frankle, Dziugaite, Roy & Carbin, 2020, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis". For every rewind step k: IMP with rewinding to k (`run_imp`, every
initialisation at once) gives the dense parent at k (its rewind checkpoint) and the
tickets of the chosen rounds; from each of those (the dense network, each ticket, and
a random pruning with the ticket's per-layer counts) two children train to the end
with different data orders, all as one vmapped stack (`train_children`); the error and
loss along the straight line between the two children of each parent give the
instability (`instability`). Writes `results.json` (every barrier under both
conventions, per initialisation, with the raw curves), `results.md` (the table),
`instability.png` (instability and test accuracy against k) and `paths.png` (the
error along the path for a few k) into --workdir; rerun the same command to resume.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import app
from ml_collections import ConfigDict

from experiments import lottery_ticket, sweeps
from jaxprune import data, train
from jaxprune.plots import plot_instability, plot_paths
from jaxprune.train.lottery import IMPSettings, imp_initial_states, later_settings

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("dense", "ticket", "random_pruning")
_RANDOM_SEED = 7_919  # the random-pruning baseline's masks: key(_RANDOM_SEED + round)


def imp_config(config: ConfigDict, k: int) -> ConfigDict:
    """The lottery experiment's config of the IMP run rewinding to `k`: every round up to
    the last one measured."""
    c = config.copy_and_resolve_references()
    with c.unlocked():  # a config from the command line is locked
        c.imp.rewind_step, c.imp.rounds = k, max(config.rounds, default=1)
    return c


def settings(config: ConfigDict, k: int) -> IMPSettings:
    """IMP rewinding to `k` for the rounds of `config`."""
    return lottery_ticket.settings(imp_config(config, k))


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the study `config` describes in `workdir`; returns the results."""
    sweeps.check_seeds_and_length(config)
    for k in config.ks:
        settings(config, k)  # bad settings fail before the data loads
    train_ds, test_ds = sweeps.datasets(config)
    steps = sweeps.total_steps(config, len(train_ds))
    _check(config, steps)
    run_dir = train.RunDir(workdir)
    run_dir.create()
    run_dir.check_or_write_config(
        {"config": train.rundir.jsonable(config)}, later=later_settings("config.imp")
    )
    start = time.perf_counter()
    rows, imp_results = [], None
    for number, k in enumerate(config.ks, 1):
        print(f"[{number}/{len(config.ks)}] k = {k}", flush=True)
        done, imp_results = _study_k(config, workdir, k, steps, train_ds, test_ds, progress)
        rows += done
    results = {
        "title": f"Instability of {config.model} on {config.dataset}",
        "ks": list(config.ks),
        "seeds": list(config.seeds),
        "children_seeds": list(config.children_seeds),
        "alphas": rows[0]["alphas"],
        "steps": steps,
        "dense_accuracy": imp_results["dense"]["accuracy"],
        "rows": [{k: v for k, v in r.items() if k != "alphas"} for r in rows],
        "config": config.to_dict(),
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter() - start,  # this call only (not a resumed part)
    }
    if sweeps.write_results(run_dir, workdir, results, table(results)):
        plot_instability(results, os.path.join(workdir, "instability.png"))
        drawn = [k for k in config.paths_at if k in config.ks] or list(config.ks)
        plot_paths(results, os.path.join(workdir, "paths.png"), ks=drawn)
    return results


def _check(config: ConfigDict, steps: int) -> None:
    bad = [k for k in config.ks if not (isinstance(k, int) and 0 <= k < steps)]
    if bad or len(set(config.ks)) != len(config.ks):
        raise ValueError(
            f"config.ks={tuple(config.ks)}: give distinct rewind steps in [0, {steps}) (the "
            "training's length)."
        )
    if len(config.children_seeds) < 2 or len(set(config.children_seeds)) != len(
        config.children_seeds
    ):
        raise ValueError(
            f"config.children_seeds={tuple(config.children_seeds)}: give two or more distinct "
            "data-order seeds, e.g. (1, 2)."
        )
    if any(not (isinstance(r, int) and r >= 1) for r in config.rounds):
        raise ValueError(
            f"config.rounds={tuple(config.rounds)}: give IMP rounds >= 1, e.g. (3, 7)."
        )


def _study_k(config, workdir, k, steps, train_ds, test_ds, progress):
    """The records of one rewind step k (read back when already measured)."""
    kdir = os.path.join(workdir, f"k{k:06d}")
    done = os.path.join(kdir, "instability.json")
    imp_dir = os.path.join(kdir, "imp")
    make_model = sweeps.model_maker(config, train_ds.num_classes)
    inner_tx = train.optimizer(config.optim, train.lr_schedule(config.optim))
    imp = settings(config, k)
    imp_results = lottery_ticket.run(imp_config(config, k), imp_dir, progress=progress)
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f), imp_results
    # run_imp's own initial states: the template its checkpoints restore into.
    template = imp_initial_states(make_model, inner_tx, imp, config.seeds)
    parents, labels = _parents(config, imp_dir, template, k, imp_results)
    children = train.train_children(
        train.stack_states([train.member(p, i) for p in parents for i in range(len(config.seeds))]),
        train_ds,
        workdir=os.path.join(kdir, "children"),
        steps=steps,
        batch_size=config.batch_size,
        data_seeds=tuple(config.children_seeds),
        stacked=True,
        augment=_augment(config),
        checkpoint_every=config.checkpoint_every,
        progress=progress,
        config={"k": k, "parents": labels, "seeds": list(config.seeds)},
    )
    out = train.instability(
        children,
        test_ds,
        parents=len(parents) * len(config.seeds),
        alphas=config.alphas,
        bn_data=train_ds if config.reestimate_bn else None,
        batch_size=config.eval_batch_size,
    )
    records = _records(k, labels, out, len(config.seeds))
    if jax.process_index() == 0:
        train.rundir.write_json(done, records)
    for r in records:
        print(_line(r), flush=True)
    return records, imp_results


def _parents(config, imp_dir, template, k, imp_results):
    """The states at step k whose children are measured, each a stack over the seeds:
    the dense network (as the parent run left it, optimizer included), then per round
    the ticket and its random-pruning baseline (rebuilt from run_imp's saved rewind point
    and masks, as run_imp builds its tickets)."""
    round_00 = os.path.join(imp_dir, "round_00")
    parents = [train.restore_checkpoint(round_00, template, "rewind") if k else template]
    remaining = {r["round"]: r["remaining"] for r in imp_results["rounds"]}
    labels = [{"variant": "dense", "round": 0, "remaining": 1.0}]
    for r in config.rounds:
        if r not in remaining:  # IMP stalled before this round
            continue
        parents.append(train.imp_tickets(imp_dir, template, r))
        key = jax.random.key(_RANDOM_SEED + r)
        parents.append(train.imp_tickets(imp_dir, template, r, random_key=key))
        labels += [
            {"variant": v, "round": r, "remaining": remaining[r]}
            for v in ("ticket", "random_pruning")
        ]
    return parents, labels


def _records(k, labels, out, n_seeds):
    """One record per parent kind (dense, ticket, random pruning of a round): per seed."""
    records = []
    for j, label in enumerate(labels):
        paths = [p for p in out["paths"] if p["parent"] // n_seeds == j]
        per_seed = lambda f: [f(p) for p in paths]  # noqa: E731
        records.append(
            {
                "k": k,
                **label,
                "alphas": out["alphas"],
                "error_barrier": {
                    ref: per_seed(lambda p, ref=ref: p["error_barrier"][ref])
                    for ref in ("mean", "linear")
                },
                "loss_barrier": {
                    ref: per_seed(lambda p, ref=ref: p["loss_barrier"][ref])
                    for ref in ("mean", "linear")
                },
                "instability": per_seed(lambda p: p["instability"]),
                "accuracy": per_seed(lambda p: float(np.mean(p["accuracy"]))),
                "paths": [
                    {
                        "seed": p["parent"] % n_seeds,
                        "orders": p["orders"],
                        "error": p["error"],
                        "loss": p["loss"],
                    }
                    for p in paths
                ],  # fmt: skip
                "bn_reestimated": out["bn_reestimated"],
            }
        )
    return records


def _augment(config: ConfigDict):
    return data.augmentation_for(config.dataset) if config.augment else None


def _cell(values, scale=100.0) -> str:
    v = scale * np.asarray(values, np.float64)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.2f} ± {std:.2f}"


def _name(r: dict[str, Any]) -> str:
    if r["variant"] == "dense":
        return "dense"
    return f"{r['variant']} {100 * r['remaining']:.1f}%"


def _line(r: dict[str, Any]) -> str:
    return (
        f"  k={r['k']} {_name(r)}: instability {_cell(r['instability'])} points, "
        f"test accuracy {_cell(r['accuracy'])}%"
    )


def table(results: dict[str, Any]) -> str:
    """The markdown table: instability (error barrier, points) and test accuracy (%) per k."""
    kinds = list(dict.fromkeys(_name(r) for r in results["rows"]))
    head = ["k"] + [f"{n}: instability" for n in kinds] + [f"{n}: accuracy" for n in kinds]
    seeds = len(results["seeds"])
    lines = [
        f"# {results['title']}",
        "",
        f"Instability = max over the path (endpoints included) of the test error minus the "
        f"mean of the endpoints' (Frankle et al. 2020; points; results.json also holds both "
        f"interior barrier conventions, of error and loss, and the curves), and the children's test accuracy (%): mean ± sample "
        f"std over {seeds} initialisations, children data orders {results['children_seeds']}, "
        f"{len(results['alphas'])} points per path, {results['steps']} steps. Dense network "
        f"trained once (data order 0): {_cell(results['dense_accuracy'])}%.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for k in results["ks"]:
        by_name = {_name(r): r for r in results["rows"] if r["k"] == k}
        cells = [_cell(by_name[n]["instability"]) for n in kinds]
        cells += [_cell(by_name[n]["accuracy"]) for n in kinds]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    start = time.time()
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print("\n" + table(results))
    print(f"\n{time.time() - start:.0f} s; results.json, results.md and plots in {FLAGS.workdir}")


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/instability.py:smoke",
        default=os.path.join(HERE, "configs", "instability.py"),
    )
    app.run(main)
