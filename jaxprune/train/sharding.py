"""Data parallelism with JAX's own SPMD: a device mesh, sharded batches, placed state.

One mesh axis, "data", spans the devices. A batch is split along it; the train
state is replicated by default, or placed by a user rule (e.g. shard a large
embedding along a second mesh axis). The step functions do not change: `jax.jit`
partitions them from the inputs' shardings.

Multi-host (several processes, e.g. a TPU pod slice): call
`jax.distributed.initialize()` first in every process, then use the same code.
`make_mesh()` spans `jax.devices()` (all processes' devices); every process
iterates the same global batches (same seed) and `shard_batch` hands each one
only its own rows (`jax.make_array_from_process_local_data` on the global batch). Orbax
checkpoints are written by all processes together; `fit` prints and writes
metrics only on process 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["make_mesh", "replicated", "state_sharding", "place_state", "shard_batch"]

DATA_AXIS = "data"

ShardingRule = Callable[[tuple, Any], PartitionSpec | None]
"""`rule(path, leaf) -> PartitionSpec | None`; None means replicate the leaf."""


def make_mesh(devices: Sequence[jax.Device] | int | None = None) -> Mesh:
    """A 1-D mesh with axis "data" over the given devices.

    Args:
      devices: a list of devices, a count (the first n of `jax.devices()`), or
        None for all devices (all processes' devices when multi-host).

    Example:
      >>> mesh = make_mesh()        # every device
      >>> mesh1 = make_mesh(1)      # one device: a single-device run
    """
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(f"make_mesh: asked for {devices} devices but {len(available)} exist.")
        devices = available[:devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_data_axis(mesh: Mesh, batch_size: int | None = None) -> None:
    """Raises a ValueError unless ``mesh`` has the axis "data" (dividing ``batch_size``).

    Example:
      >>> check_data_axis(make_mesh(1), batch_size=60)
    """
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"the mesh has axes {mesh.axis_names}; batches are split along an axis named "
            f"{DATA_AXIS!r}: build it with make_mesh(), or name your batch axis {DATA_AXIS!r}."
        )
    n_dev = mesh.shape[DATA_AXIS]
    if batch_size is not None and batch_size % n_dev:
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the {n_dev} devices of the mesh's "
            f"{DATA_AXIS!r} axis; pick a multiple of {n_dev} or a mesh over fewer devices "
            "(make_mesh(n))."
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def state_sharding(tree: Any, mesh: Mesh, rule: ShardingRule | None = None) -> Any:
    """A sharding pytree for `tree` (e.g. a `TrainState`): replicated unless `rule` says.

    Example:
      >>> def rule(path, leaf):  # shard big kernels' first axis over "data"
      ...     return PartitionSpec("data") if leaf.ndim == 2 and leaf.shape[0] >= 4096 else None
      >>> tree = {"big": np.zeros((4096, 8)), "small": np.zeros(8)}
      >>> shardings = state_sharding(tree, make_mesh(), rule)
      >>> shardings["big"].spec, shardings["small"].spec
      (P('data',), P())
    """
    rep = replicated(mesh)
    if rule is None:
        return jax.tree.map(lambda _: rep, tree)

    def one(path, leaf):
        spec = rule(path, leaf)
        return rep if spec is None else NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, tree)


def place_state(tree: Any, mesh: Mesh, rule: ShardingRule | None = None) -> Any:
    """Puts `tree` on the devices of `mesh` (replicated, or per `rule`).

    Example:
      >>> placed = place_state({"w": np.ones((2, 2))}, make_mesh())
      >>> placed["w"].sharding.is_fully_replicated
      True
    """
    return jax.device_put(tree, state_sharding(tree, mesh, rule))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Splits a global numpy batch along axis 0 over the mesh's "data" axis.

    Every process passes the same global batch; each contributes only the rows
    its own devices hold, so the same call works on one host and on many.

    Example:
      >>> b = shard_batch({"x": np.zeros((64, 40), np.float32)}, make_mesh())
      >>> b["x"].shape
      (64, 40)
    """
    check_data_axis(mesh)
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    n_dev = mesh.shape[DATA_AXIS]
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % n_dev:
            raise ValueError(
                f"shard_batch: batch[{key!r}] has {value.shape[0]} rows, not divisible "
                f"by the {n_dev} devices of the mesh; pick a batch size that is a "
                f"multiple of {n_dev} or a mesh over fewer devices (make_mesh(n))."
            )
        # The global batch itself: each process takes the rows its devices hold, wherever
        # the "data" axis lies in the mesh.
        out[key] = jax.make_array_from_process_local_data(sharding, value, value.shape)
    return out
