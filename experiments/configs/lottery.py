"""Configs for experiments/lottery_ticket.py: the training of every round (as in
experiments/configs/train.py) plus `imp` (how to prune and rewind) and `seeds`.

    python experiments/lottery_ticket.py --workdir=runs/lt                      # mnist1d_mlp
    python experiments/lottery_ticket.py --config=experiments/configs/lottery.py:smoke \
        --workdir=runs/lt_smoke
    python experiments/lottery_ticket.py --config=experiments/configs/lottery.py:lenet_fashion \
        --workdir=runs/lt_lenet --config.imp.target=0.2 --config.seeds="(0, 1)"

Numbers come from /work/shared/REFERENCE.md; those marked (unverified) are defaults.
"""

import importlib.util
import os

from ml_collections import ConfigDict, config_dict

_spec = importlib.util.spec_from_file_location(
    "train_configs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
)
train_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_configs)


def _imp(**changes) -> ConfigDict:
    """IMP settings (jaxprune.train.lottery.IMPSettings), defaults of Frankle & Carbin."""
    imp = ConfigDict(
        dict(
            rate=0.2,
            rate_scale={"head/": 0.5},  # the output layer at half rate
            distribution="uniform",
            exclude=(),  # tuples, not lists: they can be overridden on the command line
            target=0.036,
            rounds=config_dict.placeholder(int),
            rewind="weights",
            rewind_step=0,
            rewind_optimizer=False,
            variants=("ticket", "random_reinit", "random_pruning"),
            kd_temperature=4.0,
            kd_alpha=0.9,
        )
    )
    imp.update(changes)
    return imp


# Fields of a train config the lottery script has no use for (IMP sets the masks, the
# seeds and the rewind point in `imp`; run_imp keeps one checkpoint per round): removed, so
# that setting one on the command line is an error rather than silently ignored.
_UNUSED = (
    "seed",
    "mask",
    "sparsity",
    "distribution",
    "rewind_step",
    "log_every",
    "eval_batch_size",
    "keep_last",
)


def _lottery(train_config: ConfigDict, seeds=(0, 1, 2), **imp) -> ConfigDict:
    c = train_config
    for field in _UNUSED:
        del c[field]
    c.seeds = tuple(seeds)
    c.imp = _imp(**imp)
    c.checkpoint_every = max(c.checkpoint_every, c.steps // 4)
    return c


def mnist1d_mlp() -> ConfigDict:
    """The main job: the MNIST-1D MLP, IMP at 20% per round down to <= 3.6%, 3 seeds."""
    c = _lottery(train_configs.mnist1d_mlp())  # the mnist1d recipe: Adam 1e-2, 6000 steps
    c.eval_every = c.steps  # test accuracy at the end of each round only
    return c


def smoke() -> ConfigDict:
    """A minute-long check of the whole pipeline: 2 seeds, 3 rounds at 50%, short training."""
    c = mnist1d_mlp()
    c.seeds = (0, 1)
    c.steps = c.eval_every = 200
    c.imp.rate = 0.5
    c.imp.rounds = 3
    c.checkpoint_every = 100
    return c


def mnist1d_kd() -> ConfigDict:
    """The main job with KD tickets (soft labels of the trained dense MLP) beside the tickets."""
    c = mnist1d_mlp()
    c.imp.variants = ("ticket", "kd_ticket", "random_reinit")
    return c


def mnist1d_rewind() -> ConfigDict:
    """The main job with weight rewinding to step 100 and the one-shot baseline."""
    c = mnist1d_mlp()
    c.imp.rewind_step = 100
    c.imp.variants = ("ticket", "random_reinit", "one_shot")
    return c


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST, the paper's settings: Adam 1.2e-3, batch 60,
    50K iterations, 20% per round (output layer 10%), layer-wise."""
    c = _lottery(train_configs.lenet_fashion())
    c.eval_every = c.steps
    return c


def lenet_fashion_kd() -> ConfigDict:
    """LeNet-300-100 KD tickets against hard-label tickets."""
    c = lenet_fashion()
    c.imp.variants = ("ticket", "kd_ticket")
    return c


def _conv(train_config: ConfigDict, conv_scale: float) -> ConfigDict:
    # Conv layers at 10% (Conv-2/4) or 15% (Conv-6), dense 20%, output 10%.
    return _lottery(train_config, rate_scale={"convs/": conv_scale, "head/": 0.5})


def conv2_cifar10() -> ConfigDict:
    """Conv-2 on CIFAR-10 (TFDS, GPU advised): Adam 2e-4, batch 60, 20K iterations."""
    return _conv(train_configs.conv2_cifar10(), 0.5)


def conv4_cifar10() -> ConfigDict:
    """Conv-4 on CIFAR-10 (TFDS, GPU advised): Adam 3e-4, batch 60, 25K iterations."""
    return _conv(train_configs.conv4_cifar10(), 0.5)


def conv6_cifar10() -> ConfigDict:
    """Conv-6 on CIFAR-10 (TFDS, GPU advised): Adam 3e-4, batch 60, 30K iterations."""
    return _conv(train_configs.conv6_cifar10(), 0.75)


def resnet20_cifar10() -> ConfigDict:
    """CIFAR ResNet-20 (TFDS, GPU advised): global pruning of 20% per round over the conv
    layers, rewinding to step 500 (the LMC paper's stable point for ResNet-20)."""
    c = _lottery(
        train_configs.resnet20_cifar10(),
        distribution="global",
        rate_scale={},
        exclude=("head/",),
        rewind_step=500,
    )
    return c


CONFIGS = {
    f.__name__: f
    for f in (
        mnist1d_mlp,
        smoke,
        mnist1d_kd,
        mnist1d_rewind,
        lenet_fashion,
        lenet_fashion_kd,
        conv2_cifar10,
        conv4_cifar10,
        conv6_cifar10,
        resnet20_cifar10,
    )
}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/lottery.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
