"""AP and COLT against IMP: the same sparsity every round, the same training of a ticket.

    python -m experiments.ap_colt --workdir=runs/ap_colt
    python -m experiments.ap_colt --workdir=runs/ap_colt_smoke \
        --config=experiments/configs/ap_colt.py:smoke

Three arms on the same seeds, data order and training of a round (the lottery-ticket main
job's: the MNIST-1D MLP, 20% of the remaining weights per round, the output layer 10%):

- ``imp``: IMP tickets rewound to the initialisation (``run_imp``);
- ``ap``: the same with AP (Liu et al. 2022): ``ap_share`` of every round's budget is
  pruned among the kept negative weights that moved least over the round
  (``IMPSettings.ap_share``);
- ``colt``: cyclic overlapping lottery tickets (Hossain et al. 2022, ``run_colt``): the
  training data split into ``colt.segments`` segments, a copy trained on each from the
  initialisation, the next mask their overlap at IMP's count of the round.

All three prune the same counts per layer every round, so round r of every arm sits at
the same sparsity. Steps: an IMP (or AP) round trains its tickets ``steps`` steps, which
are also its search for the next mask; a COLT round trains each segment's copy
``segment_steps`` (default ``steps / segments``: the same search steps as IMP) and then
its overlap ticket on the whole data for ``steps``, the ticket whose accuracy is
reported (the same training as an IMP ticket). The dead-unit rates of every ticket are
recorded on the test set at the end of its round.

Writes ``imp/``, ``ap/``, ``colt/`` (resumable run directories: rerun the same command),
``results.json`` (per round and arm: accuracy and dead-unit rates per seed with mean and
sample std; the paired differences AP - IMP and COLT - IMP per seed with their mean and
std), ``results.md`` and ``ap_colt.png``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from experiments import lottery_ticket, sweeps
from experiments.configs import ap_colt as configs
from jaxprune import train
from jaxprune.plots import plot_ap_colt
from jaxprune.train.colt import run_colt
from jaxprune.train.deadunits import RATES
from jaxprune.train.lottery import IMPSettings, run_imp
from jaxprune.train.rundir import jsonable, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = ("imp", "ap", "colt")


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the three arms `config` describes in `workdir`; returns the results."""
    sweeps.check_seeds_and_length(config)
    imp = _settings(config)
    train_ds, test_ds = sweeps.datasets(config)
    steps = sweeps.total_steps(config, len(train_ds))
    common = dict(
        workdir=None,
        seeds=list(config.seeds),
        batch_size=config.batch_size,
        steps=steps,
        data_seed=config.data_seed,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        progress=progress,
        config=config,
    )
    args = (
        sweeps.model_maker(config, train_ds.num_classes),
        train.optimizer(config.optim, train.lr_schedule(config.optim)),
        train_ds,
        {"test": test_ds},
    )
    start = time.perf_counter()
    out = {}
    for arm, settings in (("imp", imp), ("ap", _replace(imp, ap_share=config.ap_share))):
        if progress:
            print(f"--- {arm}")
        out[arm] = run_imp(
            *args, **{**common, "workdir": os.path.join(workdir, arm)}, settings=settings
        )
    if progress:
        print("--- colt")
    out["colt"] = run_colt(
        *args,
        **{**common, "workdir": os.path.join(workdir, "colt")},
        settings=imp,
        segments=config.colt.segments,
        segment_steps=config.colt.segment_steps,
        split_seed=config.colt.split_seed,
    )
    results = summarise(out, config, workdir)
    results["invocation_wall_s"] = time.perf_counter() - start  # this call only
    if jax.process_index() == 0:
        write_json(os.path.join(workdir, "results.json"), jsonable(results))
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(table(results) + "\n")
        plot_ap_colt(results, os.path.join(workdir, "ap_colt.png"))
    return results


def _settings(config: ConfigDict) -> IMPSettings:
    """IMP's settings from ``config.imp`` (plain IMP: AP's share is ``config.ap_share``)."""
    return _replace(lottery_ticket.settings(config), ap_share=0.0, record_dead_units=True)


def _replace(settings: IMPSettings, **changes: Any) -> IMPSettings:
    return dataclasses.replace(settings, **changes)


def summarise(
    out: Mapping[str, Mapping[str, Any]], config: ConfigDict, workdir: str
) -> dict[str, Any]:
    """The arms side by side, round by round (as far as all three got)."""
    rounds = []
    for by_arm in zip(*(out[a]["rounds"] for a in ARMS)):
        remaining = {a: r["remaining"] for a, r in zip(ARMS, by_arm)}
        assert len(set(remaining.values())) == 1, f"arms at different sparsities: {remaining}"
        acc = {a: np.asarray(r["accuracy"]["ticket"]) for a, r in zip(ARMS, by_arm)}
        rounds.append(
            {
                "round": by_arm[0]["round"],
                "remaining": by_arm[0]["remaining"],
                "accuracy": {a: sweeps.seed_stats(acc[a]) for a in ARMS},
                "paired": {f"{a} - imp": sweeps.seed_stats(acc[a] - acc["imp"]) for a in ARMS[1:]},
                "dead_units": {
                    a: {rate: sweeps.seed_stats(r["dead_units"]["ticket"][rate]) for rate in RATES}
                    for a, r in zip(ARMS, by_arm)
                },
                "colt_segment_remaining": by_arm[2]["segment_remaining"],
            }
        )
    dense = out["imp"]["dense"]
    return {
        "title": f"IMP, IMP + AP and COLT: {config.model} on {config.dataset}",
        "command": _command(config, workdir),
        "seeds": list(config.seeds),
        "arms": list(ARMS),
        "ap_share": config.ap_share,
        "colt": {**config.colt.to_dict(), **{"steps": out["colt"]["steps"]}},
        "steps": out["imp"]["dense"]["steps"],
        "dense": {
            "accuracy": sweeps.seed_stats(dense["accuracy"]),
            "dead_units": {rate: sweeps.seed_stats(dense["dead_units"][rate]) for rate in RATES},
        },
        "rounds": rounds,
        "machine": sweeps.machine(),
    }


def _command(config: ConfigDict, workdir: str) -> str:
    for name, make in configs.CONFIGS.items():
        if jsonable(make()) == jsonable(config):
            flag = (
                "" if name == "mnist1d_mlp" else f" --config=experiments/configs/ap_colt.py:{name}"
            )
            return f"python -m experiments.ap_colt{flag} --workdir={workdir}"
    return f"experiments.ap_colt with the config in {workdir}/imp/config.json"


def _cell(stat: Mapping[str, Any], scale: float = 100.0) -> str:
    return f"{scale * stat['mean']:.1f} ± {scale * stat['std']:.1f}"


def table(results: Mapping[str, Any]) -> str:
    """The markdown table: test accuracy, paired differences and the dynamic dead-unit rate
    (%) per round and arm, mean ± sample std over the seeds."""
    head = [
        "% remaining",
        "IMP",
        "IMP + AP",
        "COLT",
        "AP - IMP (paired)",
        "COLT - IMP (paired)",
    ] + [f"DNR {a.upper()}" for a in ARMS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    dense = results["dense"]
    lines.append(
        f"| 100 (dense) | {_cell(dense['accuracy'])} | | | | | "
        f"{_cell(dense['dead_units']['dynamic'])} | | |"
    )
    for r in results["rounds"]:
        cells = [f"{100 * r['remaining']:.1f}"]
        cells += [_cell(r["accuracy"][a]) for a in ARMS]
        cells += [_cell(r["paired"][f"{a} - imp"]) for a in ARMS[1:]]
        cells += [_cell(r["dead_units"][a]["dynamic"]) for a in ARMS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def define_flags() -> None:
    """The command-line flags (only when run as a script)."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(HERE, "configs", "ap_colt.py"),
        "config file and name, e.g. experiments/configs/ap_colt.py:smoke",
    )
    flags.DEFINE_string("workdir", None, "the run directory (created or resumed)")
    flags.DEFINE_bool("progress", True, "show progress")
    flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print(
        f"\ntest accuracy (%), mean ± sample std over seeds {results['seeds']}; DNR = dynamic "
        f"dead-unit rate (%) on the test set:\n{table(results)}\n"
    )
    print(f"results.json, results.md and ap_colt.png in {FLAGS.workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
