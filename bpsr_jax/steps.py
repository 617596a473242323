"""The train state, the BPSR loss, the jitted train and eval steps, and evaluation.

One train step (jitted, data parallel over the mesh of :mod:`bpsr_jax.parallel`):

1. encode the raw batch on device: analog ``[B, ...]`` to spikes ``[T, B, ...]``
   (:func:`bpsr_jax.encode.rate` with the key ``fold_in(base_key, step)``, or
   :func:`bpsr_jax.encode.rank_order`), move a pre-encoded spike batch ``[B, T, ...]``
   time-major, or hand the analog batch to the model's encoding layer as it is;
2. the BPSR loss (eq. 4)::

       L = mean_b CE(softmax(k * sum_t s_out), y) + lambda_s * spike_l2(hidden)
           + lambda_w * weight_l1(params)

3. the optimizer of :func:`bpsr_jax.optim.make_optimizer`;
4. a step whose loss or gradient is not finite leaves the state unchanged and reports
   ``finite=False`` (the loop checks it at its log points).

The eval step counts spikes and synaptic operations with
:func:`bpsr_jax.metrics.count_events`, the recorder :func:`bpsr_jax.metrics.measure`
uses, so the two agree.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpsr_jax import constraints
from bpsr_jax import encode
from bpsr_jax import losses
from bpsr_jax import metrics
from bpsr_jax import models
from bpsr_jax import parallel
from bpsr_jax import rewiring
from bpsr_jax.config import TrainConfig

Array = jax.Array
PyTree = Any


class TrainState(NamedTuple):
  """The whole state of a run: a plain pytree, checkpointed as is.

  Attributes:
    params: the model params.
    opt_state: the optimizer state (the rewiring masks and momenta included).
    step: int32 scalar, the number of steps taken.
    key: the base PRNG key (raw uint32 ``[2]``); step ``s`` uses ``fold_in(key, s)``.
  """

  params: PyTree
  opt_state: PyTree
  step: Array
  key: Array


def make_model(cfg: TrainConfig) -> models.SNN:
  """The :class:`bpsr_jax.models.SNN` of a configuration."""
  return models.SNN(cfg.model, threshold=cfg.threshold, alpha=cfg.alpha,
                    gradient=cfg.gradient, band_width=cfg.band_width,
                    time_steps=cfg.time_steps,
                    tau_init=cfg.tau_init, bias_high=cfg.bias_high,
                    weight_gain=cfg.weight_gain,
                    binary_input=cfg.encoding in ("rate", "rank_order"))


def encode_input(x: Array, key: Array, cfg: TrainConfig) -> Array:
  """The model input from a raw sample-major batch (inside ``jit``).

  Args:
    x: ``[B, ...]`` analog values, or ``[B, T, ...]`` spikes for ``encoding="none"``.
    key: the step's key (rate coding).
    cfg: the configuration.

  Returns:
    ``[T, B, ...]`` float32 spikes, or the ``[B, ...]`` analog batch for
    ``encoding="analog"``.
  """
  if cfg.encoding == "none":
    return jnp.swapaxes(x, 0, 1).astype(jnp.float32)
  x = x.astype(jnp.float32)
  if cfg.encoding == "rate":
    return encode.rate(key, x, cfg.time_steps)
  if cfg.encoding == "rank_order":
    return encode.rank_order(x, cfg.time_steps, by=cfg.rank_by,
                             sample_ndim=max(1, x.ndim - 1))
  return x


def init_state(cfg: TrainConfig, model: nn.Module, tx: optax.GradientTransformation,
               example_x: np.ndarray, mask: Optional[Dict[str, Any]] = None) -> TrainState:
  """A fresh train state (host arrays) for a raw example batch ``[b, ...]``; ``mask``
  (see :func:`bpsr_jax.rewiring.apply_mask`) zeroes absent synapses before the optimizer
  state is made."""
  root = jax.random.PRNGKey(cfg.seed)

  # Compiled, not op by op: eagerly, every primitive of the init pass (the LIF scans
  # included) compiled on its own, ~150 compilations for a small conv net.
  @jax.jit
  def init(example_x):
    x = encode_input(example_x, jax.random.fold_in(root, 2), cfg)
    params = model.init(jax.random.fold_in(root, 0), x)["params"]
    if cfg.clamp:
      params = constraints.project_params(params, cfg.threshold)
    return params

  params = init(jnp.asarray(example_x[:1]))
  if mask is not None:  # checked against the params on the host
    params = rewiring.apply_mask(params, mask)
  opt_state = jax.jit(tx.init)(params)
  return TrainState(params=params, opt_state=opt_state,
                    step=jnp.zeros((), jnp.int32), key=jax.random.fold_in(root, 1))


def loss_fn(params: PyTree, model: nn.Module, x: Array, y: Array, key: Array,
            cfg: TrainConfig) -> Tuple[Array, Dict[str, Array]]:
  """The BPSR loss (eq. 4) of one raw batch.

  Args:
    params: model params.
    model: the SNN.
    x: the raw batch ``[B, ...]`` (see :func:`encode_input`).
    y: ``[B]`` int labels.
    key: the step's key.
    cfg: the configuration.

  Returns:
    ``(loss, aux)``; ``aux`` has ``ce``, ``spike_l2`` (hidden spikes per sample),
    ``weight_l1`` and ``correct`` (the number of right predictions in the batch).
  """
  if cfg.augment_shift:
    x = encode.random_shift(jax.random.fold_in(key, 1), x, cfg.augment_shift)
  out, hidden = model.apply({"params": params}, encode_input(x, key, cfg))
  k = cfg.count_scale / out.shape[0]
  ce = jnp.mean(losses.spike_count_cross_entropy(out, y, k))
  sl2 = losses.spike_l2(hidden) if hidden else jnp.zeros((), jnp.float32)
  wl1 = losses.weight_l1(params)
  loss = ce + cfg.lambda_s * sl2 + cfg.lambda_w * wl1
  pred = jnp.argmax(jnp.sum(out, axis=0), axis=-1)
  aux = dict(ce=ce, spike_l2=sl2, weight_l1=wl1,
             correct=jnp.sum(pred == y).astype(jnp.int32))
  return loss, aux


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    cfg: TrainConfig) -> Callable:
  """The jitted step ``(state, x, y) -> (state, metrics)``.

  ``metrics`` holds ``loss``, ``ce``, ``spike_l2``, ``weight_l1``, ``correct`` and
  ``finite`` (False: the loss or a gradient was NaN/inf and the state is unchanged).
  """

  def step(state: TrainState, x: Array, y: Array):
    key = jax.random.fold_in(state.key, state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, model, x, y, key, cfg)
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(params, opt_state, state.step + 1, state.key)
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
    return new, dict(loss=loss, finite=finite, **aux)

  return jax.jit(step)


def make_eval_step(model: nn.Module, cfg: TrainConfig) -> Tuple[Callable, Dict[str, int]]:
  """The jitted eval step and the ``{layer: neurons * T}`` table it fills on first use.

  The step ``(params, x, y, key) -> dict`` returns per sample (``[B]`` each): ``pred``,
  ``loss`` (the cross entropy), ``synops`` (the synaptic operations of
  :func:`bpsr_jax.metrics.count_events`, all layers) and ``spikes/<layer>``, the spike
  count of every spiking layer (hidden and output).
  """
  slots: Dict[str, int] = {}

  def step(params, x, y, key):
    (out, _), infos, counts = metrics.count_events(model, {"params": params},
                                                   encode_input(x, key, cfg))
    k = cfg.count_scale / out.shape[0]
    res = dict(pred=jnp.argmax(jnp.sum(out, axis=0), axis=-1),
               loss=losses.spike_count_cross_entropy(out, y, k),
               synops=sum(c["sops"] for c in counts))
    for info, c in zip(infos, counts):
      if info.neurons:
        slots[info.name] = info.neurons * info.time_steps
        res["spikes/" + info.name] = c["spikes"]
    return res

  return jax.jit(step), slots


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
  """The mean over the classes present in ``y`` of the per-class recall."""
  recalls = [np.mean(pred[y == c] == c) for c in range(num_classes) if np.any(y == c)]
  return float(np.mean(recalls)) if recalls else float("nan")


def evaluate(eval_step: Callable, slots: Dict[str, int], params: PyTree, ds,
             cfg: TrainConfig, mesh, key: Array) -> Dict[str, Any]:
  """Accuracy, loss, firing rates, spikes and synaptic ops per sample on a dataset.

  The batches are dispatched before any result is read back (one host sync at the end).

  Returns:
    ``accuracy``, ``balanced_accuracy``, ``loss``, ``firing_rate`` (all spiking layers
    together: spikes per neuron per step), ``firing_rate_per_layer``,
    ``spikes_per_sample``, ``spikes_per_sample_per_layer``, ``synaptic_ops_per_sample``.
  """
  from bpsr_jax.data import common as data_common  # pylint: disable=g-import-not-at-top
  bs = cfg.eval_batch_size or cfg.batch_size
  idx_all = data_common.batch_indices(len(ds), bs, seed=0, epoch=0, shuffle=False,
                                      drop_remainder=False)
  pending = []
  for i, idx in enumerate(idx_all):
    x, y, mask = data_common.get_batch(ds, idx)
    xs, ys = parallel.shard_batch(mesh, x, y.astype(np.int32))
    pending.append((eval_step(params, xs, ys, jax.random.fold_in(key, i)), y, mask))
  preds, labels, loss_sum, synops_sum = [], [], 0.0, 0.0
  spikes_sum: Dict[str, float] = {}
  for out, y, mask in pending:
    out = jax.device_get(out)
    preds.append(out["pred"][mask])
    labels.append(y[mask])
    loss_sum += float(np.sum(out["loss"][mask]))
    synops_sum += float(np.sum(out["synops"][mask]))
    for k, v in out.items():
      if k.startswith("spikes/"):
        spikes_sum[k[7:]] = spikes_sum.get(k[7:], 0.0) + float(np.sum(v[mask]))
  pred, y = np.concatenate(preds), np.concatenate(labels)
  n = max(1, len(y))
  per_layer = {k: v / n for k, v in spikes_sum.items()}
  rates = {k: per_layer[k] / slots[k] for k in per_layer}
  return dict(
      accuracy=float(np.mean(pred == y)),
      balanced_accuracy=balanced_accuracy(pred, y, ds.num_classes),
      loss=loss_sum / n,
      firing_rate=sum(per_layer.values()) / max(1, sum(slots[k] for k in per_layer)),
      firing_rate_per_layer=rates,
      spikes_per_sample=sum(per_layer.values()),
      spikes_per_sample_per_layer=per_layer,
      synaptic_ops_per_sample=synops_sum / n,
  )
