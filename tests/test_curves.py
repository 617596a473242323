"""Cheap guards for the headline numbers: a short real training curve (CI-sized).

A small rank-order MNIST network (784-64-10, T = 10) trains for 40 steps of batch 64 on
the shipped MNIST files with the BPSR loss, rewiring and the clamp, built from the public
core (lif, losses, rewire, clamp; no train.py). Its loss curve and test accuracy are
compared with values recorded once on a CPU (float32; the run is deterministic
on one machine). The tolerances absorb XLA version and platform round-off, which a
spiking network can amplify through threshold crossings, but not a broken gradient,
loss scale or rewiring rule: those move the curve far more (see docs/mutation.md). The
full target runs stay in test_targets.py (slow).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpsr_jax
from bpsr_jax import data
from bpsr_jax import encode

T, BATCH, STEPS = 10, 64, 40
# Recorded once (CPU, jax 0.10.2, float32): mean training loss over steps [0, 5), [18, 23)
# and [35, 40); accuracy on the first 1000 test images; existing synapses after 40 steps.
RECORDED_LOSS = {(0, 5): 3.7331, (18, 23): 1.9517, (35, 40): 1.2933}
RECORDED_ACCURACY = 0.581
RECORDED_SYNAPSES = 31206  # of 784 * 64 + 64 * 10 = 50,816
LOSS_TOL, ACCURACY_TOL, SYNAPSE_TOL = 0.15, 0.05, 0.02  # absolute, absolute, relative


def _curve():
  train, test = data.load_mnist()
  x_train = jnp.asarray(train.x[:BATCH * STEPS].reshape(BATCH * STEPS, -1))
  y_train = jnp.asarray(train.y[:BATCH * STEPS])
  x_test = jnp.asarray(test.x[:1000].reshape(1000, -1))
  y_test = np.asarray(test.y[:1000])
  model = bpsr_jax.SNN("fc64-fc10")
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((T, 1, 784)))["params"]
  tx = optax.chain(
      bpsr_jax.rewire(optax.adam(3e-3), prune_threshold=1e-3, grow_threshold=1e-3),
      bpsr_jax.clamp(threshold=1.0))
  opt_state = tx.init(params)

  def loss_fn(params, x, y):
    out, hidden = model.apply({"params": params}, encode.rank_order(x, T))
    ce = jnp.mean(bpsr_jax.spike_count_cross_entropy(out, y))
    return ce + 1e-3 * bpsr_jax.spike_l2(hidden) + 1e-4 * bpsr_jax.weight_l1(params)

  @jax.jit
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for i in range(STEPS):
    sl = slice(i * BATCH, (i + 1) * BATCH)
    params, opt_state, loss = step(params, opt_state, x_train[sl], y_train[sl])
    losses.append(float(loss))
  out, _ = jax.jit(model.apply)({"params": params}, encode.rank_order(x_test, T))
  accuracy = float(np.mean(np.argmax(np.asarray(out).sum(0), -1) == y_test))
  return losses, accuracy, bpsr_jax.synapse_counts(opt_state)


def test_short_mnist_curve_matches_recorded_values():
  losses, accuracy, synapses = _curve()
  print("\nlosses", [round(l, 4) for l in losses], "accuracy", accuracy,
        int(synapses["total"]))
  for (a, b), recorded in RECORDED_LOSS.items():
    assert abs(np.mean(losses[a:b]) - recorded) < LOSS_TOL, (a, b, losses[a:b])
  assert abs(accuracy - RECORDED_ACCURACY) < ACCURACY_TOL, accuracy
  assert abs(int(synapses["total"]) / RECORDED_SYNAPSES - 1) < SYNAPSE_TOL, synapses
