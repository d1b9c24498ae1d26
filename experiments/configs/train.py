"""Configs for experiments/train.py, one per model and dataset the papers use.

    python -m experiments.train --config=experiments/configs/train.py:lenet_fashion \
        --workdir=runs/lenet_fashion --config.steps=2000

Any field can be overridden on the command line (`--config.optim.learning_rate=3e-4`,
`--config.sparsity=0.9 --config.mask=magnitude`). The settings are the papers':
Frankle & Carbin, 2019, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks" (LeNet-300-100, Conv-2/4/6); Frankle, Dziugaite, Roy & Carbin, 2020, "Linear
Mode Connectivity and the Lottery Ticket Hypothesis" (ResNet-20, VGG-19); Evci, Gale,
Menick, Castro & Elsen, 2020, "Rigging the Lottery: Making All Tickets Winners"
(WRN-22-2); Greydanus, 2020, "Scaling down Deep Learning" (MNIST-1D). Numbers marked
(unverified) are defaults, not the papers'. How often to evaluate, log and checkpoint
defaults to `fit`'s own option groups (`jaxprune.train.Evaluation`, `Logging`,
`Checkpointing`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from ml_collections import ConfigDict, config_dict

from jaxprune.train import Checkpointing, Evaluation, Logging


def defaults_of(settings_class: type) -> dict[str, Any]:
    """The field defaults of a settings dataclass, by field name, so that configs repeat
    no number the library already holds.

    Example:
      >>> defaults_of(Checkpointing)["keep_last"]
      3
    """
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(settings_class)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def base() -> ConfigDict:
    """Every field the script reads, with neutral defaults."""
    c = ConfigDict()
    c.model = "mlp"
    c.model_overrides = ConfigDict()  # constructor arguments, e.g. width=4
    c.dataset = "mnist1d"
    c.data_dir = config_dict.placeholder(str)  # Fashion-MNIST IDX dir or TFDS data_dir
    c.subset = config_dict.placeholder(int)  # train on this many examples
    c.label_noise = 0.0  # fraction of training labels flipped (sparse double descent)
    c.augment = False  # the dataset's standard augmentation (CIFAR crop + flip)
    c.seed = 0  # model init and augmentation
    c.data_seed = 0  # data order, subset and label noise
    c.batch_size = 128
    c.steps = 10_000
    c.epochs = config_dict.placeholder(int)  # if set, replaces steps
    c.optim = ConfigDict(dict(optimizer="adam", learning_rate=1e-3, schedule="constant"))
    # Training under a mask: "none", "random", "magnitude" (of the initial weights,
    # at `sparsity` with `distribution`), or a mask file / run directory (mask.npz).
    c.mask = "none"
    c.sparsity = 0.0
    c.distribution = "uniform"  # "uniform", "global", "er" or "erk"
    evaluation, checkpointing = defaults_of(Evaluation), defaults_of(Checkpointing)
    c.eval_every = 1000  # `fit` evaluates at the start and the end only unless told
    c.eval_batch_size = evaluation["batch_size"]
    c.log_every = defaults_of(Logging)["every"]
    c.checkpoint_every = checkpointing["every"]
    c.keep_last = checkpointing["keep_last"]
    c.rewind_step = config_dict.placeholder(int)  # keep this step as checkpoint "rewind"
    return c


def _adam(
    model: str,
    dataset: str,
    *,
    batch_size: int,
    steps: int,
    lr: float,
    eval_every: int = 1000,
    checkpoint_every: int = 5000,
) -> ConfigDict:
    c = base()
    c.model, c.dataset = model, dataset
    c.batch_size, c.steps = batch_size, steps
    c.optim.learning_rate = lr
    c.eval_every, c.checkpoint_every = eval_every, checkpoint_every
    return c


def mnist1d_mlp() -> ConfigDict:
    """The MNIST-1D MLP; optimizer settings of the mnist1d repo (unverified)."""
    return _adam(
        "mnist1d_mlp",
        "mnist1d",
        batch_size=100,
        steps=6000,
        lr=1e-2,
        eval_every=250,
        checkpoint_every=1000,
    )


def mnist1d_cnn() -> ConfigDict:
    """The MNIST-1D CNN (about 94% published accuracy); same optimizer (unverified)."""
    c = mnist1d_mlp()
    c.model = "cnn1d"
    return c


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST: Adam 1.2e-3, batch 60, 50K iterations."""
    return _adam("lenet300_100", "fashion_mnist", batch_size=60, steps=50_000, lr=1.2e-3)


def _conv_cifar(model: str, lr: float, steps: int) -> ConfigDict:
    return _adam(model, "cifar10", batch_size=60, steps=steps, lr=lr)


def conv2_cifar10() -> ConfigDict:
    """Conv-2 on CIFAR-10: Adam 2e-4, batch 60, 20K iterations (GPU advised)."""
    return _conv_cifar("conv2", 2e-4, 20_000)


def conv4_cifar10() -> ConfigDict:
    """Conv-4 on CIFAR-10: Adam 3e-4, batch 60, 25K iterations (GPU advised)."""
    return _conv_cifar("conv4", 3e-4, 25_000)


def conv6_cifar10() -> ConfigDict:
    """Conv-6 on CIFAR-10: Adam 3e-4, batch 60, 30K iterations (GPU advised)."""
    return _conv_cifar("conv6", 3e-4, 30_000)


def _sgd_cifar(model: str) -> ConfigDict:
    c = base()
    c.model, c.dataset, c.augment = model, "cifar10", True
    c.batch_size, c.steps = 128, 63_000  # (unverified: the LMC paper's 63K iterations)
    c.optim = ConfigDict(
        dict(
            optimizer="momentum",
            momentum=0.9,
            learning_rate=0.1,
            schedule="step",
            boundaries=[32_000, 48_000],
            decay_factor=0.1,
            weight_decay=1e-4,  # wd unverified
            warmup_steps=0,
        )
    )
    c.eval_every, c.checkpoint_every = 2000, 5000
    return c


def resnet20_cifar10() -> ConfigDict:
    """CIFAR ResNet-20: SGD momentum 0.9, lr 0.1 with step decays, batch 128 (GPU advised)."""
    return _sgd_cifar("resnet20")


def vgg19_cifar10() -> ConfigDict:
    """VGG-19 on CIFAR-10, as ResNet-20; tickets need warmup (10K steps, unverified)."""
    c = _sgd_cifar("vgg19")
    c.optim.warmup_steps = 10_000
    return c


def wrn22_2_cifar10() -> ConfigDict:
    """RigL's WRN-22-2: Nesterov 0.9, lr 0.1 / 5 at 30K/60K/90K, wd 5e-4, batch 128, 250 epochs."""
    c = _sgd_cifar("wrn22_2")
    c.steps = 97_500  # 250 epochs of 390 steps
    c.optim.optimizer = "nesterov"
    c.optim.boundaries = [30_000, 60_000, 90_000]
    c.optim.decay_factor = 0.2
    c.optim.weight_decay = 5e-4
    c.optim.weight_decay_on = "kernels"  # RigL's code regularises the kernels only
    return c


CONFIGS = {
    f.__name__: f
    for f in (
        mnist1d_mlp,
        mnist1d_cnn,
        lenet_fashion,
        conv2_cifar10,
        conv4_cifar10,
        conv6_cifar10,
        resnet20_cifar10,
        vgg19_cifar10,
        wrn22_2_cifar10,
    )
}


def named_config(configs: dict[str, Callable[[], ConfigDict]], name: str) -> ConfigDict:
    """The config `configs[name]()`, or a ValueError listing the names (for every config
    file of the experiments)."""
    if name not in configs:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(configs)}.")
    return configs[name]()


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/train.py:NAME`)."""
    return named_config(CONFIGS, name)
