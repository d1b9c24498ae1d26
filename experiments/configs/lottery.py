"""Configs for experiments/lottery_ticket.py: the training of every round (as in
experiments/configs/train.py) plus `imp` (how to prune and rewind) and `seeds`.

    python -m experiments.lottery_ticket --workdir=runs/lt                      # mnist1d_mlp
    python -m experiments.lottery_ticket --config=experiments/configs/lottery.py:smoke \
        --workdir=runs/lt_smoke
    python -m experiments.lottery_ticket --config=experiments/configs/lottery.py:lenet_fashion \
        --workdir=runs/lt_lenet --config.imp.target=0.2 --config.seeds="(0, 1)"

The IMP defaults are `IMPSettings`' own (Frankle & Carbin, 2019, "The Lottery Ticket
Hypothesis: Finding Sparse, Trainable Neural Networks"); rewinding to an early step
follows Frankle, Dziugaite, Roy & Carbin, 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis". Numbers marked (unverified) are defaults, not the papers'.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import train as train_configs
from jaxprune.train.lottery import IMPSettings


def _imp(**changes) -> ConfigDict:
    """IMP settings: `IMPSettings`' defaults (Frankle & Carbin's), the output layer at half
    rate, and `changes`."""
    imp = ConfigDict(train_configs.defaults_of(IMPSettings))  # tuples stay tuples: they
    imp.rate_scale = {"head/": 0.5}  # can be overridden on the command line
    imp.rounds = config_dict.placeholder(int)  # None, and --config.imp.rounds=N works
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
    """A quick check of the whole pipeline: 2 seeds, 3 rounds at 50%, short training."""
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
    50K iterations, 20% per round (output layer 10%), layer-wise; 5,000 of the 60,000
    training images held out for validation (as the paper holds out 5K of MNIST's),
    evaluated with the test set every 500 steps (the step of minimum validation loss)."""
    c = _lottery(train_configs.lenet_fashion(), validation=5_000)
    c.eval_every = 500
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
