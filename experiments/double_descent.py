"""Sparse double descent: test accuracy, memorisation and distance from initialisation of
iteratively pruned networks, against the fraction of weights left, under label noise.

    python -m experiments.double_descent --workdir=runs/double_descent
    python -m experiments.double_descent --workdir=runs/dd_smoke \
        --config=experiments/configs/double_descent.py:smoke

He, Xie, Zhu & Qin, 2022, "Sparse Double Descent: Where Network Pruning Aggravates
Overfitting". For every label noise x retraining mode of the config, one IMP run
(``jaxprune.train.run_imp``, through ``experiments.lottery_ticket``; all seeds trained
at once) goes to ``--workdir/noise<NOISE>_<RETRAIN>/`` and prunes 20% of the weights a
round, globally by magnitude, down to <= 1% remaining. Label noise replaces exactly
round(noise * n) training labels by a *different* class, drawn uniformly (open_lth's
random labels keep the true one with probability 1/K, so its "20%" flips fewer);
the test set is clean. Retraining is ``weights`` (the survivors rewound to their
initialisation, step 0) or ``finetune`` (the trained survivors trained on, at
``finetune_lr_scale`` times the learning rate). Then every finished round's trained
networks are restored from their checkpoint and measured:

- test accuracy: the round's final evaluation (the last epoch, as the paper reports);
- memorisation: accuracy on the flipped training examples against their noisy labels;
- train accuracy: on every training example against the labels trained on;
- ``l2``: the learning distance ||m * (w_T - w_0)|| over the prunable kernels, from the
  sparse network's initialisation m * w_0 (w_0 the dense network's initialisation, the
  same for both retraining modes) to its trained weights; ``l2_all`` the distance
  ||w_T - w_0|| of the whole kernels, the pruned weights counted at 0.

The dense network (round 0) is measured too. Each round's numbers are kept in
``rounds/<run>/round_NN.json``, so a rerun trains only what is left and measures only
the rounds not done yet. Writes ``results.json``, ``results.md`` (tables: mean ± sample
std over seeds), ``double_descent.png`` and ``memorisation.png`` into --workdir.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import app, logging
from ml_collections import ConfigDict

import jaxprune
from experiments import dead_units, lottery_ticket, sweeps
from experiments.configs import double_descent as configs
from jaxprune import train
from jaxprune.plots import plot_double_descent
from jaxprune.train.lottery import later_settings, plan_imp
from jaxprune.train.rundir import jsonable, write_json
from jaxprune.train.state import apply_model, members_of

HERE = os.path.dirname(os.path.abspath(__file__))
RETRAINS = ("weights", "finetune")
METRICS = ("test_accuracy", "memorisation", "train_accuracy", "l2", "l2_all")
_STUDY_FIELDS = ("noises", "retrains", "finetune_lr_scale")


def run_name(noise: float, retrain: str) -> str:
    """The IMP run directory of one noise and retraining mode, e.g. ``noise0.2_weights``.

    Example:
      >>> run_name(0.2, "finetune")
      'noise0.2_finetune'
    """
    return f"noise{noise:g}_{retrain}"


def imp_config(config: ConfigDict, noise: float, retrain: str, steps: int) -> ConfigDict:
    """The lottery config of one IMP run of the study: `config` without the study's own
    fields, with label noise `noise` and retraining `retrain`; fine-tuning steps the
    learning rate by ``finetune_lr_scale`` where the dense training ends (`steps`)."""
    c = ConfigDict(config.to_dict())
    for field in _STUDY_FIELDS:
        del c[field]
    c.label_noise = float(noise)
    c.imp.rewind = retrain
    if c.checkpoint_every is None:
        c.checkpoint_every = steps
    if retrain == "finetune" and config.finetune_lr_scale != 1.0:
        if c.optim.get("schedule", "constant") != "constant":
            raise ValueError(
                f"finetune_lr_scale={config.finetune_lr_scale} needs a constant learning rate "
                f"(it steps the rate where the dense training ends); got schedule "
                f"{c.optim.schedule!r}. Set --config.finetune_lr_scale=1.0."
            )
        c.optim.schedule = "step"
        c.optim.boundaries = (steps,)
        c.optim.decay_factor = float(config.finetune_lr_scale)
    return c


def _check(config: ConfigDict) -> None:
    noises, retrains = tuple(config.noises), tuple(config.retrains)
    if not noises or not all(isinstance(n, float | int) and 0 <= n < 1 for n in noises):
        raise ValueError(
            f"config.noises={noises}: give label-noise fractions in [0, 1), e.g. (0.0, 0.2, 0.4)."
        )
    if not retrains or not set(retrains) <= set(RETRAINS) or len(set(retrains)) < len(retrains):
        raise ValueError(
            f"config.retrains={retrains}: give distinct retraining modes from {RETRAINS}."
        )
    if not 0 < config.finetune_lr_scale <= 1:
        raise ValueError(
            f"config.finetune_lr_scale={config.finetune_lr_scale}: give a factor in (0, 1]."
        )
    if tuple(config.imp.variants) != ("ticket",):
        raise ValueError(
            f"config.imp.variants={tuple(config.imp.variants)}: the study trains the ticket "
            "only; set --config.imp.variants=\"('ticket',)\"."
        )


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) every IMP run of the study, measures every finished round, and
    writes the results, the tables and the plots; returns the results.

    Args:
      config: a config of experiments/configs/double_descent.py.
      workdir: the study directory (created or resumed).
      progress: show progress.

    Returns:
      ``results.json``: per run (``run_name``) its noise, retraining mode, number of
      flipped labels and, per round (round 0 = dense), ``remaining`` and every metric of
      ``METRICS`` per seed with its mean and sample std (``memorisation`` is None
      without noise).
    """
    _check(config)
    sweeps.check_seeds_and_length(config)
    start = time.perf_counter()
    out = train.RunDir(workdir)
    out.create()
    out.check_or_write_config({"config": jsonable(config)}, later=later_settings("config.imp"))
    runs = {}
    for noise in config.noises:
        for retrain in config.retrains:
            name = run_name(noise, retrain)
            imp_dir = os.path.join(workdir, name)
            train_ds, _ = sweeps.datasets(imp_config(config, noise, "weights", 1))
            steps = sweeps.total_steps(config, len(train_ds))
            lottery_ticket.run(
                imp_config(config, noise, retrain, steps), imp_dir, progress=progress
            )
            runs[name] = {
                "noise": float(noise),
                "retrain": retrain,
                "flipped": int(train_ds.noisy.sum()),
                "train_examples": len(train_ds),
                "rounds": measure(imp_dir, os.path.join(workdir, "rounds", name), train_ds),
            }
    results = {
        "title": f"Sparse double descent of {config.model} on {config.dataset}",
        "command": _command(config, workdir),
        "seeds": list(config.seeds),
        "noises": [float(n) for n in config.noises],
        "retrains": list(config.retrains),
        "steps": steps,
        "runs": runs,
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter() - start,  # this call only
    }
    if sweeps.write_results(out, workdir, results, table(results)):
        plot_double_descent(results, os.path.join(workdir, "double_descent.png"))
        plot_double_descent(
            results, os.path.join(workdir, "memorisation.png"), metric="memorisation"
        )
    return results


def measure(imp_dir: str, directory: str, train_ds: Any) -> list[dict[str, Any]]:
    """Every finished round of the IMP run `imp_dir` (round 0: dense), measured once and
    kept in `directory`/round_NN.json.

    Args:
      imp_dir: a finished (or partly finished) ``run_imp`` directory; only read.
      directory: where each round's numbers are kept.
      train_ds: the training set the run trained on (with its ``noisy`` flags).

    Returns:
      One record per round: ``round``, ``remaining`` and every metric of ``METRICS``.
    """
    record = dead_units.read_imp_json(imp_dir, "config.json")
    imp = dead_units.read_imp_json(imp_dir, "results.json")
    config = ConfigDict(record["config"])
    settings = lottery_ticket.settings(ConfigDict({"imp": record["imp"]}))
    template = dead_units.imp_template(config, settings, record["seeds"], train_ds.num_classes)
    plan = plan_imp(settings, seeds=record["seeds"], batch_size=1, steps=record["steps"])
    todo = [(0, 1.0, imp["dense"]["accuracy"])] + [
        (r["round"], r["remaining"], r["accuracy"]["ticket"]) for r in imp["rounds"]
    ]
    os.makedirs(directory, exist_ok=True)
    measured = []
    for number, remaining, accuracy in todo:
        done = os.path.join(directory, f"round_{number:02d}.json")
        if not os.path.exists(done):
            state = train.restore_checkpoint(
                os.path.join(imp_dir, f"round_{number:02d}"),
                template,
                plan.round_steps if number else plan.steps,
            )
            values = _member_values(state, template, train_ds)
            values["test_accuracy"] = list(accuracy)
            write_json(done, _round_record(number, remaining, values))
        with open(done) as f:
            measured.append(json.load(f))
    return measured


def _member_values(
    state: train.TrainState, init: train.TrainState, train_ds: Any
) -> dict[str, list[float] | None]:
    """Per member (seed): train accuracy, memorisation and the two L2 distances."""
    values: dict[str, Any] = {"train_accuracy": [], "memorisation": [], "l2": [], "l2_all": []}
    for i in range(members_of(state)):
        trained = train.member(state, i)
        logits, _ = apply_model(trained, train_ds.x, train=False)
        right = np.asarray(np.argmax(logits, -1) == train_ds.y)
        values["train_accuracy"].append(float(right.mean()))
        values["memorisation"].append(
            float(right[train_ds.noisy].mean()) if train_ds.noisy.any() else None
        )
        kept, whole = _distances(
            trained.params, train.member(init, i).params, jaxprune.mask_of(trained.opt_state)
        )
        values["l2"].append(kept)
        values["l2_all"].append(whole)
    if not train_ds.noisy.any():
        values["memorisation"] = None
    return values


def _distances(params: Any, init: Any, mask: Any) -> tuple[float, float]:
    """(||m * (w - w_0)||, ||w - w_0||) over the prunable kernels (the leaves whose mask is
    not a 0-d stand-in); pruned weights of `params` are 0."""
    kept = whole = 0.0
    for w, w0, m in zip(jax.tree.leaves(params), jax.tree.leaves(init), jax.tree.leaves(mask)):
        if np.ndim(m) == 0:
            continue
        diff = np.asarray(w, np.float64) - np.asarray(w0, np.float64)
        kept += float(np.sum(np.where(np.asarray(m), diff, 0.0) ** 2))
        whole += float(np.sum(diff**2))
    return float(np.sqrt(kept)), float(np.sqrt(whole))


def _round_record(
    number: int, remaining: float, values: Mapping[str, Sequence[float] | None]
) -> dict[str, Any]:
    record: dict[str, Any] = {"round": number, "remaining": remaining}
    for metric in METRICS:
        v = values[metric]
        record[metric] = None if v is None else sweeps.seed_stats(v)
    return record


def _command(config: ConfigDict, workdir: str) -> str:
    for name in configs.CONFIGS:
        if jsonable(configs.get_config(name)) == jsonable(config):
            flag = (
                ""
                if name == "mnist1d_mlp"
                else f" --config=experiments/configs/double_descent.py:{name}"
            )
            return f"python -m experiments.double_descent{flag} --workdir={workdir}"
    return f"experiments.double_descent with the config in {workdir}/config.json"


_LABELS = {
    "test_accuracy": "test accuracy (%) at the end of training",
    "memorisation": "memorisation: accuracy (%) on the flipped training examples "
    "against their noisy labels",
    "train_accuracy": "train accuracy (%) against the labels trained on",
    "l2": "L2 distance of the trained kernels from their initialisation, surviving weights",
    "l2_all": "L2 distance of the trained kernels from the dense initialisation, "
    "pruned weights at 0",
}


def _cell(stat: Mapping[str, Any] | None, scale: float) -> str:
    """Mean ± std; accuracies (`scale` 100) in % with one decimal, distances with two."""
    if stat is None:
        return "—"
    digits = 1 if scale == 100 else 2
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def _rows(results: Mapping[str, Any], metric: str) -> list[str]:
    names = [n for n in results["runs"] if metric != "memorisation" or results["runs"][n]["noise"]]
    head = [
        f"noise {results['runs'][n]['noise']:g}, {results['runs'][n]['retrain']}" for n in names
    ]
    lines = ["| % remaining | " + " | ".join(head) + " |", "|---:" + "|---:" * len(head) + "|"]
    scale = 1.0 if metric.startswith("l2") else 100.0
    rounds = max(len(results["runs"][n]["rounds"]) for n in names)
    for r in range(rounds):
        cells, remaining = [], None
        for n in names:
            mine = results["runs"][n]["rounds"]
            remaining = mine[r]["remaining"] if r < len(mine) else remaining
            cells.append(_cell(mine[r][metric], scale) if r < len(mine) else "")
        label = "100 (dense)" if r == 0 else f"{100 * remaining:.2f}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def table(results: Mapping[str, Any]) -> str:
    """The markdown tables: every metric per % of weights remaining and run."""
    any_run = next(iter(results["runs"].values()))
    lines = [
        f"# {results['title']}",
        "",
        f"    {results['command']}",
        "",
        f"IMP, 20% a round by global magnitude, {results['steps']} training steps a round; "
        f"label noise flips exactly round(noise x {any_run['train_examples']}) training labels "
        f"to a different class; test set clean. Mean ± sample std over seeds "
        f"{results['seeds']}. results.json holds every seed's numbers.",
        "",
    ]
    for metric in ("test_accuracy", "memorisation", "train_accuracy", "l2", "l2_all"):
        lines += [f"## {_LABELS[metric]}", "", *_rows(results, metric), ""]
    return "\n".join(lines).rstrip()


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # Orbax warns at every read-only restore
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print("\n" + table(results))
    print(
        f"\n{results['invocation_wall_s']:.0f} s; results.json, results.md, double_descent.png "
        f"and memorisation.png in {FLAGS.workdir}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/double_descent.py:smoke",
        os.path.join(HERE, "configs", "double_descent.py"),
    )
    app.run(main)
