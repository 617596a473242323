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


def _np_log_softmax_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  m = logits.max(axis=1, keepdims=True)
  lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
  return lse - logits[np.arange(len(labels)), labels]


def test_training_loss_matches_numpy_closed_form():
  # The loss the training step minimises (eq. 4-5), recomputed in numpy from the model's
  # spikes and weights: CE of softmax(k * counts) with k = count_scale / T, plus
  # lambda_s * hidden spikes per sample, plus lambda_w * sum |W|. Shares no code with
  # bpsr_jax.losses.
  from bpsr_jax import train
  t, batch = 8, 4
  cfg = train.TrainConfig(model="fc16-fc3", time_steps=t, encoding="none",
                          lambda_s=0.01, lambda_w=0.001, count_scale=6.0, bias_high=1.0,
                          weight_gain=3.0)
  model = train.make_model(cfg)
  x = (jax.random.uniform(jax.random.PRNGKey(0), (batch, t, 20)) < 0.5).astype(jnp.float32)
  y = jnp.array([0, 1, 2, 1])
  params = model.init(jax.random.PRNGKey(1), jnp.swapaxes(x, 0, 1))["params"]
  loss, aux = train.loss_fn(params, model, x, y, jax.random.PRNGKey(2), cfg)
  out, hidden = model.apply({"params": params}, jnp.swapaxes(x, 0, 1))
  counts = np.asarray(out, np.float64).sum(axis=0)  # [batch, classes]
  assert np.ptp(counts, axis=1).max() > 0  # the scale k matters for this batch
  ce = _np_log_softmax_ce(6.0 / t * counts, np.asarray(y)).mean()
  sl2 = sum(float(np.asarray(h, np.float64).sum()) for h in hidden) / batch
  wl1 = sum(float(np.abs(np.asarray(v["kernel"], np.float64)).sum())
            for v in params.values())
  assert sl2 > 0
  np.testing.assert_allclose(float(aux["ce"]), ce, rtol=1e-5)
  np.testing.assert_allclose(float(loss), ce + 0.01 * sl2 + 0.001 * wl1, rtol=1e-5)
  # k = 1 (or k = count_scale) gives a different loss on this batch.
  for wrong_k in (1.0, 6.0):
    assert abs(_np_log_softmax_ce(wrong_k * counts, np.asarray(y)).mean() - ce) > 1e-3
  np.testing.assert_array_equal(int(aux["correct"]),
                                int(np.sum(np.argmax(counts, axis=1) == np.asarray(y))))


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


def test_terms_accept_numpy_2d_spikes_and_any_tree_depth():
  # spike_l2 of one numpy array is one layer (not a sequence of its rows); [T, batch] is
  # a valid layer; weight_l1 finds kernels at any depth of the tree, and at the top.
  np.testing.assert_allclose(bpsr_jax.spike_l2(np.ones((3, 2, 4), np.float32)), 12.0)
  np.testing.assert_allclose(bpsr_jax.spike_l2(jnp.ones((3, 2))), 3.0)
  with pytest.raises(ValueError, match=r"\[T, batch, \.\.\.\]"):
    bpsr_jax.spike_l2(jnp.ones((3,)))
  deep = {"res2": {"layers_0": {"kernel": -jnp.ones((2, 2)), "bias": jnp.ones(2)},
                   "shortcut": {"kernel": jnp.full((1, 3), 0.5)}}}
  np.testing.assert_allclose(bpsr_jax.weight_l1(deep), 4.0 + 1.5)
  np.testing.assert_allclose(bpsr_jax.weight_l1({"kernel": jnp.ones(3), "tau": 2.0}), 3.0)


def test_label_shape_error():
  with pytest.raises(ValueError, match="do not match"):
    bpsr_jax.spike_count_cross_entropy(jnp.zeros((4, 2, 3)), jnp.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"do not match.*\(expected \[2\]\)"):
    bpsr_jax.spike_count_cross_entropy(jnp.zeros((4, 2, 3)), jnp.array([0]))
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
