"""Devices and data parallelism: the 1-d ``"batch"`` mesh, sharded batches, replication.

A :class:`jax.sharding.Mesh` over all devices (of all processes, after
:func:`maybe_initialize_distributed`) with the axis ``"batch"``. Batches are sharded along
their sample axis, the train state is replicated, and XLA inserts the gradient
all-reduce.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

PyTree = Any


def maybe_initialize_distributed(mode: str = "auto") -> bool:
  """Calls :func:`jax.distributed.initialize` for a multi-process run.

  Args:
    mode: ``"auto"`` (only when the environment names a coordinator:
      ``JAX_COORDINATOR_ADDRESS``, a Slurm job of several tasks, or a multi-host Cloud
      TPU), ``"on"`` (always) or ``"off"``.

  Returns:
    Whether it was initialized. Call it before any other JAX call.
  """
  if mode == "off":
    return False
  env = os.environ
  auto = ("JAX_COORDINATOR_ADDRESS" in env
          or int(env.get("SLURM_NTASKS", "1")) > 1
          or "," in env.get("TPU_WORKER_HOSTNAMES", ""))
  if mode == "on" or (mode == "auto" and auto):
    jax.distributed.initialize()
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
    return True
  return False


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-d mesh with the axis ``"batch"`` over ``devices`` (default: all)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), ("batch",))


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> Tuple[jax.Array, ...]:
  """Places global sample-major host arrays ``[B, ...]`` split along ``B`` over the mesh.

  Every process passes the same global batch; each keeps the rows of its own devices.
  """
  out = []
  for a in arrays:
    sharding = NamedSharding(mesh, P("batch"))
    if jax.process_count() == 1:
      out.append(jax.device_put(a, sharding))
    else:
      n = jax.process_count()
      rows = a.shape[0] // n
      local = a[jax.process_index() * rows:(jax.process_index() + 1) * rows]
      out.append(jax.make_array_from_process_local_data(sharding, local, a.shape))
  return tuple(out)


def replicate(mesh: Mesh, tree: PyTree) -> PyTree:
  """Places a pytree replicated on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))
