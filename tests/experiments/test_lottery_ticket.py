"""experiments.lottery_ticket and its configs: the main job's smoke run, the config fields."""

import dataclasses

import pytest

from experiments import lottery_ticket as script
from experiments.configs import lottery as configs
from jaxprune.train.lottery import IMPSettings


def test_the_main_job_smoke_configuration(tmp_path):
    results = script.run(configs.get_config("smoke"), str(tmp_path), progress=False)
    remaining = [r["remaining"] for r in results["rounds"]]
    assert len(remaining) == 3 and remaining == sorted(remaining, reverse=True)
    assert remaining[-1] < 0.2
    assert "ticket" in script.table(results) and (tmp_path / "lottery.png").exists()
    for name in configs.CONFIGS:  # every config builds valid settings
        script.settings(configs.get_config(name))


def test_the_lottery_script_honours_epochs_and_has_no_fields_it_would_ignore(monkeypatch):
    config = configs.get_config("smoke")
    for field in ("seed", "mask", "sparsity", "distribution", "rewind_step", "keep_last"):
        assert field not in config, field  # IMP's own are in config.imp
    seen = {}
    monkeypatch.setattr(script, "run_imp", lambda *a, **k: seen.update(k))
    monkeypatch.setattr(script, "plot_imp", lambda *a, **k: None)
    config.epochs = 2
    script.run(config, "unused", progress=False)
    assert seen["steps"] == 2 * (4000 // config.batch_size)
    config.epochs, config.seeds = None, ()
    with pytest.raises(ValueError, match="config.seeds"):
        script.run(config, "unused", progress=False)


def test_the_imp_config_takes_imp_settings_defaults():
    imp = configs.get_config("mnist1d_mlp").imp.to_dict()
    for field in dataclasses.fields(IMPSettings):
        if field.name not in ("rate_scale",):  # the output layer at half rate
            assert imp[field.name] == getattr(IMPSettings(), field.name), field.name
    assert imp["rate_scale"] == {"head/": 0.5}


def test_a_held_out_validation_split_gives_the_table_its_min_val_step_columns(tmp_path):
    config = configs.get_config("smoke")
    config.imp.validation, config.eval_every, config.imp.rounds = 200, 50, 1
    results = script.run(config, str(tmp_path), progress=False)
    steps = results["rounds"][0]["min_val_loss"]["ticket"]["step"]
    assert len(steps) == 2 and all(s in (0, 50, 100, 150, 200) for s in steps)
    lines = script.table(results).splitlines()
    assert "ticket min-val step" in lines[0] and len(lines) == 3
    mean = sum(steps) / 2
    assert f"{mean:.0f} ± " in lines[2]
    lenet = configs.get_config("lenet_fashion")  # the paper's 5K held out, every 500 steps
    assert (lenet.imp.validation, lenet.eval_every) == (5_000, 500)
    assert "min-val step" not in script.table(
        {**results, "dense": {"accuracy": [0.5, 0.7]}, "rounds": []}
    )
