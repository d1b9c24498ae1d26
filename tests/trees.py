"""Parameter trees of every kind the core must accept (Linen, NNX wrapped and pure, dicts,
lists), and the optimizers the transforms must work with."""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def mlp_dict(sizes=(20, 16, 12, 4), seed=0):
    """A plain nested dict {"layers_i": {"kernel", "bias"}}."""
    rng = np.random.default_rng(seed)
    return {
        f"layers_{i}": {
            "kernel": jnp.asarray(rng.normal(size=(a, b)).astype(np.float32) / np.sqrt(a)),
            "bias": jnp.asarray(rng.normal(size=(b,)).astype(np.float32) * 0.1),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    }


def mlp_apply(params, x):
    """Forward pass of :func:`mlp_dict` parameters (any tree with the same paths)."""
    n = len(params)
    for i in range(n):
        layer = params[f"layers_{i}"]
        x = x @ layer["kernel"] + layer["bias"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


def mlp_list(sizes=(20, 16, 12, 4), seed=0):
    """The same MLP as a flat list [w0, b0, w1, b1, ...]."""
    d = mlp_dict(sizes, seed)
    return [
        leaf
        for i in range(len(d))
        for leaf in (d[f"layers_{i}"]["kernel"], d[f"layers_{i}"]["bias"])
    ]


def linen_params(seed=0):
    """Parameters of a Flax Linen CNN+Dense model with BatchNorm (``params`` collection)."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=True)(x)
            x = nn.relu(x).reshape(x.shape[0], -1)
            return nn.Dense(10)(x)

    variables = Net().init(jax.random.key(seed), jnp.ones((1, 6, 6, 3)))
    return variables["params"]


def nnx_model(seed=0):
    """A small Flax NNX model with Linear layers in an nnx.List and a BatchNorm."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(20, 16, rngs=rngs), nnx.Linear(16, 4, rngs=rngs)])
            self.norm = nnx.BatchNorm(16, rngs=rngs)

        def __call__(self, x):
            return self.layers[1](jax.nn.relu(self.norm(self.layers[0](x))))

    return Net(nnx.Rngs(seed))


# The optimizers every transform must work with (no list of them in the library).
OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.05),
    "momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "nesterov": lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "lion": lambda: optax.lion(1e-3, weight_decay=0.1),
    "adafactor": lambda: optax.adafactor(1e-2, min_dim_size_to_factor=4),
    "inject_hyperparams": lambda: optax.inject_hyperparams(optax.adamw)(
        learning_rate=1e-2, weight_decay=0.1
    ),
    "chain_with_clipping": lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2)),
    "schedule": lambda: optax.sgd(optax.cosine_decay_schedule(0.05, 10), momentum=0.9),
}
