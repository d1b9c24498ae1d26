"""experiments.instability and its configs: the smoke study runs, writes its outputs and resumes."""

import json

import pytest
from helpers import Crash, crashing_at

import jaxprune.data
from experiments import instability as script
from experiments.configs import instability as configs
from jaxprune.train.rundir import jsonable


def _numbers(results):
    """What a study measured (not when or where)."""
    return {k: v for k, v in results.items() if k not in ("invocation_wall_s", "machine")}


def test_the_smoke_study_runs_and_writes_its_outputs(tmp_path):
    config = configs.get_config("smoke")
    results = script.run(config, str(tmp_path), progress=False)
    kinds = {(r["k"], r["variant"]) for r in results["rows"]}
    assert kinds == {(k, v) for k in config.ks for v in script.VARIANTS}
    for row in results["rows"]:
        assert len(row["error_barrier"]["mean"]) == len(config.seeds)
        for mean, instability in zip(row["error_barrier"]["mean"], row["instability"]):
            assert instability >= max(mean, 0.0)  # Frankle et al.'s: endpoints included
        assert set(row["loss_barrier"]) == {"mean", "linear"}
        assert all(len(p["error"]) == config.alphas for p in row["paths"])
        if row["variant"] != "dense":
            assert 0.0 < row["remaining"] < 1.0
    for name in ("results.json", "results.md", "instability.png", "paths.png"):
        assert (tmp_path / name).exists(), name
    with open(tmp_path / "results.json") as f:
        assert _numbers(json.load(f)) == _numbers(jsonable(results))
    assert "ticket" in (tmp_path / "results.md").read_text()
    for name in configs.CONFIGS:  # every config builds valid IMP settings
        config = configs.get_config(name)
        for k in config.ks:
            script.settings(config, k)


@pytest.mark.slow  # the engine's crash-resume is tested in tests/train in the default run
def test_an_interrupted_study_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    config = configs.get_config("smoke")
    config.ks = (10,)
    full = script.run(config, str(tmp_path / "full"), progress=False)
    # 60 batches of the dense run, 50 of the IMP round (from k = 10), then the children's
    # (two orders a step): the crash comes at their step 35, after the checkpoint at 20.
    monkeypatch.setattr(jaxprune.data, "batches", crashing_at(160))
    with pytest.raises(Crash):
        script.run(config, str(tmp_path / "cut"), progress=False)
    monkeypatch.undo()
    resumed = script.run(config, str(tmp_path / "cut"), progress=False)
    assert _numbers(resumed) == _numbers(full)


def test_the_study_refuses_bad_grids(tmp_path):
    config = configs.get_config("smoke")
    config.ks = (0, 60)
    with pytest.raises(ValueError, match="config.ks"):
        script.run(config, str(tmp_path), progress=False)
    config.ks, config.children_seeds = (0,), (1, 1)
    with pytest.raises(ValueError, match="children_seeds"):
        script.run(config, str(tmp_path), progress=False)
