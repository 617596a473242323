"""Tests of integer-only inference (bpsr_jax.integer) against exact models.

The truths: an exact ``Fraction`` LIF model of the dequantized network, the float32 SNN,
and closed forms of the shift leak.
"""
import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import constraints
from bpsr_jax import integer
from bpsr_jax import models
from bpsr_jax import neuron
from bpsr_jax import quantize as qz


def _naf_weight(m):
  """Nonzero digits of m's non-adjacent form (fewest signed powers of two), by the
  closed form popcount((3m >> 1) ^ (m >> 1))."""
  return bin((3 * m >> 1) ^ (m >> 1)).count("1")


@pytest.mark.parametrize("max_tau_shift, tau_terms", [(6, 1), (6, 2), (6, 3), (14, 2)])
def test_integer_leak_rounds_every_term_down(max_tau_shift, tau_terms):
  """tau v - d < leak(v) <= tau v (d: the code's terms); floor(tau v) for d <= 1."""
  info = qz.QuantInfo(8, 1.0, max_tau_shift, tau_terms)
  levels = info.tau_levels
  codes = qz.quantize_tau(jnp.asarray(levels, jnp.float32), max_tau_shift, tau_terms)
  rng = np.random.default_rng(0)
  v = rng.integers(-2 ** 24, 2 ** 24, (200, len(levels)))
  v[:3] = np.array([[0], [1], [-1]])
  leak = np.asarray(integer.integer_leak(jnp.asarray(v, jnp.int32), codes,
                                         tau_terms=tau_terms,
                                         max_tau_shift=max_tau_shift)).astype(np.int64)
  numerators = np.round(levels * 2 ** max_tau_shift).astype(np.int64)
  exact_floor = (v * numerators) >> max_tau_shift   # floor(tau v), exactly
  exact = v * numerators
  terms = np.array([_naf_weight(int(m)) for m in numerators])
  assert terms.max() <= tau_terms
  assert np.all(leak << max_tau_shift <= exact)
  assert np.all((leak + np.maximum(terms, 1)) << max_tau_shift > exact)
  np.testing.assert_array_equal(leak[:, terms <= 1], exact_floor[:, terms <= 1])


def _exact_lif(currents, tau, threshold=Fraction(1), potentials=False):
  """The float model of eq. 1-2 in exact rational arithmetic (one neuron)."""
  u, s, out, us = Fraction(0), 0, [], []
  for c in currents:
    u = tau * u * (1 - s) + c
    s = int(u >= threshold)
    out.append(s)
    us.append(u)
  return (out, us) if potentials else out


def _run_integer_lif(currents_in_steps, tau, info):
  """integer_lif of one neuron as integer_apply runs it (guard bits included)."""
  g = info.guard_bits
  currents = jnp.asarray(np.asarray(currents_in_steps)[:, None, None] << g, jnp.int32)
  code = qz.quantize_tau(jnp.array([tau]), info.max_tau_shift, info.tau_terms)
  assert float(qz.tau_from_code(code, max_tau_shift=info.max_tau_shift,
                                tau_terms=info.tau_terms)[0]) == tau
  return np.asarray(integer.integer_lif(currents, code, info.int_threshold << g,
                                        tau_terms=info.tau_terms,
                                        max_tau_shift=info.max_tau_shift))[:, 0, 0]


@pytest.mark.parametrize("bias, tau, drive, tau_terms", [
    (0.5, 0.5, 0.0, 1),     # converges onto the threshold from below: never spikes
    (0.75, 0.5, 0.0, 1),    # spikes every other step
    (0.25, 1.0, 0.0, 1),    # integrate-and-fire: every 4th step
    (-0.3125, 0.25, 0.9, 1),  # negative potentials: floor shifts
    (0.1, 0.0, 0.45, 1),    # tau = 0
    (0.25, 0.75, 0.0, 2),   # 2^-1 + 2^-2, converges onto the threshold from below
    (0.125, 0.875, 0.0, 2),  # 1 - 2^-3: likewise; a rounded-up negative term would fire
    (0.5, 0.625, 0.0, 2),   # 2^-1 + 2^-3
    (-0.3125, 0.4375, 0.9, 2),  # 2^-1 - 2^-4, negative potentials
    (0.1, 0.9375, 0.45, 2),   # 1 - 2^-4
    (0.05, 0.984375, 0.3, 2),  # 1 - 2^-6
    (0.0, 0.6875, 0.7, 3),  # 2^-1 + 2^-3 + 2^-4
])
def test_integer_lif_matches_exact_model(bias, tau, drive, tau_terms):
  info = qz.QuantInfo(8, 1.0, 6, tau_terms)
  t_steps = 40
  rng = np.random.default_rng(1)
  x = (rng.random(t_steps) < 0.4).astype(np.int32)
  bq = round(bias * 128)
  wq = round(drive * 128)
  currents = x * wq + bq
  spikes = _run_integer_lif(currents, tau, info)
  exact = _exact_lif([Fraction(int(c), 128) for c in currents], Fraction(tau))
  np.testing.assert_array_equal(spikes, exact)


@pytest.mark.parametrize("tau_terms", [2])
def test_multi_term_lif_lags_the_exact_model_by_a_bounded_error(tau_terms):
  """The only gap of tau_terms >= 2 (module docstring): the integer potential is below the
  exact one by less than d ulp per leak since the last reset, so the first spike that
  differs is an exact-model spike within that distance above the threshold.

  Run without guard bits (ulp = step, threshold 8 steps: 4-bit words) to make the gap
  common enough to test; every tau of the grid, 16 random current sequences each.
  """
  max_tau_shift, t_steps, thr = 6, 48, 8
  info = qz.QuantInfo(4, 1.0, max_tau_shift, tau_terms)
  levels = info.tau_levels
  codes = qz.quantize_tau(jnp.asarray(levels, jnp.float32), max_tau_shift, tau_terms)
  n = len(levels) * 16
  rng = np.random.default_rng(tau_terms)
  currents = rng.integers(-3, 6, (t_steps, n)) * (rng.random((t_steps, n)) < 0.5)
  spikes = np.asarray(integer.integer_lif(jnp.asarray(currents[:, None, :], jnp.int32),
                                          jnp.tile(codes, 16), thr, tau_terms=tau_terms,
                                          max_tau_shift=max_tau_shift))[:, 0, :]
  gaps = 0
  for i in range(n):
    tau = Fraction(int(round(levels[i % len(levels)] * 64)), 64)
    terms = _naf_weight(tau.numerator * (64 // tau.denominator))
    exact, us = _exact_lif([Fraction(int(c)) for c in currents[:, i]], tau,
                           Fraction(thr), potentials=True)
    differ = np.nonzero(spikes[:, i] != np.array(exact))[0]
    if not len(differ):
      continue
    gaps += 1
    t = int(differ[0])
    assert exact[t] == 1 and spikes[t, i] == 0   # the integer neuron lags, never leads
    last_reset = max([r for r in range(t) if exact[r]], default=-1)
    leaks = t - last_reset - 1
    assert us[t] - thr < terms * leaks, (tau, t, us[t])
  assert 0 < gaps < n / 2, gaps   # the test sees the gap (63 of 528 runs for two terms)


def test_float32_caveat_is_the_only_gap():
  # bias 0.5, tau 0.5, no input: u^t = 1 - 2^-t < 1 forever. The integer path and the
  # exact model never spike; float32 rounds 1 - 2^-25 up to 1.0 and fires (documented).
  info = qz.QuantInfo(8, 1.0, 6)
  currents = jnp.full((30, 1, 1), 64, jnp.int32)
  ints = np.asarray(integer.integer_lif(currents, jnp.array([1], jnp.int8),
                                        info.int_threshold))
  assert ints.sum() == 0
  assert sum(_exact_lif([Fraction(1, 2)] * 30, Fraction(1, 2))) == 0
  floats = np.asarray(neuron.lif(jnp.full((30, 1, 1), 0.5), jnp.array([0.5])))
  assert floats[:24].sum() == 0 and floats.sum() > 0


def _random_params(spec, n_in, seed, threshold=1.0):
  """Trained-looking params in the SNN layout: weights and biases across the clamp range,
  taus spread over [0, 1] (so every leak shift occurs)."""
  rng = np.random.default_rng(seed)
  params, fan_in = {}, n_in
  for i, ls in enumerate(models.parse_spec(spec)):
    n = ls.size
    layer = {
        "kernel": rng.normal(0, 0.8 / np.sqrt(fan_in), (fan_in, n)) * threshold,
        "bias": rng.uniform(-0.2, 0.6, n) * threshold,
        "tau": rng.uniform(0.0, 1.0, n),
    }
    if ls.kind == "r":
      layer["recurrent_kernel"] = rng.normal(0, 0.4 / np.sqrt(n), (n, n)) * threshold
    params[f"{ls.kind}{i}"] = {k: jnp.asarray(v, jnp.float32) for k, v in layer.items()}
    fan_in = n
  return constraints.project_params(params, threshold)


@functools.lru_cache(maxsize=None)
def _jitted_apply(spec, threshold):
  return jax.jit(models.SNN(spec=spec, threshold=threshold).apply)


def _model_and_params(spec, n_in, seed, threshold=1.0):
  """``(jitted float SNN apply, params)``; the params have the SNN's layout."""
  model = models.SNN(spec=spec, threshold=threshold)
  params = _random_params(spec, n_in, seed, threshold)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 1, n_in)))["params"]
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(jnp.shape, params)
  return _jitted_apply(spec, threshold), params


def _exact_forward(params, spec, x, threshold):
  """The dense float SNN (eq. 1-2) in exact rational arithmetic; returns all spikes.

  The weighted sums of binary spikes are computed in float64, which is exact here (the
  weights are dyadic with <= 8 significant bits, the sums have < 100 terms); the
  potentials are Python Fractions.
  """
  to_fraction = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
  thr = Fraction(threshold)
  h = np.asarray(x).astype(np.float64)
  spikes = []
  for i, ls in enumerate(models.parse_spec(spec)):
    p = {k: np.asarray(v, np.float64) for k, v in params[f"{ls.kind}{i}"].items()}
    currents = to_fraction(h @ p["kernel"] + p["bias"])
    tau = to_fraction(p["tau"])
    u = np.full(currents.shape[1:], Fraction(0), object)
    s = np.zeros(currents.shape[1:], np.float64)
    out = []
    for t in range(currents.shape[0]):
      u = tau * u * (1 - s).astype(np.int64) + currents[t]
      if ls.kind == "r":
        u = u + to_fraction(s @ p["recurrent_kernel"])
      s = (u >= thr).astype(np.float64)
      out.append(s)
    h = np.stack(out)
    spikes.append(h)
  return spikes[-1], tuple(spikes[:-1])


def _check_identical(reference, integer):
  (out_r, hidden_r), (out_i, hidden_i) = reference, integer
  assert out_i.dtype == jnp.int32 and len(hidden_i) == len(hidden_r)
  for a, b in zip((out_r,) + tuple(hidden_r), (out_i,) + tuple(hidden_i)):
    np.testing.assert_array_equal(np.asarray(a).astype(np.int32), np.asarray(b))
  # The comparison means something: every layer fires, none saturates.
  for s in (out_i,) + tuple(hidden_i):
    rate = float(jnp.mean(s))
    assert 0.002 < rate < 0.9, rate


@pytest.mark.parametrize("spec, seed, threshold, bits, tau_terms", [
    ("r24-fc16-fc5", 0, 1.0, 8, 1), ("r24-fc16-fc5", 0, 1.0, 4, 1),
    ("fc20-r12-fc4", 1, 1.0, 8, 1), ("fc20-r12-fc4", 1, 1.0, 2, 1),
    ("r24-fc16-fc5", 2, 0.5, 8, 1),
    ("r24-fc16-fc5", 0, 1.0, 8, 2), ("fc20-r12-fc4", 1, 1.0, 4, 2),
    ("r24-fc16-fc5", 2, 0.5, 8, 2)])
def test_integer_inference_equals_exact_dequantized_model(bits, spec, seed, threshold,
                                                          tau_terms):
  """Spike for spike, every layer, T = 24; all leak shifts (0..6 and tau = 0) or, with
  two terms, taus all over the 33-level grid.

  Exact for one term; for two the potentials of the integer path lag by < 2^-11 U_th
  (16 fraction bits; see test_multi_term_lif_lags_the_exact_model_by_a_bounded_error),
  which no spike of these runs is close enough to the threshold to notice.
  """
  n_in, t_steps, batch = 30, 24, 8
  params = _random_params(spec, n_in, seed, threshold)
  q, info = qz.quantize_params(params, bits, threshold=threshold, tau_terms=tau_terms)
  x = jax.random.bernoulli(jax.random.key(seed + 100), 0.3, (t_steps, batch, n_in))
  _check_identical(_exact_forward(qz.dequantize_params(q, info), spec, x, threshold),
                   integer.integer_apply(q, info, spec, x))


@pytest.mark.parametrize("dtype, max_tau_shift, bits", [
    (jnp.float64, 2, 8), (jnp.float64, 3, 4), (jnp.float32, 0, 8)])
def test_integer_inference_equals_float_snn(dtype, max_tau_shift, bits):
  """The library's float SNN with the dequantized params, where its arithmetic is exact.

  |u| < 2^10 U_th here, and the leak adds at most max_tau_shift fraction bits per step to
  the bits - 1 of the grid: float64 holds 7 + 2 * 16 + 10 < 53 bits (float32, with tau in
  {0, 1}: 7 + 10 < 24), so the float model computes the exact potentials.
  """
  spec, n_in, t_steps, batch = "r24-fc16-fc5", 30, 16, 8
  with jax.enable_x64(dtype == jnp.float64):
    apply, params = _model_and_params(spec, n_in, 3, 1.0)
    q, info = qz.quantize_params(params, bits, max_tau_shift=max_tau_shift, tau_terms=1)
    deq = qz.dequantize_params(q, info, dtype)
    x = jax.random.bernoulli(jax.random.key(7), 0.3, (t_steps, batch, n_in)).astype(dtype)
    _check_identical(apply({"params": deq}, x),
                     integer.integer_apply(q, info, spec, x))


@pytest.mark.parametrize("tau_terms", [1, 2])
def test_integer_inference_agrees_with_float32_snn_almost_always(tau_terms):
  """With all leak levels, float32 rounding and (two terms) the bounded lag of the integer
  potential (see the module docstring) are the only gaps."""
  spec, n_in = "r24-fc16-fc5", 30
  apply, params = _model_and_params(spec, n_in, 0, 1.0)
  q, info = qz.quantize_params(params, 8, tau_terms=tau_terms)
  x = jax.random.bernoulli(jax.random.key(0), 0.3, (24, 32, n_in)).astype(jnp.float32)
  out_f, hidden_f = apply({"params": qz.dequantize_params(q, info)}, x)
  out_i, hidden_i = integer.integer_apply(q, info, spec, x)
  mismatches = sum(int(jnp.sum(a.astype(jnp.int32) != b))
                   for a, b in zip((out_f,) + hidden_f, (out_i,) + hidden_i))
  total = sum(a.size for a in (out_f,) + hidden_f)
  assert mismatches <= total * 1e-3, (mismatches, total)


def test_non_dense_specs_and_bad_inputs_raise():
  q, info = qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8)
  with pytest.raises(ValueError, match="supports flat and recurrent.*'8c3-fc10' has a "
                     "'conv' layer$"):
    integer.integer_apply(q, info, "8c3-fc10", jnp.zeros((2, 1, 4, 4, 1)))
  with pytest.raises(ValueError, match="supports flat and recurrent.*'efc10' has an "
                     "encoding 'fc' layer$"):
    integer.integer_apply(q, info, "efc10", jnp.zeros((1, 4)))
  with pytest.raises(ValueError, match=r"\[T, batch, features\]"):
    integer.integer_apply(q, info, "fc2", jnp.zeros((2, 2)))


def test_defaults_read_one_shift_codes():
  # Without tau_terms, codes are shift codes (one term): tau 1, 1/2, 1/8, none.
  codes = jnp.array([0, 1, 3, qz.TAU_ZERO], jnp.int32)
  v = jnp.array([100, 100, -100, 77], jnp.int32)
  np.testing.assert_array_equal(integer.integer_leak(v, codes), [100, 50, -13, 0])
  # 60 a step, threshold 100: tau 1/2 gives 60, 90, 105 (a spike); no memory 60, 60, 60.
  # The recurrent kernel by keyword, zero here.
  currents = jnp.full((3, 1, 2), 60, jnp.int32)
  spikes = integer.integer_lif(currents, jnp.array([1, qz.TAU_ZERO], jnp.int32), 100,
                               recurrent_kernel=jnp.zeros((2, 2), jnp.int32))
  np.testing.assert_array_equal(spikes[:, 0], [[0, 0], [0, 0], [1, 0]])
