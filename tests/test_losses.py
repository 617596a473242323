"""Tests of bpsr_jax.losses against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax import losses


def test_spike_count_cross_entropy_hand_computed():
  # T = 4, batch 2, 3 classes. Counts: [4, 0, 2] and [1, 1, 1].
  s = np.zeros((4, 2, 3), np.float32)
  s[:, 0, 0] = 1
  s[:2, 0, 2] = 1
  s[0, 1, :] = 1
  labels = jnp.array([0, 2])
  k = 0.5
  logits = np.array([[2.0, 0.0, 1.0], [0.5, 0.5, 0.5]])
  expected = -np.log(np.exp(logits[[0, 1], [0, 2]]) / np.exp(logits).sum(1))
  got = bpsr_jax.spike_count_cross_entropy(jnp.asarray(s), labels, k)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
  # Default k = 10 / T.
  got = bpsr_jax.spike_count_cross_entropy(jnp.asarray(s), labels)
  logits = np.array([[4.0, 0, 2], [1, 1, 1]]) * 10 / 4
  expected = -np.log(np.exp(logits[[0, 1], [0, 2]]) / np.exp(logits).sum(1))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_spike_l2_counts_hidden_spikes_per_sample():
  a = jnp.zeros((3, 2, 4)).at[0, 0, 1].set(1).at[2, 1, 3].set(1).at[1, 1, 0].set(1)
  b = jnp.ones((3, 2, 2, 2, 1))
  # per sample: a has 3 spikes / 2 samples = 1.5; b has 3*2*2*1 = 12 per sample.
  np.testing.assert_allclose(bpsr_jax.spike_l2([a, b]), 1.5 + 12.0)
  np.testing.assert_allclose(bpsr_jax.spike_l2(a), 1.5)
  # eq. 6: its gradient w.r.t. the spikes is 2 s / batch.
  g = jax.grad(bpsr_jax.spike_l2)(a)
  np.testing.assert_allclose(g, a)


def test_weight_l1_only_synapses():
  params = {"r0": {"kernel": jnp.array([[1.0, -2.0]]), "recurrent_kernel": -jnp.eye(2),
                   "bias": jnp.array([5.0, 5.0]), "tau": jnp.array([0.5, 0.5])},
            "fc1": {"kernel": jnp.array([[0.5], [-0.25]]), "bias": jnp.array([9.0])}}
  np.testing.assert_allclose(bpsr_jax.weight_l1(params), 3.0 + 2.0 + 0.75)
  g = jax.grad(bpsr_jax.weight_l1)(params)
  np.testing.assert_array_equal(g["r0"]["kernel"], [[1.0, -1.0]])  # eq. 13: sign(w)
  np.testing.assert_array_equal(g["r0"]["bias"], 0.0)
  np.testing.assert_array_equal(g["fc1"]["bias"], 0.0)
  with pytest.raises(ValueError, match="no leaves named"):
    bpsr_jax.weight_l1({"dense": {"w": jnp.ones(3)}})


def test_label_shape_error():
  with pytest.raises(ValueError, match="do not match"):
    bpsr_jax.spike_count_cross_entropy(jnp.zeros((4, 2, 3)), jnp.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"\[T, batch, classes\]"):
    bpsr_jax.spike_count_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]))


# --------------------------------------------------------------------------------------
# Labels outside the classes (issue 14).


def test_out_of_range_labels_give_nan_not_a_wrapped_class():
  spikes = jnp.zeros((4, 3, 10)).at[:, :, 9].set(1.0)
  loss = losses.spike_count_cross_entropy(spikes, jnp.array([-1, 10, 9]))
  # optax alone wraps -1 to class 9 (a finite loss) and gives NaN for 10.
  assert np.isnan(loss[0]) and np.isnan(loss[1])
  # Valid label 9: logits 10 * 1 for class 9, 0 elsewhere -> -log(e^10 / (e^10 + 9)).
  np.testing.assert_allclose(loss[2], -(10 - np.log(np.exp(10) + 9)), atol=1e-6)
  jitted = jax.jit(losses.spike_count_cross_entropy)(spikes, jnp.array([0, 9, -2]))
  assert np.isnan(jitted[2]) and np.isfinite(jitted[:2]).all()
