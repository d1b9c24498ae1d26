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
and variants at once (one vmapped ensemble). Writes `results.json`, `results.md`
(the table it prints: mean ± sample standard deviation over seeds, and with
`imp.validation` held-out examples the step of minimum validation loss) and
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
        steps=sweeps.total_steps(config, len(train_ds) - imp.validation),
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


def _spread(values: Any, ddof: int) -> tuple[float, float]:
    """Mean and standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(np.mean(values)), float(np.std(values, ddof=ddof)) if len(values) > ddof else 0.0


def table(results: dict[str, Any], *, ddof: int = 1) -> str:
    """The results as a text table: test accuracy (%) mean ± std over seeds per round and
    variant (``ddof=1``: sample standard deviations; 0: population); with a validation
    split, also every variant's step of minimum validation loss ("min-val step")."""

    def cell(values, scale=100.0, digits=2):
        mean, std = _spread(values, ddof)
        return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"

    variants, dense = results["variants"], results["dense"]
    steps = "min_val_loss" in dense
    head = [f"{v:>16}" for v in variants]
    if steps:
        head += [f"{v + ' min-val step':>26}" for v in variants]
    lines = ["remaining (round)  " + "  ".join(head)]
    row = [f"{cell(dense['accuracy']):>16}" for _ in variants]
    if steps:
        row += [f"{cell(dense['min_val_loss']['step'], 1, 0):>26}" for _ in variants]
    lines.append(f"{100.0:8.1f}% (dense)  " + "  ".join(row))
    for r in results["rounds"]:
        row = [f"{cell(r['accuracy'][v]):>16}" for v in variants]
        if steps:
            row += [f"{cell(r['min_val_loss'][v]['step'], 1, 0):>26}" for v in variants]
        lines.append(f"{100 * r['remaining']:8.1f}% ({r['round']:>5})  " + "  ".join(row))
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
    text = (
        f"test accuracy (%), mean ± sample std over seeds {results['seeds']}"
        + (
            "; the step of minimum validation loss beside it"
            if "min_val_loss" in results["dense"]
            else ""
        )
        + f":\n{table(results)}\n"
    )
    print("\n" + text)
    if jax.process_index() == 0:
        with open(os.path.join(FLAGS.workdir, "results.md"), "w") as f:
            f.write(f"```\n{text}```\n")
    print(
        f"{time.time() - start:.0f} s; results.json, results.md and lottery.png in {FLAGS.workdir}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
