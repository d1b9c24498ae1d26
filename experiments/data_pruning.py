"""Data pruning: test accuracy against the fraction of the training set kept, by score.

    python -m experiments.data_pruning --workdir=runs/data_pruning_mnist1d
    python -m experiments.data_pruning --workdir=runs/data_pruning_fashion \
        --config=experiments/configs/data_pruning.py:fashion_mnist

The training examples are scored once per dataset, each score the mean over the
config's `score_seeds` models (`jaxprune.train.data_scores`): EL2N and GraNd after
`score_epochs` epochs (Paul, Ganguli & Dziugaite, 2021, "Deep Learning on a Data
Diet"), GraNd at initialisation, and forgetting events over `forgetting_epochs`
epochs (Toneva et al., 2019; never-learnt examples count as forgotten infinitely
often). For every score, the hardest (highest scores) or the easiest (lowest) fraction
of the examples is kept, ties broken at random; `random` keeps a random subset. A
model per seed trains on the subset for `epochs` epochs (the seeds of a subset train
at once, vmapped, in one data order: they differ in their initialisation) and is
tested on the whole test split.

Resumable: the scores are cached in `WORKDIR/scores.npz`, each subset's record is
written atomically to `WORKDIR/records/NAME.json` as it finishes and skipped when the
command is rerun (an unfinished subset resumes from its last checkpoint); a rerun with
other `fractions`, `scores` or `keeps` reuses the finished subsets and writes results
for the ones it asks for. At the end
the script writes `WORKDIR/results.json`, `results.md` and `data_pruning.png`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from absl import app
from ml_collections import ConfigDict
from tqdm.auto import tqdm

from experiments import sweeps
from experiments.configs.data_pruning import KEEPS, SCORES
from jaxprune import train
from jaxprune.plots import plot_data_pruning
from jaxprune.train import rundir

PLOT = "data_pruning.png"
LABELS = {
    "el2n": "EL2N",
    "grand": "GraNd",
    "grand_init": "GraNd at init",
    "forgetting": "forgetting",
    "random": "random",
    "full": "full data",
}
# Fields that only choose which subsets the study trains: left out of the stored
# configs, so a rerun with other fractions, scores or keeps reuses what is done.
GRID = ("scores", "keeps", "fractions")
TIE_KEY = 0x7105  # the random tie-break of equal scores folds this into data_seed
RANDOM_KEY = 0x5AD0  # random subsets fold this into data_seed


def check(config: ConfigDict, n_train: int) -> None:
    """Raises a ValueError naming the config field that cannot make a study."""
    sweeps.check_seeds_and_length(config)
    bad = [s for s in config.scores if s not in SCORES] or (not config.scores and ["(none)"])
    if bad:
        raise ValueError(
            f"config.scores={tuple(config.scores)}: unknown {bad}; choose from {SCORES}."
        )
    bad = [k for k in config.keeps if k not in KEEPS] or (not config.keeps and ["(none)"])
    if bad:
        raise ValueError(f"config.keeps={tuple(config.keeps)}: unknown {bad}; choose from {KEEPS}.")
    fractions = tuple(config.fractions)
    if not fractions or not all(isinstance(f, float | int) and 0 < f <= 1 for f in fractions):
        raise ValueError(
            f"config.fractions={fractions}: give fractions of the training set to keep in "
            "(0, 1], e.g. (0.1, 0.5, 1.0)."
        )
    small = [f for f in fractions if round(f * n_train) < config.batch_size]
    if small:
        raise ValueError(
            f"config.fractions {small} keep fewer than batch_size={config.batch_size} of the "
            f"{n_train} training examples; raise them or lower the batch size."
        )
    if not 1 <= config.score_epochs <= max(config.score_epochs, config.forgetting_epochs):
        raise ValueError(f"config.score_epochs={config.score_epochs}: give a positive int.")


def settings(config: ConfigDict) -> dict[str, Any]:
    """What makes scores and runs comparable: the config without its `GRID` fields."""
    out = rundir.jsonable(config.to_dict())
    for field in GRID:
        out.pop(field, None)
    return out


def _optimizer(config: ConfigDict):
    return train.optimizer(config.optim, train.lr_schedule(config.optim))


def _stack(config: ConfigDict, seeds, num_classes: int, tx) -> tuple[train.TrainState, bool]:
    """The initial states of `seeds` (one object `tx`), stacked when there are several."""
    make = sweeps.model_maker(config, num_classes)
    states = [train.create_train_state(make(s), tx, seed=s) for s in seeds]
    return (train.stack_states(states), True) if len(states) > 1 else (states[0], False)


def score_examples(config: ConfigDict, train_ds: Any, *, progress: bool) -> dict[str, np.ndarray]:
    """Every score of `config.scores` (but random) per training example, averaged over
    the `score_seeds` models."""
    wanted = [s for s in config.scores if s != "random"]
    if not wanted:
        return {}
    state, ensemble = _stack(config, config.score_seeds, train_ds.num_classes, _optimizer(config))
    epochs = config.score_epochs
    if "forgetting" in wanted:
        epochs = max(epochs, config.forgetting_epochs)
    if wanted == ["grand_init"]:
        epochs = 1  # nothing is trained for it; one epoch keeps the call simple
    run = train.train_for_scores(
        state,
        train_ds,
        epochs=epochs,
        batch_size=config.batch_size,
        snapshots=(0, config.score_epochs),
        seed=config.data_seed,
        ensemble=ensemble,
        eval_batch_size=config.eval_batch_size,
        progress=progress,
    )
    early, options = run.snapshots[config.score_epochs], dict(ensemble=ensemble)
    scores = {}
    if "el2n" in wanted:
        scores["el2n"] = train.el2n_scores(early, train_ds, batch_size=1000, **options)
    if "grand" in wanted:
        scores["grand"] = train.grand_scores(
            early, train_ds, batch_size=config.score_batch_size, **options
        )
    if "grand_init" in wanted:
        scores["grand_init"] = train.grand_scores(
            run.snapshots[0], train_ds, batch_size=config.score_batch_size, **options
        )
    if "forgetting" in wanted:
        scores["forgetting"] = train.forgetting_events(run.correct[: config.forgetting_epochs + 1])
    return scores


def cached_scores(
    config: ConfigDict, train_ds: Any, workdir: str, *, progress: bool
) -> dict[str, np.ndarray]:
    """The scores from `WORKDIR/scores.npz`; those missing are computed and the file is
    rewritten atomically."""
    path = os.path.join(workdir, "scores.npz")
    scores: dict[str, np.ndarray] = {}
    if os.path.exists(path):
        with np.load(path) as f:
            scores = {k: f[k] for k in f.files}
    missing = [s for s in config.scores if s != "random" and s not in scores]
    if not missing:
        return scores
    print(f"scoring the training examples ({', '.join(missing)}) ...", flush=True)
    wanted = ConfigDict(config.to_dict())
    wanted.scores = tuple(missing)
    scores.update(score_examples(wanted, train_ds, progress=progress))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **scores)
    os.replace(tmp, path)
    return scores


def keep_order(scores: np.ndarray, keep: str, seed: int) -> np.ndarray:
    """Example positions from the first to keep to the last: highest scores first for
    `hardest`, lowest first for `easiest`; equal scores in a random order from `seed`.

    Example:
      >>> keep_order(np.array([0.5, 2.0, 0.1]), "hardest", 0).tolist()
      [1, 0, 2]
    """
    tie = np.random.default_rng([seed, TIE_KEY]).permutation(len(scores))
    by = -np.asarray(scores, np.float64) if keep == "hardest" else np.asarray(scores, np.float64)
    return np.lexsort((tie, by))


def plan(config: ConfigDict, n_train: int) -> list[dict[str, Any]]:
    """Every subset to train: score x keep x fraction (random: one per fraction), and the
    full training set once.

    Example:
      >>> c = ConfigDict(dict(scores=("el2n", "random"), keeps=("hardest",), fractions=(0.5, 1.0)))
      >>> [p["name"] for p in plan(c, 100)]
      ['full', 'el2n-hardest-0.5', 'random-0.5']
    """
    cells = [dict(name="full", score="full", keep="all", fraction=1.0, size=n_train)]
    for fraction in sorted(f for f in config.fractions if f < 1):
        for score in config.scores:
            for keep in ("random",) if score == "random" else config.keeps:
                name = (
                    f"{score}-{fraction:g}" if score == "random" else f"{score}-{keep}-{fraction:g}"
                )
                size = int(round(fraction * n_train))
                cells.append(dict(name=name, score=score, keep=keep, fraction=fraction, size=size))
    return cells


def subset(config: ConfigDict, cell: dict[str, Any], scores: dict[str, np.ndarray], n: int):
    """Positions of the examples `cell` keeps (in training-set order)."""
    if cell["score"] == "full":
        return np.arange(n)
    if cell["score"] == "random":
        order = np.random.default_rng([config.data_seed, RANDOM_KEY]).permutation(n)
    else:
        order = keep_order(scores[cell["score"]], cell["keep"], config.data_seed)
    return np.sort(order[: cell["size"]])


def train_cell(
    config: ConfigDict, cell: dict[str, Any], kept: np.ndarray, data_splits, workdir: str, progress
) -> list[dict[str, Any]]:
    """Trains a model per seed on the examples `kept`; returns a record per seed."""
    train_ds, test_ds = data_splits
    part = train_ds.take(kept)
    state, ensemble = _stack(config, config.seeds, train_ds.num_classes, _optimizer(config))
    out = train.fit(
        state,
        part,
        workdir=os.path.join(workdir, "cells", cell["name"]),
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.data_seed,
        eval=train.Evaluation(data={"test": test_ds}, batch_size=config.eval_batch_size),
        checkpoints=train.Checkpointing(every=config.checkpoint_every, keep_last=1),
        logging=train.Logging(every=config.log_every, progress=progress),
        parallel=train.Parallel(ensemble=ensemble),
        config={"training": settings(config), "cell": cell},
    )
    as_list = lambda v: list(v) if ensemble else [v]
    test, last = out.results["eval"]["test"], out.results["train"]
    return [
        dict(
            cell,
            seed=seed,
            test_accuracy=as_list(test["accuracy"])[i],
            test_loss=as_list(test["loss"])[i],
            train_accuracy=as_list(last["accuracy"])[i],
            steps=out.results["step"],
            cell_wall_s=out.results["timing"]["wall_s"],
        )
        for i, seed in enumerate(config.seeds)
    ]


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Test accuracy per curve ("score/keep") and fraction: mean, sample std, min, max, n.

    Example:
      >>> rs = [dict(score="el2n", keep="easiest", fraction=0.5, test_accuracy=v) for v in (0.5, 0.7)]
      >>> summarise(rs)["el2n/easiest"]["0.5"]["mean"]
      0.6
    """
    return sweeps.summarise(
        [
            dict(
                method="full" if r["score"] == "full" else f"{r['score']}/{r['keep']}",
                sparsity=r["fraction"],  # sweeps' grid key: here the fraction kept
                test_accuracy=r["test_accuracy"],
            )
            for r in records
        ]
    )


def score_correlations(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Spearman rank correlation between every two scores (ties get their mean rank)."""
    from scipy.stats import spearmanr

    names = sorted(scores)
    return {
        f"{a}~{b}": round(float(spearmanr(scores[a], scores[b]).statistic), 4)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }


def _label(curve: str) -> str:
    score, _, keep = curve.partition("/")
    return LABELS[score] if keep in ("", "random") else f"{LABELS[score]}, {keep}"


def _cell_text(stat: dict[str, Any] | None) -> str:
    return "" if stat is None else f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def markdown(results: dict[str, Any], config: ConfigDict) -> str:
    """results.md: the accuracy table, the score correlations, and every run."""
    summary = results["summary"]
    fractions = sorted({r["fraction"] for r in results["runs"]})
    head = ["kept by"] + [f"{100 * f:g}% kept" for f in fractions]
    full = summary["full"]["1"]
    caption = (
        f"Test accuracy (%), mean ± sample std over seeds {list(config.seeds)}; model "
        f"`{config.model}`, {config.epochs} epochs of batch {config.batch_size} on every "
        f"subset; scores averaged over {len(config.score_seeds)} models (EL2N, GraNd at epoch "
        f"{config.score_epochs}, forgetting over {config.forgetting_epochs} epochs); machine: "
        f"{results['machine']['cpu']}."
    )
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines = [f"# {results['title']}", "", caption, "", *table]
    for curve in [c for c in summary if c != "full"]:
        row = [_cell_text(summary[curve].get(f"{f:g}")) for f in fractions[:-1]]
        lines.append(f"| {_label(curve)} | " + " | ".join([*row, _cell_text(full)]) + " |")
    if results["score_correlations"]:
        lines += ["", "Spearman rank correlation between the scores:", ""]
        lines += [
            f"- {k.replace('~', ' ~ ')}: {v:.3f}" for k, v in results["score_correlations"].items()
        ]
    lines += [
        "",
        "Every run:",
        "",
        "| subset | seed | examples | steps | test acc |",
        "|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['size']} | {r['steps']} | "
            f"{100 * r['test_accuracy']:.2f} |"
        )
    return "\n".join(lines)


def curves(results: dict[str, Any]) -> dict[str, tuple[list[float], list[list[float]]]]:
    """A study's curves for `plot_data_pruning`: label -> (fractions kept, per-seed
    accuracies per fraction), every curve ending at the full training set."""
    values: dict[str, dict[float, list[float]]] = {}
    full = [r["test_accuracy"] for r in results["runs"] if r["score"] == "full"]
    for r in results["runs"]:
        if r["score"] != "full":
            values.setdefault(f"{r['score']}/{r['keep']}", {}).setdefault(r["fraction"], []).append(
                r["test_accuracy"]
            )
    out = {}
    for curve, by_f in values.items():
        points = sorted(by_f.items()) + [(1.0, full)]
        out[_label(curve)] = ([f for f, _ in points], [v for _, v in points])
    return out


def plot(path: str, studies: dict[str, dict[str, Any]], title: str = "Data pruning") -> str:
    """The accuracy-vs-fraction-kept plot of one or more studies (panel name -> the
    study's results.json), drawn by `jaxprune.plots.plot_data_pruning`.

    Example:
      >>> import json  # doctest: +SKIP
      >>> studies = {ds: json.load(open(f"runs/dp_{ds}/results.json")) for ds in ("a", "b")}  # doctest: +SKIP
      >>> plot("data_pruning.png", studies)  # doctest: +SKIP
    """
    n = {len(c[1][-1]) for r in studies.values() for c in curves(r).values()}
    panels = {name: curves(results) for name, results in studies.items()}
    seeds = "/".join(str(k) for k in sorted(n))
    return plot_data_pruning(panels, path, title=f"{title}\n(mean, min-max over {seeds} seeds)")


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the study into `workdir`; returns results.json's contents.

    Example:
      >>> from experiments.configs.data_pruning import get_config  # doctest: +SKIP
      >>> run(get_config("smoke"), "/tmp/dp")["summary"]["el2n/hardest"]["0.5"]  # doctest: +SKIP
    """
    train_ds, test_ds = sweeps.datasets(config)
    check(config, len(train_ds))
    os.makedirs(os.path.join(workdir, "records"), exist_ok=True)
    top = train.RunDir(workdir)
    top.check_or_write_config({"config": settings(config)})
    scores = cached_scores(config, train_ds, workdir, progress=progress)
    cells = plan(config, len(train_ds))
    runs: list[dict[str, Any]] = []
    bar = tqdm(cells, disable=not progress, unit="subset", desc="data pruning")
    for cell in bar:
        bar.set_postfix(subset=cell["name"])
        path = os.path.join(workdir, "records", cell["name"] + ".json")
        if os.path.exists(path):
            with open(path) as f:
                runs += json.load(f)
            continue
        kept = subset(config, cell, scores, len(train_ds))
        records = train_cell(config, cell, kept, (train_ds, test_ds), workdir, progress=False)
        rundir.write_json(path, records)
        runs += records
    title = f"Data pruning: {config.model} on {config.dataset}"
    results = {
        "title": title,
        "summary": summarise(runs),
        "runs": runs,
        "score_correlations": score_correlations(scores),
        "never_learnt": int(np.isinf(scores["forgetting"]).sum())
        if "forgetting" in scores
        else None,
        "config": config.to_dict(),
        "machine": sweeps.machine(),
    }
    if sweeps.write_results(top, workdir, results, markdown(results, config)):
        plot(os.path.join(workdir, PLOT), {config.dataset: results}, title=title)
    return results


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print(f"wrote {os.path.join(FLAGS.workdir, 'results.md')} and {PLOT}")
    print(markdown(results, FLAGS.config).split("\n\nEvery run")[0])


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/data_pruning.py:fashion_mnist",
        default="experiments/configs/data_pruning.py",
    )
    app.run(main)
