"""Host streaming inference (bpsr_jax.stream) against the dense path, spike for spike.

The truth is the dense path at batch 1: :class:`bpsr_jax.SNN` run on one sample (float)
and :func:`bpsr_jax.integer_apply` (integer), on the packaged trained models (the MNIST
main job, r1000-fc100-fc10, and MIT-BIH wide, r128-fc64-fc5), plus a hand-computed case.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax import event
from bpsr_jax import stream
from bpsr_jax.errors import ConfigError

MNIST_SPEC = "r1000-fc100-fc10"
MITBIH_SPEC = "r128-fc64-fc5"
pytestmark = pytest.mark.skipif(not stream.available(), reason="numba is not installed")


@pytest.fixture(scope="module")
def mnist(packaged_mnist):  # six of conftest's digits, streamed one by one
  params, x = packaged_mnist
  return params, x[:, :6]


@pytest.fixture(scope="module")
def mitbih(packaged_mitbih):  # four of conftest's count samples
  params, x = packaged_mitbih
  return params, x[:, :4]


def _stream_all(net, x):
  """Every sample of ``x`` ``[T, B, F]`` streamed alone -> layers' ``[T, B, N]``."""
  per_sample = [stream.run(net, x[:, b]) for b in range(x.shape[1])]
  return [np.concatenate([p[1][l] if l < len(p[1]) else p[0] for p in per_sample], 1)
          for l in range(len(per_sample[0][1]) + 1)]


def _assert_same(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))


def _dense_batch1(params, spec, x):
  apply = jax.jit(bpsr_jax.SNN(spec).apply)
  per = [apply({"params": params}, x[:, b:b + 1]) for b in range(x.shape[1])]
  return [np.concatenate([np.asarray(p[1][l] if l < len(p[1]) else p[0]) for p in per], 1)
          for l in range(len(per[0][1]) + 1)]


def test_float_recurrent_equals_dense_batch1(mnist):
  params, x = mnist
  want = _dense_batch1(params, MNIST_SPEC, x)
  assert sum(int(w.sum()) for w in want) > 500  # the model spikes
  net = stream.prepare(event.prepare(params, MNIST_SPEC, binary_input=True))
  _assert_same(_stream_all(net, x), want)


def test_float_counts_input_equals_dense_batch1(mitbih):
  # binary_input None: the count input is detected at each step and weighted.
  params, x = mitbih
  want = _dense_batch1(params, MITBIH_SPEC, x)
  assert sum(int(w.sum()) for w in want) > 100
  net = stream.prepare(event.prepare(params, MITBIH_SPEC))
  _assert_same(_stream_all(net, x), want)


@pytest.mark.parametrize("tau_terms", [1, 2])
def test_integer_equals_integer_apply(mnist, mitbih, tau_terms):
  for (params, x), spec in ((mnist, MNIST_SPEC), (mitbih, MITBIH_SPEC)):
    qparams, info = bpsr_jax.quantize_params(params, bits=8, tau_terms=tau_terms)
    out, hidden = bpsr_jax.integer_apply(qparams, info, spec, jnp.asarray(x))
    want = list(hidden) + [out]
    assert sum(int(w.sum()) for w in want) > 100
    net = stream.prepare(event.prepare(qparams, spec, quant=info))
    _assert_same(_stream_all(net, x), want)


@pytest.mark.parametrize("tau_terms", [1, 2, 3])
def test_integer_leak_of_every_tau_level_equals_integer_apply(tau_terms):
  # Every tau level of the grid (tau 0 included) on its own neurons, a recurrent layer
  # and a long run: every leak term is exercised.
  info = bpsr_jax.QuantInfo(8, 1.0, 6, tau_terms)
  levels = np.tile(np.asarray(info.tau_levels, np.float32), 2)
  n = len(levels)
  rng = np.random.default_rng(tau_terms)
  # Each level twice: once strongly driven, once weakly (it leaks between its spikes).
  gain = np.repeat([1.0, 0.35], n // 2).astype(np.float32)
  params = {"r0": {"kernel": rng.uniform(0.0, 0.6, (6, n)).astype(np.float32) * gain,
                   "recurrent_kernel": rng.normal(0, 0.1, (n, n)).astype(np.float32),
                   "bias": rng.normal(0, 0.05, n).astype(np.float32), "tau": levels},
            "fc1": {"kernel": rng.normal(0, 0.5, (n, 3)).astype(np.float32),
                    "bias": np.zeros(3, np.float32), "tau": levels[-3:]}}
  qparams, info = bpsr_jax.quantize_params(params, bits=8, tau_terms=tau_terms)
  assert (np.asarray(qparams["r0"]["tau"]) == bpsr_jax.quantize.TAU_ZERO).any() == (
      tau_terms == 1)  # one term: tau 0 has its own code; more: the numerator 0
  x = (rng.random((60, 3, 6)) < 0.4).astype(np.float32)
  out, hidden = bpsr_jax.integer_apply(qparams, info, f"r{n}-fc3", jnp.asarray(x))
  want = list(hidden) + [out]
  assert int(want[0].sum()) > 100 and int(out.sum()) > 0
  net = stream.prepare(event.prepare(qparams, f"r{n}-fc3", quant=info, binary_input=True))
  _assert_same(_stream_all(net, x), want)


@pytest.mark.parametrize("tau_terms, taus, potentials", [
    # Weight 50/128 (50 units of step 1/128), threshold 128 units, one input spike a
    # step. One term: tau 1 (shift 0), 1/2 (shift 1), 0 (no memory).
    (1, [1.0, 0.5, 0.0], [[50, 50, 50], [100, 75, 50], [150, 87, 50], [50, 93, 50],
                          [100, 96, 50], [150, 98, 50]]),
    # Two terms (guard bits 9, units of 1/512): tau 1, 3/4 = 1 - 2^-2, 0.
    (2, [1.0, 0.75, 0.0], [[25600, 25600, 25600], [51200, 44800, 25600],
                           [76800, 59200, 25600], [25600, 70000, 25600],
                           [51200, 25600, 25600], [76800, 44800, 25600]]),
])
def test_integer_leak_hand_cases(tau_terms, taus, potentials):
  params = {"fc0": {"kernel": np.full((1, 3), 50 / 128, np.float32),
                    "bias": np.zeros(3, np.float32), "tau": np.asarray(taus, np.float32)}}
  qparams, info = bpsr_jax.quantize_params(params, bits=8, tau_terms=tau_terms)
  net = stream.prepare(event.prepare(qparams, "fc3", quant=info, binary_input=True))
  state, got = stream.init_state(net), []
  for _ in range(6):
    state, _ = stream.step(net, state, np.ones(1, np.float32))
    got.append(state.potentials.tolist())
  assert got == potentials


def test_hand_computed_recurrent_case():
  # One recurrent layer of 2 neurons, tau 0.5, threshold 1: neuron 0 gets 0.6 a step
  # from input 0, and excites neuron 1 through R[0, 1] = 0.75 one step after it fires.
  params = {"r0": {"kernel": np.array([[0.6, 0.0], [0.0, 0.0]], np.float32),
                   "bias": np.zeros(2, np.float32), "tau": np.full(2, 0.5, np.float32),
                   "recurrent_kernel": np.array([[0.0, 0.75], [0.0, 0.0]], np.float32)}}
  net = stream.prepare(event.prepare(params, "r2", binary_input=True))
  state = stream.init_state(net)
  got = []
  for _ in range(5):
    state, (s,) = stream.step(net, state, np.array([1.0, 0.0], np.float32))
    got.append((s.tolist(), state.potentials.tolist()))
  # u0: 0.6, 0.9, 1.05 (spike), 0.6 (reset), 0.9; u1: 0, 0, 0, 0.75, 0.375
  np.testing.assert_allclose([p for _, p in got],
                             [[0.6, 0], [0.9, 0], [1.05, 0], [0.6, 0.75], [0.9, 0.375]],
                             rtol=1e-6)
  assert [s for s, _ in got] == [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0]]


def test_step_is_pure_and_checks_its_input(mnist):
  params, x = mnist
  net = stream.prepare(event.prepare(params, MNIST_SPEC, binary_input=True))
  state = stream.init_state(net)
  new, spikes = stream.step(net, state, x[0, 0][None])  # [1, features] is accepted
  assert not state.potentials.any() and not state.spikes.any()  # not modified
  assert [s.shape for s in spikes] == [(1000,), (100,), (10,)]
  assert new.potentials.any()
  with pytest.raises(ConfigError, match="784 features"):
    stream.step(net, state, np.zeros(783, np.float32))


def test_predictor_stream_matches_batch_prediction():
  # The packaged model's Predictor: streaming its encoded test images one step at a time
  # gives the output spikes and the class of its batched dense prediction; the stream's
  # dense engine (the jitted step) gives the same.
  p = bpsr_jax.load("mnist", engine="event")
  _, test = bpsr_jax.data.load_mnist(limit=2)
  x = np.asarray(p.encode(test.x))
  out, _ = bpsr_jax.load("mnist").spikes(test.x)
  s = p.stream()
  assert s.engine == "event"
  for b in range(2):
    s.reset()
    got = np.stack([s.step(x[t, b]) for t in range(x.shape[0])])
    np.testing.assert_array_equal(got, out[:, b])
    assert s.predict() == int(np.argmax(out[:, b].sum(0)))
    assert s.steps == x.shape[0]
  dense = stream.Stream(event.prepare(p.params, p.config.model, binary_input=True),
                        engine="dense")
  got = np.stack([dense.step(x[t, 0]) for t in range(x.shape[0])])
  np.testing.assert_array_equal(got, out[:, 0])
  with pytest.raises(ConfigError, match="engine"):
    stream.Stream(dense._net, engine="sparse")  # pylint: disable=protected-access
