"""Configs for experiments/prunability.py: how far IMP prunes one MLP on hidden-manifold
tasks of growing intrinsic dimension (``jaxprune.data.hidden_manifold``).

    python -m experiments.prunability --workdir=runs/prunability                 # default
    python -m experiments.prunability --config=experiments/configs/prunability.py:smoke \
        --workdir=runs/prunability_smoke

Every task embeds its latent in 64 input dimensions (8,000 training and 2,000 test
examples, 10 classes, task 0), so only the intrinsic dimension changes. The network, the
optimizer and the IMP settings are the same for every dimension: an MLP 64-100-100-10,
Adam 1e-3, batch 100, 3,000 steps a round, 20% of every layer's weights a round (the
output layer at half rate), rewinding to initialisation, 3 seeds trained together.
Prunability is the sparsity of the sparsest round whose test accuracy is within
``tolerance`` (1 point) of the dense network's, per seed.
"""

from ml_collections import ConfigDict

from experiments.configs import lottery as lottery_configs
from experiments.configs import train as train_configs


def default() -> ConfigDict:
    """Intrinsic dimensions 2 to 32, IMP to <= 2% of the weights, 3 seeds."""
    c = lottery_configs._lottery(
        train_configs._adam("mlp", "manifold_d2", batch_size=100, steps=3000, lr=1e-3)
    )
    c.model_overrides = ConfigDict({"in_features": 64, "hidden": (100, 100)})
    c.eval_every = c.steps  # test accuracy at the end of each round only
    c.checkpoint_every = c.steps
    c.imp.target = 0.02
    c.imp.variants = ("ticket",)
    c.study = ConfigDict({"dims": (2, 4, 8, 16, 32), "tolerance": 0.01})
    return c


def smoke() -> ConfigDict:
    """Seconds: two dimensions, 2 seeds, 2 rounds at 50%, 60 steps."""
    c = default()
    c.seeds = (0, 1)
    c.steps = c.eval_every = c.checkpoint_every = 60
    c.imp.rate = 0.5
    c.imp.rounds = 2
    c.study.dims = (2, 4)
    return c


CONFIGS = {f.__name__: f for f in (default, smoke)}


def get_config(name: str = "default") -> ConfigDict:
    """The named config (`--config=experiments/configs/prunability.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
