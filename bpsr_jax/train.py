"""Training library: the BPSR train/eval steps, data parallelism, checkpoints, metrics.

The experiment binaries (``experiments/``) are thin shells over :func:`fit`::

    cfg = TrainConfig(model="r1000-fc100-fc10", encoding="rank_order", time_steps=25)
    train_ds, test_ds = bpsr_jax.data.load_mnist()
    results = fit(train_ds, test_ds, cfg, workdir="/tmp/mnist")

One step (jitted, data parallel over all devices):

1. encode the raw batch on device: analog ``[B, ...]`` to spikes ``[T, B, ...]``
   (:func:`bpsr_jax.encode.rate` with the key ``fold_in(base_key, step)``, or
   :func:`bpsr_jax.encode.rank_order`), move a pre-encoded spike batch ``[B, T, ...]``
   time-major, or hand the analog batch to the model's encoding layer as it is;
2. the BPSR loss (eq. 4)::

       L = mean_b CE(softmax(k * sum_t s_out), y) + lambda_s * spike_l2(hidden)
           + lambda_w * weight_l1(params)

3. the optimizer chain ``[clip] -> rewire(adam | adamw | sgd) | inner -> clamp``;
4. a step whose loss or gradient is not finite leaves the state unchanged and
   :func:`fit` stops with :class:`NonFiniteLossError` (the last checkpoint stays good).

Reproducibility: batches come from ``bpsr_jax.data.batch_indices(seed, epoch)`` and every
step's key is ``fold_in(base_key, step)``, so a run killed at any point and resumed from its
checkpoint ends with exactly the params of an uninterrupted run (on a deterministic
backend, e.g. CPU).

Data parallelism: a 1-d :class:`jax.sharding.Mesh` over all devices (of all processes,
after :func:`maybe_initialize_distributed`) with the axis ``"batch"``. Batches are sharded
along their sample axis, the train state is replicated, and XLA inserts the gradient
all-reduce.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import optax

from bpsr_jax import checkpoint as ckpt_lib
from bpsr_jax import constraints
from bpsr_jax import encode
from bpsr_jax import layers as L
from bpsr_jax import losses
from bpsr_jax import models
from bpsr_jax import rewiring as rewire_lib

Array = jax.Array
PyTree = Any

ENCODINGS = ("rate", "rank_order", "analog", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "exponential")
#: Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("model", "batch_size", "time_steps", "encoding", "seed", "optimizer",
               "rewire", "augment_shift")


class NonFiniteLossError(FloatingPointError):
  """The loss (or gradient) became NaN or infinite; the run stopped."""


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run depends on (the experiment flags, one to one).

  Attributes:
    model: the model spec string, e.g. ``"r1000-fc100-fc10"``.
    epochs: number of passes over the training set.
    batch_size: global batch size (divisible by the number of devices).
    eval_batch_size: batch size of the evaluation; default ``batch_size``.
    time_steps: T. For a spike dataset it must equal the dataset's T.
    encoding: ``"rate"`` or ``"rank_order"`` (analog data encoded on device),
      ``"analog"`` (analog data fed to the model's encoding layer ``e...``), ``"none"``
      (the data are pre-encoded spikes).
    rank_by: ``"value"`` or ``"rank"`` (see :func:`bpsr_jax.encode.rank_order`).
    optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
    learning_rate: peak learning rate.
    weight_decay: AdamW decoupled weight decay.
    sgd_momentum: SGD (heavy-ball) momentum; 0 for plain SGD.
    schedule: ``"constant"``, ``"cosine"`` (to 0 at the last step), ``"step"`` (times
      ``lr_decay`` every ``lr_decay_epochs`` epochs) or ``"exponential"`` (smoothly, the
      same rate as ``"step"``).
    lr_decay: factor of the step / exponential schedules.
    lr_decay_epochs: period, in epochs, of the step / exponential schedules.
    warmup_steps: linear warmup from 0 before the schedule.
    clip_norm: clip the gradient's global norm before the optimizer; 0 = off.
    lambda_s: spiking-sparsity coefficient (eq. 4; hidden spikes per sample).
    lambda_w: synaptic-sparsity (l1) coefficient (eq. 4).
    count_scale: ``k * T``: the spike counts are scaled by ``k = count_scale / T``.
    rewire: prune and regrow synapses (eq. 14-15).
    prune_threshold: ``theta_w``.
    grow_threshold: ``theta_m``.
    distance_scale: ``mu_m``.
    rewire_momentum: ``beta_m``.
    threshold: firing threshold ``U_th`` (also the clamp bound of weights and biases).
    clamp: clamp weights and biases to ``[-U_th, U_th]`` and tau to ``[0, 1]``.
    alpha: width of the Gaussian surrogate.
    gradient: ``"bpsr"`` or ``"autodiff"``.
    tau_init: initial leak.
    bias_high: biases start ``U(0, bias_high)``.
    weight_gain: dense kernels start ``N(0, weight_gain / sqrt(fan_in))``.
    augment_shift: training-time augmentation of analog images ``[B, H, W, C]``: each
      sample is translated by a random integer offset in ``[-s, s]`` pixels along H
      and W (zero fill) before encoding; 0 = off. The test set is never augmented.
    seed: seed of the init, the shuffling, the encoding noise and the coordinates.
    log_every: one progress line every this many steps.
    checkpoint_every: checkpoint every this many steps (and at every epoch end).
    keep_checkpoints: how many checkpoints to keep.
    balanced_accuracy: also report the mean per-class recall.
  """

  model: str = "r1000-fc100-fc10"
  epochs: int = 10
  batch_size: int = 64
  eval_batch_size: int = 0
  time_steps: int = 25
  encoding: str = "rank_order"
  rank_by: str = "value"
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  weight_decay: float = 1e-4
  sgd_momentum: float = 0.9
  schedule: str = "constant"
  lr_decay: float = 0.5
  lr_decay_epochs: float = 10.0
  warmup_steps: int = 0
  clip_norm: float = 0.0
  lambda_s: float = 0.0
  lambda_w: float = 0.0
  count_scale: float = losses.DEFAULT_COUNT_SCALE
  rewire: bool = False
  prune_threshold: float = 1e-3
  grow_threshold: float = 1e-3
  distance_scale: float = 0.0
  rewire_momentum: float = 0.9
  threshold: float = 1.0
  clamp: bool = True
  alpha: float = 0.5
  gradient: str = "bpsr"
  tau_init: float = 0.5
  bias_high: float = 1.0
  weight_gain: float = 1.0
  augment_shift: int = 0
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  balanced_accuracy: bool = False

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


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


# ----------------------------------------------------------------------------------------
# Configuration checks, model and optimizer.


def validate_config(cfg: TrainConfig, *, kind: Optional[str] = None,
                    num_classes: Optional[int] = None,
                    data_time_steps: Optional[int] = None,
                    num_devices: Optional[int] = None,
                    num_train: Optional[int] = None) -> None:
  """Raises ``ValueError`` naming the flag for inconsistent settings.

  Args:
    cfg: the configuration.
    kind: the dataset kind, ``"analog"`` or ``"spikes"``.
    num_classes: the dataset's number of classes.
    data_time_steps: T of a spike dataset.
    num_devices: the number of devices the batch is split over.
    num_train: the number of training examples.
  """
  try:
    specs = models.parse_spec(cfg.model)
  except ValueError as e:
    raise ValueError(f"--model: {e}") from None
  if cfg.encoding not in ENCODINGS:
    raise ValueError(f"--encoding must be one of {ENCODINGS}, got {cfg.encoding!r}")
  if cfg.optimizer not in OPTIMIZERS:
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f"--schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
  if cfg.rank_by not in ("value", "rank"):
    raise ValueError(f"--rank_by must be 'value' or 'rank', got {cfg.rank_by!r}")
  if cfg.gradient not in ("bpsr", "autodiff"):
    raise ValueError(f"--gradient must be 'bpsr' or 'autodiff', got {cfg.gradient!r}")
  for name in ("epochs", "batch_size", "time_steps", "log_every", "checkpoint_every",
               "keep_checkpoints"):
    if getattr(cfg, name) <= 0:
      raise ValueError(f"--{name} must be positive, got {getattr(cfg, name)}")
  for name in ("learning_rate", "threshold", "alpha"):
    if not getattr(cfg, name) > 0:
      raise ValueError(f"--{name} must be > 0, got {getattr(cfg, name)}")
  for name in ("lambda_s", "lambda_w", "weight_decay", "clip_norm", "eval_batch_size",
               "warmup_steps", "augment_shift"):
    if getattr(cfg, name) < 0:
      raise ValueError(f"--{name} must be >= 0, got {getattr(cfg, name)}")
  if cfg.rewire:
    for name in ("prune_threshold", "grow_threshold", "distance_scale"):
      if not getattr(cfg, name) >= 0:
        raise ValueError(f"--rewire needs --{name} >= 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.rewire_momentum < 1:
      raise ValueError(f"--rewire_momentum must lie in [0, 1), got {cfg.rewire_momentum}")
  has_encoding_layer = specs[0].encoding
  if has_encoding_layer and cfg.encoding != "analog":
    raise ValueError(
        f"--model={cfg.model!r} starts with an encoding layer ('e' prefix), which takes "
        f"the analog input: use --encoding=analog, not {cfg.encoding!r}")
  if cfg.encoding == "analog" and not has_encoding_layer:
    raise ValueError(
        f"--encoding=analog feeds the analog input to an encoding layer, but "
        f"--model={cfg.model!r} has none: prefix its first layer with 'e' or use "
        "--encoding=rate / rank_order")
  if kind is not None:
    if kind == "spikes" and cfg.encoding != "none":
      raise ValueError(
          f"--encoding={cfg.encoding!r} conflicts with this dataset, which is already "
          "encoded as spikes: use --encoding=none")
    if kind == "analog" and cfg.encoding == "none":
      raise ValueError("--encoding=none needs a spike dataset; this one is analog: use "
                       "--encoding=rate, rank_order or analog (with an 'e' layer)")
    if kind != "analog" and cfg.augment_shift:
      raise ValueError(f"--augment_shift={cfg.augment_shift} translates analog images; "
                       "this dataset is already spikes: use --augment_shift=0")
  if data_time_steps is not None and data_time_steps != cfg.time_steps:
    raise ValueError(f"--time_steps={cfg.time_steps} but the spike dataset has "
                     f"T={data_time_steps} steps")
  if num_classes is not None and specs[-1].size != num_classes:
    raise ValueError(
        f"--model={cfg.model!r} has {specs[-1].size} output neurons but the dataset has "
        f"{num_classes} classes")
  if num_devices is not None:
    for name in ("batch_size", "eval_batch_size"):
      v = getattr(cfg, name) or cfg.batch_size
      if v % num_devices:
        raise ValueError(f"--{name}={v} is not divisible by the {num_devices} devices "
                         "the batch is split over")
  if num_train is not None and num_train < cfg.batch_size:
    raise ValueError(f"--batch_size={cfg.batch_size} is larger than the "
                     f"{num_train} training examples")


def make_model(cfg: TrainConfig) -> models.SNN:
  """The :class:`bpsr_jax.models.SNN` of a configuration."""
  return models.SNN(cfg.model, threshold=cfg.threshold, alpha=cfg.alpha,
                    gradient=cfg.gradient, time_steps=cfg.time_steps,
                    tau_init=cfg.tau_init, bias_high=cfg.bias_high,
                    weight_gain=cfg.weight_gain,
                    binary_input=cfg.encoding in ("rate", "rank_order"))


def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule of a configuration."""
  total = max(1, cfg.epochs * steps_per_epoch)
  lr = cfg.learning_rate
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total - cfg.warmup_steps))
  else:
    period = max(1, int(round(cfg.lr_decay_epochs * steps_per_epoch)))
    main = optax.exponential_decay(lr, period, cfg.lr_decay,
                                   staircase=cfg.schedule == "step")
  if cfg.warmup_steps:
    warm = optax.linear_schedule(0.0, lr, cfg.warmup_steps)
    return optax.join_schedules([warm, main], [cfg.warmup_steps])
  return main


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """``[clip] -> rewire(inner) | inner -> [clamp]``, with the learning rate inside.

  Args:
    cfg: the configuration.
    steps_per_epoch: for the epoch-based schedules.

  Returns:
    The optimizer; its ``update`` needs the params.
  """
  lr = make_schedule(cfg, steps_per_epoch)
  if cfg.optimizer == "adam":
    inner = optax.adam(lr)
  elif cfg.optimizer == "adamw":
    inner = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.optimizer == "sgd":
    inner = optax.sgd(lr, momentum=cfg.sgd_momentum or None)
  else:
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
  chain = []
  if cfg.clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  if cfg.rewire:
    chain.append(rewire_lib.rewire(
        inner, prune_threshold=cfg.prune_threshold, grow_threshold=cfg.grow_threshold,
        distance_scale=cfg.distance_scale, momentum=cfg.rewire_momentum, seed=cfg.seed))
  else:
    chain.append(inner)
  if cfg.clamp:
    chain.append(constraints.clamp(cfg.threshold))
  return optax.chain(*chain)


# ----------------------------------------------------------------------------------------
# Input, loss and steps.


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


def random_shift(key: Array, x: Array, max_shift: int) -> Array:
  """Translates each image by a random integer offset, filling with zeros.

  Args:
    key: PRNG key.
    x: ``[B, H, W, C]`` images.
    max_shift: offsets are drawn uniformly from ``[-max_shift, max_shift]``, per sample
      and independently along H and W.

  Returns:
    ``[B, H, W, C]``: ``out[b, i, j] = x[b, i - dy_b, j - dx_b]`` where that lies inside
    the image, else 0.
  """
  if x.ndim != 4:
    raise ValueError(f"random_shift expects [B, H, W, C] images, got shape {x.shape}")
  if max_shift == 0:
    return x
  b, h, w, c = x.shape
  s = max_shift
  padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), -s, s + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (s - off[0], s - off[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


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
    x = random_shift(jax.random.fold_in(key, 1), x, cfg.augment_shift)
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


def _module_name(module: nn.Module) -> str:
  path = getattr(module, "path", None)
  if path is None:
    path = module.scope.path if module.scope is not None else (module.name,)
  return "/".join(str(p) for p in path)


def _synapse_events(x: Array, kernel: Array, conv_strides: Optional[int]) -> Array:
  """Per-sample ``sum_t sum_j x_j^t * fanout_j`` over existing synapses: ``[B]``.

  Args:
    x: ``[T, B, ..., in]`` presynaptic spikes.
    kernel: dense ``[in, out]`` or conv ``HWIO``.
    conv_strides: the conv stride (``None`` for dense).
  """
  exists = (kernel != 0).astype(jnp.float32)
  x = x.astype(jnp.float32)
  if conv_strides is None:
    fanout = jnp.sum(exists, axis=-1)  # [in]
    return jnp.einsum("tb...i,i->b", x, fanout)
  # The exact count with borders and strides: the conv of the spikes with the 0/1
  # connectivity, summed over the outputs.
  y = L._conv(x, exists, (conv_strides, conv_strides), "SAME")
  return jnp.sum(y, axis=tuple(i for i in range(y.ndim) if i != 1))


def make_eval_step(model: nn.Module, cfg: TrainConfig) -> Tuple[Callable, Dict[str, int]]:
  """The jitted eval step and the ``{layer: neurons * T}`` table it fills on first use.

  The step ``(params, x, y, key) -> dict`` returns per sample (``[B]`` each): ``pred``,
  ``loss`` (the cross entropy), ``synops`` (spikes times their fan-out over existing
  synapses; the analog input of an encoding layer is not counted) and
  ``spikes/<layer>``, the spike count of every spiking layer (hidden and output).
  """
  slots: Dict[str, int] = {}

  def step(params, x, y, key):
    records: List[Tuple[str, Array]] = []
    synops: List[Array] = []

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      mod = context.module
      if context.method_name != "__call__" or not isinstance(
          mod, (L.Dense, L.Conv, L.Shortcut)):
        return out
      params_ = mod.variables.get("params", {})
      xin = args[0]
      if isinstance(mod, L.Shortcut):
        synops.append(_synapse_events(xin, params_["kernel"],
                                      mod.strides if mod.conv else None))
        return out
      name = _module_name(mod)
      records.append((name, jnp.sum(out, axis=tuple(
          i for i in range(out.ndim) if i != 1))))
      slots[name] = int(np.prod(out.shape)) // out.shape[1]
      encoding = isinstance(mod, L.EncodingDense) or (
          isinstance(mod, L.Conv) and mod.encoding)
      if not encoding:
        synops.append(_synapse_events(
            xin, params_["kernel"], mod.strides if isinstance(mod, L.Conv) else None))
      if "recurrent_kernel" in params_:
        synops.append(_synapse_events(out[:-1], params_["recurrent_kernel"], None))
      return out

    with nn.intercept_methods(interceptor):
      out, _ = model.apply({"params": params}, encode_input(x, key, cfg))
    k = cfg.count_scale / out.shape[0]
    res = dict(pred=jnp.argmax(jnp.sum(out, axis=0), axis=-1),
               loss=losses.spike_count_cross_entropy(out, y, k),
               synops=sum(synops) if synops else jnp.zeros(y.shape, jnp.float32))
    for name, v in records:
      res["spikes/" + name] = v
    return res

  return jax.jit(step), slots


# ----------------------------------------------------------------------------------------
# Devices, sharding and batches.


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


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> Tuple[Array, ...]:
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


# ----------------------------------------------------------------------------------------
# Metrics helpers.


def count_synapses(params: PyTree) -> Dict[str, int]:
  """Existing (non-zero) synapses per ``kernel``/``recurrent_kernel`` leaf and ``total``."""
  return {k: int(v) for k, v in rewire_lib.synapse_counts(params).items()}


def balanced_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
  """The mean over the classes present in ``y`` of the per-class recall."""
  recalls = [np.mean(pred[y == c] == c) for c in range(num_classes) if np.any(y == c)]
  return float(np.mean(recalls)) if recalls else float("nan")


def evaluate(eval_step: Callable, slots: Dict[str, int], params: PyTree, ds,
             cfg: TrainConfig, mesh: Mesh, key: Array) -> Dict[str, Any]:
  """Accuracy, loss, firing rates, spikes and synaptic ops per sample on a dataset.

  Returns:
    ``accuracy``, ``balanced_accuracy``, ``loss``, ``firing_rate`` (all spiking layers
    together: spikes per neuron per step), ``firing_rate_per_layer``,
    ``spikes_per_sample``, ``spikes_per_sample_per_layer``, ``synaptic_ops_per_sample``.
  """
  from bpsr_jax.data import common as data_common  # pylint: disable=g-import-not-at-top
  bs = cfg.eval_batch_size or cfg.batch_size
  idx_all = data_common.batch_indices(len(ds), bs, seed=0, epoch=0, shuffle=False,
                                      drop_remainder=False)
  preds, labels, loss_sum, synops_sum = [], [], 0.0, 0.0
  spikes_sum: Dict[str, float] = {}
  for i, idx in enumerate(idx_all):
    x, y, mask = data_common.get_batch(ds, idx)
    xs, ys = shard_batch(mesh, x, y.astype(np.int32))
    out = jax.device_get(eval_step(params, xs, ys, jax.random.fold_in(key, i)))
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


def _fmt_time(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.generic, jax.Array, np.ndarray)):
    return np.asarray(x).tolist()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


# ----------------------------------------------------------------------------------------
# The loop.


def apply_mask(params: PyTree, mask: Dict[str, Any]) -> PyTree:
  """Zeroes the weights a connectivity mask marks absent.

  Args:
    params: the model params.
    mask: ``{"r0/kernel": bool array, ...}``: leaf paths (as in :func:`count_synapses`)
      to arrays of the leaf's shape, ``True`` = the synapse exists. Other leaves are kept.

  Returns:
    The params with ``w * mask`` at the named leaves.

  Raises:
    ValueError: a path that is not a leaf of ``params``, or a shape mismatch.
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [rewire_lib.path_str(p) for p, _ in flat]
  unknown = sorted(set(mask) - set(paths))
  if unknown:
    raise ValueError(f"mask names {unknown}, which are not params; params: {paths}")
  leaves = []
  for path, (_, w) in zip(paths, flat):
    if path in mask:
      m = np.asarray(mask[path], bool)
      if m.shape != w.shape:
        raise ValueError(f"mask[{path!r}] has shape {m.shape}, the weights {w.shape}")
      w = w * m
    leaves.append(w)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def init_state(cfg: TrainConfig, model: nn.Module, tx: optax.GradientTransformation,
               example_x: np.ndarray, mask: Optional[Dict[str, Any]] = None) -> TrainState:
  """A fresh train state (host arrays) for a raw example batch ``[b, ...]``; ``mask``
  (see :func:`apply_mask`) zeroes absent synapses before the optimizer state is made."""
  root = jax.random.PRNGKey(cfg.seed)
  x = encode_input(jnp.asarray(example_x[:1]), jax.random.fold_in(root, 2), cfg)
  params = model.init(jax.random.fold_in(root, 0), x)["params"]
  if cfg.clamp:
    params = constraints.project_params(params, cfg.threshold)
  if mask is not None:
    params = apply_mask(params, mask)
  return TrainState(params=params, opt_state=tx.init(params),
                    step=jnp.zeros((), jnp.int32), key=jax.random.fold_in(root, 1))


def fit(train_ds, test_ds, cfg: TrainConfig, workdir: str | pathlib.Path, *,
        flags_used: Optional[Dict[str, Any]] = None,
        mesh: Optional[Mesh] = None,
        stop_after_steps: Optional[int] = None,
        initial_mask: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Trains (or resumes) a run in ``workdir`` and writes its results.

  Re-running with the same ``workdir`` resumes from the latest checkpoint in
  ``<workdir>/checkpoints``; a finished run is not trained again (its results are
  recomputed and returned), and raising ``cfg.epochs`` continues it.

  Args:
    train_ds: a :class:`bpsr_jax.data.Dataset` (``x``, ``y``, ``num_classes``, ``kind``).
    test_ds: the evaluation dataset.
    cfg: the configuration.
    workdir: the run's folder: ``checkpoints/``, ``metrics.jsonl`` (one line per epoch)
      and ``results.json`` (at the end).
    flags_used: recorded in ``results.json`` (default: ``cfg``).
    mesh: the device mesh; default all devices (:func:`make_mesh`).
    stop_after_steps: stop (with a checkpoint) once the global step reaches this; for
      tests and time-boxed sessions. The results are then not written.
    initial_mask: start a new run with these synapses only (``{"r0/kernel": bool
      array, ...}``, see :func:`apply_mask`); ignored when resuming. With
      ``rewire=True, prune_threshold=0, grow_threshold=inf`` the structure stays fixed
      for the whole run (the paper's Fig. 8E baselines).

  Returns:
    The results dict (as written to ``results.json``).

  Raises:
    ValueError: inconsistent settings (see :func:`validate_config`), or a workdir
      holding a run with different settings.
    NonFiniteLossError: the loss became NaN/inf; the last checkpoint is kept.
  """
  workdir = pathlib.Path(workdir)
  mesh = make_mesh() if mesh is None else mesh
  ndev = mesh.devices.size
  validate_config(cfg, kind=train_ds.kind, num_classes=train_ds.num_classes,
                  data_time_steps=(train_ds.x.shape[1] if train_ds.kind == "spikes"
                                   else None),
                  num_devices=ndev, num_train=len(train_ds))
  if cfg.augment_shift and train_ds.x.ndim != 4:
    raise ValueError(f"--augment_shift={cfg.augment_shift} translates images [N, H, W, C]; "
                     f"this dataset's examples have shape {train_ds.x.shape[1:]}")
  if test_ds.num_classes != train_ds.num_classes:
    raise ValueError("the train and test sets have different numbers of classes")
  if len(test_ds) == 0:
    raise ValueError("the test set is empty (too few examples to split off a test set?)")
  is_main = jax.process_index() == 0
  workdir.mkdir(parents=True, exist_ok=True)

  from bpsr_jax.data import common as data_common  # pylint: disable=g-import-not-at-top
  steps_per_epoch = len(train_ds) // cfg.batch_size
  total_steps = steps_per_epoch * cfg.epochs
  model = make_model(cfg)
  tx = make_optimizer(cfg, steps_per_epoch)
  state = replicate(mesh, init_state(cfg, model, tx, train_ds.x[:1], initial_mask))
  train_step = make_train_step(model, tx, cfg)
  eval_step, slots = make_eval_step(model, cfg)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)

  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints", max_to_keep=cfg.keep_checkpoints)
  settings = {k: getattr(cfg, k) for k in RESUME_KEYS}
  epoch, batch, train_seconds = 0, 0, 0.0
  acc = dict(loss=0.0, correct=0, count=0, steps=0, seconds=0.0)
  latest = ckpt.latest_step()
  if latest is not None:
    state, meta = ckpt.restore(state, latest)
    for k, v in settings.items():
      if meta["settings"].get(k) != v:
        ckpt.close()
        raise ValueError(
            f"{workdir} holds a run with {k}={meta['settings'].get(k)!r}, not {v!r}: use "
            "another --workdir (or the original settings to resume it)")
    epoch, batch, train_seconds = meta["epoch"], meta["batch"], meta["train_seconds"]
    acc = meta["epoch_accum"]
    logging.info("resumed from %s at step %d (epoch %d, batch %d of %d)", ckpt.directory,
                 latest, epoch, batch, steps_per_epoch)
  else:
    logging.info("new run in %s: %s", workdir, json.dumps(cfg.to_dict()))
  logging.info("%d devices (%s), mesh %s; %d train / %d test examples; %d steps per "
               "epoch; synapses %s", ndev, jax.devices()[0].platform,
               dict(mesh.shape), len(train_ds), len(test_ds), steps_per_epoch,
               count_synapses(state.params)["total"])

  metrics_path = workdir / "metrics.jsonl"
  history = []
  if metrics_path.exists():
    history = [json.loads(l) for l in metrics_path.read_text().splitlines() if l.strip()]
    history = [h for h in history if h["epoch"] < epoch]
  if is_main:
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

  def meta_now():
    return dict(epoch=epoch, batch=batch, step=int(state.step),
                train_seconds=train_seconds, epoch_accum=dict(acc), settings=settings,
                config=_jsonable(cfg.to_dict()))

  def save():
    ckpt.save(int(state.step), state, meta_now())

  step = int(state.step)
  t_log, step_log = time.time(), step
  try:
    while epoch < cfg.epochs:
      order = data_common.batch_indices(len(train_ds), cfg.batch_size, seed=cfg.seed,
                                        epoch=epoch)
      t_epoch = time.time()
      while batch < steps_per_epoch:
        x, y, _ = data_common.get_batch(train_ds, order[batch])
        xs, ys = shard_batch(mesh, x, y.astype(np.int32))
        new_state, m = train_step(state, xs, ys)
        m = jax.device_get(m)
        if not m["finite"]:
          raise NonFiniteLossError(
              f"non-finite loss ({m['loss']}) or gradient at step {step + 1} (epoch "
              f"{epoch}, batch {batch}): training stopped. The last good checkpoint "
              f"(step {ckpt.latest_step()}) in {ckpt.directory} is kept. Try a lower "
              "--learning_rate, --clip_norm or smaller --lambda_s/--lambda_w.")
        state = new_state
        step += 1
        batch += 1
        acc["loss"] += float(m["loss"])
        acc["correct"] += int(m["correct"])
        acc["count"] += int(y.shape[0])
        acc["steps"] += 1
        now = time.time()
        if step % cfg.log_every == 0:
          rate = (step - step_log) / max(now - t_log, 1e-9)
          logging.info(
              "epoch %d batch %d/%d step %d | loss %.4f ce %.4f spikes/sample %.1f | "
              "train acc %.4f | %.2f steps/s | ETA %s", epoch, batch, steps_per_epoch,
              step, m["loss"], m["ce"], m["spike_l2"], acc["correct"] / acc["count"],
              rate, _fmt_time((total_steps - step) / rate))
          t_log, step_log = now, step
        if batch < steps_per_epoch and step % cfg.checkpoint_every == 0:
          acc["seconds"] += now - t_epoch
          train_seconds += now - t_epoch
          t_epoch = now
          save()
        if stop_after_steps is not None and step >= stop_after_steps:
          break
      now = time.time()
      acc["seconds"] += now - t_epoch
      train_seconds += now - t_epoch
      if batch < steps_per_epoch:  # stopped early
        save()
        ckpt.close()
        logging.info("stopped at step %d as asked; re-run to continue", step)
        return {}
      test = evaluate(eval_step, slots, state.params, test_ds, cfg, mesh, eval_key)
      syn = count_synapses(state.params)
      record = dict(
          epoch=epoch, step=step, train_loss=acc["loss"] / max(1, acc["steps"]),
          train_accuracy=acc["correct"] / max(1, acc["count"]),
          test_accuracy=test["accuracy"], test_loss=test["loss"],
          balanced_accuracy=test["balanced_accuracy"],
          firing_rate=test["firing_rate"],
          firing_rate_per_layer=test["firing_rate_per_layer"],
          spikes_per_sample=test["spikes_per_sample"],
          synapses=syn["total"], synapses_per_layer=syn,
          synaptic_ops_per_sample=test["synaptic_ops_per_sample"],
          steps_per_second=acc["steps"] / max(acc["seconds"], 1e-9),
          epoch_seconds=acc["seconds"], train_seconds=train_seconds)
      history.append(_jsonable(record))
      if is_main:
        with metrics_path.open("a") as f:
          f.write(json.dumps(history[-1]) + "\n")
      logging.info(
          "epoch %d done: train loss %.4f acc %.4f | test acc %.4f%s | firing rate "
          "%.4f | spikes/sample %.1f | synapses %d | synops/sample %.0f | %.2f steps/s, "
          "%s", epoch, record["train_loss"], record["train_accuracy"],
          record["test_accuracy"],
          (f" (balanced {record['balanced_accuracy']:.4f})" if cfg.balanced_accuracy
           else ""), record["firing_rate"], record["spikes_per_sample"], syn["total"],
          record["synaptic_ops_per_sample"], record["steps_per_second"],
          _fmt_time(acc["seconds"]))
      epoch, batch = epoch + 1, 0
      acc = dict(loss=0.0, correct=0, count=0, steps=0, seconds=0.0)
      save()
  finally:
    ckpt.close()

  last = history[-1] if history else None
  if last is None:  # resumed a finished run with no metrics file: re-evaluate
    test = evaluate(eval_step, slots, state.params, test_ds, cfg, mesh, eval_key)
    syn = count_synapses(state.params)
    last = _jsonable(dict(test_accuracy=test["accuracy"],
                          balanced_accuracy=test["balanced_accuracy"],
                          firing_rate=test["firing_rate"],
                          firing_rate_per_layer=test["firing_rate_per_layer"],
                          spikes_per_sample=test["spikes_per_sample"],
                          synapses=syn["total"], synapses_per_layer=syn,
                          synaptic_ops_per_sample=test["synaptic_ops_per_sample"],
                          train_seconds=train_seconds))
  results = dict(
      test_accuracy=last["test_accuracy"],
      balanced_accuracy=last["balanced_accuracy"],
      firing_rate=last["firing_rate"],
      firing_rate_per_layer=last["firing_rate_per_layer"],
      spikes_per_sample=last["spikes_per_sample"],
      synapses=last["synapses"],
      synapses_per_layer=last["synapses_per_layer"],
      synaptic_ops_per_sample=last["synaptic_ops_per_sample"],
      train_seconds=train_seconds,
      epochs=cfg.epochs,
      steps=int(state.step),
      num_train=len(train_ds), num_test=len(test_ds),
      devices=ndev, platform=jax.devices()[0].platform,
      flags=_jsonable(flags_used if flags_used is not None else cfg.to_dict()),
  )
  if is_main:
    (workdir / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
  logging.info("finished: test accuracy %.4f, results in %s", results["test_accuracy"],
               workdir / "results.json")
  return results


def final_params(workdir: str | pathlib.Path) -> PyTree:
  """The params of the latest checkpoint of a run, as numpy arrays (no template needed)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  ckdir = pathlib.Path(workdir).absolute() / "checkpoints"
  with ocp.CheckpointManager(ckdir, item_names=("state", "meta"),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as m:
    step = m.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {ckdir}")
    out = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = out.state
  params = state["params"] if isinstance(state, dict) else state[0]
  return jax.tree.map(np.asarray, params)
