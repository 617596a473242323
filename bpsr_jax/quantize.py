"""Post-training quantization (BPSR section 2.5) and integer-only inference.

Scheme (``bits = n``, threshold ``U_th``):

* ``kernel``, ``recurrent_kernel`` and ``bias`` become ``n``-bit two's-complement fixed
  point with ``n - 1`` fraction bits, scaled to the clamp range ``[-U_th, U_th]``: the
  integer ``q`` in ``[-2^(n-1), 2^(n-1) - 1]`` stands for ``q * step`` with
  ``step = U_th / 2^(n-1)`` (round to nearest, then saturate; ``+U_th`` itself becomes
  ``U_th - step``).
* ``tau`` becomes a right-shift amount ``k`` in ``[0, max_tau_shift]``, standing for
  ``tau = 2^-k``, or the code :data:`TAU_ZERO` for ``tau = 0``; each tau is rounded to
  the nearest of these values (linear distance; ties go to the larger tau).
* The membrane potential is an ``int32`` in units of ``step``; the threshold is the
  integer ``2^(n-1)``. One step of a neuron::

      v^t = (s^(t-1) ? 0 : v^(t-1) >> k) + sum_j q_ij x_j^t + q_i + sum_k r_ki s_k^(t-1)
      s^t = v^t >= 2^(n-1)

  With binary inputs the sums are additions of selected weights (computed here as int32
  matrix products with a {0, 1} operand), and ``>>`` is an arithmetic shift: integer
  additions and shifts only.

Exactness: since ``floor(floor(u) / 2^k) = floor(u / 2^k)`` for every real ``u`` and the
currents are integers, ``v^t = floor(u^t / step)`` where ``u^t`` is the potential of the
float model run, in exact arithmetic, with the dequantized parameters
(:func:`dequantize_params`); and as the threshold is an integer, the spikes are
*identical*. A float32 run of that model rounds its potentials to 24 significant bits;
it can differ only when a potential converges onto the threshold so closely (within
``2^-24 U_th``, i.e. after ~24 leak steps with no input event) that float32 rounds it up
to the threshold. Use the integer path as the reference of the quantized network.

Example::

    qparams, info = bpsr_jax.quantize_params(params, bits=8)
    out_spikes, hidden = bpsr_jax.integer_apply(qparams, info, "r81-fc36-fc10", x)
    float_params = bpsr_jax.dequantize_params(qparams, info)   # same spikes via the SNN
    print(bpsr_jax.storage_report(qparams, info))
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import models
from bpsr_jax.rewiring import leaf_name

Array = jax.Array
PyTree = Any

#: Shift code of ``tau = 0`` (no memory: the potential is reset every step).
TAU_ZERO = -1

#: Leaf names stored as ``bits``-bit fixed point.
FIXED_POINT_NAMES = ("kernel", "recurrent_kernel", "bias")
#: Leaf names whose leak becomes a right shift.
TAU_NAMES = ("tau",)
#: Leaf names counted as synaptic weights (the rest of FIXED_POINT_NAMES are biases).
WEIGHT_NAMES = ("kernel", "recurrent_kernel")

MAX_BITS = 16


class QuantInfo(NamedTuple):
  """How a quantized parameter pytree is to be read (hashable: a static ``jit`` argument).

  Attributes:
    bits: word length ``n`` of weights and biases (``n - 1`` fraction bits).
    threshold: the firing threshold ``U_th``; the fixed-point range is ``[-U_th, U_th)``.
    max_tau_shift: the largest leak shift; ``tau`` is one of ``2^-k``,
      ``k = 0..max_tau_shift``, or 0.
  """
  bits: int
  threshold: float
  max_tau_shift: int

  @property
  def step(self) -> float:
    """Value of one least significant bit: ``U_th / 2^(bits - 1)``."""
    return self.threshold / 2 ** (self.bits - 1)

  @property
  def int_threshold(self) -> int:
    """The threshold in units of :attr:`step`: ``2^(bits - 1)``."""
    return 2 ** (self.bits - 1)

  @property
  def tau_bits(self) -> int:
    """Bits needed to store a tau code (``max_tau_shift + 2`` values)."""
    return max(1, math.ceil(math.log2(self.max_tau_shift + 2)))


def _storage_dtype(bits: int):
  return jnp.int8 if bits <= 8 else jnp.int16


def _check(bits: int, threshold: float, max_tau_shift: int):
  if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 2:
    raise ValueError(f"bits must be an integer >= 2 (a sign bit and at least one "
                     f"fraction bit), got {bits!r}.")
  if bits > MAX_BITS:
    raise ValueError(f"bits must be <= {MAX_BITS} (the int32 accumulator), got {bits}.")
  if not threshold > 0:
    raise ValueError(f"threshold must be > 0, got {threshold}.")
  if (not isinstance(max_tau_shift, (int, np.integer)) or max_tau_shift < 0
      or max_tau_shift > 30):
    raise ValueError(f"max_tau_shift must be an integer in [0, 30], got {max_tau_shift!r}.")


def quantize_tau(tau: Array, max_tau_shift: int = 6) -> Array:
  """Rounds ``tau`` to the nearest of ``2^-k`` (``k = 0..max_tau_shift``) and 0.

  Args:
    tau: leak factors, any shape (values outside ``[0, 1]`` saturate).
    max_tau_shift: largest shift ``k``.

  Returns:
    int8 shift codes of the same shape: ``k``, or :data:`TAU_ZERO` for ``tau = 0``.
  """
  levels = np.array([2.0 ** -k for k in range(max_tau_shift + 1)] + [0.0], np.float32)
  codes = np.array(list(range(max_tau_shift + 1)) + [TAU_ZERO], np.int8)
  tau = jnp.clip(jnp.asarray(tau, jnp.float32), 0.0, 1.0)
  idx = jnp.argmin(jnp.abs(tau[..., None] - levels), axis=-1)
  return jnp.asarray(codes)[idx]


def tau_from_code(code: Array, dtype=jnp.float32) -> Array:
  """The leak factor ``2^-k`` (0 for :data:`TAU_ZERO`) of shift codes."""
  code = jnp.asarray(code, jnp.int32)
  return jnp.where(code == TAU_ZERO, 0.0, jnp.exp2(-jnp.maximum(code, 0).astype(dtype))
                   ).astype(dtype)


def round_tau(params: PyTree, max_tau_shift: int = 6) -> PyTree:
  """Float params with every ``tau`` rounded as :func:`quantize_params` rounds it.

  For fine-tuning the other parameters with the taus frozen on the ``2^-k`` grid before
  quantizing (tau rounding is the coarsest step of the scheme: a tau of 0.35 becomes
  0.25 or 0.5).

  Args:
    params: float params.
    max_tau_shift: as for :func:`quantize_params`.

  Returns:
    The params with each leaf named ``tau`` replaced by ``2^-k`` or 0.
  """
  _check(2, 1.0, max_tau_shift)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (tau_from_code(quantize_tau(x, max_tau_shift), jnp.result_type(x))
                       if leaf_name(path) in TAU_NAMES else x), params)


def quantize_params(params: PyTree, bits: int = 8, *, max_tau_shift: int = 6,
                    threshold: float = 1.0) -> Tuple[PyTree, QuantInfo]:
  """Quantizes a trained parameter pytree (run after the clamp of Algorithm 1).

  Args:
    params: float params; leaves named ``kernel``, ``recurrent_kernel``, ``bias`` and
      ``tau`` are quantized, any other leaf is returned unchanged.
    bits: word length ``n >= 2`` of weights and biases (``n - 1`` fraction bits).
    max_tau_shift: the largest leak shift (``tau`` down to ``2^-max_tau_shift``; below
      half that, 0). Stored in :attr:`QuantInfo.tau_bits` bits.
    threshold: ``U_th``, the clamp bound and the scale of the fixed-point range.

  Returns:
    ``(qparams, info)``: the integer pytree (int8 for ``bits <= 8``, int16 otherwise; tau
    codes int8) and its :class:`QuantInfo`.

  Raises:
    ValueError: ``bits < 2`` or ``> 16``, ``threshold <= 0`` or a bad ``max_tau_shift``.
  """
  _check(bits, threshold, max_tau_shift)
  info = QuantInfo(int(bits), float(threshold), int(max_tau_shift))
  return _quantize_tree(params, info), info


@functools.partial(jax.jit, static_argnums=1)
def _quantize_tree(params: PyTree, info: QuantInfo) -> PyTree:
  qmin, qmax = -(2 ** (info.bits - 1)), 2 ** (info.bits - 1) - 1
  dtype = _storage_dtype(info.bits)

  def quantize_leaf(path, x):
    name = leaf_name(path)
    if name in FIXED_POINT_NAMES:
      q = jnp.round(jnp.asarray(x, jnp.float32) / info.step)
      return jnp.clip(q, qmin, qmax).astype(dtype)
    if name in TAU_NAMES:
      return quantize_tau(x, info.max_tau_shift)
    return x

  return jax.tree_util.tree_map_with_path(quantize_leaf, params)


def dequantize_params(qparams: PyTree, info: QuantInfo, dtype=jnp.float32) -> PyTree:
  """The float params a quantized pytree stands for (``q * step``, ``tau = 2^-k``).

  Args:
    qparams: the integer pytree of :func:`quantize_params`.
    info: its :class:`QuantInfo`.
    dtype: float dtype of the result.

  Returns:
    A float pytree with the structure of ``qparams``, to run with the float model.
  """
  return _dequantize_tree(qparams, info, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _dequantize_tree(qparams: PyTree, info: QuantInfo, dtype) -> PyTree:
  def dequantize_leaf(path, q):
    name = leaf_name(path)
    if name in FIXED_POINT_NAMES:
      return jnp.asarray(q).astype(dtype) * jnp.asarray(info.step, dtype)
    if name in TAU_NAMES:
      return tau_from_code(q, dtype)
    return q

  return jax.tree_util.tree_map_with_path(dequantize_leaf, qparams)


# ----------------------------------------------------------------------------------------
# Integer inference.


def _int_dot(x: Array, w: Array) -> Array:
  """``x @ w`` for a {0, 1} int32 ``x``: a sum of selected weights, accumulated in int32."""
  return jax.lax.dot_general(
      x, w.astype(jnp.int32), (((x.ndim - 1,), (0,)), ((), ())),
      preferred_element_type=jnp.int32)


def integer_lif(currents: Array, tau_code: Array, int_threshold: int,
                recurrent_kernel: Optional[Array] = None) -> Array:
  """The LIF layer of eq. 1-2 with integer state, adds and shifts.

  Args:
    currents: ``[T, batch, N]`` int32 input currents ``sum_j q_ij x_j^t + q_i``.
    tau_code: ``[N]`` (or scalar) leak shift codes (:data:`TAU_ZERO`: no memory).
    int_threshold: the threshold in units of the fixed-point step.
    recurrent_kernel: ``[N, N]`` integer intra-layer synapses, or None.

  Returns:
    ``[T, batch, N]`` int32 spikes in {0, 1}.
  """
  code = jnp.asarray(tau_code, jnp.int32)
  shift = jnp.maximum(code, 0)
  no_memory = code == TAU_ZERO
  zeros = jnp.zeros(currents.shape[1:], jnp.int32)

  def step(carry, current):
    v_prev, s_prev = carry
    leak = jnp.where(no_memory, 0, jnp.right_shift(v_prev, shift))
    v = jnp.where(s_prev == 1, 0, leak) + current
    if recurrent_kernel is not None:
      v = v + _int_dot(s_prev, recurrent_kernel)
    s = (v >= int_threshold).astype(jnp.int32)
    return (v, s), s

  _, spikes = jax.lax.scan(step, (zeros, zeros), currents.astype(jnp.int32))
  return spikes


def _dense_specs(spec: str):
  specs = models.parse_spec(spec)
  for ls in specs:
    if ls.kind not in ("fc", "r") or ls.encoding:
      raise ValueError(
          f"integer_apply supports flat and recurrent dense models ('fc'/'r' layers "
          f"fed with spikes, e.g. 'r1000-fc100-fc10'); {spec!r} has a "
          f"{'encoding ' if ls.encoding else ''}{ls.kind!r} layer.")
  return specs


@functools.partial(jax.jit, static_argnums=(1, 2))
def _integer_apply(qparams, info, spec, x):
  specs = _dense_specs(spec)
  h = x.reshape(x.shape[:2] + (-1,)).astype(jnp.int32)
  hidden = []
  for i, ls in enumerate(specs):
    p = qparams[f"{ls.kind}{i}"]
    currents = _int_dot(h, p["kernel"]) + p["bias"].astype(jnp.int32)
    rec = p["recurrent_kernel"] if ls.kind == "r" else None
    h = integer_lif(currents, p["tau"], info.int_threshold, rec)
    hidden.append(h)
  return h, tuple(hidden[:-1])


def integer_apply(qparams: PyTree, info: QuantInfo, spec: str,
                  x: Array) -> Tuple[Array, Tuple[Array, ...]]:
  """Runs a quantized dense :class:`bpsr_jax.models.SNN` with integer arithmetic only.

  Args:
    qparams: :func:`quantize_params` of the model's params (``model.init(...)["params"]``
      layout: one ``{kind}{index}`` entry per layer).
    info: its :class:`QuantInfo`; the model must have ``threshold == info.threshold``.
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
  _dense_specs(spec)
  x = jnp.asarray(x)
  if x.ndim < 3:
    raise ValueError(f"expected input spikes [T, batch, features], got shape {x.shape}")
  return _integer_apply(qparams, info, spec, x)


# ----------------------------------------------------------------------------------------
# Storage.


def storage_report(qparams: PyTree, info: Optional[QuantInfo] = None) -> Dict[str, int]:
  """Parameter counts and storage sizes of a (quantized or float) pytree.

  Args:
    qparams: a :func:`quantize_params` pytree with its ``info``, or float params with
      ``info=None`` (then every parameter costs 32 bits).
    info: the :class:`QuantInfo`, or None for float32.

  Returns:
    A dict: ``weights``, ``nonzero_weights`` (synapses), ``biases``, ``taus`` (counts),
    ``dense_bits`` (every parameter at its word length: ``bits`` for weights and biases,
    ``tau_bits`` per tau code; 32 each for float32), ``sparse_bits`` (the same with only
    the nonzero weights' values, index overhead excluded) and ``dense_bytes`` /
    ``sparse_bytes`` (rounded up).
  """
  counts = dict(weights=0, nonzero_weights=0, biases=0, taus=0, other=0)
  for path, x in jax.tree_util.tree_flatten_with_path(qparams)[0]:
    name, size = leaf_name(path), int(np.size(x))
    if name in WEIGHT_NAMES:
      counts["weights"] += size
      counts["nonzero_weights"] += int(np.count_nonzero(np.asarray(x)))
    elif name in FIXED_POINT_NAMES:
      counts["biases"] += size
    elif name in TAU_NAMES:
      counts["taus"] += size
    else:
      counts["other"] += size
  wbits = 32 if info is None else info.bits
  tbits = 32 if info is None else info.tau_bits
  rest = counts["biases"] * wbits + counts["taus"] * tbits + counts["other"] * 32
  dense = counts["weights"] * wbits + rest
  sparse = counts["nonzero_weights"] * wbits + rest
  return dict(**counts, dense_bits=dense, sparse_bits=sparse,
              dense_bytes=-(-dense // 8), sparse_bytes=-(-sparse // 8))
