"""experiments.dead_units on the lottery smoke run: outputs, bounds, a direct computation,
resuming, a partial IMP directory, and an IMP directory left as it was."""

import functools
import json
import os
import shutil

import numpy as np
import pytest
from flax import nnx

import jaxprune
from experiments import dead_units as script
from experiments import lottery_ticket
from experiments.configs import lottery as configs
from jaxprune import data, masks, models, train
from jaxprune.analysis import dead_unit_rate


@pytest.fixture(scope="module")
def imp_dir(tmp_path_factory):
    """The lottery smoke run (2 seeds, 3 rounds of 3 variants), trained once for the module."""
    workdir = tmp_path_factory.mktemp("lottery")
    lottery_ticket.run(configs.get_config("smoke"), str(workdir), progress=False)
    return str(workdir)


def _snapshot(directory):
    """Every file under `directory` with its size and modification time."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = (
                os.path.getsize(path),
                os.stat(path).st_mtime_ns,
            )
    return out


def _numbers(results):
    return {k: v for k, v in results.items() if k != "invocation_wall_s"}


def _totals_and_layers(entry):
    """(rate name, per-seed values) of every total and per-layer rate of a variant."""
    return [("total", entry["total"]), *entry["per_layer"].items()]


def test_every_round_and_member_is_measured_and_bounded(imp_dir, tmp_path):
    before = _snapshot(imp_dir)
    results = script.run(imp_dir, str(tmp_path), progress=False)
    assert _snapshot(imp_dir) == before  # the IMP directory is only read
    for name in ("results.json", "results.md", "dead_units.png", "config.json"):
        assert (tmp_path / name).exists(), name
    with open(tmp_path / "results.json") as f:
        assert _numbers(json.load(f)) == _numbers(results)
    with open(os.path.join(imp_dir, "results.json")) as f:
        imp = json.load(f)
    seeds, variants = imp["seeds"], imp["variants"]
    assert [(r["round"], r["remaining"]) for r in results["rounds"]] == [
        (r["round"], r["remaining"]) for r in imp["rounds"]
    ]
    assert results["examples"] == {"test": 1000, "train": 2000}
    for entry, names in [(results["dense"], ["dense"])] + [
        (r, variants) for r in results["rounds"]
    ]:
        for split in script.SPLITS:
            assert sorted(entry[split]) == sorted(names)
            for variant in names:
                for where, rates in _totals_and_layers(entry[split][variant]):
                    static, dynamic = rates["static"]["seeds"], rates["dynamic"]["seeds"]
                    assert len(static) == len(dynamic) == len(seeds), where
                    for s, d in zip(static, dynamic):
                        # A unit dead on every example is dead on each one.
                        assert 0.0 <= s <= d <= 1.0, (where, s, d)
                    assert rates["static"]["mean"] == pytest.approx(np.mean(static))
                    assert rates["dynamic"]["std"] == pytest.approx(np.std(dynamic, ddof=1))
            assert set(entry[split][names[0]]["per_layer"]) == {"hidden/0", "hidden/1"}
    table = (tmp_path / "results.md").read_text()
    assert "random pruning: dynamic" in table and "lottery.py:smoke" in table
    assert table.count("\n| 100 (dense) |") == 2  # one table per split


def test_the_numbers_equal_a_direct_computation_for_every_member_of_a_round(imp_dir, tmp_path):
    results = script.run(imp_dir, str(tmp_path), progress=False)
    with open(os.path.join(imp_dir, "results.json")) as f:
        imp = json.load(f)
    config = configs.get_config("smoke")
    # run_imp's round ensemble, rebuilt here with the public API: variant-major members.
    tx = jaxprune.masked(
        train.optimizer(config.optim, train.lr_schedule(config.optim)),
        functools.partial(masks.dense_mask, prunable=lottery_ticket.settings(config).prunable()),
    )
    states = [
        train.create_train_state(models.create(config.model, rngs=nnx.Rngs(s)), tx, seed=s)
        for _ in imp["variants"]
        for s in config.seeds
    ]
    round_ = 2
    state = train.restore_checkpoint(
        os.path.join(imp_dir, f"round_{round_:02d}"), train.stack_states(states), config.steps
    )
    test_ds = data.load("mnist1d", "test")
    inputs = {"test": test_ds.x, "train": data.load("mnist1d", "train").x[:2000]}
    measured = results["rounds"][round_ - 1]
    for v, variant in enumerate(imp["variants"]):
        for i in range(len(config.seeds)):
            model = train.to_model(train.member(state, v * len(config.seeds) + i))
            accuracy = np.mean(np.argmax(model(test_ds.x), -1) == test_ds.y)
            # The member restored is the one IMP trained and evaluated.
            assert accuracy == pytest.approx(imp["rounds"][round_ - 1]["accuracy"][variant][i])
            for split, x in inputs.items():
                direct = dead_unit_rate(models.features(model, x))
                entry = measured[split][variant]
                for rate in script.RATES:
                    assert entry["total"][rate]["seeds"][i] == float(getattr(direct, rate))
                    for path, layer in direct.per_layer.items():
                        got = entry["per_layer"][path]
                        assert got["units"] == layer.units
                        assert got[rate]["seeds"][i] == float(getattr(layer, rate))
                assert 0.0 < entry["total"]["dynamic"]["seeds"][i] < 1.0  # measured, not constant


def test_a_rerun_skips_what_is_done_and_a_partial_run_is_read_as_far_as_it_got(
    imp_dir, tmp_path, monkeypatch
):
    partial = str(tmp_path / "partial")
    shutil.copytree(imp_dir, partial)
    with open(os.path.join(partial, "results.json")) as f:
        imp = json.load(f)
    finished = imp["rounds"]
    imp["rounds"] = finished[:1]  # round 2 is training; round 3 has not started
    with open(os.path.join(partial, "results.json"), "w") as f:
        json.dump(imp, f)
    shutil.rmtree(os.path.join(partial, "round_03"))
    out = str(tmp_path / "out")
    calls = []
    measure = script._member_rates
    monkeypatch.setattr(
        script, "_member_rates", lambda *a, **k: calls.append(1) or measure(*a, **k)
    )
    os.rename(os.path.join(partial, "results.json"), os.path.join(tmp_path, "later.json"))
    dense = script.run(partial, out, progress=False)  # round 1 is training: the dense run only
    assert dense["rounds"] == [] and len(calls) == 1
    os.rename(os.path.join(tmp_path, "later.json"), os.path.join(partial, "results.json"))
    first = script.run(partial, out, progress=False)
    assert [r["round"] for r in first["rounds"]] == [1] and len(calls) == 2  # round 1 only
    again = script.run(partial, out, progress=False)
    assert _numbers(again) == _numbers(first) and len(calls) == 2  # nothing measured again
    imp["rounds"] = finished  # the IMP run finishes
    with open(os.path.join(partial, "results.json"), "w") as f:
        json.dump(imp, f)
    shutil.copytree(os.path.join(imp_dir, "round_03"), os.path.join(partial, "round_03"))
    done = script.run(partial, out, progress=False)
    assert [r["round"] for r in done["rounds"]] == [1, 2, 3] and len(calls) == 4
    full = script.run(imp_dir, str(tmp_path / "full"), progress=False)
    for key in ("dense", "rounds"):
        assert done[key] == full[key]
    with pytest.raises(ValueError, match="train_examples"):
        script.run(partial, out, train_examples=0, progress=False)
    with pytest.raises(ValueError, match="different config"):
        script.run(partial, out, train_examples=500, progress=False)
    with pytest.raises(FileNotFoundError, match="lottery_ticket"):
        script.run(str(tmp_path), str(tmp_path / "nowhere"), progress=False)
