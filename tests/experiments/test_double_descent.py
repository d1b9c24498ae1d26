"""experiments.double_descent on its smoke config: outputs and their structure, the numbers
against the IMP runs and a direct computation, the fine-tuning learning rate, resuming,
and the config checks."""

import json
import os

import numpy as np
import pytest
from flax import nnx

import jaxprune
from experiments import double_descent as script
from experiments.configs import double_descent as configs
from jaxprune import data, models, train


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke study (2 seeds, noise 0 and 0.4, both retraining modes, 2 rounds), run once."""
    workdir = str(tmp_path_factory.mktemp("double_descent"))
    return workdir, script.run(configs.get_config("smoke"), workdir, progress=False)


def _numbers(results):
    return {k: v for k, v in results.items() if k != "invocation_wall_s"}


def test_the_outputs_and_their_structure(study):
    workdir, results = study
    for name in ("results.json", "results.md", "double_descent.png", "memorisation.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "results.json")) as f:
        assert _numbers(json.load(f)) == _numbers(results)
    config = configs.get_config("smoke")
    assert list(results["runs"]) == [
        "noise0_weights",
        "noise0_finetune",
        "noise0.4_weights",
        "noise0.4_finetune",
    ]
    for run in results["runs"].values():
        assert run["flipped"] == round(run["noise"] * 4000)
        assert [r["round"] for r in run["rounds"]] == [0, 1, 2]
        assert [r["remaining"] for r in run["rounds"]] == pytest.approx([1.0, 0.5, 0.25])
        for r in run["rounds"]:
            for metric in script.METRICS:
                stat = r[metric]
                if metric == "memorisation" and not run["noise"]:
                    assert stat is None  # nothing flipped, nothing to memorise
                    continue
                assert len(stat["seeds"]) == len(config.seeds), metric
                assert stat["mean"] == pytest.approx(np.mean(stat["seeds"]))
                assert stat["std"] == pytest.approx(np.std(stat["seeds"], ddof=1))
                if metric.startswith("l2"):
                    assert all(v > 0 for v in stat["seeds"])
                else:
                    assert all(0 <= v <= 1 for v in stat["seeds"])
            # Pruned weights count |w_0| in l2_all and nothing in l2.
            assert all(a <= b for a, b in zip(r["l2"]["seeds"], r["l2_all"]["seeds"]))
    with open(os.path.join(workdir, "results.md")) as f:
        table = f.read()
    assert "double_descent.py:smoke" in table and "| 100 (dense) |" in table
    assert "noise 0.4, finetune" in table and table.count("\n## ") == len(script.METRICS)


def test_the_numbers_come_from_the_runs(study):
    workdir, results = study
    config = configs.get_config("smoke")
    for name, run in results["runs"].items():
        with open(os.path.join(workdir, name, "results.json")) as f:
            imp = json.load(f)
        accuracy = [imp["dense"]["accuracy"]] + [r["accuracy"]["ticket"] for r in imp["rounds"]]
        assert [r["test_accuracy"]["seeds"] for r in run["rounds"]] == accuracy
        assert [r["remaining"] for r in run["rounds"][1:]] == [
            r["remaining"] for r in imp["rounds"]
        ]
    for noise in (0, 0.4):
        # The dense training is the same for both retraining modes.
        weights, finetune = (results["runs"][f"noise{noise:g}_{m}"] for m in script.RETRAINS)
        assert weights["rounds"][0] == finetune["rounds"][0]
    # One round, computed directly: restore its checkpoint, run the model on the noisy data.
    name, number = "noise0.4_finetune", 2
    train_ds = data.load("mnist1d", "train", label_noise=0.4, seed=config.data_seed)
    measured = results["runs"][name]["rounds"][number]
    imp_config = script.imp_config(config, 0.4, "finetune", config.steps)
    settings = script.lottery_ticket.settings(imp_config)
    tx = jaxprune.masked(
        train.optimizer(imp_config.optim, train.lr_schedule(imp_config.optim)),
        lambda p: jaxprune.masks.dense_mask(p, prunable=settings.prunable()),
    )
    inits = [
        train.create_train_state(models.create(config.model, rngs=nnx.Rngs(s)), tx, seed=s)
        for s in config.seeds
    ]
    state = train.restore_checkpoint(
        os.path.join(workdir, name, f"round_{number:02d}"),
        train.stack_states(inits),
        2 * config.steps,  # fine-tuning goes on from the dense training's last step
    )
    for i, init in enumerate(inits):
        trained = train.member(state, i)
        model = train.to_model(trained)
        test_ds = data.load("mnist1d", "test")
        test = np.mean(np.argmax(model(test_ds.x), -1) == test_ds.y)
        assert measured["test_accuracy"]["seeds"][i] == pytest.approx(test)
        guess = np.argmax(model(train_ds.x), -1)
        memorised = np.mean(guess[train_ds.noisy] == train_ds.y[train_ds.noisy])
        assert measured["memorisation"]["seeds"][i] == pytest.approx(memorised)
        assert measured["train_accuracy"]["seeds"][i] == pytest.approx(np.mean(guess == train_ds.y))
        mask = jaxprune.mask_of(trained.opt_state)
        kept = whole = 0.0
        for path in ("hidden/0", "hidden/1", "head"):
            w = np.asarray(_kernel(trained.params, path), np.float64)
            w0 = np.asarray(_kernel(init.params, path), np.float64)
            m = np.asarray(_kernel(mask, path))
            assert np.all(w[~m] == 0)
            kept += np.sum((m * (w - w0)) ** 2)
            whole += np.sum((w - w0) ** 2)
        assert measured["l2"]["seeds"][i] == pytest.approx(np.sqrt(kept))
        assert measured["l2_all"]["seeds"][i] == pytest.approx(np.sqrt(whole))
        assert 0.0 < mask_kept(mask) < 1.0


def _kernel(tree, path):
    node = tree
    for key in path.split("/"):
        node = node[int(key) if key.isdigit() else key]
    return node["kernel"]


def mask_kept(mask):
    return 1.0 - float(jaxprune.masks.sparsity(mask))


def test_fine_tuning_steps_the_learning_rate_and_rewinding_does_not():
    config = configs.get_config("mnist1d_mlp")
    finetune = script.imp_config(config, 0.2, "finetune", 1500)
    weights = script.imp_config(config, 0.2, "weights", 1500)
    assert finetune.label_noise == weights.label_noise == 0.2
    assert (finetune.imp.rewind, weights.imp.rewind) == ("finetune", "weights")
    lr = train.lr_schedule(finetune.optim)
    assert float(lr(1499)) == pytest.approx(1e-2) and float(lr(1500)) == pytest.approx(1e-3)
    assert weights.optim.schedule == "constant"
    for field in ("noises", "retrains", "finetune_lr_scale"):
        assert field not in finetune
    with pytest.raises(ValueError, match="constant learning rate"):
        config.optim.schedule = "cosine"
        script.imp_config(config, 0.2, "finetune", 1500)


def test_a_rerun_measures_nothing_again(study, monkeypatch):
    workdir, results = study
    calls = []
    measure = script._member_values
    monkeypatch.setattr(
        script, "_member_values", lambda *a, **k: calls.append(1) or measure(*a, **k)
    )
    again = script.run(configs.get_config("smoke"), workdir, progress=False)
    assert calls == []
    assert _numbers(again) == _numbers(results)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("noises", (0.0, 1.0), "config.noises"),
        ("retrains", ("weights", "lr"), "config.retrains"),
        ("finetune_lr_scale", 0.0, "finetune_lr_scale"),
    ],
)
def test_bad_study_settings_are_refused_before_any_training(tmp_path, field, value, match):
    config = configs.get_config("smoke")
    config[field] = value
    with pytest.raises(ValueError, match=match):
        script.run(config, str(tmp_path / "run"), progress=False)
    assert not os.path.exists(tmp_path / "run")
