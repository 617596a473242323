"""Spyx (JAX, flax nnx): ``nnx.Linear -> spyx.nn.LIF`` twice, ``lax.scan`` over time."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.peers import common
from benchmarks.peers.bpsr_jax_peer import JaxRunner


def check_import():
  import spyx  # noqa: F401
  import spyx.nn  # noqa: F401


def build(h, T, batch, init, lr=1e-3):
  import spyx
  from flax import nnx
  act = spyx.axn.custom(bwd=lambda v: common.gaussian(v, jnp.exp))

  class Net(nnx.Module):

    def __init__(self, rngs):
      self.fc1 = nnx.Linear(common.INPUTS, h, rngs=rngs)
      self.lif1 = spyx.nn.LIF((h,), beta=common.BETA, threshold=common.THRESHOLD,
                              activation=act, rngs=rngs)
      self.fc2 = nnx.Linear(h, common.CLASSES, rngs=rngs)
      self.lif2 = spyx.nn.LIF((common.CLASSES,), beta=common.BETA,
                              threshold=common.THRESHOLD, activation=act, rngs=rngs)

    def __call__(self, x):
      b = x.shape[1]

      def layer(lif, currents):
        def step(v, c):
          s, v = lif(c, v)
          return v, s
        _, s = jax.lax.scan(step, lif.initial_state(b), currents)
        return s

      s1 = layer(self.lif1, self.fc1(x))
      return layer(self.lif2, self.fc2(s1))

  net = Net(nnx.Rngs(0))
  net.fc1.kernel[...] = jnp.asarray(init["w1"])
  net.fc1.bias[...] = jnp.asarray(init["b1"])
  net.fc2.kernel[...] = jnp.asarray(init["w2"])
  net.fc2.bias[...] = jnp.asarray(init["b2"])
  graphdef, params = nnx.split(net, nnx.Param)
  tx = optax.adam(lr)
  k = common.COUNT_SCALE / T

  def forward(p, x):
    return nnx.merge(graphdef, p)(x)

  def loss_fn(p, x, y):
    logits = k * jnp.sum(forward(p, x), axis=0)
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, y))

  def step(p, o, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    upd, o = tx.update(g, o, p)
    return optax.apply_updates(p, upd), o, loss

  opt = tx.init(params)
  x0 = jnp.zeros((T, batch, common.INPUTS), jnp.float32)
  y0 = jnp.zeros((batch,), jnp.int32)
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt, x0, y0).compile()
  predict = jax.jit(lambda p, x: jnp.sum(forward(p, x), axis=0))

  return JaxRunner(compiled, predict, params, opt, loss_fn)
