"""bpsr_jax: ``SNN("fc{h}-fc10", gradient=...)`` with optax Adam, one jitted step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.peers import common


def check_import():
  import bpsr_jax  # noqa: F401


def build(h, T, batch, init, lr=1e-3, gradient="bpsr"):
  from bpsr_jax import losses
  from bpsr_jax.models import SNN
  model = SNN(f"fc{h}-fc{common.CLASSES}", gradient=gradient)
  x0 = jnp.zeros((T, batch, common.INPUTS), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x0)["params"]
  params = jax.tree_util.tree_map(lambda a: a, params)
  params["fc0"].update(kernel=jnp.asarray(init["w1"]), bias=jnp.asarray(init["b1"]))
  params["fc1"].update(kernel=jnp.asarray(init["w2"]), bias=jnp.asarray(init["b2"]))
  tx = optax.adam(lr)
  k = common.COUNT_SCALE / T

  def loss_fn(p, x, y):
    out, _ = model.apply({"params": p}, x)
    return jnp.mean(losses.spike_count_cross_entropy(out, y, k))

  def step(p, o, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    upd, o = tx.update(g, o, p)
    return optax.apply_updates(p, upd), o, loss

  opt = tx.init(params)
  y0 = jnp.zeros((batch,), jnp.int32)
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt, x0, y0).compile()
  predict = jax.jit(lambda p, x: jnp.sum(model.apply({"params": p}, x)[0], axis=0))
  return JaxRunner(compiled, predict, params, opt, loss_fn)


class JaxRunner:
  """A compiled JAX training step with its state (shared with the Spyx peer)."""

  def __init__(self, compiled, predict, params, opt, loss_fn):
    self.compiled, self._predict, self.params, self.opt = compiled, predict, params, opt
    self.loss_fn = loss_fn

  def prepare(self, x, y):
    return jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))

  def train_step(self, x, y):
    self.params, self.opt, loss = self.compiled(self.params, self.opt, x, y)
    return float(loss)

  def predict(self, x):
    return np.asarray(self._predict(self.params, jnp.asarray(x)))

  def memory_analysis(self):
    return jax_memory(self.compiled)

  def saved_bytes(self, x, y):
    """Bytes the forward pass keeps for the backward pass (the residuals of ``jax.vjp``;
    the parameters and the input are excluded, one buffer counted once).

    A residual that holds exactly the input's values (the input reshaped, which eager
    ``jax.vjp`` materializes as a new buffer and a jitted step does not) counts as the
    input.
    """
    _, vjp = jax.vjp(lambda p: self.loss_fn(p, x, y), self.params)
    skip = {_ptr(a) for a in jax.tree_util.tree_leaves(self.params)} | {_ptr(x)}
    seen = {}
    for leaf in jax.tree_util.tree_leaves(vjp):
      if not isinstance(leaf, jax.Array) or _ptr(leaf) in skip:
        continue
      if (leaf.size == x.size and leaf.dtype == x.dtype
          and bool(jnp.array_equal(leaf.reshape(-1), jnp.reshape(x, -1)))):
        continue
      seen[_ptr(leaf)] = leaf.nbytes
    return int(sum(seen.values()))


def _ptr(a):
  try:
    return a.unsafe_buffer_pointer()
  except Exception:  # not a committed single-device buffer (e.g. a scalar literal)
    return id(a)


def jax_memory(compiled):
  ma = compiled.memory_analysis()
  if ma is None:
    return None
  return {k: int(getattr(ma, k)) for k in (
      "temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
      "generated_code_size_in_bytes") if hasattr(ma, k)}
