"""What the sweep experiments share: methods x sparsities x seeds, trained as ensembles.

`prune_at_init.py` and `dynamic_sparse.py` describe every run as a `Member`
(method, sparsity, seed). Members that can share one optax object train
together in one `fit(..., ensemble=True)` call (a "cell", vmapped); each cell is
a run directory under `WORKDIR/cells/`, and a cell whose `results.json` lists
its members is finished and skipped when the command is rerun (an unfinished
one resumes from its last checkpoint). At the end the script writes
`WORKDIR/results.json` (every member and the summary), `WORKDIR/results.md`
(tables) and `WORKDIR/accuracy_vs_sparsity.png`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from absl import flags
from ml_collections import ConfigDict, config_dict

import jaxprune
from experiments import train as _setup
from experiments.configs import train as _train_configs
from jaxprune import data, train
from jaxprune.plots import plot_accuracy_vs_remaining
from jaxprune.train import rundir

PLOT = "accuracy_vs_sparsity.png"

# Fields of a train.py config that a sweep does not read (it has its own seeds,
# methods and sparsities).
_UNUSED = ("seed", "mask", "sparsity", "rewind_step")
# Fields of a sweep config that describe the grid, not how a cell trains.
SWEEP_FIELDS = ("methods", "sparsities", "seeds", "ensemble")


@dataclasses.dataclass(frozen=True)
class Member:
    """One training run of a sweep: a method at a sparsity, from a seed."""

    method: str
    sparsity: float
    seed: int


def members(config: ConfigDict, known: Sequence[str]) -> list[Member]:
    """Every run of a sweep: dense per seed, then sparsity x method x seed.

    Example:
      >>> cfg = ConfigDict(dict(methods=("dense", "a"), sparsities=(0.9,), seeds=(0, 1)))
      >>> [(m.method, m.sparsity, m.seed) for m in members(cfg, ("dense", "a"))][1:3]
      [('dense', 0.0, 1), ('a', 0.9, 0)]
    """
    check_methods(config.methods, known)
    check_sparsities(config.sparsities)
    out = [Member("dense", 0.0, seed) for seed in config.seeds if "dense" in config.methods]
    for s in config.sparsities:
        out += [
            Member(m, float(s), seed)
            for m in config.methods
            if m != "dense"
            for seed in config.seeds
        ]
    return out


def train_config(name: str) -> ConfigDict:
    """The training settings of `experiments/configs/train.py:NAME`, for a sweep config.

    Example:
      >>> train_config("lenet_fashion").optim.learning_rate  # doctest: +SKIP
      0.0012
    """
    config = _train_configs.get_config(name)
    for field in _UNUSED:
        del config[field]
    config.keep_last = 1  # one checkpoint per cell: enough to resume
    return config


def lenet5(config: ConfigDict) -> ConfigDict:
    """A sweep config of `lenet_fashion`'s settings turned into LeNet-5's: 10K steps (10
    epochs), evaluated and checkpointed every 2K, members one by one (on a CPU, vmapped
    convolutions are slower than separate ones)."""
    config.model = "lenet5"
    config.steps = 10_000
    config.eval_every = 2_000
    config.checkpoint_every = 2_000
    config.ensemble = False
    return config


def total_steps(config: ConfigDict, n_train: int) -> int:
    """Training steps of every member (`steps`, or `epochs` of `n_train` examples)."""
    if config.epochs is not None:
        return config.epochs * (n_train // config.batch_size)
    return config.steps


named_config = _train_configs.named_config  # `configs[name]()`, or an error listing the names
datasets = _setup.datasets  # (train, test) splits of `config.dataset`, as train.py loads them
model_maker = _setup.model_maker  # `seed -> model` of `config.model`, as train.py builds it
parsed_flags = _setup.parsed_flags  # absl flags (--config, --workdir, ...) of every script


def with_mask(state: train.TrainState, mask: Any) -> train.TrainState:
    """`state` with its optimizer's mask replaced by `mask` and the weights pruned to it."""
    return state.replace(
        params=jaxprune.apply_mask(state.params, mask),
        opt_state=jaxprune.transforms.replace_mask(state.opt_state, mask),
    )


def _cell_name(member: Member, tx_key: str, ensemble: bool) -> str:
    if ensemble:
        return f"s{member.sparsity:g}-{tx_key}"
    # One member a cell: named by its method (members sharing an optimizer differ there).
    return f"s{member.sparsity:g}-{member.method}-seed{member.seed}"


def plan_cells(
    members: Sequence[Member], tx_key: Callable[[Member], str], ensemble: bool
) -> list[tuple[str, list[Member]]]:
    """Groups members into cells: by (sparsity, optimizer) for ensembles, else one per member.

    Example:
      >>> ms = [Member("a", 0.9, 0), Member("b", 0.9, 0), Member("a", 0.9, 1)]
      >>> [(n, len(g)) for n, g in plan_cells(ms, lambda m: "masked", True)]
      [('s0.9-masked', 3)]
      >>> [n for n, _ in plan_cells(ms, lambda m: "masked", False)]
      ['s0.9-a-seed0', 's0.9-b-seed0', 's0.9-a-seed1']
    """
    cells: dict[str, list[Member]] = {}
    for m in members:
        key = _cell_name(m, tx_key(m), ensemble)
        cells.setdefault(key, []).append(m)
    return list(cells.items())


def run_sweep(
    config: ConfigDict,
    workdir: str,
    *,
    methods: Sequence[str],
    labels: dict[str, str],
    title: str,
    tx_key: Callable[[Member], str],
    make_tx: Callable[[Member], optax.GradientTransformation],
    init_state: Callable[[Member, optax.GradientTransformation], train.TrainState],
    data_splits: tuple[Any, Any],
    cell_config: dict[str, Any],
    method_fields: Mapping[str, str | Sequence[str]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains every member of the grid (cell by cell, skipping finished cells), then writes
    results.json, results.md and the plot.

    Args:
      config: the sweep config (training settings as in experiments/train.py, plus
        `methods`, `sparsities`, `seeds` and `ensemble`).
      workdir: the sweep directory; cells go to `workdir/cells/NAME`.
      methods: the methods the script knows, in table order ("dense" first).
      labels: their names in tables and plots.
      title: of the tables and the plot.
      tx_key: name of the optimizer a member needs; members of one sparsity with
        the same name share one optimizer object and train as one ensemble.
      make_tx: builds the optimizer of a cell from one of its members.
      init_state: the member's initial `TrainState` under that optimizer.
      data_splits: `(train, test)` datasets.
      cell_config: what else defines a cell's training (stored in its config.json,
        so a rerun with other settings is refused instead of mixing results).
      method_fields: config fields that concern some methods only (field -> method or
        methods): left out of the cells without a member of those, so that their run
        directories, made before such a field existed or with another value of it,
        still resume.
      progress: show progress bars.

    Returns:
      The summary: test accuracy per method and sparsity over seeds (`summarise`).
      results.json also holds, per member: method, sparsity, seed, test and train
      accuracy and loss, the final sparsity of its mask, its cell and the cell's
      wall time.
    """
    check_seeds_and_length(config)
    os.makedirs(workdir, exist_ok=True)
    train_ds, test_ds = data_splits
    cells = plan_cells(members(config, methods), tx_key, config.ensemble)
    steps = total_steps(config, len(train_ds))
    schedule = train.lr_schedule(config.optim)
    records = []
    for number, (name, group) in enumerate(cells, 1):
        run = train.RunDir(os.path.join(workdir, "cells", name))
        ids = [dataclasses.asdict(m) for m in group]
        cfg = rundir.jsonable({"training": config.to_dict(), "cell": cell_config, "members": ids})
        for field in SWEEP_FIELDS:  # the grid is not part of a cell's training
            cfg["training"].pop(field, None)
        for field, only in (method_fields or {}).items():
            only = (only,) if isinstance(only, str) else tuple(only)
            if all(m.method not in only for m in group):
                cfg["training"].pop(field, None)
        done = _finished(run, cfg)
        print(
            f"[{number}/{len(cells)}] {name}: {len(group)} member(s)"
            + (" (finished, skipped)" if done else ""),
            flush=True,
        )
        if done is None:
            done = _train_cell(
                config,
                run,
                group,
                cfg,
                make_tx,
                init_state,
                train_ds,
                test_ds,
                steps,
                schedule,
                progress,
            )
        records += done["members"]
    return write_outputs(workdir, records, config, title=title, methods=methods, labels=labels)


def _finished(run: train.RunDir, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The results of a finished cell, or None; refuses a cell trained with another config."""
    if not os.path.exists(run.config):
        return None
    with open(run.config) as f:
        stored = json.load(f).get("config")
    if stored != cfg:
        raise ValueError(
            f"{run.path} holds a cell trained with other settings than this config asks for "
            f"(differs at {rundir.diff_keys(stored, cfg)}); use a new --workdir (or delete "
            "that cell directory to retrain it)."
        )
    if not os.path.exists(run.results):
        return None
    with open(run.results) as f:
        results = json.load(f)
    return results if "members" in results else None


def _train_cell(
    config, run, group, cfg, make_tx, init_state, train_ds, test_ds, steps, schedule, progress
):
    tx = make_tx(group[0])
    states = [init_state(m, tx) for m in group]
    ensemble = len(states) > 1
    state = train.stack_states(states) if ensemble else states[0]
    out = train.fit(
        state,
        train_ds,
        workdir=run.path,
        batch_size=config.batch_size,
        steps=steps,
        seed=config.data_seed,
        eval=train.Evaluation(
            data={"test": test_ds}, every=config.eval_every, batch_size=config.eval_batch_size
        ),
        checkpoints=train.Checkpointing(every=config.checkpoint_every, keep_last=config.keep_last),
        logging=train.Logging(every=config.log_every, progress=progress, lr_schedule=schedule),
        parallel=train.Parallel(ensemble=ensemble),
        augment=data.augmentation_for(config.dataset) if config.augment else None,
        config=cfg,
    )
    wall = out.results["timing"]["wall_s"]  # the training's, over every resumed segment
    as_list = lambda v: list(v) if ensemble else [v]
    test, last = out.results["eval"]["test"], out.results["train"]
    records = []
    for i, m in enumerate(group):
        final = train.member(out.state, i) if ensemble else out.state
        records.append(
            dict(
                dataclasses.asdict(m),
                test_accuracy=as_list(test["accuracy"])[i],
                test_loss=as_list(test["loss"])[i],
                train_accuracy=as_list(last["accuracy"])[i],
                train_loss=as_list(last["loss"])[i],
                final_sparsity=float(jaxprune.sparsity(jaxprune.mask_of(final.opt_state))),
                cell=os.path.basename(run.path),
                cell_wall_s=wall,
            )
        )
    results = dict(out.results, members=records)
    run.write_results(results)
    return results


def seed_stats(values: Sequence[float]) -> dict[str, Any]:
    """Per seed, mean and sample standard deviation (0 for a single seed).

    Example:
      >>> seed_stats([0.5, 0.7])["mean"]
      0.6
    """
    v = np.asarray(values, np.float64)
    return {
        "seeds": v.tolist(),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
    }


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Test accuracy per method and sparsity: mean, sample std, min, max and n over seeds.

    Example:
      >>> rs = [dict(method="a", sparsity=0.9, test_accuracy=v) for v in (0.5, 0.7)]
      >>> summarise(rs)["a"]["0.9"]["mean"]
      0.6
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        out.setdefault(r["method"], {}).setdefault(f"{r['sparsity']:g}", []).append(
            r["test_accuracy"]
        )
    for by_s in out.values():
        for s, values in by_s.items():
            v = np.asarray(values, np.float64)
            by_s[s] = {
                "mean": round(float(v.mean()), 6),
                "std": round(float(v.std(ddof=1)), 6) if len(v) > 1 else 0.0,
                "min": float(v.min()),
                "max": float(v.max()),
                "n": len(v),
            }
    return out


def write_results(
    run_dir: train.RunDir, workdir: str, results: dict[str, Any], markdown: str
) -> bool:
    """Writes a study's results.json (through `run_dir`) and results.md into `workdir`, on
    process 0 only; returns whether this process wrote them (and so draws the plots)."""
    if jax.process_index() != 0:
        return False
    run_dir.write_results(rundir.jsonable(results))
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown + "\n")
    return True


def machine() -> dict[str, Any]:
    """Where the numbers came from: CPU model, cores, backend, versions."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    import flax

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()][:1] + [f"x{jax.device_count()}"],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
    }


def _cell_text(stat: dict[str, float] | None) -> str:
    if stat is None:
        return ""
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def write_outputs(
    workdir: str,
    records: Sequence[dict[str, Any]],
    config: ConfigDict,
    *,
    title: str,
    methods: Sequence[str],
    labels: dict[str, str],
    baseline: str = "dense",
) -> dict[str, Any]:
    """Writes results.json, results.md and the plot into `workdir`; returns the summary.

    The plot shows test accuracy against the percentage of weights remaining
    (log scale), the mean over seeds with a band from the lowest to the highest seed,
    and the `baseline` method as a horizontal line and band.
    """
    summary = summarise(records)
    sparsities = sorted({r["sparsity"] for r in records if r["method"] != baseline})
    seeds = sorted({r["seed"] for r in records})
    results = {
        "title": title,
        "summary": summary,
        "members": list(records),
        "config": config.to_dict(),
        "machine": machine(),
        "seeds": seeds,
    }
    train.RunDir(workdir).write_results(rundir.jsonable(results))
    head = ["method"] + [f"{100 * (1 - s):.3g}% left (s={s:g})" for s in sparsities]
    lines = [
        f"# {title}",
        "",
        f"Test accuracy (%), mean ± sample std over seeds {seeds}; model `{config.model}` on "
        f"`{config.dataset}`, "
        + (f"{config.epochs} epochs" if config.epochs is not None else f"{config.steps} steps")
        + f" of batch {config.batch_size}; machine: {machine()['cpu']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for method in [m for m in methods if m in summary]:
        by_s = summary[method]
        if method == baseline:
            row = [_cell_text(next(iter(by_s.values())))] * len(sparsities)
        else:
            row = [_cell_text(by_s.get(f"{s:g}")) for s in sparsities]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(row) + " |")
    lines += ["", "Every member (test accuracy %, final mask sparsity):", ""]
    lines += [
        "| method | sparsity | seed | test acc | final sparsity | cell |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (methods.index(r["method"]), r["sparsity"], r["seed"])):
        lines.append(
            f"| {labels.get(r['method'], r['method'])} | {r['sparsity']:g} | {r['seed']} | "
            f"{100 * r['test_accuracy']:.2f} | {r['final_sparsity']:.4f} | {r['cell']} |"
        )
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(os.path.join(workdir, PLOT), records, title=title, methods=methods, labels=labels)
    return summary


def plot(
    path: str,
    records: Sequence[dict[str, Any]],
    *,
    title: str,
    methods: Sequence[str],
    labels: dict[str, str],
) -> str:
    """Test accuracy against % of weights remaining (log x): mean and min-max band over
    seeds per method, dense as a horizontal line (`jaxprune.plots`)."""
    values: dict[str, dict[float, list[float]]] = {}
    for r in records:
        values.setdefault(r["method"], {}).setdefault(r["sparsity"], []).append(r["test_accuracy"])
    curves = {}
    for method in methods:
        if method == "dense" or method not in values:
            continue
        points = sorted(values[method].items())
        curves[labels.get(method, method)] = (
            [1.0 - s for s, _ in points],
            [v for _, v in points],
        )
    dense = next(iter(values.get("dense", {}).values()), None)
    n = max(len(v) for by_s in values.values() for v in by_s.values())
    return plot_accuracy_vs_remaining(
        curves, path, dense=dense, title=f"{title}\n(mean and min-max over {n} seeds)"
    )


def smoke(config: ConfigDict, steps: int) -> ConfigDict:
    """A config shrunk to a smoke test: one sparsity, two seeds, `steps` steps on 500 examples,
    evaluated and checkpointed at the start and the end only."""
    config.sparsities = (0.9,)
    config.seeds = (0, 1)
    config.subset = 500
    config.steps = steps
    config.eval_every = config_dict.placeholder(int)  # None, and --config.eval_every=N works
    config.log_every = 10
    config.checkpoint_every = steps
    return config


def define_flags(example: str, default: str | None = None) -> None:
    """The command-line flags of a sweep script: --config (required unless a `default`
    config file is given), --workdir, --progress."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", default, f"config file and name, e.g. {example}")
    flags.DEFINE_string("workdir", None, "the sweep directory (created or resumed)")
    flags.DEFINE_bool("progress", True, "show progress bars")
    flags.mark_flags_as_required(["workdir"] if default else ["config", "workdir"])


def main(run: Callable[..., dict[str, Any]]) -> Callable[[list[str]], None]:
    """The `app.run` entry point of a sweep script whose `run(config, workdir, progress=)`
    returns its summary."""

    def entry(argv: list[str]) -> None:
        FLAGS = parsed_flags(argv)
        run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
        print(f"wrote {os.path.join(FLAGS.workdir, 'results.md')} and {PLOT}")
        with open(os.path.join(FLAGS.workdir, "results.md")) as f:
            print(f.read().split("\n\nEvery member")[0])

    return entry


def check_methods(methods: Sequence[str], known: Sequence[str]) -> None:
    """Raises a ValueError naming unknown methods and the known ones."""
    bad = [m for m in methods if m not in known]
    if bad or not methods:
        raise ValueError(
            f"config.methods={list(methods)}: unknown {bad or 'empty list'}; choose from "
            f"{list(known)}."
        )
    _check_unique("methods", methods, str)


def _check_unique(field: str, values: Sequence[Any], key: Callable[[Any], str]) -> None:
    """Raises a ValueError when two of ``values`` share a key (a cell, a summary entry):
    one run would be trained once and counted twice."""
    keys = [key(v) for v in values]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(
            f"config.{field}={tuple(values)} repeats {repeated}: each would be counted "
            "once per repetition; give each once."
        )


def check_seeds_and_length(config: ConfigDict) -> None:
    """Raises a ValueError unless there are seeds (integers) and a positive batch size and
    number of steps (or of epochs), naming the field."""
    seeds = tuple(config.seeds or ())
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"config.seeds={seeds}: give one or more integer seeds, e.g. (0, 1, 2).")
    _check_unique("seeds", seeds, str)
    for field in ("batch_size", "epochs" if config.get("epochs") is not None else "steps"):
        value = config.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.{field}={value!r}: give a positive integer.")


def check_sparsities(sparsities: Sequence[float]) -> None:
    """Raises a ValueError unless every sparsity is in (0, 1)."""
    if not sparsities or not all(isinstance(s, float | int) and 0 < s < 1 for s in sparsities):
        raise ValueError(
            f"config.sparsities={list(sparsities)}: give fractions of weights to remove in "
            "(0, 1), e.g. (0.9, 0.95)."
        )
    _check_unique("sparsities", sparsities, lambda s: f"{s:g}")  # as cells and tables name them
