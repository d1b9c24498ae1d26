"""Configs for experiments/dynamic_sparse.py: training settings from configs/train.py, plus the grid.

    python -m experiments.dynamic_sparse --config=experiments/configs/dynamic_sparse.py:NAME \
        --workdir=DIR [--config.sparsities="(0.9,)"] [--config.seeds="(0, 1, 2)"]

Names: `mnist1d` (the default: the MNIST-1D MLP), `lenet_fashion`
(LeNet-300-100 on Fashion-MNIST), `lenet5_fashion` (LeNet-5 on Fashion-MNIST: the
conv net a CPU can train), `conv2_fashion` (Conv-2 on 28x28x1 images; slow on CPU),
`wrn22_2_cifar10` (RigL's WRN-22-2 setting, for GPUs; TFDS needs a network on first
use) and `smoke` (tiny; for tests).
RigL's defaults (Evci, Gale, Menick, Castro & Elsen, 2020, "Rigging the Lottery: Making
All Tickets Winners"): update every 100 steps until 75% of training, drop fraction 0.3
with cosine decay, ERK.
"""

from ml_collections import ConfigDict

from experiments import sweeps


def _sweep(train_name: str, sparsities: tuple[float, ...]) -> ConfigDict:
    c = sweeps.train_config(train_name)
    c.methods = ("dense", "static", "set", "rigl", "gmp", "ste")
    c.sparsities = sparsities
    c.seeds = (0, 1, 2)
    c.distribution = "erk"  # the initial masks of static, SET and RigL; straight-through's
    c.dst = ConfigDict(dict(update_every=100, drop_fraction=0.3, end_fraction=0.75))
    # Method `srste` (not in `methods` by default): straight-through with SR-STE's decay of
    # the pruned dense weights, lambda_W (2e-4 in Zhou et al. 2021, with SGD).
    c.srste = ConfigDict(dict(pruned_decay=2e-4))
    # Methods `static_nm` / `ste_nm` / `srste_nm` (not in `methods` by default): N:M masks
    # along the kernels' input axis, n = (1 - sparsity) * m (m = 4: sparsities 0.5, 0.75).
    c.nm = ConfigDict(dict(m=4))
    # Zhu & Gupta's cubic schedule from begin to end (fractions of training; unverified
    # defaults), layer-wise ("uniform"): the transform ranks with a traced sparsity, which
    # ER/ERK cannot.
    c.gmp = ConfigDict(
        dict(begin_fraction=0.1, end_fraction=0.75, update_every=100, distribution="uniform")
    )
    c.ensemble = True  # train the seeds of a (sparsity, method) at once (vmap)
    return c


def mnist1d() -> ConfigDict:
    """The MNIST-1D MLP (15K weights): Adam 1e-2, batch 100, 6,000 steps."""
    return _sweep("mnist1d_mlp", (0.8, 0.9, 0.95))


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 (266K weights) on Fashion-MNIST: Adam 1.2e-3, batch 60, 50K steps (the
    lottery-ticket settings, as in prune_at_init.py's `lenet_fashion`)."""
    return _sweep("lenet_fashion", (0.9, 0.95, 0.98))


def lenet5_fashion() -> ConfigDict:
    """LeNet-5 (61K weights) on Fashion-MNIST: Adam 1.2e-3, batch 60, 10K steps (10 epochs).

    Members train one by one: on a CPU, vmapped convolutions are slower than separate ones.
    """
    return sweeps.lenet5(_sweep("lenet_fashion", (0.8, 0.9, 0.95)))


def conv2_fashion() -> ConfigDict:
    """Conv-2 (3.3M weights) on Fashion-MNIST, 28x28x1: Adam 2e-4, batch 60, 20K steps."""
    c = _sweep("conv2_cifar10", (0.8, 0.9, 0.95))
    c.dataset = "fashion_mnist"
    c.model_overrides = ConfigDict({"in_channels": 1, "image_size": 28})
    c.ensemble = False
    return c


def wrn22_2_cifar10() -> ConfigDict:
    """RigL's WRN-22-2 on CIFAR-10: Nesterov 0.9, lr 0.1 / 5 at 30K/60K/90K, wd 5e-4, batch 128,
    250 epochs, augmentation; the paper's RigL-ERK: 94.2 / 93.6 / 92.9 / 91.8 at 50/80/90/95%."""
    return _sweep("wrn22_2_cifar10", (0.5, 0.8, 0.9, 0.95))


def smoke() -> ConfigDict:
    """Every method at one sparsity, two seeds, a few steps on 500 MNIST-1D examples."""
    c = sweeps.smoke(mnist1d(), steps=40)
    c.methods = (*c.methods, "srste", "static_nm", "ste_nm", "srste_nm")
    c.nm.m = 10  # 1:10 at 90% (the MLP's inputs, 40 and 100, split into runs of 10)
    c.dst.update_every = 5
    c.gmp.update_every = 5
    return c


CONFIGS = {
    f.__name__: f
    for f in (mnist1d, lenet_fashion, lenet5_fashion, conv2_fashion, wrn22_2_cifar10, smoke)
}


def get_config(name: str = "mnist1d") -> ConfigDict:
    """The named config (`--config=experiments/configs/dynamic_sparse.py:NAME`)."""
    return sweeps.named_config(CONFIGS, name)
