"""Dead ReLU units of the networks an IMP run trained, against the fraction of weights left.

    python -m experiments.dead_units --imp_workdir=runs/lottery --workdir=runs/dead_units

For every finished round of a ``run_imp`` directory (``experiments/lottery_ticket.py``;
a run still going is read as far as it got) and every member (variant x seed), the
trained state of the round is restored from its final checkpoint and the outputs of
every hidden ReLU are read (``jaxprune.models.features``) on the test set and on the
first ``--train_examples`` training examples. ``jaxprune.analysis.dead_unit_rate`` gives
the static rate (units inactive on every example) and the dynamic rate (the fraction
of units inactive on an example, averaged over the examples), per layer and in total.
The dense network (round 0) is measured too. The model, the data and the ensemble
template are rebuilt from the IMP directory's ``config.json``; nothing is written
there. Writes ``results.json``, ``results.md`` (the table) and ``dead_units.png``
(``jaxprune.plots.plot_dead_units``) into --workdir; each round's numbers are kept in
``rounds/round_NN.json``, so a rerun measures only the rounds not done yet (and the
rounds the IMP run has finished since).
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
from absl import app, flags, logging
from ml_collections import ConfigDict
from tqdm.auto import tqdm

from experiments import lottery_ticket, sweeps
from experiments.configs import lottery as lottery_configs
from jaxprune import train
from jaxprune.plots import plot_dead_units
from jaxprune.train.deadunits import RATES, member_dead_units
from jaxprune.train.lottery import IMPSettings, imp_initial_states, plan_imp
from jaxprune.train.rundir import jsonable, write_json
from jaxprune.train.state import members_of

SPLITS = ("test", "train")


def run(
    imp_workdir: str,
    workdir: str,
    *,
    train_examples: int = 2000,
    batch_size: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Measures (or reads back) the dead-unit rates of every finished round; returns the results.

    Args:
      imp_workdir: a directory ``run_imp`` wrote (finished or not); only read.
      workdir: where the results go (created or resumed).
      train_examples: how many training examples (the first ones of the split the IMP
        run trained on) the ``"train"`` rates are measured on.
      batch_size: examples per forward pass.
      progress: show a progress bar over the rounds.

    Returns:
      ``results.json``: ``dense`` and one entry per round in ``rounds``, each with
      ``remaining`` and, per split and variant, ``total`` and ``per_layer`` rates.

    Raises:
      FileNotFoundError: `imp_workdir` holds no ``config.json`` (not a ``run_imp``
        directory), or its dense run has not finished.
      ValueError: a bad `train_examples` or `batch_size`, or `workdir` holds
        results measured with other settings.
    """
    for name, value in (("train_examples", train_examples), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{name} must be a positive integer; got {value!r} (dead_units.run). "
                f"Pass e.g. --{name}=1000."
            )
    record = read_imp_json(imp_workdir, "config.json")
    finished = _finished_rounds(imp_workdir)
    config = ConfigDict(record["config"])
    train_ds, test_ds = sweeps.datasets(config)
    inputs = {"test": test_ds.x, "train": train_ds.x[:train_examples]}
    out = train.RunDir(workdir)
    out.create()
    out.check_or_write_config(
        {"imp": record, "train_examples": len(inputs["train"]), "splits": list(SPLITS)}
    )
    settings = lottery_ticket.settings(ConfigDict({"imp": record["imp"]}))
    template = imp_template(config, settings, record["seeds"], train_ds.num_classes)
    plan = plan_imp(settings, seeds=record["seeds"], batch_size=1, steps=record["steps"])
    variants = record["imp"]["variants"]
    names = [(v, s) for v in variants for s in record["seeds"]]
    todo = [(0, 1.0, "round_00", [("dense", s) for s in record["seeds"]])] + [
        (r["round"], r["remaining"], f"round_{r['round']:02d}", names) for r in finished
    ]
    os.makedirs(os.path.join(workdir, "rounds"), exist_ok=True)
    start = time.perf_counter()
    measured = []
    for number, remaining, directory, members in tqdm(
        todo, disable=not progress, unit="round", dynamic_ncols=True
    ):
        done = os.path.join(workdir, "rounds", f"{directory}.json")
        if not os.path.exists(done):
            state = train.restore_checkpoint(
                os.path.join(imp_workdir, directory),
                _stack(template, len(members) // len(record["seeds"])),
                plan.round_steps if number else plan.steps,
            )
            rates = _member_rates(state, inputs, batch_size)
            write_json(done, _round_record(number, remaining, members, rates))
        with open(done) as f:
            measured.append(json.load(f))
    results = {
        "title": f"Dead ReLU units of {config.model} on {config.dataset} across IMP rounds",
        "imp_workdir": os.path.abspath(imp_workdir),
        "imp_command": _imp_command(record, imp_workdir),
        "command": _command(imp_workdir, workdir, train_examples, batch_size),
        "seeds": record["seeds"],
        "variants": variants,
        "examples": {split: len(x) for split, x in inputs.items()},
        "dense": measured[0],
        "rounds": measured[1:],
        "invocation_wall_s": time.perf_counter() - start,  # this call only
    }
    if jax.process_index() == 0:
        out.write_results(jsonable(results))
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(table(results) + "\n")
        plot_dead_units(results, os.path.join(workdir, "dead_units.png"))
    return results


def read_imp_json(directory: str, name: str) -> dict[str, Any]:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: --imp_workdir must be a directory experiments.lottery_ticket "
            "(run_imp) wrote, with its dense run (round_00) finished."
        )
    with open(path) as f:
        return json.load(f)


def _finished_rounds(imp_workdir: str) -> list[dict[str, Any]]:
    """The pruning rounds run_imp has finished (its results.json lists them; before the
    first one ends there is none, and the dense run must have finished)."""
    if os.path.exists(os.path.join(imp_workdir, "results.json")):
        return read_imp_json(imp_workdir, "results.json")["rounds"]
    read_imp_json(os.path.join(imp_workdir, "round_00"), "results.json")
    return []


def imp_template(
    config: ConfigDict, settings: IMPSettings, seeds: Sequence[int], num_classes: int
) -> train.TrainState:
    """run_imp's initial stack (one state per seed), built as run_imp builds it: the
    structure its checkpoints restore into."""
    inner_tx = train.optimizer(config.optim, train.lr_schedule(config.optim))
    make_model = sweeps.model_maker(config, num_classes)
    return imp_initial_states(make_model, inner_tx, settings, seeds)


def _stack(template: train.TrainState, copies: int) -> train.TrainState:
    """A round's ensemble template: `copies` variants of every seed, variant-major."""
    n = members_of(template)
    return train.stack_states([train.member(template, i) for _ in range(copies) for i in range(n)])


def _member_rates(
    state: train.TrainState, inputs: Mapping[str, np.ndarray], batch_size: int
) -> list[dict[str, Any]]:
    """Per member, per split: the dead-unit rates (total and per layer)."""
    rates = {
        split: member_dead_units(state, x, batch_size=batch_size) for split, x in inputs.items()
    }
    return [{split: rates[split][i] for split in inputs} for i in range(members_of(state))]


def _round_record(
    number: int,
    remaining: float,
    members: Sequence[tuple[str, int]],
    rates: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """One round: per split and variant, every rate per seed with its mean and std."""
    record: dict[str, Any] = {"round": number, "remaining": remaining}
    for split in SPLITS:
        record[split] = {}
        for variant in dict.fromkeys(v for v, _ in members):
            mine = [rates[j][split] for j, (v, _) in enumerate(members) if v == variant]
            layers = mine[0]["per_layer"]
            record[split][variant] = {
                "total": {r: sweeps.seed_stats([m["total"][r] for m in mine]) for r in RATES},
                "per_layer": {
                    path: {
                        "units": layer["units"],
                        **{
                            r: sweeps.seed_stats([m["per_layer"][path][r] for m in mine])
                            for r in RATES
                        },
                    }
                    for path, layer in layers.items()
                },
            }
    return record


def _imp_command(record: Mapping[str, Any], imp_workdir: str) -> str:
    """The lottery command that wrote `imp_workdir`, when its config is a named one."""
    for name in lottery_configs.CONFIGS:
        if jsonable(lottery_configs.get_config(name)) == record["config"]:
            flag = (
                "" if name == "mnist1d_mlp" else f" --config=experiments/configs/lottery.py:{name}"
            )
            return f"python -m experiments.lottery_ticket{flag} --workdir={imp_workdir}"
    return f"experiments.lottery_ticket with the config in {imp_workdir}/config.json"


def _command(imp_workdir: str, workdir: str, train_examples: int, batch_size: int) -> str:
    extra = "" if train_examples == 2000 else f" --train_examples={train_examples}"
    extra += "" if batch_size == 1000 else f" --batch_size={batch_size}"
    return (
        f"python -m experiments.dead_units --imp_workdir={imp_workdir} --workdir={workdir}{extra}"
    )


def _cell(stat: Mapping[str, Any]) -> str:
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def _rows(results: Mapping[str, Any], split: str) -> list[str]:
    variants = results["variants"]
    head = [f"{v.replace('_', ' ')}: {r}" for r in RATES for v in variants]
    lines = ["| % remaining | " + " | ".join(head) + " |", "|---:" + "|---:" * len(head) + "|"]
    dense = results["dense"][split]["dense"]["total"]
    lines.append(
        "| 100 (dense) | " + " | ".join(_cell(dense[r]) for r in RATES for _ in variants) + " |"
    )
    for rnd in results["rounds"]:
        by = rnd[split]
        cells = [_cell(by[v]["total"][r]) for r in RATES for v in variants]
        lines.append(f"| {100 * rnd['remaining']:.1f} | " + " | ".join(cells) + " |")
    return lines


def table(results: Mapping[str, Any]) -> str:
    """The markdown tables: static and dynamic dead-unit rates (%) per round and variant."""
    seeds = results["seeds"]
    lines = [
        f"# {results['title']}",
        "",
        f"    {results['command']}",
        "",
        f"IMP run: `{results['imp_command']}`. Dead-unit rates (%) of the hidden ReLUs, all "
        f"layers together (weighted by units), mean ± sample std over seeds {seeds}: "
        "static = units inactive (output <= 0) on every example; dynamic = fraction of "
        "units inactive on an example, averaged over the examples (Liu et al. 2022). "
        "Every network is measured at the end of its round's training. results.json holds "
        "the per-seed and per-layer rates.",
        "",
    ]
    for split in SPLITS:
        n = results["examples"][split]
        where = "test set" if split == "test" else "first training examples"
        lines += [f"## {where} ({n} examples)", "", *_rows(results, split), ""]
    return "\n".join(lines).rstrip()


def define_flags() -> None:
    """The command-line flags (only when run as a script)."""
    flags.DEFINE_string("imp_workdir", None, "the run_imp directory to measure (only read)")
    flags.DEFINE_string("workdir", None, "where the results go (created or resumed)")
    flags.DEFINE_integer("train_examples", 2000, "training examples the train rates use")
    flags.DEFINE_integer("batch_size", 1000, "examples per forward pass")
    flags.DEFINE_bool("progress", True, "show progress")
    flags.mark_flags_as_required(["imp_workdir", "workdir"])


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # Orbax warns at every read-only restore
    results = run(
        FLAGS.imp_workdir,
        FLAGS.workdir,
        train_examples=FLAGS.train_examples,
        batch_size=FLAGS.batch_size,
        progress=FLAGS.progress,
    )
    print("\n" + table(results))
    print(f"\nresults.json, results.md and dead_units.png in {FLAGS.workdir}", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
