"""Configs for experiments/instability.py: the training (as in experiments/configs/train.py),
the rewind steps k, the IMP rounds whose tickets are measured, and the children's data orders.

    python -m experiments.instability --workdir=runs/instability                # mnist1d_mlp
    python -m experiments.instability --workdir=runs/inst_smoke \
        --config=experiments/configs/instability.py:smoke
    python -m experiments.instability --workdir=runs/inst_lenet \
        --config=experiments/configs/instability.py:lenet_fashion --config.ks="(0, 100)"

The study is Frankle, Dziugaite, Roy & Carbin, 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis": per rewind step k, >= 3 initialisations x 2 data orders of
children; IMP prunes 20% of the remaining weights per round by global magnitude (the
output layer left out, as open_lth does for LeNet); the random-pruning baseline has the
tickets' per-layer counts. Numbers marked (unverified) are defaults, not the paper's.
"""

from ml_collections import ConfigDict

from experiments.configs import train as train_configs
from jaxprune.train.lottery import IMPSettings

# Fields of a train config the study sets itself (seeds, masks and the rewind step come
# from `seeds`, `imp`, `ks`): removed, so that setting one is an error, not ignored.
_UNUSED = ("seed", "mask", "sparsity", "distribution", "rewind_step", "keep_last", "log_every")


def _study(train_config: ConfigDict, *, ks, rounds, seeds=(0, 1, 2)) -> ConfigDict:
    c = train_config
    for field in _UNUSED:
        del c[field]
    c.seeds = tuple(seeds)  # initialisations: one parent run each
    c.children_seeds = (1, 2)  # the children's data orders (a third is optional)
    c.ks = tuple(ks)  # rewind steps k
    c.rounds = tuple(rounds)  # IMP rounds whose tickets are measured (() for dense only)
    c.paths_at = tuple(ks)[:: max(1, len(ks) // 3)]  # k whose error curves are drawn
    c.alphas = 31  # points on each path, endpoints included (the paper: 30)
    c.reestimate_bn = False  # re-estimate batch statistics on the path (batch-norm models)
    imp = ConfigDict(train_configs.defaults_of(IMPSettings))
    imp.update(
        rate=0.2,
        distribution="global",
        rate_scale={},
        exclude=("head/",),
        variants=("ticket",),
    )
    del imp["rounds"], imp["rewind_step"]  # from `rounds` and `ks`
    c.imp = imp
    c.eval_every = c.steps  # IMP's rounds: test accuracy at their end only
    c.checkpoint_every = max(c.checkpoint_every, c.steps // 4)
    return c


def mnist1d_mlp() -> ConfigDict:
    """The default: the MNIST-1D MLP (Adam 1e-2, batch 100), 1200 steps, k in 0..400,
    tickets at 51% and 21% of the hidden weights; the whole study in about 5 minutes on a
    2-core CPU."""
    c = train_configs.mnist1d_mlp()
    c.steps = 1200
    return _study(c, ks=(0, 20, 100, 400), rounds=(3, 7))


def smoke() -> ConfigDict:
    """Seconds: 2 initialisations, 2 values of k, one IMP round, short training."""
    c = train_configs.mnist1d_mlp()
    c.steps = 60
    c = _study(c, ks=(0, 20), rounds=(1,), seeds=(0, 1))
    c.alphas = 5
    c.checkpoint_every = 20
    return c


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST (Adam 1.2e-3, batch 60, 50K iterations): the paper's
    k grid for LeNet (0 to 2000 of 24K iterations, unverified) scaled to 50K; tickets at
    51%, 21% and 3.6% of the hidden weights."""
    return _study(
        train_configs.lenet_fashion(), ks=(0, 25, 100, 500, 2000, 4000), rounds=(3, 7, 15)
    )


def resnet_fashion_bn() -> ConfigDict:
    """The stand-in for the paper's ResNet-20 on a CPU: the zoo's smallest batch-norm
    residual net (CIFAR ResNet-20, one input channel) on Fashion-MNIST, SGD momentum 0.9,
    lr 0.1 with step decays, 4000 steps of batch 128 (unverified); batch statistics
    re-estimated at every point of a path."""
    c = train_configs.resnet20_cifar10()  # its optimizer; the data and length change
    c.dataset, c.augment = "fashion_mnist", False
    c.model_overrides = ConfigDict(dict(in_channels=1))
    c.steps, c.optim.boundaries = 4000, [2000, 3000]
    c = _study(c, ks=(0, 25, 100, 250, 1000), rounds=(3, 7))
    c.reestimate_bn = True
    return c


def resnet20_cifar10() -> ConfigDict:
    """CIFAR ResNet-20 on CIFAR-10 (TFDS, GPU): the paper's training (63K iterations) and
    its k grid (0 to 5000); tickets at 51%, 21% and 7% of the conv weights."""
    c = _study(
        train_configs.resnet20_cifar10(),
        ks=(0, 100, 500, 2000, 5000),
        rounds=(3, 7, 12),
    )
    c.reestimate_bn = True
    return c


CONFIGS = {
    f.__name__: f for f in (mnist1d_mlp, smoke, lenet_fashion, resnet_fashion_bn, resnet20_cifar10)
}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/instability.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
