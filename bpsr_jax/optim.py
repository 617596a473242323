"""The optimizer and learning-rate schedule of a :class:`bpsr_jax.config.TrainConfig`.

The chain is ``[clip] -> rewire(adam | adamw | sgd) | inner -> [clamp]`` (Algorithm 1:
gradient step, rewiring, then the projection of line 18), with the schedule inside the
inner optimizer.
"""
from __future__ import annotations

import optax

from bpsr_jax import constraints
from bpsr_jax import errors
from bpsr_jax import rewiring
from bpsr_jax.config import OPTIMIZERS, TrainConfig


def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule of a configuration.

  ``constant``: ``lr``. ``cosine``: ``lr * (1 + cos(pi * s / S)) / 2`` with ``S`` the
  steps after the warmup, to 0 at the last step. ``step``: ``lr * lr_decay **
  floor(s / P)`` with ``P = round(lr_decay_epochs * steps_per_epoch)``; ``exponential``:
  ``lr * lr_decay ** (s / P)``. A warmup of ``W`` steps rises linearly from 0 to ``lr``
  first; ``s`` then counts from the end of the warmup.

  Args:
    cfg: the configuration.
    steps_per_epoch: training steps per epoch (for the epoch-based periods).

  Returns:
    An optax schedule ``step -> learning rate``.
  """
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
    raise errors.ConfigError(
        f"--optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
  chain = []
  if cfg.clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.clip_norm))
  if cfg.rewire:
    chain.append(rewiring.rewire(
        inner, prune_threshold=cfg.prune_threshold, grow_threshold=cfg.grow_threshold,
        distance_scale=cfg.distance_scale, momentum=cfg.rewire_momentum, seed=cfg.seed))
  else:
    chain.append(inner)
  if cfg.clamp:
    chain.append(constraints.clamp(cfg.threshold))
  return optax.chain(*chain)
