"""Configs for experiments/rethinking.py: structured pruning fine-tuned against training the
pruned architecture from scratch.

    python -m experiments.rethinking --workdir=runs/rethinking            # fashion_small
    python -m experiments.rethinking --workdir=runs/rt_smoke \
        --config=experiments/configs/rethinking.py:smoke
    python -m experiments.rethinking --workdir=runs/rt_cifar \
        --config=experiments/configs/rethinking.py:cifar10_vgg16_resnet56

The study follows Liu, Sun, Zhou, Huang & Darrell, 2019, "Rethinking the value of network
pruning": Scratch-E trains the pruned architecture from a fresh initialisation for the
dense epochs, Scratch-B for ``epochs x dense MACs / pruned MACs`` (at most twice the dense
epochs), both with the learning rate dropped by 10 at 50% and 75% of training; CIFAR
training is SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 64, 160 epochs. The
methods: L1-norm filter pruning (Li, Kadav, Durdanovic, Samet & Graf, 2017, per layer)
and network slimming (Liu, Li, Shen, Huang, Yan & Zhang, 2017: L1 on the batch-norm
scales while training, then one global threshold on ``|gamma|``). Numbers marked
(unverified) are defaults, not the papers'.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import train as train_configs

METHODS = ("l1_filter", "slimming")


def _model(
    model: str,
    methods: tuple[str, ...],
    *,
    init_mode: str = "fan_in",
    resize: int | None = None,
    slim_penalty: float = 1e-4,
    **overrides: object,
) -> ConfigDict:
    """One model of the study: zoo name, overrides, methods and input size."""
    return ConfigDict(
        dict(
            model=model,
            model_overrides=ConfigDict(dict(overrides)),
            methods=methods,
            # The kernels' initialiser scales by "fan_in" (He) or "fan_avg" (Glorot): a
            # re-initialised smaller layer gets the variance its own fan would give it.
            init_mode=init_mode,
            resize=resize,  # images padded (larger) or average-pooled (smaller) to this size
            slim_penalty=slim_penalty,  # network slimming's lambda (VGG 1e-4, ResNet 1e-5)
        )
    )


def _base() -> ConfigDict:
    c = ConfigDict()
    c.name = "base"
    c.dataset = "fashion_mnist"
    c.data_dir = None
    c.subset = None
    c.data_seed = 0
    c.augment = False
    c.models = ConfigDict()  # label -> _model(...), in table order
    c.only = config_dict.placeholder(str)  # train this model label only (None: all)
    c.sparsities = (0.3, 0.6)  # fraction of the units of every group removed
    c.seeds = (0, 1, 2)
    c.batch_size = 64
    c.epochs = 160
    c.ft_epochs = 40  # fine-tuning (Li et al.: 40 epochs at lr 1e-3)
    c.ft_learning_rate = 1e-3
    c.scratch_b_cap = 2.0  # Scratch-B trains at most this many times the dense epochs
    c.unstructured = True  # one-shot magnitude at the L1-filter models' parameter fraction
    c.unstructured_distribution = "uniform"
    c.optim = ConfigDict(
        dict(
            optimizer="momentum",
            momentum=0.9,
            learning_rate=0.1,
            weight_decay=1e-4,
            schedule="step",  # drops by 10 at 50% and 75% of every run's steps
            decay_factor=0.1,
        )
    )
    c.eval_batch_size = 1000
    return c


def fashion_small() -> ConfigDict:
    """The default, sized for a 2-core CPU: LeNet-5 (L1-norm filters only: no batch norm),
    VGG-11 at 1/8 width (8-64 channels, batch norm; images padded to 32x32) and ResNet-20
    (batch norm; images pooled to 14x14) on 6K Fashion-MNIST training examples, 3 epochs
    of batch 128 (fine-tuning 1 epoch), unit sparsities 0.3 and 0.6, 3 seeds (unverified:
    the papers train CIFAR for 160 epochs)."""
    c = _base()
    c.name = "fashion_small"
    c.subset = 6000
    c.batch_size = 128
    c.epochs, c.ft_epochs = 3, 1
    c.optim.learning_rate = 0.05  # (unverified) half the paper's 0.1: LeNet-5 has no batch norm
    c.models = ConfigDict(
        dict(
            lenet5=_model("lenet5", ("l1_filter",), init_mode="fan_avg"),
            vgg11_w8=_model("vgg11", METHODS, resize=32, in_channels=1, width=0.125),
            resnet20=_model("resnet20", METHODS, resize=14, slim_penalty=1e-5, in_channels=1),
        )
    )
    return c


def lenet5_fashion() -> ConfigDict:
    """The lightest: LeNet-5 alone (L1-norm filters) on the whole Fashion-MNIST training
    set, 10 epochs (fine-tuning 3), 3 seeds (unverified)."""
    c = fashion_small()
    c.name = "lenet5_fashion"
    c.subset = None
    c.epochs, c.ft_epochs = 10, 3
    c.models = ConfigDict(dict(lenet5=fashion_small().models.lenet5))
    return c


def smoke() -> ConfigDict:
    """Minutes on a 2-core CPU (32 short runs: compiling dominates): LeNet-5 (L1 filters) and
    a tiny VGG-11 (both methods) on 256 examples, one epoch, one sparsity, two seeds."""
    c = fashion_small()
    c.name = "smoke"
    c.subset = 256
    c.batch_size = 64
    c.epochs, c.ft_epochs = 1, 1
    c.sparsities = (0.5,)
    c.seeds = (0, 1)
    c.models = ConfigDict(
        dict(
            lenet5=_model("lenet5", ("l1_filter",), init_mode="fan_avg"),
            vgg11_w16=_model("vgg11", METHODS, resize=32, in_channels=1, width=0.0625),
        )
    )
    return c


def cifar10_vgg16_resnet56() -> ConfigDict:
    """The paper's CIFAR-10 setting (TFDS, GPU): VGG-16 and ResNet-56 with batch norm, SGD
    lr 0.1, momentum 0.9, weight decay 1e-4, batch 64, 160 epochs, standard augmentation;
    both methods, unit sparsities 0.3, 0.5 and 0.7 (unverified: the paper prunes named
    layers of VGG-16 and ResNet-56 by hand-set ratios)."""
    c = _base()
    c.name = "cifar10_vgg16_resnet56"
    c.dataset, c.augment = "cifar10", True
    c.sparsities = (0.3, 0.5, 0.7)
    c.models = ConfigDict(
        dict(
            vgg16=_model("vgg16", METHODS),
            resnet56=_model("resnet56", METHODS, slim_penalty=1e-5),
        )
    )
    return c


CONFIGS = {f.__name__: f for f in (fashion_small, lenet5_fashion, smoke, cifar10_vgg16_resnet56)}


def get_config(name: str = "fashion_small") -> ConfigDict:
    """The named config (`--config=experiments/configs/rethinking.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
