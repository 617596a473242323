"""Integer-only inference of a post-training-quantized model (:mod:`bpsr_jax.quantize`).

Units are :mod:`bpsr_jax.quantize`'s: ``n = bits``, ``step = U_th / 2^(n-1)`` (one unit
of the fixed-point weights), ``K = max_tau_shift``. The membrane potential is an
``int32``. One step of a neuron::

    v^t = (s^(t-1) ? 0 : leak(v^(t-1)))
          + ((sum_j q_ij x_j^t + q_i + sum_k r_ki s_k^(t-1)) << g)
    s^t = v^t >= 2^(n-1+g)

in units of ``ulp = step / 2^g``, with ``g`` = :attr:`bpsr_jax.QuantInfo.guard_bits` extra
fraction bits: ``g = 0`` for ``tau_terms = 1``, else ``g = 17 - n`` (the potential has
16 fraction bits, ``ulp = U_th / 2^16``, and holds ``|u| < 2^15 U_th``). With binary
inputs the sums are additions of selected weights (computed here as int32 matrix
products with a {0, 1} operand), and ``>>`` is an arithmetic shift: integer additions
and shifts only.

Exactness, ``tau_terms = 1``: since ``floor(floor(u) / 2^k) = floor(u / 2^k)`` for every
real ``u`` and the currents are integers, ``v^t = floor(u^t / step)`` where ``u^t`` is the
potential of the float model run, in exact arithmetic, with the dequantized parameters
(:func:`bpsr_jax.dequantize_params`); and as the threshold is an integer, the spikes are
*identical*. A float32 run of that model rounds its potentials to 24 significant bits;
it can differ only when a potential converges onto the threshold so closely (within
``2^-24 U_th``, i.e. after ~24 leak steps with no input event) that float32 rounds it up
to the threshold. Use the integer path as the reference of the quantized network.

Exactness, ``tau_terms >= 2``: ``floor(tau u)`` is a function of ``floor(u)`` only for
``tau = 1/N``, and the exact potential gains up to ``K`` fraction bits per step, so no
integer state of bounded width follows it exactly; the integer path is the float model
up to a bounded, one-sided error instead. Every term of the leak is rounded down (a
negative term as ``(-v) >> k``), so while the spikes of both runs agree,
``0 <= u^t / ulp - v^t < d (1 + tau + ... + tau^(t'-1))``, with ``d <= tau_terms`` the
neuron's number of terms and ``t'`` the leak steps since its last reset (below
``32 ulp = 2^-11 U_th`` for two terms and ``T = 16``). The integer neuron therefore never
fires before the exact float model does, and the first spike that differs is an
exact-model spike with a potential in ``[U_th, U_th + d t' ulp)``: the same kind of gap
as float32 rounding (which the float model has anyway, at ``2^-24 U_th``), and rare in
practice: on the gas-drift study the output spikes of both paths agree to 100.000 %.
The integer path is still the reference of the quantized network.

Example::

    qparams, info = bpsr_jax.quantize_params(params, bits=8)   # tau_terms=2
    out_spikes, hidden = bpsr_jax.integer_apply(qparams, info, "r81-fc36-fc10", x)
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from bpsr_jax import models
from bpsr_jax import quantize
from bpsr_jax.errors import ConfigError

Array = jax.Array
PyTree = Any


def int_dot(x: Array, w: Array) -> Array:
  """``x @ w`` for a {0, 1} int32 ``x``: a sum of selected weights, accumulated in int32."""
  return jax.lax.dot_general(
      x, w.astype(jnp.int32), (((x.ndim - 1,), (0,)), ((), ())),
      preferred_element_type=jnp.int32)


def signed_digits(numerator: Array, max_tau_shift: int):
  """The non-adjacent form of ``M`` in ``[0, 2^K]`` as ``[(shift, digit)]``.

  ``shift = K - j`` for the digit ``d_j`` in {-1, 0, 1} of ``2^j``: ``M = sum_j d_j 2^j``
  with the fewest nonzero digits, so at most ``tau_terms`` of them.
  """
  m = jnp.asarray(numerator, jnp.int32)
  out = []
  for j in range(max_tau_shift + 1):
    d = jnp.where((m & 1) == 1, 2 - (m & 3), 0)
    m = jnp.right_shift(m - d, 1)
    out.append((max_tau_shift - j, d))
  return out


def leak_fn(tau_code: Array, tau_terms: int,
            max_tau_shift: int) -> Callable[[Array], Array]:
  """``v -> leak(v)`` for the given codes (the code decoding runs once, outside)."""
  code = jnp.asarray(tau_code, jnp.int32)
  if tau_terms == 1:
    shift = jnp.maximum(code, 0)
    no_memory = code == quantize.TAU_ZERO
    return lambda v: jnp.where(no_memory, 0, jnp.right_shift(v, shift))
  digits = signed_digits(code, max_tau_shift)

  def leak(v):
    neg = -v
    total = jnp.zeros_like(v)
    for shift, d in digits:   # at most tau_terms nonzero digits per neuron
      total = total + jnp.where(d > 0, jnp.right_shift(v, shift),
                                jnp.where(d < 0, jnp.right_shift(neg, shift), 0))
    return total

  return leak


def integer_leak(v: Array, tau_code: Array, *, tau_terms: int = 1,
                 max_tau_shift: int = 6) -> Array:
  """The integer leak of a potential: ``v >> k`` or ``sum_i c_i floor(v / 2^k_i)``.

  Every term is rounded down (a negative one computed as ``(-v) >> k``), so
  ``tau v - d < leak(v) <= tau v`` with ``d`` the number of terms (exact for one term).

  Args:
    v: int32 potentials, ``[..., N]``.
    tau_code: ``[N]`` (or scalar) codes of :func:`bpsr_jax.quantize.quantize_tau` with the same
      ``tau_terms`` and ``max_tau_shift``.
    tau_terms: as for :func:`bpsr_jax.quantize.quantize_tau`.
    max_tau_shift: as for :func:`bpsr_jax.quantize.quantize_tau`.

  Returns:
    The int32 leak, shaped like ``v``.
  """
  return leak_fn(tau_code, tau_terms, max_tau_shift)(jnp.asarray(v, jnp.int32))


def integer_lif(currents: Array, tau_code: Array, int_threshold: int,
                recurrent_kernel: Optional[Array] = None, *, tau_terms: int = 1,
                max_tau_shift: int = 6) -> Array:
  """The LIF layer of eq. 1-2 with integer state, adds and shifts.

  Units are the caller's: :func:`integer_apply` passes currents, recurrent weights and
  threshold scaled by ``2^guard_bits``.

  Args:
    currents: ``[T, batch, N]`` int32 input currents ``sum_j q_ij x_j^t + q_i``.
    tau_code: ``[N]`` (or scalar) tau codes of :func:`bpsr_jax.quantize.quantize_tau` (with
      ``tau_terms = 1``: shift codes, :data:`bpsr_jax.quantize.TAU_ZERO` for no memory).
    int_threshold: the threshold in the units of ``currents``.
    recurrent_kernel: ``[N, N]`` integer intra-layer synapses, or None.
    tau_terms: how ``tau_code`` is to be read, as for :func:`bpsr_jax.quantize.quantize_tau`.
    max_tau_shift: ``K`` of the codes (read for ``tau_terms >= 2``).

  Returns:
    ``[T, batch, N]`` int32 spikes in {0, 1}.
  """
  leak = leak_fn(tau_code, tau_terms, max_tau_shift)
  zeros = jnp.zeros(currents.shape[1:], jnp.int32)

  def step(carry, current):
    v_prev, s_prev = carry
    v = jnp.where(s_prev == 1, 0, leak(v_prev)) + current
    if recurrent_kernel is not None:
      v = v + int_dot(s_prev, recurrent_kernel)
    s = (v >= int_threshold).astype(jnp.int32)
    return (v, s), s

  _, spikes = jax.lax.scan(step, (zeros, zeros), currents.astype(jnp.int32))
  return spikes


def dense_specs(spec: str, user: str = "integer_apply", hint: str = ""):
  """The layer specs of a model of flat and recurrent layers fed with spikes.

  Args:
    spec: the model spec.
    user: who needs it, for the message.
    hint: appended to the message.

  Returns:
    ``models.parse_spec(spec)``.

  Raises:
    ConfigError (a ValueError): a malformed spec, or one with conv, pooling, residual or
      encoding layers.
  """
  try:
    specs = models.parse_spec(spec)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  for ls in specs:
    if ls.kind not in ("fc", "r") or ls.encoding:
      raise ConfigError(
          f"{user} supports flat and recurrent layers fed with spikes ('fc'/'r', e.g. "
          f"'r1000-fc100-fc10'); {spec!r} has {'an encoding' if ls.encoding else 'a'} "
          f"{ls.kind!r} layer{hint}")
  return specs


@functools.partial(jax.jit, static_argnums=(1, 2))
def _integer_apply(qparams, info, spec, x):
  specs = dense_specs(spec)
  g = info.guard_bits
  h = x.reshape(x.shape[:2] + (-1,)).astype(jnp.int32)
  hidden = []
  for i, ls in enumerate(specs):
    p = qparams[f"{ls.kind}{i}"]
    currents = jnp.left_shift(int_dot(h, p["kernel"]) + p["bias"].astype(jnp.int32), g)
    rec = (jnp.left_shift(p["recurrent_kernel"].astype(jnp.int32), g)
           if ls.kind == "r" else None)
    h = integer_lif(currents, p["tau"], info.int_threshold << g, rec,
                    tau_terms=info.tau_terms, max_tau_shift=info.max_tau_shift)
    hidden.append(h)
  return h, tuple(hidden[:-1])


def integer_apply(qparams: PyTree, info: quantize.QuantInfo, spec: str,
                  x: Array) -> Tuple[Array, Tuple[Array, ...]]:
  """Runs a quantized dense :class:`bpsr_jax.models.SNN` with integer arithmetic only.

  Args:
    qparams: :func:`bpsr_jax.quantize_params` of the model's params (``model.init(...)["params"]``
      layout: one ``{kind}{index}`` entry per layer).
    info: its :class:`bpsr_jax.QuantInfo`; the model must have ``threshold == info.threshold``.
    spec: the model spec; flat and recurrent layers only (``"r81-fc36-fc10"``).
    x: ``[T, batch, ...]`` input spikes in {0, 1} (any dtype; extra feature dims are
      flattened as the model does).

  Returns:
    ``(output_spikes, hidden_spikes)`` as the model returns them, int32 in {0, 1}:
    ``[T, batch, classes]`` and a tuple with each hidden layer's ``[T, batch, N]``.

  Raises:
    ValueError: a spec with conv, pooling, residual or encoding layers, or an input
      without time and batch axes.
  """
  dense_specs(spec)
  x = jnp.asarray(x)
  if x.ndim < 3:
    raise ValueError(f"expected input spikes [T, batch, features], got shape {x.shape}")
  return _integer_apply(qparams, info, spec, x)
