"""Configs for experiments/data_pruning.py: training settings from configs/train.py, plus
how examples are scored and which fractions of the training set are kept.

    python -m experiments.data_pruning --workdir=runs/data_pruning_mnist1d     # mnist1d
    python -m experiments.data_pruning --workdir=runs/data_pruning_fashion \
        --config=experiments/configs/data_pruning.py:fashion_mnist

Scores: EL2N and GraNd after `score_epochs` epochs and GraNd at initialisation
(Paul, Ganguli & Dziugaite, 2021, "Deep Learning on a Data Diet": the mean over
several seeds, about a tenth of training in), forgetting events over `forgetting_epochs`
epochs (Toneva et al., 2019, "An Empirical Study of Example Forgetting during Deep
Neural Network Learning"), and random subsets. Every subset trains for the same
number of epochs (`epochs`), as the papers do, so a smaller subset trains fewer steps.
Numbers marked (unverified) are choices for these small problems, not the papers'.
"""

from ml_collections import ConfigDict, config_dict

from experiments import sweeps

SCORES = ("el2n", "grand", "grand_init", "forgetting", "random")
KEEPS = ("hardest", "easiest")


def _study(train_name: str, *, epochs: int) -> ConfigDict:
    c = sweeps.train_config(train_name)
    c.steps = config_dict.placeholder(int)  # subsets train for `epochs`, never a step count
    c.epochs = epochs
    c.eval_every = config_dict.placeholder(int)  # evaluated at the end only
    c.checkpoint_every = 10**9  # one checkpoint at the end: a cell takes seconds
    c.scores = SCORES
    c.keeps = KEEPS  # random keeps one subset, neither hardest nor easiest
    c.fractions = (0.1, 0.3, 0.5, 0.7, 1.0)
    c.seeds = (0, 1, 2)  # the models trained on each subset
    c.score_seeds = (100, 101, 102, 103, 104)  # the models scores average over
    c.score_epochs = max(1, epochs // 10)  # EL2N / GraNd "early": a tenth of training
    c.forgetting_epochs = epochs  # forgetting is counted over a whole training run
    c.score_batch_size = 128  # examples whose per-example gradients are held at once
    return c


def mnist1d() -> ConfigDict:
    """The default: the MNIST-1D MLP (Adam 1e-2, batch 100): 150 epochs of the full 4,000
    examples (its 6,000 steps), EL2N / GraNd at epoch 15, five score seeds."""
    return _study("mnist1d_mlp", epochs=150)


def fashion_mnist() -> ConfigDict:
    """LeNet-300-100 on Fashion-MNIST (Adam 1.2e-3, batch 60), shortened for a CPU: 5
    epochs per subset (unverified; the lottery settings train 50), scores at epoch 1 from
    three seeds, forgetting over 5 epochs."""
    c = _study("lenet_fashion", epochs=5)
    c.score_seeds = (100, 101, 102)
    c.score_epochs = 1
    return c


def smoke() -> ConfigDict:
    """Seconds: 400 MNIST-1D examples, every score keeping the hardest half, two seeds,
    2 epochs, two score seeds."""
    c = _study("mnist1d_mlp", epochs=2)
    c.subset = 400
    c.keeps = ("hardest",)
    c.fractions = (0.5, 1.0)
    c.seeds = (0, 1)
    c.score_seeds = (100, 101)
    c.score_epochs = 1
    c.log_every = 4
    return c


CONFIGS = {f.__name__: f for f in (mnist1d, fashion_mnist, smoke)}


def get_config(name: str = "mnist1d") -> ConfigDict:
    """The named config (`--config=experiments/configs/data_pruning.py:NAME`)."""
    return sweeps.named_config(CONFIGS, name)
