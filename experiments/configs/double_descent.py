"""Configs for experiments/double_descent.py: a lottery config (experiments/configs/lottery.py)
whose IMP prunes globally by magnitude, 20% a round, down to <= 1% remaining, trains the
ticket only, and is run once per label noise x retraining mode.

    python -m experiments.double_descent --workdir=runs/double_descent          # mnist1d_mlp
    python -m experiments.double_descent --workdir=runs/dd_smoke \
        --config=experiments/configs/double_descent.py:smoke
    python -m experiments.double_descent --workdir=runs/dd_lenet \
        --config=experiments/configs/double_descent.py:lenet_fashion
    python -m experiments.double_descent --workdir=runs/dd_lenet_cpu \
        --config=experiments/configs/double_descent.py:lenet_fashion_cpu

Fields beyond the lottery config's: ``noises`` (fractions of the training labels flipped
to a different class: exactly round(noise * n) of them), ``retrains`` (``"weights"``:
the survivors rewound to their initialisation; ``"finetune"``: the trained survivors
trained on) and ``finetune_lr_scale`` (fine-tuning runs at the learning rate times this,
a step of the schedule at the end of the dense training). The study follows He, Xie, Zhu
& Qin, 2022, "Sparse Double Descent: Where Network Pruning Aggravates Overfitting";
numbers marked (unverified) are ours, not the paper's.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import lottery as lottery_configs
from experiments.configs import train as train_configs


def _descent(config: ConfigDict, *, steps: int | None, finetune_lr_scale: float) -> ConfigDict:
    """`config` (a lottery config) made a double-descent study: global magnitude pruning of
    20% a round to <= 1%, the ticket only, every noise x retraining mode, one checkpoint and
    one test evaluation at the end of each round."""
    c = config
    if steps is not None:
        c.steps = steps
    for field in ("label_noise",):  # set per run by the study
        del c[field]
    del c.imp["rewind"]
    c.imp.distribution = "global"
    c.imp.rate_scale = {}
    c.imp.rate = 0.2
    c.imp.target = 0.01  # 21 rounds: 0.8 ** 21 = 0.92% remaining
    c.imp.rewind_step = 0
    c.imp.variants = ("ticket",)
    c.noises = (0.0, 0.2, 0.4)
    c.retrains = ("weights", "finetune")
    c.finetune_lr_scale = finetune_lr_scale
    c.eval_every = config_dict.placeholder(int)  # None: the test set at the end of a round
    c.checkpoint_every = config_dict.placeholder(int)  # None: at the end of a round only
    return c


def mnist1d_mlp() -> ConfigDict:
    """The default: the MNIST-1D MLP (Adam 1e-2, batch 100) with 1,500 steps a round
    (37.5 epochs of the 4,000 training examples; a quarter of the lottery recipe's 6,000,
    so that 6 runs x 22 trainings x 3 seeds fit in about 10 minutes on 2 CPU cores),
    fine-tuning at 1e-3 (the paper fine-tunes at 1e-3 after training at 0.1: 10x lower,
    unverified for Adam), seeds 0, 1, 2."""
    return _descent(lottery_configs.mnist1d_mlp(), steps=1_500, finetune_lr_scale=0.1)


def smoke() -> ConfigDict:
    """A check of the whole pipeline in seconds: 2 seeds, noise 0 and 0.4, 2 rounds at 50%
    of 100 steps each."""
    c = mnist1d_mlp()
    c.seeds = (0, 1)
    c.noises = (0.0, 0.4)
    c.steps = 100
    c.imp.rate = 0.5
    c.imp.rounds = 2
    return c


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST with the paper's LeNet-300-100 recipe (its runs are
    on MNIST): SGD 0.1 without momentum or weight decay, batch 128, 200 epochs a round,
    fine-tuning at 1e-3 (GPU advised: 66 trainings of 200 epochs)."""
    c = lottery_configs.lenet_fashion()
    c.imp.validation = 0  # the paper reports the last epoch: nothing held out
    c.optim = ConfigDict(dict(optimizer="sgd", learning_rate=0.1, schedule="constant"))
    c.batch_size = 128
    c.epochs = 200
    return _descent(c, steps=None, finetune_lr_scale=0.01)


def lenet_fashion_cpu() -> ConfigDict:
    """The LeNet-300-100 study cut to what 2 CPU cores run in about 20 minutes: 10,000
    training images (a fixed random subset), the paper's SGD 0.1 at batch 128 for 30
    epochs a round (unverified: the paper trains 200), noise 0 and 20%, rewinding only."""
    c = lenet_fashion()
    c.subset = 10_000
    c.epochs = 30
    c.noises = (0.0, 0.2)
    c.retrains = ("weights",)
    return c


CONFIGS = {f.__name__: f for f in (mnist1d_mlp, smoke, lenet_fashion, lenet_fashion_cpu)}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/double_descent.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
