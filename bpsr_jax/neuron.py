"""The spiking neuron: Heaviside spikes with a Gaussian surrogate and the LIF layer.

This module is the functional core of bpsr_jax. Everything is a pure function on arrays,
time-major: ``[T, ...batch/spatial dims..., N]``.

The heterogeneous leaky integrate-and-fire (LIF) neuron of BPSR (eq. 1-3)::

    u^t = tau * u^(t-1) * (1 - s^(t-1)) + I^t + s^(t-1) @ R
    s^t = H(u^t - U_th)

with ``u^0 = s^0 = 0``, ``I^t = W x^t + b`` the input current of step ``t`` (computed by the
caller once for all steps: one matmul or conv over ``T * batch``), ``R`` the optional
recurrent (intra-layer) kernel and ``H`` the Heaviside step whose derivative is replaced by
a Gaussian of width ``alpha``.

Three gradients are offered:

* ``"bpsr"``: the paper's iterative gradient (eq. 6-12) as one ``jax.custom_vjp`` over the
  whole sequence. The forward pass keeps only the membrane potentials ``u`` (one float per
  neuron per step, the physical floor: spikes are ``u >= U_th``) and the backward pass is a
  single reverse loop over the steps (``lax.fori_loop``, writing ``dL/du`` over the incoming
  cotangent in place) that also accumulates ``d tau`` and ``d R``.
* ``"autodiff"``: the same dynamics as a ``lax.scan`` differentiated by JAX, with the
  spike's surrogate from :func:`spike` and the reset gate under ``stop_gradient``. This is
  STBP / BPTT, the baseline. Both give the same gradients to float round-off.
* ``"band"``: an approximation, the sparse backward of Perez-Nieves & Goodman ("Sparse
  Spiking Gradient Descent", NeurIPS 2021). The forward pass is ``"bpsr"``'s; the
  backward is ``"bpsr"``'s reverse loop with ``dL/du^t`` set to zero wherever the neuron
  is outside the band ``|u^t - U_th| < band_width`` at that step. Both the surrogate path
  and the temporal (leak) path stop there, and so do the recurrent, tau, bias and weight
  gradients that flow through that neuron at that step.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax.errors import ConfigError

from bpsr_jax import spmm

Array = jax.Array

#: Default width of the Gaussian surrogate (in units of membrane potential). With the
#: default threshold 1.0 the surrogate peaks at ``1 / (sqrt(2 pi) * 0.5) ~= 0.80``.
DEFAULT_ALPHA = 0.5

#: Default half-width of the band of ``gradient="band"``, in units of membrane potential
#: (like ``alpha``; 1.5 U_th at the default threshold 1), 3 surrogate widths: the
#: surrogate is 0.011 of its peak at the band's edge. Measured on the MNIST main job
#: (README, "Approximate sparse backward"): 1.5 learns as bpsr does (96.96 % against
#: 97.01 % after 3 epochs); 0.5 (one surrogate width, where the surrogate is still 0.61 of
#: its peak) does not learn at all: the zero biases leave the upper layers at u = 0, outside
#: the band, so no delta reaches them. A narrower band keeps fewer deltas (0.04-0.21 of
#: them at 0.5 on the trained model, 0.23-0.55 at 1.5).
DEFAULT_BAND_WIDTH = 1.5

GRADIENTS = ("bpsr", "band", "autodiff")


def surrogate(v: Array, alpha: float = DEFAULT_ALPHA) -> Array:
  """Gaussian surrogate derivative of the Heaviside step.

  Args:
    v: any shape; the distance to threshold ``u - U_th``.
    alpha: width of the Gaussian.

  Returns:
    ``exp(-v^2 / (2 alpha^2)) / (sqrt(2 pi) alpha)``, same shape and dtype as ``v``.
  """
  alpha = jnp.asarray(alpha, dtype=v.dtype)
  return jnp.exp(-(v * v) / (2 * alpha * alpha)) / (math.sqrt(2 * math.pi) * alpha)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _spike(v, alpha):
  return (v >= 0).astype(v.dtype)


def _spike_fwd(v, alpha):
  return _spike(v, alpha), v


def _spike_bwd(alpha, v, g):
  return (g * surrogate(v, alpha),)


_spike.defvjp(_spike_fwd, _spike_bwd)


def spike(v: Array, alpha: float = DEFAULT_ALPHA) -> Array:
  """Heaviside spike ``1 if v >= 0 else 0`` with a Gaussian surrogate gradient.

  Args:
    v: any shape, floating point; the distance to threshold ``u - U_th``.
    alpha: width of the Gaussian surrogate (a static positive Python float; else a
      ConfigError).

  Returns:
    Spikes in {0, 1}, same shape and dtype as ``v``. Its derivative is
    :func:`surrogate` ``(v, alpha)``.
  """
  v = jnp.asarray(v)
  if not jnp.issubdtype(v.dtype, jnp.floating):
    raise TypeError(f"spike expects a floating-point array, got dtype {v.dtype}")
  return _spike(v, _check_alpha(alpha))


# ---------------------------------------------------------------------------------------
# Helpers and the forward loop of gradient="bpsr".


def _flat_leading(x: Array) -> Array:
  """``[..., N]`` -> ``[prod(...), N]``."""
  return x.reshape((-1, x.shape[-1]))


def _sum_to_shape(x: Array, shape: Tuple[int, ...]) -> Array:
  """Sums ``x`` over the axes that broadcasting added or expanded to reach its shape."""
  lead = x.ndim - len(shape)
  x = jnp.sum(x, axis=tuple(range(lead))) if lead > 0 else x
  axes = tuple(i for i, d in enumerate(shape) if d == 1 and x.shape[i] != 1)
  if axes:
    x = jnp.sum(x, axis=axes, keepdims=True)
  return x.reshape(shape)


def _recurrent_current(gate_prev: Array, recurrent_kernel: Array) -> Array:
  """``s^(t-1) @ R`` from the reset gate ``1 - s^(t-1)`` ``[..., N]``: one row of ``R``
  per spike where the spikes are sparse (:func:`bpsr_jax.spmm.spike_matmul`)."""
  bits = _flat_leading(gate_prev) == 0
  return spmm.spike_matmul(bits, recurrent_kernel).reshape(gate_prev.shape)


def _write_step(buf: Array, t: Array, value: Array) -> Array:
  """``buf.at[t].set(value)`` as a plain dynamic-update-slice (``t`` is in range), which
  XLA performs in place; the scatter behind ``.at[t].set`` adds a bounds-check select
  that can make XLA copy the whole buffer in every step."""
  return jax.lax.dynamic_update_index_in_dim(buf, value, t, 0)


def _forward_potentials(currents, tau, recurrent_kernel, bias, threshold):
  """Runs eq. 1-2 step by step; returns the potentials ``u`` ``[T, ..., N]``.

  The loop writes ``u^t`` over ``currents[t]`` once it has read it, so XLA updates the
  currents' buffer in place instead of filling a fresh output buffer (measured 1.4x
  faster than ``lax.scan`` with stacked outputs for a ``[80, 32, 800]`` layer on a CPU).
  The bias is added inside the loop, which saves the separate pass over ``[T, ..., N]``
  that ``currents + bias`` would cost.
  """
  dtype = currents.dtype
  thr = jnp.asarray(threshold, dtype)

  def body(t, carry):
    buf, u_prev, gate_prev = carry  # gate = 1 - s of the previous step
    current = buf[t] if bias is None else buf[t] + bias  # rounds as currents + bias
    u = tau * u_prev * gate_prev + current
    if recurrent_kernel is not None:
      u = u + _recurrent_current(gate_prev, recurrent_kernel)
    buf = _write_step(buf, t, u)
    # The carry is read back from the written buffer: XLA would otherwise recompute u
    # from buf[t] inside each of its consumers, which would then have to read the old
    # buffer after the in-place write, and XLA copies the whole buffer in every step.
    u = buf[t]
    return buf, u, (u < thr).astype(dtype)

  def loop():
    zeros = jnp.zeros(currents.shape[1:], dtype)
    u, _, _ = jax.lax.fori_loop(0, currents.shape[0], body,
                                (currents, zeros, jnp.ones_like(zeros)))
    return u

  if recurrent_kernel is None:
    return loop()
  # A recurrent layer's loop as one spike-sparse kernel call on a CPU (one callback per
  # layer, not one per step), the loop above where the spikes are dense or elsewhere.
  return spmm.recurrent_potentials(currents, tau, recurrent_kernel, bias, threshold, loop)


# ---------------------------------------------------------------------------------------
# gradient="bpsr": one custom_vjp over the whole sequence.


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _lif_bpsr(currents, tau, recurrent_kernel, bias, threshold, alpha, with_potentials,
              band_width):
  """``band_width``: None for the exact gradient, else the band of ``gradient="band"``."""
  u = _forward_potentials(currents, tau, recurrent_kernel, bias, threshold)
  s = (u >= jnp.asarray(threshold, u.dtype)).astype(u.dtype)
  return (s, u) if with_potentials else s


def _lif_bpsr_fwd(currents, tau, recurrent_kernel, bias, threshold, alpha,
                  with_potentials, band_width):
  u = _forward_potentials(currents, tau, recurrent_kernel, bias, threshold)
  s = (u >= jnp.asarray(threshold, u.dtype)).astype(u.dtype)
  out = (s, u) if with_potentials else s
  # Residuals: the potentials (spikes are recomputed from them), tau, R and the bias
  # (only its shape and dtype are used).
  return out, (u, tau, recurrent_kernel, bias)


def _lif_bpsr_bwd(threshold, alpha, with_potentials, band_width, residuals, cotangent):
  u, tau, recurrent_kernel, bias = residuals
  if with_potentials:
    g_s, g_u = cotangent
  else:
    g_s, g_u = cotangent, None
  dtype = u.dtype
  thr = jnp.asarray(threshold, dtype)
  tau_b = jnp.asarray(tau, dtype)
  recurrent = recurrent_kernel is not None
  with_bias = bias is not None
  n = u.shape[-1]
  step_shape = u.shape[1:]
  delta0 = jnp.zeros(step_shape, dtype)
  # d tau is accumulated per element of a step ([..., N]) and reduced to tau's shape
  # once after the loop: a reduction over the batch in every step costs more than the
  # rest of the step's arithmetic (measured on a CPU: 1.2x faster loop for
  # [80, 128, 800]).
  dtau0 = jnp.zeros(step_shape, dtype)

  num_steps = u.shape[0]
  rec_t = recurrent_kernel.T if recurrent and band_width is not None else None

  def body(i, carry):
    # Step t = T-1-i; the carry holds delta^(t+1) = dL/du^(t+1) and the running sums.
    # delta^t overwrites dL/ds^t in its buffer once read (in place, see
    # _forward_potentials).
    buf, delta_next, dtau = carry
    t = num_steps - 1 - i
    u_t = u[t]
    s_t = (u_t >= thr).astype(dtype)
    gate = 1 - s_t
    # eq. 10 for step t+1: d u^(t+1) / d tau = u^t (1 - s^t).
    dtau = dtau + delta_next * u_t * gate
    # dL/ds^t: from the loss / next layer, and (eq. 11) through the recurrent synapses.
    ds = buf[t]
    if recurrent and band_width is not None:
      # The band's delta is mostly zero: one row of R^T per non-zero entry where it is
      # sparse enough (bpsr_jax.spmm.sparse_matmul).
      ds = ds + spmm.sparse_matmul(_flat_leading(delta_next), rec_t).reshape(ds.shape)
    elif recurrent:
      # delta^(t+1) @ R^T, contracting the post-synaptic axis of R in place.
      ds = ds + jax.lax.dot_general(
          delta_next, recurrent_kernel, (((delta_next.ndim - 1,), (1,)), ((), ())))
    # eq. 7 / 11: the surrogate path plus the leak path (reset gate carries no gradient).
    delta = ds * surrogate(u_t - thr, alpha) + delta_next * tau_b * gate
    if g_u is not None:
      delta = delta + g_u[t]
    if band_width is not None:
      # gradient="band": no delta outside the band around threshold.
      delta = jnp.where(jnp.abs(u_t - thr) < band_width, delta, 0)
    return _write_step(buf, t, delta), delta, dtau

  delta, _, dtau = jax.lax.fori_loop(
      0, num_steps, body, (jnp.asarray(g_s, dtype), delta0, dtau0))
  drec = None
  if recurrent:
    # eq. 12: d u^(t+1) / d R[k, i] = s_k^t, summed over the steps and the batch: one
    # product over all (T - 1) * batch rows after the loop, adding one delta row per
    # spike where the spikes are sparse (bpsr_jax.spmm.spike_outer).
    drec = spmm.spike_outer(_flat_leading(u[:-1] >= thr), _flat_leading(delta[1:]))
  dtau = _sum_to_shape(dtau, jnp.shape(tau)).astype(jnp.result_type(tau))
  # d u^t / d b = 1: one reduction of the whole delta buffer after the loop (cheaper
  # than a running sum in the loop, which reads and writes an accumulator every step).
  db = (_sum_to_shape(delta, jnp.shape(bias)).astype(jnp.result_type(bias))
        if with_bias else None)
  # eq. 8-9 are the caller's business: delta is dL/d currents, and the currents are
  # W x, so JAX turns it into dW and dx with one contraction over T * batch.
  return delta, dtau, drec, db


_lif_bpsr.defvjp(_lif_bpsr_fwd, _lif_bpsr_bwd)


# ---------------------------------------------------------------------------------------
# gradient="autodiff": STBP / BPTT baseline.


def _lif_autodiff(currents, tau, recurrent_kernel, bias, threshold, alpha,
                  with_potentials):
  dtype = currents.dtype
  if bias is not None:
    currents = currents + bias
  zeros = jnp.zeros(currents.shape[1:], dtype)

  def step(carry, current):
    u_prev, s_prev = carry
    u = tau * u_prev * (1 - jax.lax.stop_gradient(s_prev)) + current
    if recurrent_kernel is not None:
      u = u + s_prev @ recurrent_kernel
    s = spike(u - threshold, alpha)
    return (u, s), (s, u)

  _, (s, u) = jax.lax.scan(step, (zeros, zeros), currents)
  return (s, u) if with_potentials else s


# ---------------------------------------------------------------------------------------
# Public entry point.


def _check_broadcasts(name, value, feature_shape, also):
  """Raises unless ``value`` broadcasts against the per-step shape ``[..., N]``."""
  shape = jnp.shape(value)
  try:
    ok = jnp.broadcast_shapes(shape, feature_shape) == feature_shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"{name} of shape {shape} does not broadcast against the per-step current shape "
        f"{feature_shape} (expected {also}[N] = [{feature_shape[-1]}], or a shape "
        "broadcastable to [..., N])")


def _check_alpha(alpha) -> float:
  """``alpha`` as a float; a width <= 0 or not finite makes every gradient NaN or 0."""
  if isinstance(alpha, jax.core.Tracer):
    raise ConfigError("alpha (the surrogate width) must be a static Python float, got a "
                      "traced value")
  alpha = float(alpha)
  if not (math.isfinite(alpha) and alpha > 0):
    raise ConfigError(f"alpha (the surrogate width) must be a positive finite float, got "
                      f"{alpha} (alpha=0 makes the surrogate gradient NaN)")
  return alpha


def _check_band_width(band_width) -> float:
  """``band_width`` as a float; a width <= 0 or not finite is a ConfigError."""
  if isinstance(band_width, jax.core.Tracer):
    raise ConfigError("band_width must be a static Python float, got a traced value")
  band_width = float(band_width)
  if not (math.isfinite(band_width) and band_width > 0):
    raise ConfigError(f"band_width (gradient='band') must be a positive finite float, got "
                      f"{band_width}")
  return band_width


def _check_tau_range(tau):
  """Raises unless a host-side ``tau`` (Python number, numpy array) lies in [0, 1].

  A jax array is not checked here: inside ``jit`` (the training step) it is traced, and
  reading a device array would make every eager call wait for the device. The layers
  check ``tau_init`` and :func:`bpsr_jax.constraints.validate_params` checks a whole
  parameter tree once, where it is concrete (after init or loading).
  """
  if isinstance(tau, (jax.Array, jax.core.Tracer)):
    return
  t = np.asarray(tau, dtype=np.float64)
  bad = ~((t >= 0) & (t <= 1))  # NaN fails both comparisons
  if bad.any():
    raise ConfigError(f"tau (the leak factor) must lie in [0, 1], got {t[bad].flat[0]} "
                      f"({int(bad.sum())} of {t.size} values outside)")


def _validate(currents, tau, recurrent_kernel, bias, gradient):
  if gradient not in GRADIENTS:
    raise ValueError(
        f"unknown gradient {gradient!r}: expected one of {', '.join(GRADIENTS)}")
  if not hasattr(currents, "shape") or currents.ndim < 2:
    raise ValueError(
        "lif expects currents of shape [T, ..., N] (at least 2 dims: time and neurons), "
        f"got shape {getattr(currents, 'shape', None)}")
  if not jnp.issubdtype(currents.dtype, jnp.floating):
    raise TypeError(f"lif expects floating-point currents, got dtype {currents.dtype}")
  if currents.shape[0] == 0:
    raise ConfigError(f"lif expects currents [T, ..., N] with T >= 1 time steps, got shape "
                      f"{tuple(currents.shape)}")
  feature_shape = tuple(currents.shape[1:])
  _check_broadcasts("tau", tau, feature_shape, "a scalar, ")
  if bias is not None:
    _check_broadcasts("bias", bias, feature_shape, "")
  if recurrent_kernel is not None:
    n = feature_shape[-1]
    rshape = jnp.shape(recurrent_kernel)
    if len(rshape) != 2 or rshape[0] != rshape[1]:
      raise ValueError(
          f"recurrent_kernel must be a square [N, N] matrix, got shape {rshape}")
    if rshape[0] != n:
      raise ValueError(
          f"recurrent_kernel of shape {rshape} does not match the layer's N = {n} neurons "
          f"(currents shape {tuple(currents.shape)}); expected [{n}, {n}]")


def lif(
    currents: Array,
    tau: Union[float, Array],
    *,
    threshold: float = 1.0,
    alpha: float = DEFAULT_ALPHA,
    recurrent_kernel: Optional[Array] = None,
    bias: Optional[Array] = None,
    gradient: str = "bpsr",
    band_width: float = DEFAULT_BAND_WIDTH,
    return_potentials: bool = False,
) -> Union[Array, Tuple[Array, Array]]:
  """Heterogeneous LIF layer over a whole sequence (BPSR eq. 1-3).

  Args:
    currents: ``[T, ...batch/spatial dims..., N]`` floating point, the input current
      ``W x^t`` (``+ b`` unless ``bias`` is given) of every step (the matmul or conv
      runs once over all steps outside this function; its gradient is plain autodiff
      from ``dL/dcurrents``).
    tau: leak factor in [0, 1], broadcasting against ``[..., N]``: a per-neuron vector
      ``[N]`` (heterogeneous) or a scalar (homogeneous, e.g. a conv layer's shared tau).
    threshold: firing threshold ``U_th`` (static).
    alpha: width of the Gaussian surrogate (static).
    recurrent_kernel: ``[N, N]`` intra-layer synapses, ``recurrent_kernel[k, i]`` from
      neuron k to neuron i; the step adds ``s^(t-1) @ recurrent_kernel``. None for a
      flat layer.
    bias: optional constant current added at every step, broadcasting against
      ``[..., N]`` (a layer's bias ``[N]``). The same as passing ``currents + bias``,
      but with ``gradient="bpsr"`` it is added inside the forward loop, which saves a
      pass over ``[T, ..., N]``.
    gradient: ``"bpsr"`` (iterative reverse-scan gradient, the default),
      ``"autodiff"`` (JAX through the scan: STBP / BPTT) or ``"band"`` (``"bpsr"`` with
      ``dL/du`` zeroed outside ``|u - threshold| < band_width``: approximate).
    band_width: half-width of the band of ``gradient="band"``, in units of membrane
      potential (static; :data:`DEFAULT_BAND_WIDTH`, the default surrogate width).
      Ignored by the other gradients, but validated.
    return_potentials: also return the membrane potentials.

  Returns:
    Spikes in {0, 1} with the shape and dtype of ``currents``; with
    ``return_potentials=True`` the pair ``(spikes, potentials)``, both ``[T, ..., N]``.
    The potentials are the values after integration and before reset (a spike at step
    t means ``u^t >= threshold``).

  Raises:
    ValueError: currents with fewer than 2 dims, a tau or bias that does not broadcast, a
      non-square or mismatched recurrent kernel, or an unknown gradient name.
    ConfigError: (a ValueError) zero time steps; ``alpha`` or ``band_width`` not a
      positive finite static float; a host-side ``tau`` (Python number or numpy array)
      outside [0, 1] or NaN (a jax array, traced or not, is not checked: no host sync;
      see :func:`bpsr_jax.constraints.validate_params`).
    TypeError: non-floating currents.
  """
  currents = jnp.asarray(currents)
  _validate(currents, tau, recurrent_kernel, bias, gradient)
  _check_tau_range(tau)
  alpha = _check_alpha(alpha)
  band_width = _check_band_width(band_width)
  dtype = currents.dtype
  tau = jnp.asarray(tau, dtype) if not hasattr(tau, "dtype") else tau.astype(dtype)
  if recurrent_kernel is not None:
    recurrent_kernel = jnp.asarray(recurrent_kernel).astype(dtype)
  if bias is not None:
    bias = jnp.asarray(bias).astype(dtype)
  threshold, alpha = float(threshold), float(alpha)
  if gradient == "autodiff":
    return _lif_autodiff(currents, tau, recurrent_kernel, bias, threshold, alpha,
                         bool(return_potentials))
  return _lif_bpsr(currents, tau, recurrent_kernel, bias, threshold, alpha,
                   bool(return_potentials), band_width if gradient == "band" else None)
