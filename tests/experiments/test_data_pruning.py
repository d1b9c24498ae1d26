"""experiments.data_pruning on its smoke config: outputs, subsets, resuming, config errors."""

import json
import os

import numpy as np
import pytest

from experiments import data_pruning as script
from experiments.configs import data_pruning as configs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("data_pruning"))
    return workdir, script.run(configs.get_config("smoke"), workdir, progress=False)


def test_smoke_writes_every_output_and_run(study):
    workdir, results = study
    for name in ("results.json", "results.md", script.PLOT, "scores.npz", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    config = configs.get_config("smoke")
    cells = script.plan(config, 400)
    assert len(results["runs"]) == len(cells) * len(config.seeds)
    curves = {"full", "random/random"} | {f"{s}/hardest" for s in configs.SCORES[:-1]}
    assert set(results["summary"]) == curves
    for r in results["runs"]:
        assert r["size"] == round(r["fraction"] * 400)
        assert r["steps"] == config.epochs * (r["size"] // config.batch_size)
        assert 0.0 <= r["test_accuracy"] <= 1.0
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["summary"] == results["summary"]


def test_hardest_keeps_the_highest_scores_and_easiest_the_lowest(study):
    workdir, _ = study
    config = configs.get_config("smoke")
    with np.load(os.path.join(workdir, "scores.npz")) as f:
        scores = {k: f[k] for k in f.files}
    assert scores["el2n"].shape == (400,) and np.isfinite(scores["grand_init"]).all()
    for keep in ("hardest", "easiest"):
        cell = dict(name="x", score="el2n", keep=keep, fraction=0.5, size=200)
        kept = script.subset(config, cell, scores, 400)
        rest = np.setdiff1d(np.arange(400), kept)
        assert len(kept) == 200 and len(np.unique(kept)) == 200
        if keep == "hardest":
            assert scores["el2n"][kept].min() >= scores["el2n"][rest].max()
        else:
            assert scores["el2n"][kept].max() <= scores["el2n"][rest].min()


def test_ties_are_broken_at_random_not_by_position():
    order = script.keep_order(np.zeros(1000), "easiest", seed=0)
    assert sorted(order.tolist()) == list(range(1000))
    assert abs(np.mean(order[:500]) - 499.5) < 60  # not the first 500 positions


def test_a_rerun_skips_every_finished_run(study, monkeypatch):
    workdir, results = study
    records = os.path.join(workdir, "records")
    before = {n: os.stat(os.path.join(records, n)).st_mtime_ns for n in os.listdir(records)}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(script, "train_cell", no_training)
    monkeypatch.setattr(script, "score_examples", no_training)
    again = script.run(configs.get_config("smoke"), workdir, progress=False)
    assert again["runs"] == results["runs"]
    after = {n: os.stat(os.path.join(records, n)).st_mtime_ns for n in os.listdir(records)}
    assert after == before


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("scores", ("el2n", "loss"), r"config.scores=.*unknown \['loss'\]"),
        ("keeps", ("middle",), r"config.keeps=.*unknown \['middle'\]"),
        ("fractions", (0.0, 0.5), r"config.fractions=.*in \(0, 1\]"),
        ("fractions", (0.1, 1.0), r"fractions \[0.1\] keep fewer than batch_size=100"),
    ],
)
def test_bad_config_fields_are_named(field, value, match):
    config = configs.get_config("smoke")
    config[field] = value
    with pytest.raises(ValueError, match=match):
        script.check(config, 400)


def test_a_rerun_with_fewer_subsets_reuses_the_finished_ones(study, monkeypatch):
    workdir, results = study

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(script, "train_cell", no_training)
    config = configs.get_config("smoke")
    config.scores = ("el2n", "random")
    fewer = script.run(config, workdir, progress=False)
    assert set(fewer["summary"]) == {"full", "el2n/hardest", "random/random"}
    assert fewer["summary"]["el2n/hardest"] == results["summary"]["el2n/hardest"]
    script.run(configs.get_config("smoke"), workdir, progress=False)  # restores the outputs
