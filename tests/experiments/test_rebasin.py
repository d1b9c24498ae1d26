"""experiments.rebasin and its configs: the smoke study runs, writes its outputs and resumes."""

import json

import numpy as np
import pytest
from helpers import Crash, crashing_at

import jaxprune.data
from experiments import rebasin as script
from experiments import sweeps
from experiments.configs import rebasin as configs
from jaxprune.train.rundir import jsonable


def _numbers(results):
    """What a study measured (not when, where or by which command)."""
    skip = ("invocation_wall_s", "machine", "command")
    rows = [{k: v for k, v in r.items() if k != "match_wall_s"} for r in results["rows"]]
    return {**{k: v for k, v in results.items() if k not in skip}, "rows": rows}


def test_the_smoke_study_runs_and_writes_its_outputs(tmp_path):
    config = configs.get_config("smoke")
    results = script.run(config, str(tmp_path), progress=False)
    kinds = {(r["pair"], r["method"], r["repair"]) for r in results["rows"]}
    assert kinds == {
        (j, m, f) for j in range(config.pairs) for m in configs.METHODS for f in (False, True)
    }
    for row in results["rows"]:
        for split in script.SPLITS:
            assert len(row[split]["error"]) == config.alphas
            assert set(row[split]["loss_barrier"]) == {"linear", "mean"}
            assert row[split]["error_endpoints"] == [
                row[split]["error"][0],
                row[split]["error"][-1],
            ]
        assert row["match_wall_s"] >= 0 and not row["bn_reestimated"]
    for name in ("results.json", "results.md", "rebasin_test.png", "rebasin_train.png"):
        assert (tmp_path / name).exists(), name
    with open(tmp_path / "results.json") as f:
        assert _numbers(json.load(f)) == _numbers(jsonable(results))
    md = (tmp_path / "results.md").read_text()
    assert "python -m experiments.rebasin" in md and "| sinkhorn | yes |" in md
    for name in configs.CONFIGS:  # every config passes the study's checks
        script._check(configs.get_config(name))


@pytest.mark.slow  # the engine's crash-resume is tested in tests/train in the default run
def test_an_interrupted_study_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    config = configs.get_config("smoke")
    config.methods = ("naive", "weight")
    full = script.run(config, str(tmp_path / "full"), progress=False)
    # 60 steps of the stack (one batch per member a step): the crash comes at step 30,
    # after the checkpoint at 20.
    monkeypatch.setattr(jaxprune.data, "batches", crashing_at(4 * 30))
    with pytest.raises(Crash):
        script.run(config, str(tmp_path / "cut"), progress=False)
    monkeypatch.undo()
    # then a crash in the second pair, after the first pair's records are written
    calls = []
    measure = script.measure_pair

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Crash("crash in pair 1")
        return measure(*args, **kwargs)

    monkeypatch.setattr(script, "measure_pair", crash_on_second)
    with pytest.raises(Crash):
        script.run(config, str(tmp_path / "cut"), progress=False)
    monkeypatch.undo()
    assert (tmp_path / "cut" / "width001" / "pair00.json").exists()
    resumed = script.run(config, str(tmp_path / "cut"), progress=False)
    assert _numbers(resumed) == _numbers(full)


def test_a_network_aligned_naively_with_itself_has_no_barrier():
    config = configs.get_config("smoke")
    config.methods = ("naive",)
    train_ds, test_ds = sweeps.datasets(config)
    model = sweeps.model_maker(config, train_ds.num_classes)(0)
    from jaxprune import train

    tx = train.optimizer(config.optim, train.lr_schedule(config.optim))
    a = train.create_train_state(model, tx)
    splits = {"test": test_ds, "train": script._head(train_ds, 200)}
    records = script.measure_pair(config, a, a, train_ds, splits, pair=0)
    for r in records:
        for split in script.SPLITS:
            for metric in ("error", "loss"):
                for ref in ("linear", "mean"):
                    assert abs(r[split][f"{metric}_barrier"][ref]) < 1e-4, (
                        r["repair"],
                        split,
                        metric,
                    )
            np.testing.assert_allclose(r[split]["loss"], r[split]["loss"][0], atol=1e-4)


def test_the_study_refuses_bad_configs(tmp_path):
    config = configs.get_config("smoke")
    config.methods = ("naive", "magic")
    with pytest.raises(ValueError, match="config.methods"):
        script.run(config, str(tmp_path), progress=False)
    config = configs.get_config("smoke")
    config.widths = (1, 2)
    with pytest.raises(ValueError, match="width_override"):
        script.run(config, str(tmp_path), progress=False)
