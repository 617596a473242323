"""The BPSR loss terms (eq. 4-5), pure functions in the style of ``optax.losses``.

    L = spike_count_cross_entropy(output_spikes, labels, k)
        + lambda_s * spike_l2(hidden_spikes)
        + lambda_w * weight_l1(params)
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

#: Default of ``k * T``: the spike count of a class is scaled by ``k = 10 / T`` so the
#: logits span ``[0, 10]`` whatever the time window.
DEFAULT_COUNT_SCALE = 10.0

#: Parameter names whose leaves are synaptic weights.
SYNAPSE_NAMES = ("kernel", "recurrent_kernel")


def spike_count_logits(output_spikes: Array, k: Optional[float] = None) -> Array:
  """Class logits ``k * sum_t s_c^t`` of eq. 5.

  Args:
    output_spikes: ``[T, batch, classes]`` output-layer spikes.
    k: scale of the spike count; default ``DEFAULT_COUNT_SCALE / T``.

  Returns:
    ``[batch, classes]`` logits.
  """
  if output_spikes.ndim < 3:
    raise ValueError(
        f"expected output spikes [T, batch, classes], got shape {output_spikes.shape}")
  t = output_spikes.shape[0]
  if k is None:
    k = DEFAULT_COUNT_SCALE / t
  return k * jnp.sum(output_spikes, axis=0)


def spike_count_cross_entropy(output_spikes: Array, labels: Array,
                              k: Optional[float] = None) -> Array:
  """Cross entropy of ``softmax(k * spike counts)`` against integer labels (eq. 5).

  Args:
    output_spikes: ``[T, batch, classes]`` output-layer spikes.
    labels: ``[batch]`` integer class labels in ``[0, classes)``.
    k: scale of the spike counts; default ``DEFAULT_COUNT_SCALE / T`` (``k * T = 10``).

  Returns:
    ``[batch]`` per-example losses (take the mean for a batch loss); NaN for an example
    whose label is outside ``[0, classes)`` (checked inside ``jit`` without a host sync;
    the data loaders reject such labels up front).
  """
  logits = spike_count_logits(output_spikes, k)
  if labels.shape != logits.shape[:1]:
    raise ValueError(f"labels of shape {labels.shape} do not match the batch of the "
                     f"output spikes {output_spikes.shape} (expected [{logits.shape[0]}])")
  loss = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
  # A label outside [0, classes) gives NaN (optax would wrap -1 to the last class), so a
  # bad label stops training at the non-finite-loss check instead of training silently;
  # the loaders reject such labels before (bpsr_jax.data.Dataset).
  valid = (labels >= 0) & (labels < logits.shape[-1])
  return jnp.where(valid, loss, jnp.nan)


def spike_l2(spikes: Union[Array, Sequence[Array]]) -> Array:
  """Spiking-sparsity term ``sum_n sum_t ||s^{n,t}||_2^2`` averaged over the batch.

  Pass the hidden layers' spikes only (eq. 4 excludes the output layer). Spikes are
  binary, so this is the number of hidden spikes per sample; its gradient is ``2 s``
  (eq. 6).

  Args:
    spikes: one array or a sequence of arrays ``[T, batch, ...]``.

  Returns:
    A scalar: the per-sample sum, averaged over the batch axis (axis 1).
  """
  if isinstance(spikes, (jax.Array, jnp.ndarray)) or hasattr(spikes, "shape"):
    spikes = (spikes,)
  total = jnp.zeros((), jnp.float32)
  for s in spikes:
    if s.ndim < 2:
      raise ValueError(f"expected spikes [T, batch, ...], got shape {s.shape}")
    total = total + jnp.sum(jnp.square(s.astype(jnp.float32))) / s.shape[1]
  return total


def _path_name(path) -> str:
  last = path[-1]
  for attr in ("key", "name", "idx"):
    if hasattr(last, attr):
      return str(getattr(last, attr))
  return str(last)


def synapse_leaves(params: Any, names: Iterable[str] = SYNAPSE_NAMES):
  """The ``(path, leaf)`` pairs of ``params`` whose last key is a synapse name."""
  names = tuple(names)
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [(p, v) for p, v in flat if _path_name(p) in names]


def weight_l1(params: Any, names: Iterable[str] = SYNAPSE_NAMES) -> Array:
  """Synaptic-sparsity term ``sum ||W||_1`` over the ``kernel``/``recurrent_kernel`` leaves.

  Args:
    params: a parameter pytree (e.g. ``model.init(...)["params"]``).
    names: leaf names counted as synapses.

  Returns:
    A scalar. Its gradient is ``sign(W)`` (eq. 13).
  """
  leaves = synapse_leaves(params, names)
  if not leaves:
    raise ValueError(f"weight_l1 found no leaves named {tuple(names)} in the params")
  return sum(jnp.sum(jnp.abs(v)) for _, v in leaves)
