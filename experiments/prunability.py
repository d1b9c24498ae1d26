"""Prunability against the intrinsic dimension of the data: how far IMP prunes one MLP
on hidden-manifold tasks that differ only in the dimension of their manifold.

    python -m experiments.prunability --workdir=runs/prunability
    python -m experiments.prunability --workdir=runs/prunability_smoke \
        --config=experiments/configs/prunability.py:smoke

For every intrinsic dimension ``d`` of ``config.study.dims``: lottery-ticket IMP
(`run_imp`, every seed at once, as ``experiments/lottery_ticket.py`` runs it) on the task
``manifold_d<d>`` (``jaxprune.data.hidden_manifold``: inputs of the same size for every
``d``) into ``--workdir/d<d>``; then, per seed, the prunability: the sparsity of the
sparsest round whose test accuracy is within ``config.study.tolerance`` of that seed's
dense network (0 when no round is). The TwoNN estimate of each task's intrinsic dimension
(``jaxprune.analysis.intrinsic_dimension``) is recorded beside the claimed one. Writes
``results.json``, ``results.md`` (the table) and ``prunability.png`` (prunability against
``d``, and accuracy against the weights remaining per ``d``) into --workdir; rerun the
same command to resume (finished IMP rounds are kept).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from experiments import lottery_ticket, sweeps
from jaxprune import analysis, data, train
from jaxprune.plots import plot_prunability
from jaxprune.train.lottery import later_settings

HERE = os.path.dirname(os.path.abspath(__file__))


def imp_config(config: ConfigDict, d: int) -> ConfigDict:
    """The lottery-ticket config of dimension `d`: `config` without `study`, on `manifold_d<d>`."""
    c = copy.deepcopy(config)
    with c.unlocked():
        del c["study"]
    c.dataset = f"manifold_d{d}"
    return c


def prunability(
    dense: list[float], rounds: list[dict[str, Any]], tolerance: float
) -> dict[str, Any]:
    """Per seed, the sparsest round within `tolerance` of the seed's dense accuracy.

    Args:
      dense: the dense test accuracy per seed.
      rounds: `run_imp`'s rounds (``remaining``, ``accuracy["ticket"]`` per seed).
      tolerance: accuracy a round may lose, as a fraction (0.01 = 1 point).

    Returns:
      ``sparsity`` and ``remaining`` per seed (sparsity 0, remaining 1 when no round is
      within `tolerance`), and ``mean_curve``: the same read off the seed-mean accuracies.

    Example:
      >>> rounds = [{"remaining": 0.5, "accuracy": {"ticket": [0.9, 0.8]}},
      ...           {"remaining": 0.25, "accuracy": {"ticket": [0.895, 0.5]}}]
      >>> prunability([0.9, 0.9], rounds, 0.01)["sparsity"]
      [0.75, 0.0]
    """

    def sparsest(base: float, accs: list[float]) -> float:
        ok = [1.0 - r["remaining"] for r, a in zip(rounds, accs) if a >= base - tolerance]
        return max(ok, default=0.0)

    per_seed = np.asarray([r["accuracy"]["ticket"] for r in rounds], np.float64).reshape(
        len(rounds), len(dense)
    )
    sparsity = [sparsest(dense[i], list(per_seed[:, i])) for i in range(len(dense))]
    mean = sparsest(float(np.mean(dense)), list(per_seed.mean(axis=1)))
    return {
        "sparsity": sparsity,
        "remaining": [1.0 - s for s in sparsity],
        "mean_curve": {"sparsity": mean, "remaining": 1.0 - mean},
    }


def run(
    config: ConfigDict, workdir: str, *, progress: bool = True, command: str | None = None
) -> dict[str, Any]:
    """Runs (or resumes) the study `config` describes in `workdir`; returns the results
    (`command`: the command line recorded with them; default: the plain one)."""
    dims = [int(d) for d in config.study.dims]
    if not dims or len(set(dims)) != len(dims) or min(dims) < 1:
        raise ValueError(f"config.study.dims={tuple(dims)}: expected distinct positive ints.")
    for d in dims:
        lottery_ticket.settings(imp_config(config, d))  # bad settings fail before training
    run_dir = train.RunDir(workdir)
    run_dir.create()
    run_dir.check_or_write_config(
        {"config": train.rundir.jsonable(config)}, later=later_settings("config.imp")
    )
    start = time.perf_counter()
    rows = []
    for number, d in enumerate(dims, 1):
        print(f"[{number}/{len(dims)}] intrinsic dimension {d}", flush=True)
        imp = lottery_ticket.run(
            imp_config(config, d), os.path.join(workdir, f"d{d:02d}"), progress=progress
        )
        dense = [float(a) for a in imp["dense"]["accuracy"]]
        x = data.load(f"manifold_d{d}", "train").x
        rows.append(
            {
                "dim": d,
                "twonn_dim": analysis.intrinsic_dimension(x[:4000]),
                "dense": dense,
                "rounds": [
                    {"remaining": r["remaining"], "accuracy": r["accuracy"]["ticket"]}
                    for r in imp["rounds"]
                ],
                **prunability(dense, imp["rounds"], config.study.tolerance),
            }
        )
    results = {
        "command": command or f"python -m experiments.prunability --workdir={workdir}",
        "seeds": list(config.seeds),
        "tolerance": config.study.tolerance,
        "dims": rows,
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter()
        - start,  # this invocation only (resumed runs: less)
    }
    markdown = f"`{results['command']}`\n\n{table(results)}"
    if sweeps.write_results(run_dir, workdir, results, markdown):
        plot_prunability(results, os.path.join(workdir, "prunability.png"))
    return results


def _cell(values: Any, scale: float = 100.0, digits: int = 1) -> str:
    v = scale * np.asarray(values, np.float64)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table: per intrinsic dimension, the TwoNN estimate, the
    dense accuracy, the accuracy at the sparsest round and the prunability (mean ± sample
    std over seeds), and the prunability read off the seed-mean curve.

    Example:
      >>> row = {"dim": 2, "twonn_dim": 2.01, "dense": [0.9, 0.92], "sparsity": [0.8, 0.9],
      ...        "remaining": [0.2, 0.1], "mean_curve": {"sparsity": 0.8},
      ...        "rounds": [{"remaining": 0.1, "accuracy": [0.5, 0.6]}]}
      >>> print(table({"tolerance": 0.01, "dims": [row]}).splitlines()[2])
      | 2 | 2.0 | 91.0 ± 1.4 | 55.0 ± 7.1 (10.0%) | 85.0 ± 7.1 | 15.0 ± 7.1 | 80.0 |
    """
    lines = [
        f"| d | TwoNN | dense acc. (%) | acc. at the last round (% left) | prunability "
        f"(% sparsity, within {100 * results['tolerance']:g} pt) | % of weights left there "
        "| prunability of the mean curve (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["dims"]:
        last = row["rounds"][-1]
        lines.append(
            f"| {row['dim']} | {row['twonn_dim']:.1f} | {_cell(row['dense'])} | "
            f"{_cell(last['accuracy'])} ({100 * last['remaining']:.1f}%) | "
            f"{_cell(row['sparsity'])} | {_cell(row['remaining'])} | "
            f"{100 * row['mean_curve']['sparsity']:.1f} |"
        )
    return "\n".join(lines)


def define_flags() -> None:
    """The command-line flags (only when run as a script)."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(HERE, "configs", "prunability.py"),
        "config file and name, e.g. experiments/configs/prunability.py:smoke",
    )
    flags.DEFINE_string("workdir", None, "the run directory (created or resumed)")
    flags.DEFINE_bool("progress", True, "show progress")
    flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    command = "python -m experiments.prunability " + " ".join(sys.argv[1:])
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress, command=command)
    print("\n" + table(results))
    print(
        f"{results['invocation_wall_s']:.0f} s; results.json, results.md and prunability.png in "
        f"{FLAGS.workdir}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
