"""Tests of bpsr_jax.neuron against an independent reference.

The reference is a plain Python loop over time written here (eq. 1-2), with the spike's
surrogate written out as its own custom_vjp, differentiated by JAX. It shares no code
with the library.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax import neuron

jax.config.update("jax_default_matmul_precision", "highest")


def _make_ref_heaviside(alpha):
  """Heaviside with a Gaussian surrogate of width ``alpha``, written out here."""

  @jax.custom_vjp
  def heaviside(v):
    return jnp.where(v >= 0, 1.0, 0.0).astype(v.dtype)

  def fwd(v):
    return heaviside(v), v

  def bwd(v, g):
    return (g * jnp.exp(-v**2 / (2 * alpha**2)) / (math.sqrt(2 * math.pi) * alpha),)

  heaviside.defvjp(fwd, bwd)
  return heaviside


_ref_heaviside = _make_ref_heaviside(0.5)


def reference_lif(currents, tau, rec=None, threshold=1.0, alpha=0.5):
  """Python-loop LIF: u = tau u (1 - s) + I + s @ R; s = H(u - thr); reset gate detached."""
  heaviside = _ref_heaviside if alpha == 0.5 else _make_ref_heaviside(alpha)
  u = jnp.zeros(currents.shape[1:], currents.dtype)
  s = jnp.zeros(currents.shape[1:], currents.dtype)
  out = []
  for t in range(currents.shape[0]):
    gate = 1.0 - jax.lax.stop_gradient(s)
    new_u = tau * u * gate + currents[t]
    if rec is not None:
      new_u = new_u + jnp.matmul(s, rec)
    u = new_u
    s = heaviside(u - threshold)
    out.append(s)
  return jnp.stack(out)


def _inputs(seed, t, shape, recurrent, shared_tau=False):
  k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
  n = shape[-1]
  currents = 0.3 + 0.8 * jax.random.normal(k1, (t,) + shape)
  tau = jnp.asarray(0.6) if shared_tau else jax.random.uniform(k2, (n,), minval=0.1,
                                                               maxval=0.95)
  rec = 0.4 * jax.random.normal(k3, (n, n)) if recurrent else None
  weights = jax.random.normal(k4, (t,) + shape)  # a random linear readout of the spikes
  return currents, tau, rec, weights


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


CASES = [
    # (T, per-step shape [..., N], recurrent, shared tau)
    (1, (4, 8), False, False),
    (1, (4, 8), True, False),
    # T = 300: the same code paths as T = 7..25, minutes of compiling the reference's
    # unrolled loop on 2 cores (CI's suite budget): run with -m slow.
    pytest.param(300, (3, 16), False, False, marks=pytest.mark.slow),
    pytest.param(300, (3, 16), True, False, marks=pytest.mark.slow),
    (7, (2, 5, 5, 3), False, True),     # conv-shaped: [batch, H, W, C], shared tau
    (25, (2, 6, 6, 4), False, False),   # conv-shaped, per-channel tau
    (13, (6,), True, False),            # no batch dim at all
    # two leading dims with a recurrent kernel (~35 s; recurrent stays fast at T = 13)
    pytest.param(9, (2, 3, 7), True, False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("gradient", ["bpsr", "autodiff"])
@pytest.mark.parametrize("t,shape,recurrent,shared", CASES)
def test_spikes_and_gradients_match_reference(gradient, t, shape, recurrent, shared):
  currents, tau, rec, w = _inputs(t * 7 + len(shape), t, shape, recurrent, shared)

  def loss(fn):
    def f(c, tau, rec):
      return jnp.sum(fn(c, tau, rec) * w)
    return f

  lib = loss(lambda c, tau, rec: bpsr_jax.lif(c, tau, recurrent_kernel=rec,
                                              gradient=gradient))
  ref = loss(reference_lif)
  s_lib = bpsr_jax.lif(currents, tau, recurrent_kernel=rec, gradient=gradient)
  s_ref = reference_lif(currents, tau, rec)
  np.testing.assert_array_equal(s_lib, s_ref)
  assert s_lib.shape == currents.shape and s_lib.dtype == currents.dtype
  assert 0 < float(jnp.mean(s_ref)) < 1  # a case with spikes and silences

  argnums = (0, 1, 2) if recurrent else (0, 1)
  g_lib = jax.jit(jax.grad(lib, argnums=argnums))(currents, tau, rec)
  g_ref = jax.grad(ref, argnums=argnums)(currents, tau, rec)
  for name, a, b in zip(["currents", "tau", "recurrent_kernel"], g_lib, g_ref):
    assert a.shape == b.shape, name
    assert _rel_err(a, b) < 1e-5, (name, _rel_err(a, b))
    if t > 1 or name == "currents":  # at T = 1, d tau and d R are exactly 0 (u^0 = s^0 = 0)
      assert np.max(np.abs(np.asarray(b))) > 0, name  # not trivially zero
    else:
      np.testing.assert_array_equal(a, 0.0)


@pytest.mark.parametrize("gradient", ["bpsr", "autodiff"])
@pytest.mark.parametrize("t,shape,recurrent,shared", [CASES[2], CASES[5], CASES[7]])
def test_bias_argument_matches_reference_with_added_bias(gradient, t, shape, recurrent,
                                                         shared):
  # lif(c, bias=b) is the reference LIF of c + b: spikes equal, gradients (currents, tau,
  # R, b) to round-off; the bias gradient is accumulated inside the backward loop.
  currents, tau, rec, w = _inputs(t + 11, t, shape, recurrent, shared)
  bias = 0.2 * jax.random.normal(jax.random.PRNGKey(t), (shape[-1],))
  currents = currents - 0.2

  def lib(c, tau, rec, b):
    return jnp.sum(bpsr_jax.lif(c, tau, recurrent_kernel=rec, bias=b,
                                gradient=gradient) * w)

  def ref(c, tau, rec, b):
    return jnp.sum(reference_lif(c + b, tau, rec) * w)

  np.testing.assert_array_equal(
      bpsr_jax.lif(currents, tau, recurrent_kernel=rec, bias=bias, gradient=gradient),
      reference_lif(currents + bias, tau, rec))
  g_lib = jax.jit(jax.grad(lib, argnums=(0, 1, 2, 3)))(currents, tau, rec, bias)
  g_ref = jax.grad(ref, argnums=(0, 1, 2, 3))(currents, tau, rec, bias)
  for name, a, b in zip(["currents", "tau", "recurrent_kernel", "bias"], g_lib, g_ref):
    if b is None:
      assert a is None
      continue
    assert a.shape == b.shape, name
    assert np.max(np.abs(np.asarray(b))) > 0, name
    assert _rel_err(a, b) < 1e-5, (name, _rel_err(a, b))


@pytest.mark.parametrize("gradient", ["bpsr", "autodiff"])
@pytest.mark.parametrize("recurrent,bias", [(False, False), (True, True)])
def test_non_default_threshold_and_alpha_match_reference(gradient, recurrent, bias):
  # Threshold and alpha are user flags: the spikes and every gradient at U_th = 0.7,
  # alpha = 0.3 match the reference run at the same values, and differ from the
  # reference at the defaults (so a backward that ignores either cannot pass).
  threshold, alpha = 0.7, 0.3
  currents, tau, rec, w = _inputs(29, 12, (3, 8), recurrent)
  b = 0.1 * jax.random.normal(jax.random.PRNGKey(2), (8,)) if bias else None

  def lib(c, tau, rec, b):
    return jnp.sum(bpsr_jax.lif(c, tau, recurrent_kernel=rec, bias=b, threshold=threshold,
                                alpha=alpha, gradient=gradient) * w)

  def ref(c, tau, rec, b, threshold=threshold, alpha=alpha):
    c = c if b is None else c + b
    return jnp.sum(reference_lif(c, tau, rec, threshold, alpha) * w)

  s_lib, u_lib = bpsr_jax.lif(currents, tau, recurrent_kernel=rec, bias=b,
                              threshold=threshold, alpha=alpha, gradient=gradient,
                              return_potentials=True)
  s_ref = reference_lif(currents if b is None else currents + b, tau, rec, threshold,
                        alpha)
  np.testing.assert_array_equal(s_lib, s_ref)
  np.testing.assert_array_equal(s_lib, (u_lib >= threshold).astype(s_lib.dtype))
  assert 0 < float(jnp.mean(s_ref)) < 1
  # Some potentials lie in [0.7, 1.0): they spike here and would not at U_th = 1.
  assert np.any((np.asarray(u_lib) >= threshold) & (np.asarray(u_lib) < 1.0))
  argnums = (0, 1) + ((2, 3) if recurrent else ())
  g_lib = jax.jit(jax.grad(lib, argnums=argnums))(currents, tau, rec, b)
  g_ref = jax.grad(ref, argnums=argnums)(currents, tau, rec, b)
  g_default = jax.grad(functools.partial(ref, threshold=1.0, alpha=0.5),
                       argnums=argnums)(currents, tau, rec, b)
  for name, a, r, d in zip(["currents", "tau", "recurrent_kernel", "bias"], g_lib, g_ref,
                           g_default):
    assert a.shape == r.shape, name
    assert np.max(np.abs(np.asarray(r))) > 0, name
    assert _rel_err(a, r) < 1e-5, (name, _rel_err(a, r))
    assert _rel_err(d, r) > 0.1, name  # the defaults give a different gradient


@pytest.mark.parametrize("gradient", ["bpsr", "autodiff"])
def test_tau_and_bias_with_size_one_axes_get_summed_gradients(gradient):
  # tau and bias of shape [1, N] broadcast over a batch of 2: their gradients are the
  # reference's, summed over that axis and kept [1, N].
  currents, tau, _, w = _inputs(41, 6, (2, 5), False)
  tau, bias = tau[None, :], 0.1 * jnp.arange(5.0)[None, :]

  def lib(c, tau, b):
    return jnp.sum(bpsr_jax.lif(c, tau, bias=b, gradient=gradient) * w)

  def ref(c, tau, b):
    return jnp.sum(reference_lif(c + b, tau) * w)

  g_lib = jax.grad(lib, argnums=(0, 1, 2))(currents, tau, bias)
  g_ref = jax.grad(ref, argnums=(0, 1, 2))(currents, tau, bias)
  for name, a, b in zip(["currents", "tau", "bias"], g_lib, g_ref):
    assert a.shape == b.shape, name
    assert np.max(np.abs(np.asarray(b))) > 0, name
    assert _rel_err(a, b) < 1e-5, (name, _rel_err(a, b))


def test_bpsr_equals_autodiff_under_vmap_and_grad_of_jit():
  currents, tau, rec, w = _inputs(3, 40, (5, 12), True)

  def per_example_grad(gradient):
    # c: [T, N], one example; vmapped over the batch axis 1 of currents.
    f = lambda c, tau, rec: jnp.sum(
        bpsr_jax.lif(c, tau, recurrent_kernel=rec, gradient=gradient))
    return jax.vmap(jax.grad(f, argnums=(0, 1, 2)), in_axes=(1, None, None))

  def grad_of_jit(gradient):
    f = jax.jit(lambda c, tau, rec: jnp.sum(
        bpsr_jax.lif(c, tau, recurrent_kernel=rec, gradient=gradient) * w))
    return jax.grad(f, argnums=(0, 1, 2))

  for make in (per_example_grad, grad_of_jit):
    ga = make("bpsr")(currents, tau, rec)
    gb = make("autodiff")(currents, tau, rec)
    for a, b in zip(ga, gb):
      assert a.shape == b.shape
      assert _rel_err(a, b) < 1e-5


def test_gradient_names_select_their_implementation():
  # "bpsr" is one custom_vjp over the whole sequence; "autodiff" is a lax.scan whose steps
  # call the spike's own custom_vjp.
  c = jnp.ones((4, 2, 3))

  def top_level(gradient):
    jaxpr = jax.make_jaxpr(lambda c: bpsr_jax.lif(c, 0.5, gradient=gradient))(c)
    return [e.primitive.name for e in jaxpr.jaxpr.eqns]

  assert top_level("bpsr") == ["custom_vjp_call"]
  assert "scan" in top_level("autodiff") and "custom_vjp_call" not in top_level("autodiff")


def test_potentials_returned_and_differentiable():
  currents, tau, rec, w = _inputs(5, 20, (3, 6), True)
  s, u = bpsr_jax.lif(currents, tau, recurrent_kernel=rec, return_potentials=True)
  np.testing.assert_array_equal(s, (u >= 1.0).astype(s.dtype))
  # Hand check of eq. 1 at t = 0 and t = 1.
  np.testing.assert_allclose(u[0], currents[0], rtol=1e-6)
  np.testing.assert_allclose(
      u[1], tau * u[0] * (1 - s[0]) + currents[1] + s[0] @ rec, rtol=1e-5, atol=1e-6)

  def f(gradient):
    def loss(c, tau, rec):
      s, u = bpsr_jax.lif(c, tau, recurrent_kernel=rec, gradient=gradient,
                          return_potentials=True)
      return jnp.sum(s * w) + 0.1 * jnp.sum(u**2)
    return loss

  ga = jax.grad(f("bpsr"), argnums=(0, 1, 2))(currents, tau, rec)
  gb = jax.grad(f("autodiff"), argnums=(0, 1, 2))(currents, tau, rec)
  for a, b in zip(ga, gb):
    assert _rel_err(a, b) < 1e-5


def test_hand_computed_flat_sequence():
  # One neuron, tau = 0.5, threshold 1: currents 0.6, 0.6, 0.6, 0.0
  # u1 = 0.6 (no spike); u2 = 0.3 + 0.6 = 0.9; u3 = 0.45 + 0.6 = 1.05 -> spike;
  # u4 = 0.5 * 1.05 * 0 + 0 = 0 (hard reset).
  c = jnp.array([0.6, 0.6, 0.6, 0.0]).reshape(4, 1)
  s, u = bpsr_jax.lif(c, jnp.array([0.5]), return_potentials=True)
  np.testing.assert_allclose(u[:, 0], [0.6, 0.9, 1.05, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(s[:, 0], [0, 0, 1, 0])


def test_surrogate_closed_form():
  v = jnp.linspace(-3, 3, 61)
  for alpha in [0.2, 0.5, 1.0]:
    expected = np.exp(-np.asarray(v, np.float64)**2 / (2 * alpha**2)) / (np.sqrt(2 * np.pi) * alpha)
    np.testing.assert_allclose(neuron.surrogate(v, alpha), expected, rtol=2e-5, atol=1e-30)
    g = jax.vmap(jax.grad(lambda x: bpsr_jax.spike(x, alpha)))(v)
    np.testing.assert_allclose(g, expected, rtol=2e-5, atol=1e-30)
  np.testing.assert_array_equal(bpsr_jax.spike(jnp.array([-1e-7, 0.0, 1e-7])), [0, 1, 1])


def test_bfloat16_keeps_dtype():
  c = (0.6 * jnp.ones((5, 2, 3))).astype(jnp.bfloat16)
  s = bpsr_jax.lif(c, jnp.full((3,), 0.5))
  assert s.dtype == jnp.bfloat16
  g = jax.grad(lambda c: jnp.sum(bpsr_jax.lif(c, 0.5).astype(jnp.float32)))(c)
  assert g.dtype == jnp.bfloat16


@pytest.mark.parametrize("bad,match", [
    (dict(currents=jnp.ones((5,))), "at least 2 dims"),
    (dict(tau=jnp.ones((4,))), "does not broadcast"),
    (dict(recurrent_kernel=jnp.ones((3, 4))), "square"),
    (dict(recurrent_kernel=jnp.ones((4, 4))), "does not match"),
    (dict(gradient="stbp"), "unknown gradient"),
    (dict(bias=jnp.ones((4,))), "bias of shape"),
])
def test_bad_input_errors(bad, match):
  kwargs = dict(currents=jnp.ones((5, 2, 3)), tau=0.5)
  kwargs.update(bad)
  currents = kwargs.pop("currents")
  tau = kwargs.pop("tau")
  with pytest.raises(ValueError, match=match):
    bpsr_jax.lif(currents, tau, **kwargs)


def test_integer_currents_rejected():
  with pytest.raises(TypeError, match="floating-point"):
    bpsr_jax.lif(jnp.ones((3, 2), jnp.int32), 0.5)


# --------------------------------------------------------------------------------------
# Typed errors for bad arguments (issue 14).

from bpsr_jax.errors import ConfigError  # noqa: E402  (kept with its section)


def test_lif_with_zero_time_steps_is_a_config_error():
  with pytest.raises(ConfigError, match=r"T >= 1 time steps, got shape \(0, 2, 3\)"):
    neuron.lif(jnp.zeros((0, 2, 3)), 0.5)


@pytest.mark.parametrize("alpha", [0.0, -0.5, float("nan"), float("inf")])
def test_non_positive_alpha_is_a_config_error_at_call_time(alpha):
  # alpha=0 would give a NaN surrogate gradient: exp(-v^2 / 0) / 0.
  with pytest.raises(ConfigError, match="alpha .* must be a positive finite float"):
    neuron.lif(jnp.ones((3, 2, 4)), 0.5, alpha=alpha)
  with pytest.raises(ConfigError, match="alpha"):
    neuron.spike(jnp.ones(3), alpha)


@pytest.mark.parametrize("tau", [2.0, -0.1, float("nan"), np.array([0.5, 1.5, 0.2, 0.1])])
def test_concrete_tau_outside_0_1_is_a_config_error(tau):
  with pytest.raises(ConfigError, match=r"tau \(the leak factor\) must lie in \[0, 1\]"):
    neuron.lif(jnp.ones((3, 2, 4)), tau)


def test_jax_array_tau_is_not_checked():
  """No host sync: a jax tau (traced in the train step) goes through; the layers check
  tau_init and constraints.validate_params checks a whole param tree."""
  out = jax.jit(lambda t: neuron.lif(jnp.full((3, 2, 4), 0.6), t))(jnp.full(4, 2.0))
  # tau = 2 doubles the potential: 0.6, then 2 * 0.6 + 0.6 = 1.8 >= 1 spikes at step 2.
  np.testing.assert_array_equal(out[:, 0, 0], [0.0, 1.0, 0.0])
  neuron.lif(jnp.ones((3, 2, 4)), jnp.full(4, 2.0))  # eager jax array: not read back
  for tau in (0.0, 1.0, np.array([0.0, 0.5, 1.0, 0.25])):  # the bounds are valid
    neuron.lif(jnp.ones((3, 2, 4)), tau)


# --------------------------------------------------------------------------------------
# gradient="band" (issue 12, item 3): bpsr's backward with dL/du^t zeroed outside the band
# |u^t - U_th| < band_width (Perez-Nieves & Goodman 2021).


def _make_band_gate(threshold, band_width):
  """Identity on ``u`` whose backward keeps ``g`` only where ``|u - thr| < band_width``:
  put on each step's potential, it zeroes dL/du^t (every path through u^t) outside."""

  @jax.custom_vjp
  def gate(u):
    return u

  def fwd(u):
    return u, u

  def bwd(u, g):
    return (g * (np.abs(u - threshold) < band_width),)

  gate.defvjp(fwd, bwd)
  return gate


def reference_band_lif(currents, tau, rec=None, threshold=1.0, alpha=0.5, band_width=0.5):
  """Python-loop LIF as :func:`reference_lif`, with the band gate on each potential;
  returns the spikes and the potentials ``[T, ...]``."""
  heaviside = _make_ref_heaviside(alpha)
  band = _make_band_gate(threshold, band_width)
  u = jnp.zeros(currents.shape[1:], currents.dtype)
  s = jnp.zeros(currents.shape[1:], currents.dtype)
  spikes, potentials = [], []
  for t in range(currents.shape[0]):
    new_u = tau * u * (1.0 - jax.lax.stop_gradient(s)) + currents[t]
    if rec is not None:
      new_u = new_u + jnp.matmul(s, rec)
    u = band(new_u)
    s = heaviside(u - threshold)
    spikes.append(s)
    potentials.append(u)
  return jnp.stack(spikes), jnp.stack(potentials)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("potential_loss", [False, True])
def test_band_gradient_matches_band_reference(recurrent, potential_loss):
  # U_th = 0.7, alpha = 0.3, band 0.4, with a bias; a loss of the spikes and (optionally)
  # of the potentials, whose cotangent is masked like the rest of dL/du.
  threshold, alpha, width = 0.7, 0.3, 0.4
  currents, tau, rec, w = _inputs(31, 15, (3, 10), recurrent)
  b = 0.1 * jax.random.normal(jax.random.PRNGKey(4), (10,))
  wu = 0.2 * jax.random.normal(jax.random.PRNGKey(5), currents.shape)
  k = 1.0 if potential_loss else 0.0

  def lib(c, tau, rec, b):
    s, u = bpsr_jax.lif(c, tau, recurrent_kernel=rec, bias=b, threshold=threshold,
                        alpha=alpha, gradient="band", band_width=width,
                        return_potentials=True)
    return jnp.sum(s * w) + k * jnp.sum(u * wu)

  def ref(c, tau, rec, b):
    s, u = reference_band_lif(c + b, tau, rec, threshold, alpha, width)
    return jnp.sum(s * w) + k * jnp.sum(u * wu)

  s_lib = bpsr_jax.lif(currents, tau, recurrent_kernel=rec, bias=b, threshold=threshold,
                       alpha=alpha, gradient="band", band_width=width)
  s_ref, u_ref = reference_band_lif(currents + b, tau, rec, threshold, alpha, width)
  np.testing.assert_array_equal(s_lib, s_ref)  # the forward is bpsr's
  inside = np.abs(np.asarray(u_ref) - threshold) < width
  assert 0.2 < inside.mean() < 0.8  # the band keeps some deltas and drops others
  argnums = (0, 1, 3) + ((2,) if recurrent else ())
  g_lib = jax.jit(jax.grad(lib, argnums=argnums))(currents, tau, rec, b)
  g_ref = jax.grad(ref, argnums=argnums)(currents, tau, rec, b)
  for name, a, r in zip(["currents", "tau", "bias", "recurrent_kernel"], g_lib, g_ref):
    assert a.shape == r.shape, name
    assert np.max(np.abs(np.asarray(r))) > 0, name
    assert _rel_err(a, r) < 1e-5, (name, _rel_err(a, r))
  # dL/dcurrents is delta itself: exactly zero outside the band.
  assert np.all(np.asarray(g_lib[0])[~inside] == 0)


@pytest.mark.parametrize("recurrent", [False, True])
def test_band_differs_from_bpsr_and_equals_it_with_a_wide_band(recurrent):
  currents, tau, rec, w = _inputs(37, 20, (4, 12), recurrent)

  def grads(gradient, width=0.5):
    f = lambda c, tau, rec: jnp.sum(bpsr_jax.lif(
        c, tau, recurrent_kernel=rec, gradient=gradient, band_width=width) * w)
    return jax.jit(jax.grad(f, argnums=(0, 1, 2) if recurrent else (0, 1)))(
        currents, tau, rec)

  exact, narrow, wide = grads("bpsr"), grads("band", 0.3), grads("band", 1e6)
  for name, e, n, wd in zip(["currents", "tau", "recurrent_kernel"], exact, narrow, wide):
    assert np.max(np.abs(np.asarray(e))) > 0, name
    assert _rel_err(wd, e) < 1e-6, (name, _rel_err(wd, e))  # nothing outside the band
    assert _rel_err(n, e) > 0.05, (name, _rel_err(n, e))  # the band drops terms


def test_band_is_one_custom_vjp_and_band_width_is_checked():
  c = jnp.ones((4, 2, 3))
  jaxpr = jax.make_jaxpr(lambda c: bpsr_jax.lif(c, 0.5, gradient="band"))(c)
  assert [e.primitive.name for e in jaxpr.jaxpr.eqns] == ["custom_vjp_call"]
  for width in (0.0, -0.5, float("nan"), float("inf")):
    with pytest.raises(ConfigError, match="band_width .* must be a positive finite float"):
      neuron.lif(c, 0.5, gradient="band", band_width=width)
