"""Tests of post-training quantization (BPSR section 2.5): fixed point, tau, storage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import quantize as qz


def test_fixed_point_hand_cases():
  params = {"l": {"kernel": jnp.array([[0.5, -1.0, 1.0, 0.3, -0.7, 0.00390625, 2.0]]),
                  "bias": jnp.array([0.25, -0.3]),
                  "tau": jnp.array([0.5, 0.7, 0.75, 0.9, 1.0, 0.01, 0.005, 0.0, 0.3]),
                  "other": jnp.array([0.123])}}
  q, info = qz.quantize_params(params, bits=8, tau_terms=1)
  assert info == qz.QuantInfo(8, 1.0, 6) and info.step == 1 / 128 and info.guard_bits == 0
  assert q["l"]["kernel"].dtype == jnp.int8
  # 0.00390625 = half a step: round half to even -> 0; 1.0 and 2.0 saturate at 127.
  np.testing.assert_array_equal(np.asarray(q["l"]["kernel"]),
                                [[64, -128, 127, 38, -90, 0, 127]])
  np.testing.assert_array_equal(np.asarray(q["l"]["bias"]), [32, -38])
  # tau -> nearest of 1, 1/2, ..., 1/64, 0 (0.75: tie, to the larger).
  z = qz.TAU_ZERO
  np.testing.assert_array_equal(np.asarray(q["l"]["tau"]), [1, 1, 0, 0, 0, 6, z, z, 2])
  np.testing.assert_array_equal(np.asarray(q["l"]["other"]), np.float32([0.123]))

  q4, info4 = qz.quantize_params(params, bits=4, max_tau_shift=2, tau_terms=1)
  assert info4.step == 1 / 8 and info4.tau_bits == 2
  # 0.3 / (1/8) = 2.4 -> 2; -0.7 * 8 = -5.6 -> -6; range [-8, 7].
  np.testing.assert_array_equal(np.asarray(q4["l"]["kernel"]), [[4, -8, 7, 2, -6, 0, 7]])
  np.testing.assert_array_equal(np.asarray(q4["l"]["tau"]), [1, 1, 0, 0, 0, z, z, z, 2])

  deq = qz.dequantize_params(q4, info4)["l"]
  np.testing.assert_array_equal(np.asarray(deq["kernel"]),
                                np.float32([[0.5, -1.0, 0.875, 0.25, -0.75, 0.0, 0.875]]))
  np.testing.assert_array_equal(np.asarray(deq["tau"]),
                                np.float32([0.5, 0.5, 1, 1, 1, 0, 0, 0, 0.25]))


def test_two_term_tau_hand_cases():
  tau = jnp.array([0.5, 0.7, 0.75, 0.9, 1.0, 0.01, 0.005, 0.0, 0.3, 0.35, 2 ** -7, 0.97])
  q, info = qz.quantize_params({"l": {"tau": tau}}, bits=8)   # the default: two terms
  assert info == qz.QuantInfo(8, 1.0, 6, 2) and info.tau_bits == 6
  assert info.guard_bits == 9 and info.int_threshold << info.guard_bits == 2 ** 16
  assert q["l"]["tau"].dtype == jnp.int8
  # tau = M / 64: 0.7 -> 48 = 64 - 16 (0.75; 11/16 would take three terms); 0.9 -> 56 =
  # 64 - 8; 0.3 -> 20 = 16 + 4; 0.35 -> 24; 2^-7 halfway between 0 and 1/64 -> 1;
  # 0.97 -> 62 = 64 - 2.
  np.testing.assert_array_equal(np.asarray(q["l"]["tau"]),
                                [32, 48, 48, 56, 64, 1, 0, 0, 20, 24, 1, 62])
  np.testing.assert_array_equal(
      np.asarray(qz.dequantize_params(q, info)["l"]["tau"]),
      np.float32([32, 48, 48, 56, 64, 1, 0, 0, 20, 24, 1, 62]) / 64)


def _naf_weight(m):
  """Nonzero digits of the non-adjacent form of m (fewest signed power-of-two terms)."""
  weight = 0
  while m:
    if m & 1:
      m -= 2 - (m & 3)
      weight += 1
    m >>= 1
  return weight


@pytest.mark.parametrize("max_tau_shift, tau_terms", [(6, 1), (6, 2), (4, 4), (9, 2)])
def test_tau_levels_are_the_signed_digit_grid(max_tau_shift, tau_terms):
  full = 2 ** max_tau_shift
  expected = [m / full for m in range(full + 1) if _naf_weight(m) <= tau_terms]
  info = qz.QuantInfo(8, 1.0, max_tau_shift, tau_terms)
  np.testing.assert_array_equal(info.tau_levels, expected)
  assert info.tau_bits == int(np.ceil(np.log2(len(expected))))
  # Every level round-trips through its code; the largest rounding error is half the
  # largest gap (1/4 for one term, 1/16 for two, at K = 6).
  levels = jnp.asarray(info.tau_levels, jnp.float32)
  code = qz.quantize_tau(levels, max_tau_shift, tau_terms)
  np.testing.assert_array_equal(
      qz.tau_from_code(code, max_tau_shift=max_tau_shift, tau_terms=tau_terms), levels)
  tau = jnp.linspace(0.0, 1.0, 4097)
  err = jnp.abs(qz.tau_from_code(qz.quantize_tau(tau, max_tau_shift, tau_terms),
                                 max_tau_shift=max_tau_shift, tau_terms=tau_terms) - tau)
  assert float(err.max()) == np.max(np.diff(expected)) / 2
  if (max_tau_shift, tau_terms) == (6, 2):
    assert len(expected) == 33 and float(err.max()) == 1 / 16


def test_tau_code_defaults_are_one_shift_of_at_most_six():
  # quantize_tau and tau_from_code default to the paper's scheme: tau_terms = 1, K = 6.
  # 2^-7 lies halfway between 0 and 2^-6 (tie: the larger); 0.75 halfway between 1/2
  # and 1 (one shift; two terms would give 48 / 64).
  codes = qz.quantize_tau(jnp.array([2.0 ** -7, 0.75, 0.3, 2.0 ** -8]))
  np.testing.assert_array_equal(np.asarray(codes), [6, 0, 2, qz.TAU_ZERO])
  # Two-term numerators M / 2^K with the default K = 6.
  np.testing.assert_array_equal(
      np.asarray(qz.tau_from_code(jnp.array([32, 48, 1, 64]), tau_terms=2)),
      np.float32([0.5, 0.75, 1 / 64, 1.0]))
  np.testing.assert_array_equal(np.asarray(qz.tau_from_code(codes)),
                                np.float32([1 / 64, 1.0, 0.25, 0.0]))


def test_round_tau_matches_quantizer():
  params = {"a": {"tau": jnp.array([0.3, 0.7, 0.01, 1.0]), "kernel": jnp.array([[0.3]])}}
  out = qz.round_tau(params, max_tau_shift=3, tau_terms=1)
  np.testing.assert_array_equal(np.asarray(out["a"]["tau"]), np.float32([0.25, 0.5, 0, 1]))
  np.testing.assert_array_equal(np.asarray(out["a"]["kernel"]), np.float32([[0.3]]))
  out2 = qz.round_tau(params, max_tau_shift=3)   # two terms: every M / 8
  np.testing.assert_array_equal(np.asarray(out2["a"]["tau"]),
                                np.float32([0.25, 0.75, 0, 1]))
  q2, info2 = qz.quantize_params(out2, 8, max_tau_shift=3)
  np.testing.assert_array_equal(np.asarray(qz.dequantize_params(q2, info2)["a"]["tau"]),
                                np.asarray(out2["a"]["tau"]))
  q, info = qz.quantize_params(out, 8, max_tau_shift=3, tau_terms=1)
  np.testing.assert_array_equal(np.asarray(qz.dequantize_params(q, info)["a"]["tau"]),
                                np.asarray(out["a"]["tau"]))


def test_dequantize_is_within_half_a_step_and_idempotent():
  rng = np.random.default_rng(0)
  params = {"k": {"kernel": jnp.asarray(rng.uniform(-1, 0.99, (50, 20)), jnp.float32),
                  "bias": jnp.asarray(rng.uniform(-1, 0.99, 20), jnp.float32),
                  "tau": jnp.asarray(rng.uniform(0, 1, 20), jnp.float32)}}
  for bits, tau_terms in ((2, 1), (4, 2), (8, 1), (8, 2), (12, 3)):
    q, info = qz.quantize_params(params, bits, tau_terms=tau_terms)
    deq = qz.dequantize_params(q, info)
    w = np.asarray(params["k"]["kernel"])
    err = np.abs(np.asarray(deq["k"]["kernel"]) - w)
    # Inside the representable range [-U_th, U_th - step] rounding is to nearest; above
    # it the top code saturates.
    inside = w <= 1 - info.step
    assert err[inside].max() <= info.step / 2 + 1e-7
    np.testing.assert_allclose(np.asarray(deq["k"]["kernel"])[~inside], 1 - info.step)
    q2, _ = qz.quantize_params(deq, bits, tau_terms=tau_terms)
    jax.tree.map(np.testing.assert_array_equal, q, q2)


def test_storage_report_hand_counts():
  params = {"l": {"kernel": jnp.array([[0.5, 0.0], [0.0, 0.1], [0.2, 0.3]]),
                  "bias": jnp.zeros(2), "tau": jnp.full(2, 0.5)}}
  q, info = qz.quantize_params(params, bits=8, tau_terms=1)  # tau codes: 3 bits
  report = qz.storage_report(q, info)
  assert report["weights"] == 6 and report["nonzero_weights"] == 4
  assert report["dense_bits"] == 6 * 8 + 2 * 8 + 2 * 3
  assert report["sparse_bits"] == 4 * 8 + 2 * 8 + 2 * 3
  assert report["dense_bytes"] == 9
  q2, info2 = qz.quantize_params(params, bits=8)  # two terms: 33 levels, 6 bits
  assert qz.storage_report(q2, info2)["dense_bits"] == 6 * 8 + 2 * 8 + 2 * 6
  assert qz.storage_report(params)["dense_bits"] == 10 * 32


def test_storage_bytes_round_up():
  # 3 weights (2 nonzero), 1 bias, 1 tau at 5 bits with one tau term (K = 6: 8 levels,
  # 3 bits): dense 3 * 5 + 5 + 3 = 23 bits -> 3 bytes; sparse 2 * 5 + 5 + 3 = 18 -> 3.
  params = {"l": {"kernel": jnp.array([[0.5], [0.0], [-0.25]]), "bias": jnp.zeros(1),
                  "tau": jnp.full(1, 0.5)}}
  q, info = qz.quantize_params(params, bits=5, tau_terms=1)
  report = qz.storage_report(q, info)
  assert (report["dense_bits"], report["sparse_bits"]) == (23, 18)
  assert (report["dense_bytes"], report["sparse_bytes"]) == (3, 3)


@pytest.mark.parametrize("bits", [1, 0, -3, 2.5, 17, True])
def test_bad_bits_raise(bits):
  with pytest.raises(ValueError, match="bits"):
    qz.quantize_params({"kernel": jnp.zeros((2, 2))}, bits)


def test_bad_arguments_raise():
  for threshold in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="threshold"):
      qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8, threshold=threshold)
  with pytest.raises(ValueError, match="max_tau_shift"):
    qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8, max_tau_shift=-1)
  with pytest.raises(ValueError, match="max_tau_shift"):
    qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8, max_tau_shift=15, tau_terms=2)
  qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8, max_tau_shift=30, tau_terms=1)
  for tau_terms in (0, 5, 1.5, True):
    with pytest.raises(ValueError, match="tau_terms"):
      qz.quantize_params({"kernel": jnp.zeros((2, 2))}, 8, tau_terms=tau_terms)
    with pytest.raises(ValueError, match="tau_terms"):
      qz.round_tau({"tau": jnp.zeros(2)}, tau_terms=tau_terms)
