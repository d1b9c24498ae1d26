"""Configs for experiments/rebasin.py: the training (as in experiments/configs/train.py), the
pairs of networks, the matching methods and the path.

    python -m experiments.rebasin --workdir=runs/rebasin                     # mnist1d_mlp
    python -m experiments.rebasin --workdir=runs/rb_smoke \
        --config=experiments/configs/rebasin.py:smoke
    python -m experiments.rebasin --workdir=runs/rb_fashion \
        --config=experiments/configs/rebasin.py:fashion_mlp_128

The study follows Ainsworth, Hayase & Srinivasa, 2023, "Git Re-Basin: Merging Models
modulo Permutation Symmetries" (weight and activation matching; 25 points on each path,
endpoints included; barriers of loss and error on the training and test sets), with
Jordan, Sedghi, Saukh, Entezari & Neyshabur, 2023, "REPAIR: REnormalizing Permuted
Activations for Interpolation Repair" (REPAIR; the statistics reset for batch-norm models)
and Pena, Medeiros, Dubail, Aminbeidokhti, Granger & Pedersoli, 2023, "Re-basin via
implicit Sinkhorn differentiation" (Sinkhorn matching, midpoint objective). Numbers marked
(unverified) are defaults, not the papers'.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import train as train_configs

# Fields of a train config the study sets itself (seeds from `pairs`, no masks, no
# evaluation while training): removed, so that setting one is an error, not ignored.
_UNUSED = (
    "seed",
    "mask",
    "sparsity",
    "distribution",
    "rewind_step",
    "keep_last",
    "log_every",
    "eval_every",
)
METHODS = ("naive", "weight", "activation", "sinkhorn")


def _study(train_config: ConfigDict, name: str, *, pairs: int = 3) -> ConfigDict:
    c = train_config
    for field in _UNUSED:
        del c[field]
    c.name = name  # the config's name, for the command in results.md
    c.pairs = pairs  # pair j: initialisations and data orders 2j and 2j + 1
    c.methods = METHODS
    c.alphas = 25  # Git Re-Basin's grid: linspace(0, 1, 25)
    c.widths = (1,)  # width multipliers (width_sweep); 1: the model as configured
    c.width_override = config_dict.placeholder(str)  # "hidden" (MLP) or "width" (ResNet)
    c.train_eval_examples = 5000  # the first examples of the training set on the path
    c.repair_batches = 10  # REPAIR's statistics: batches of training data (unverified)
    c.repair_batch_size = 500
    c.match_examples = 1000  # activation matching: training examples (unverified)
    c.weight_max_iter = 100  # weight matching's sweeps (Git Re-Basin: to convergence)
    # Sinkhorn matching (Pena et al.: midpoint objective; steps and lr unverified)
    c.sinkhorn = ConfigDict(
        dict(steps=200, lr=0.1, objective="midpoint", iterations=20, batch_size=500)
    )
    c.checkpoint_every = max(1, c.steps // 4)
    return c


def mnist1d_mlp() -> ConfigDict:
    """The default: the MNIST-1D MLP (residual, two hidden layers of 100 sharing one
    permutation; Adam 1e-2, batch 100), 3 pairs, 2000 steps (unverified), Sinkhorn 100
    steps; the whole study in under 5 minutes on a 2-core CPU."""
    c = train_configs.mnist1d_mlp()
    c.steps = 2000
    c = _study(c, "mnist1d_mlp")
    c.train_eval_examples = 4000  # the whole training set
    c.sinkhorn.steps = 100
    return c


def smoke() -> ConfigDict:
    """Seconds: 2 pairs of a narrow MNIST-1D MLP, 60 steps on 500 examples, 5 points a path."""
    c = train_configs.mnist1d_mlp()
    c.steps, c.subset = 60, 500
    c.model_overrides = ConfigDict(dict(hidden=(32, 32)))
    c = _study(c, "smoke", pairs=2)
    c.alphas = 5
    c.checkpoint_every = 20
    c.train_eval_examples = 500
    c.repair_batches, c.repair_batch_size = 2, 100
    c.match_examples = 200
    c.sinkhorn.steps, c.sinkhorn.batch_size, c.sinkhorn.iterations = 5, 100, 3
    return c


def _fashion_mlp(hidden: tuple[int, ...], name: str) -> ConfigDict:
    c = train_configs.base()
    c.model, c.dataset = "mlp", "fashion_mnist"
    c.model_overrides = ConfigDict(dict(in_features=784, hidden=hidden))
    c.batch_size, c.optim.learning_rate = 500, 1e-3  # Git Re-Basin's MNIST MLP
    c.steps = 2400  # 20 epochs of 60K (the paper: 100 epochs; scaled down for a CPU)
    return _study(c, name)


def fashion_mlp_128() -> ConfigDict:
    """One hidden layer of 128 on Fashion-MNIST, Adam 1e-3, batch 500: Git Re-Basin's MNIST
    MLP setting, narrower and on Fashion-MNIST (unverified), trained 20 epochs instead of
    100 to fit a CPU."""
    return _fashion_mlp((128,), "fashion_mlp_128")


def fashion_mlp_3x512() -> ConfigDict:
    """Git Re-Basin's MNIST MLP (three hidden layers of 512, Adam 1e-3, batch 500) on
    Fashion-MNIST (unverified), trained 20 epochs instead of 100."""
    return _fashion_mlp((512, 512, 512), "fashion_mlp_3x512")


def width_sweep() -> ConfigDict:
    """A two-layer MLP (32 units a layer at x1, no residual) on MNIST-1D at widths x1, x2,
    x4, x8: Git Re-Basin's width experiment on a CPU (unverified settings)."""
    c = train_configs.mnist1d_mlp()
    c.model = "mlp"
    c.model_overrides = ConfigDict(dict(in_features=40, hidden=(32, 32)))
    c.steps = 2000
    c = _study(c, "width_sweep")
    c.widths, c.width_override = (1, 2, 4, 8), "hidden"
    c.train_eval_examples = 4000
    c.sinkhorn.steps = 100
    return c


def resnet_fashion_bn() -> ConfigDict:
    """The zoo's CIFAR ResNet-20 (batch norm, one input channel) on Fashion-MNIST, SGD
    momentum 0.9, lr 0.1 with step decays, 4000 steps of batch 128 (unverified); REPAIR is
    the statistics reset (Jordan et al.'s RESET for batch-norm networks)."""
    c = train_configs.resnet20_cifar10()
    c.dataset, c.augment = "fashion_mnist", False
    c.model_overrides = ConfigDict(dict(in_channels=1))
    c.steps, c.optim.boundaries = 4000, [2000, 3000]
    c = _study(c, "resnet_fashion_bn")
    c.sinkhorn.steps = 100
    return c


def resnet20_cifar10() -> ConfigDict:
    """CIFAR ResNet-20 on CIFAR-10 (TFDS, GPU) at widths x1, x2, x4, x8, x16 as in Git
    Re-Basin's width study; the LMC paper's SGD training (63K iterations, augmentation);
    REPAIR is the statistics reset."""
    c = _study(train_configs.resnet20_cifar10(), "resnet20_cifar10")
    c.widths, c.width_override = (1, 2, 4, 8, 16), "width"
    c.sinkhorn.steps = 500  # (unverified)
    return c


CONFIGS = {
    f.__name__: f
    for f in (
        mnist1d_mlp,
        smoke,
        fashion_mlp_128,
        fashion_mlp_3x512,
        width_sweep,
        resnet_fashion_bn,
        resnet20_cifar10,
    )
}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/rebasin.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
