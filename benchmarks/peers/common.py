"""Shared pieces of the peer implementations: initial weights, loss scale, surrogate."""
from __future__ import annotations

import math

import numpy as np

ALPHA = 0.5          # Gaussian surrogate width (bpsr_jax.neuron.DEFAULT_ALPHA)
THRESHOLD = 1.0
BETA = 0.5           # leak (tau)
COUNT_SCALE = 10.0   # k * T (bpsr_jax.losses.DEFAULT_COUNT_SCALE)
INPUTS, CLASSES = 784, 10


def gaussian(v, exp=np.exp):
  """The Gaussian surrogate ``exp(-v^2 / (2 alpha^2)) / (sqrt(2 pi) alpha)``.

  Pass the array library's ``exp`` (``jnp.exp``, ``torch.exp``).
  """
  return exp(-(v * v) / (2 * ALPHA * ALPHA)) / (math.sqrt(2 * math.pi) * ALPHA)


def init_params(h: int, seed: int = 0) -> dict:
  """Algorithm 1's initialization: ``W ~ N(0, 1/sqrt(fan_in))``, ``b ~ U(0, 1)``."""
  rng = np.random.default_rng(seed)
  return {
      "w1": (rng.standard_normal((INPUTS, h)) / math.sqrt(INPUTS)).astype(np.float32),
      "b1": rng.uniform(0, 1, h).astype(np.float32),
      "w2": (rng.standard_normal((h, CLASSES)) / math.sqrt(h)).astype(np.float32),
      "b2": rng.uniform(0, 1, CLASSES).astype(np.float32),
  }
