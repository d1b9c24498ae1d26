"""Configs for experiments/prune_at_init.py: training settings from configs/train.py, plus the grid.

    python -m experiments.prune_at_init --config=experiments/configs/prune_at_init.py:NAME \
        --workdir=DIR [--config.sparsities="(0.95, 0.98)"] [--config.seeds="(0, 1, 2)"]

Names: `mnist1d` (the default: the MNIST-1D MLP), `lenet_fashion`
(LeNet-300-100 on Fashion-MNIST, the SNIP paper's MNIST net), `lenet5_fashion`
(LeNet-5 on Fashion-MNIST: the conv net a CPU can train), `conv2_fashion` (Conv-2 on
28x28x1 images; slow on CPU), `wrn22_2_cifar10` (for GPUs; TFDS needs
a network on first use) and `smoke` (tiny; for tests).
"""

from ml_collections import ConfigDict

from experiments import sweeps


def _sweep(train_name: str, sparsities: tuple[float, ...]) -> ConfigDict:
    c = sweeps.train_config(train_name)
    c.methods = ("dense", "snip", "snip_fresh", "grasp", "synflow", "magnitude", "random")
    c.sparsities = sparsities
    c.seeds = (0, 1, 2)
    c.distribution = "global"  # SNIP, GraSP, SynFlow and magnitude rank globally (the papers)
    c.random_distribution = "uniform"  # random: the same sparsity in every layer
    c.score_batch_size = 100  # SNIP's MNIST minibatch (128 on CIFAR)
    c.grasp_temperature = 200.0  # GraSP's softmax temperature
    c.synflow_rounds = 100  # SynFlow's iterations (exponential schedule)
    c.ensemble = True  # train all members of a sparsity at once (vmap)
    return c


def mnist1d() -> ConfigDict:
    """The MNIST-1D MLP (15K weights): Adam 1e-2, batch 100, 6,000 steps, five sparsities."""
    return _sweep("mnist1d_mlp", (0.5, 0.8, 0.9, 0.95, 0.98))


def lenet_fashion() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST: Adam 1.2e-3, batch 60, 50K steps (the LTH settings).

    SNIP's LeNet-300-100 numbers are on MNIST (Lee, Ajanthan & Torr, 2019, "SNIP:
    Single-shot Network Pruning based on Connection Sensitivity"): dense error 1.7%,
    95% sparse 1.6%, 98% sparse 2.4%.
    """
    return _sweep("lenet_fashion", (0.8, 0.9, 0.95, 0.98))


def lenet5_fashion() -> ConfigDict:
    """LeNet-5 (61K weights) on Fashion-MNIST: Adam 1.2e-3, batch 60, 10K steps (10 epochs),
    as in dynamic_sparse.py's `lenet5_fashion`: the conv net a CPU can train.

    Members train one by one: on a CPU, vmapped convolutions are slower than separate ones.
    """
    return sweeps.lenet5(_sweep("lenet_fashion", (0.8, 0.9, 0.95, 0.98)))


def conv2_fashion() -> ConfigDict:
    """Conv-2 (Frankle & Carbin) on Fashion-MNIST: one channel, 28x28, Adam 2e-4, batch 60, 20K
    steps. 3.3M weights: slow on a CPU, and vmapped convolutions are slower than one by one
    there, so members train separately."""
    c = _sweep("conv2_cifar10", (0.8, 0.9, 0.95, 0.98))
    c.dataset = "fashion_mnist"
    c.model_overrides = ConfigDict({"in_channels": 1, "image_size": 28})
    c.ensemble = False
    return c


def wrn22_2_cifar10() -> ConfigDict:
    """WRN-22-2 on CIFAR-10 with RigL's schedule (Nesterov, 97.5K steps); for GPUs."""
    c = _sweep("wrn22_2_cifar10", (0.5, 0.8, 0.9, 0.95, 0.98))
    c.score_batch_size = 128  # SNIP's CIFAR minibatch
    return c


def smoke() -> ConfigDict:
    """Every method at one sparsity, two seeds, a few steps on 500 MNIST-1D examples."""
    c = sweeps.smoke(mnist1d(), steps=30)
    c.methods = (*c.methods, "snip_shuffled", "grasp_shuffled", "synflow_shuffled")
    c.synflow_rounds = 5
    return c


CONFIGS = {
    f.__name__: f
    for f in (mnist1d, lenet_fashion, lenet5_fashion, conv2_fashion, wrn22_2_cifar10, smoke)
}


def get_config(name: str = "mnist1d") -> ConfigDict:
    """The named config (`--config=experiments/configs/prune_at_init.py:NAME`)."""
    return sweeps.named_config(CONFIGS, name)
