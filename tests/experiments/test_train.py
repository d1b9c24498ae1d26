"""experiments.train and its configs, on MNIST-1D (generated locally)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import train as script
from experiments.configs import train as configs
from jaxprune import train

REPO = Path(__file__).resolve().parents[2]


def small(name="mnist1d_mlp", **changes):
    config = configs.get_config(name)
    config.update(
        dict(
            steps=40,
            eval_every=20,
            log_every=10,
            checkpoint_every=20,
            eval_batch_size=500,
            subset=1000,
            **changes,
        )
    )
    return config


@pytest.mark.parametrize("name", sorted(configs.CONFIGS))
def test_every_named_config_builds_its_optimizer(name):
    config = configs.get_config(name)
    train.optimizer(config.optim, train.lr_schedule(config.optim))
    assert config.batch_size > 0 and config.steps > 0


def test_lenet_fashion_is_the_papers_setting():
    config = configs.get_config("lenet_fashion")
    assert (config.model, config.dataset, config.batch_size) == (
        "lenet300_100",
        "fashion_mnist",
        60,
    )
    assert (config.optim.optimizer, config.optim.learning_rate) == ("adam", 1.2e-3)


def test_an_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="lenet_fashion"):
        configs.get_config("lenet")


def test_dense_then_same_mask_runs(tmp_path):
    dense = script.run(small(), str(tmp_path / "dense"), progress=False)
    assert dense["step"] == 40 and "sparsity" not in dense
    assert 0.0 <= dense["eval"]["test"]["accuracy"] <= 1.0
    sparse = script.run(
        small(mask="random", sparsity=0.8, distribution="erk"),
        str(tmp_path / "sparse"),
        progress=False,
    )
    assert sparse["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert (tmp_path / "sparse" / "mask.npz").exists()
    # The mask of a previous run, by its run directory: the same subnetwork.
    again = script.run(
        small(mask=str(tmp_path / "sparse")), str(tmp_path / "again"), progress=False
    )
    assert again["sparsity"] == sparse["sparsity"]
    with (
        np.load(tmp_path / "sparse" / "mask.npz") as a,
        np.load(tmp_path / "again" / "mask.npz") as b,
    ):
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert again["eval"] == sparse["eval"]  # same init, mask, data: same numbers


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"sparsity": 0.5}, "config.mask='none'"),
        ({"mask": "magnitude"}, "0 < config.sparsity < 1"),
        ({"mask": "/no/such/mask.npz"}, "neither"),
    ],
)
def test_mask_options_are_checked(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        script.run(small(**changes), str(tmp_path), progress=False)


def test_the_command_line_trains_resumes_and_prints(tmp_path):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=" + str(REPO / "experiments/configs/train.py:mnist1d_cnn"),
        f"--workdir={workdir}",
        "--config.steps=30",
        "--config.subset=600",
        "--config.sparsity=0.5",
        "--config.mask=magnitude",
        "--noprogress",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = dict(cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    first = subprocess.run(command, **run)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "step 30: test accuracy" in first.stdout and "sparsity 0.500" in first.stdout
    with open(workdir / "config.json") as f:
        assert json.load(f)["config"]["model"] == "cnn1d"
    lines = (workdir / "metrics.jsonl").read_text()
    second = subprocess.run(command, **run)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (workdir / "metrics.jsonl").read_text() == lines  # resumed: nothing to redo


def test_the_configs_take_fits_defaults():
    config = configs.base()
    assert config.eval_batch_size == train.Evaluation().batch_size
    assert config.log_every == train.Logging().every
    assert (config.checkpoint_every, config.keep_last) == (
        train.Checkpointing().every,
        train.Checkpointing().keep_last,
    )
