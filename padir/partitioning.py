"""One device mesh with axes ('data', 'model') and the logical-axis rules that map onto it.

Every parameter and key activation of the network carries logical axis names (`batch`,
`length`, `embed`, `mlp`, `heads`, `kv`, `vocab`, ...); `LOGICAL_AXIS_RULES` maps them onto the
mesh, so one rule set shards the model from one CPU up to a pod (MaxText's pattern).
"""
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

# (logical axis, mesh axis or None). Parameters: `vocab`, `mlp`, `heads` over `model` (Megatron
# style); `embed`, `kv` replicated. Activations: `batch` over `data`.
LOGICAL_AXIS_RULES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("length_classes", None),
)


def make_mesh(mesh_shape: Optional[Sequence[int]] = None,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ('data', 'model') mesh. Default: every device on `data`.

  Args:
    mesh_shape: (data, model); -1 in one slot means "the rest of the devices".
    devices: devices to use (default: all global devices).
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  data, model = (n, 1) if mesh_shape is None else tuple(int(x) for x in mesh_shape)
  if data == -1 and model > 0 and n % model == 0:
    data = n // model
  if model == -1 and data > 0 and n % data == 0:
    model = n // data
  if data * model != n or data <= 0 or model <= 0:
    raise ValueError(
        f"mesh_shape={tuple(mesh_shape)} (data x model) does not divide the {n} available "
        f"devices; set the mesh shape (--gin.train.mesh_shape) so that data * model == {n}.")
  return Mesh(np.asarray(devices).reshape(data, model), MESH_AXES)


def tree_shardings(mesh: Mesh, abstract_boxed_tree, rules=LOGICAL_AXIS_RULES):
  """Shardings for a tree of `nn.LogicallyPartitioned` (or plain) leaves, e.g. from
  `jax.eval_shape(model.init, ...)`. Plain leaves are replicated."""
  specs = nn.get_partition_spec(abstract_boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a [batch, ...] input array: batch over `data`."""
  return NamedSharding(mesh, PartitionSpec("data"))
