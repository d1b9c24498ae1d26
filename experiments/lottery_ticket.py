"""The lottery-ticket experiment: iterative magnitude pruning against its baselines.

    python -m experiments.lottery_ticket --workdir=runs/lottery
    python -m experiments.lottery_ticket --workdir=runs/lt_smoke \
        --config=experiments/configs/lottery.py:smoke
    python -m experiments.lottery_ticket --workdir=runs/lt_lenet \
        --config=experiments/configs/lottery.py:lenet_fashion

By default: the MNIST-1D MLP (generated locally), 3 seeds, pruning 20% of the
remaining weights per round (the output layer 10%) down to <= 3.6% remaining,
winning tickets (rewound to their initialisation) against random reinitialisation
and random pruning with the same per-layer counts. Every round trains all seeds
and variants at once (one vmapped ensemble). Writes `results.json` and
`lottery.png` (test accuracy against % weights remaining) into --workdir, and
resumes when rerun with the same command.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from experiments import sweeps
from jaxprune import data, train
from jaxprune.plots import plot_imp
from jaxprune.train.lottery import IMPSettings, run_imp

HERE = os.path.dirname(os.path.abspath(__file__))


def settings(config: ConfigDict) -> IMPSettings:
    """`config.imp` as IMPSettings (lists become tuples)."""
    imp = config.imp.to_dict()
    imp["variants"] = tuple(imp["variants"])
    imp["exclude"] = tuple(imp["exclude"])
    return IMPSettings(**imp)


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the experiment `config` describes in `workdir`; returns the results."""
    sweeps.check_seeds_and_length(config)
    imp = settings(config)  # bad IMP settings fail before the data loads
    train_ds, test_ds = sweeps.datasets(config)
    schedule = train.lr_schedule(config.optim)
    results = run_imp(
        sweeps.model_maker(config, train_ds.num_classes),
        train.optimizer(config.optim, schedule),
        train_ds,
        {"test": test_ds},
        workdir=workdir,
        seeds=list(config.seeds),
        settings=imp,
        batch_size=config.batch_size,
        steps=sweeps.total_steps(config, len(train_ds)),
        data_seed=config.data_seed,
        augment=data.augmentation_for(config.dataset) if config.augment else None,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        progress=progress,
        config=config,
    )
    if jax.process_index() == 0:
        plot_imp(results, os.path.join(workdir, "lottery.png"))
    return results


def table(results: dict[str, Any]) -> str:
    """The results as a text table: mean ± std over seeds per round and variant."""
    variants = results["variants"]
    cell = lambda v: f"{100 * np.mean(v):6.2f} ± {100 * np.std(v):4.2f}"
    lines = ["remaining  " + "  ".join(f"{v:>15}" for v in variants)]
    lines.append(
        f"{100.0:8.1f}%  "
        + "  ".join(f"{cell(results['dense']['accuracy']):>15}" for _ in variants)
    )
    for r in results["rounds"]:
        row = "  ".join(f"{cell(r['accuracy'][v]):>15}" for v in variants)
        lines.append(f"{100 * r['remaining']:8.1f}%  {row}")
    return "\n".join(lines)


def define_flags() -> None:
    """The command-line flags (only when run as a script)."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(HERE, "configs", "lottery.py"),
        "config file and name, e.g. experiments/configs/lottery.py:smoke",
    )
    flags.DEFINE_string("workdir", None, "the run directory (created or resumed)")
    flags.DEFINE_bool("progress", True, "show progress")
    flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    start = time.time()
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print(f"\ntest accuracy (mean ± std over seeds {results['seeds']}):")
    print(table(results))
    print(f"\n{time.time() - start:.0f} s; results.json and lottery.png in {FLAGS.workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
