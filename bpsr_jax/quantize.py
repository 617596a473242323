"""Post-training quantization (BPSR section 2.5): fixed-point weights, shift-add taus.

Scheme (``bits = n``, threshold ``U_th``, ``K = max_tau_shift``):

* ``kernel``, ``recurrent_kernel`` and ``bias`` become ``n``-bit two's-complement fixed
  point with ``n - 1`` fraction bits, scaled to the clamp range ``[-U_th, U_th]``: the
  integer ``q`` in ``[-2^(n-1), 2^(n-1) - 1]`` stands for ``q * step`` with
  ``step = U_th / 2^(n-1)`` (round to nearest, then saturate; ``+U_th`` itself becomes
  ``U_th - step``).
* ``tau`` becomes a leak made of integer shifts and adds. Each tau is rounded to the
  nearest level of a grid (linear distance; ties go to the larger tau); ``tau_terms``
  picks the grid:

  - ``tau_terms=1`` (the paper's scheme): ``tau = 2^-k``, ``k = 0..K``, or 0; the leak
    is one right shift ``v >> k``. Stored as the shift code ``k`` (:data:`TAU_ZERO` for
    ``tau = 0``). 8 levels for ``K = 6``; largest rounding error 1/4 (0.75 lies halfway
    between 1/2 and 1), mean 0.083 over ``tau ~ U[0, 1]``.
  - ``tau_terms=m >= 2``: ``tau = M / 2^K`` with ``M`` in ``[0, 2^K]`` a sum of at most
    ``m`` *signed* powers of two, ``tau = sum_i c_i 2^-k_i`` with ``c_i = +-1``, e.g.
    ``2^-1 + 2^-3``, ``1 - 2^-4``, ``2^-1 - 2^-5``; the leak is
    ``sum_i c_i floor(v / 2^k_i)`` (``(v >> a) + (v >> b)``, ``v + ((-v) >> m)``...): at
    most ``m`` shifts and adds. Stored as the numerator ``M`` (int8 for ``K <= 6``).
    Signed digits give a finer grid than the other shift-add forms: for ``K = 6`` and
    two terms, 33 levels, largest error 1/16, mean 0.014 over ``U[0, 1]``, against 23
    levels, 1/8, 0.028 for unsigned sums ``2^-a + 2^-b``, and 13 levels, 1/8, 0.042 for
    the union of ``2^-k`` and ``1 - 2^-m`` (three signed terms: 61 levels, 1/64, 0.0044).

  ``tau_terms = 2`` is the default of :func:`quantize_params` and :func:`round_tau`: on
  the gas-drift study (``benchmarks/quantize_study.py``) 8-bit PTQ then loses 0.45
  accuracy points instead of 1.34 (a single shift rounds every tau in ``(1/2, 1)`` to
  1/2 or 1), for one more shift-add per neuron and step and 6 instead of 3 bits per
  tau. ``tau_terms=1`` is the paper's scheme, with the stronger exactness guarantee below.

The integer-only inference of the quantized model (its int32 potential, the leak as
shifts and adds, and how exactly it follows the float model) is :mod:`bpsr_jax.integer`.

Example::

    qparams, info = bpsr_jax.quantize_params(params, bits=8)   # tau_terms=2
    out_spikes, hidden = bpsr_jax.integer_apply(qparams, info, "r81-fc36-fc10", x)
    float_params = bpsr_jax.dequantize_params(qparams, info)   # ~same spikes via the SNN
    print(bpsr_jax.storage_report(qparams, info))
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax.rewiring import leaf_name

Array = jax.Array
PyTree = Any

#: Shift code of ``tau = 0`` (no memory: the potential is reset every step), for
#: ``tau_terms = 1``.
TAU_ZERO = -1

#: Leaf names stored as ``bits``-bit fixed point.
FIXED_POINT_NAMES = ("kernel", "recurrent_kernel", "bias")
#: Leaf names whose leak becomes shifts and adds.
TAU_NAMES = ("tau",)
#: Leaf names counted as synaptic weights (the rest of FIXED_POINT_NAMES are biases).
WEIGHT_NAMES = ("kernel", "recurrent_kernel")

MAX_BITS = 16
#: Number of signed power-of-two terms of a tau in :func:`quantize_params` and
#: :func:`round_tau` unless told otherwise (see the module docstring for why not 1).
DEFAULT_TAU_TERMS = 2
#: Most terms allowed (at ``K = 6``, 4 terms already reach every ``M / 64``).
MAX_TAU_TERMS = 4
#: Largest ``max_tau_shift`` with ``tau_terms >= 2`` (numerators fit int16).
MAX_MULTI_TERM_SHIFT = 14
#: Fraction bits (below ``U_th``) of the integer potential with ``tau_terms >= 2``.
POTENTIAL_FRAC_BITS = 16


class QuantInfo(NamedTuple):
  """How a quantized parameter pytree is to be read (hashable: a static ``jit`` argument).

  Attributes:
    bits: word length ``n`` of weights and biases (``n - 1`` fraction bits).
    threshold: the firing threshold ``U_th``; the fixed-point range is ``[-U_th, U_th)``.
    max_tau_shift: the largest leak shift ``K``.
    tau_terms: signed power-of-two terms per tau. 1: tau codes are shift codes ``k``
      (``tau = 2^-k``) or :data:`TAU_ZERO`; ``>= 2``: tau codes are numerators ``M``
      (``tau = M / 2^K``). The field defaults to 1 so that a three-field
      ``QuantInfo(bits, threshold, max_tau_shift)`` keeps reading shift codes;
      :func:`quantize_params` defaults to :data:`DEFAULT_TAU_TERMS`.
  """
  bits: int
  threshold: float
  max_tau_shift: int
  tau_terms: int = 1

  @property
  def step(self) -> float:
    """Value of one least significant bit: ``U_th / 2^(bits - 1)``."""
    return self.threshold / 2 ** (self.bits - 1)

  @property
  def int_threshold(self) -> int:
    """The threshold in units of :attr:`step`: ``2^(bits - 1)``."""
    return 2 ** (self.bits - 1)

  @property
  def guard_bits(self) -> int:
    """Extra fraction bits of the integer potential (below :attr:`step`).

    0 for ``tau_terms = 1`` (the single shift is exact without), else
    ``POTENTIAL_FRAC_BITS - (bits - 1)``, at least 0.
    """
    if self.tau_terms == 1:
      return 0
    return max(0, POTENTIAL_FRAC_BITS - (self.bits - 1))

  @property
  def tau_levels(self) -> np.ndarray:
    """The representable taus, ascending (float64)."""
    return _tau_table(self.max_tau_shift, self.tau_terms)[0]

  @property
  def tau_bits(self) -> int:
    """Bits needed to store a tau code: ``ceil(log2(number of levels))``.

    ``max_tau_shift + 2`` levels for one term (3 bits for ``K = 6``); 33 levels, 6 bits,
    for two terms and ``K = 6`` (a decoder table maps the index to shifts and signs).
    """
    return max(1, math.ceil(math.log2(len(self.tau_levels))))


def _storage_dtype(bits: int):
  return jnp.int8 if bits <= 8 else jnp.int16


def _check(bits: int, threshold: float, max_tau_shift: int, tau_terms: int = 1):
  if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 2:
    raise ValueError(f"bits must be an integer >= 2 (a sign bit and at least one "
                     f"fraction bit), got {bits!r}.")
  if bits > MAX_BITS:
    raise ValueError(f"bits must be <= {MAX_BITS} (the int32 accumulator), got {bits}.")
  if not threshold > 0:
    raise ValueError(f"threshold must be > 0, got {threshold}.")
  if (not isinstance(tau_terms, (int, np.integer)) or isinstance(tau_terms, bool)
      or not 1 <= tau_terms <= MAX_TAU_TERMS):
    raise ValueError(f"tau_terms must be an integer in [1, {MAX_TAU_TERMS}], "
                     f"got {tau_terms!r}.")
  top = 30 if tau_terms == 1 else MAX_MULTI_TERM_SHIFT
  if (not isinstance(max_tau_shift, (int, np.integer)) or isinstance(max_tau_shift, bool)
      or max_tau_shift < 0 or max_tau_shift > top):
    raise ValueError(f"max_tau_shift must be an integer in [0, {top}] with "
                     f"tau_terms={tau_terms}, got {max_tau_shift!r}.")


@functools.lru_cache(maxsize=None)
def _tau_table(max_tau_shift: int, tau_terms: int) -> Tuple[np.ndarray, np.ndarray]:
  """``(levels, codes)``: the representable taus, ascending, and their codes.

  ``tau_terms = 1``: ``2^-k`` with code ``k``, and 0 with :data:`TAU_ZERO`. Otherwise
  every ``M / 2^K`` in ``[0, 1]`` with ``M`` a sum of at most ``tau_terms`` signed powers
  ``2^j``, ``j = 0..K``, coded ``M`` (digits above ``2^K`` never help: the non-adjacent
  form of an ``M <= 2^K``, which has the fewest nonzero digits, has none there).
  """
  full = 1 << max_tau_shift
  if tau_terms == 1:
    numerators = {0} | {1 << j for j in range(max_tau_shift + 1)}
  else:
    numerators = {0}
    for n in range(1, tau_terms + 1):
      for positions in itertools.combinations(range(max_tau_shift + 1), n):
        for signs in itertools.product((1, -1), repeat=n):
          m = sum(s << j for s, j in zip(signs, positions))
          if 0 <= m <= full:
            numerators.add(m)
  numerators = np.array(sorted(numerators), np.int64)
  levels = numerators / full
  if tau_terms == 1:
    codes = np.array([TAU_ZERO if m == 0 else max_tau_shift - int(m).bit_length() + 1
                      for m in numerators], np.int32)
  else:
    codes = numerators.astype(np.int32)
  return levels, codes


def _tau_code_dtype(max_tau_shift: int, tau_terms: int):
  if tau_terms == 1 or max_tau_shift <= 6:
    return jnp.int8
  return jnp.int16


def quantize_tau(tau: Array, max_tau_shift: int = 6, tau_terms: int = 1) -> Array:
  """Rounds ``tau`` to the nearest representable leak (ties go to the larger).

  Args:
    tau: leak factors, any shape (values outside ``[0, 1]`` saturate).
    max_tau_shift: largest shift ``K``.
    tau_terms: 1 for the levels ``2^-k`` (``k = 0..K``) and 0; ``m >= 2`` for the
      ``M / 2^K`` with at most ``m`` signed power-of-two terms (module docstring).

  Returns:
    Codes of the same shape: for ``tau_terms = 1`` int8 shift codes ``k``, or
    :data:`TAU_ZERO` for ``tau = 0``; otherwise the numerators ``M`` (int8 for
    ``K <= 6``, else int16).
  """
  _check(2, 1.0, max_tau_shift, tau_terms)
  levels, codes = _tau_table(max_tau_shift, tau_terms)
  levels = jnp.asarray(levels, jnp.float32)
  tau = jnp.clip(jnp.asarray(tau, jnp.float32), 0.0, 1.0)
  hi = jnp.clip(jnp.searchsorted(levels, tau, side="left"), 0, len(levels) - 1)
  lo = jnp.maximum(hi - 1, 0)
  idx = jnp.where(levels[hi] - tau <= tau - levels[lo], hi, lo)
  return jnp.asarray(codes, _tau_code_dtype(max_tau_shift, tau_terms))[idx]


def tau_from_code(code: Array, dtype=jnp.float32, *, max_tau_shift: int = 6,
                  tau_terms: int = 1) -> Array:
  """The leak factor that tau codes stand for.

  Args:
    code: codes of :func:`quantize_tau`.
    dtype: float dtype of the result.
    max_tau_shift: the ``K`` of the codes (only read for ``tau_terms >= 2``).
    tau_terms: as for :func:`quantize_tau`.

  Returns:
    ``2^-k`` (0 for :data:`TAU_ZERO`) for ``tau_terms = 1``, else ``M / 2^K``.
  """
  code = jnp.asarray(code, jnp.int32)
  if tau_terms == 1:
    return jnp.where(code == TAU_ZERO, 0.0,
                     jnp.exp2(-jnp.maximum(code, 0).astype(dtype))).astype(dtype)
  return code.astype(dtype) * jnp.asarray(2.0 ** -max_tau_shift, dtype)


def round_tau(params: PyTree, max_tau_shift: int = 6,
              tau_terms: int = DEFAULT_TAU_TERMS) -> PyTree:
  """Float params with every ``tau`` rounded as :func:`quantize_params` rounds it.

  For fine-tuning the other parameters with the taus frozen on the quantizer's grid
  before quantizing (with ``tau_terms = 1`` tau rounding is the coarsest step of the
  scheme: a tau of 0.35 becomes 0.25 or 0.5, 0.7 becomes 0.5).

  Args:
    params: float params.
    max_tau_shift: as for :func:`quantize_params`.
    tau_terms: as for :func:`quantize_params`.

  Returns:
    The params with each leaf named ``tau`` replaced by its representable level.
  """
  _check(2, 1.0, max_tau_shift, tau_terms)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (tau_from_code(quantize_tau(x, max_tau_shift, tau_terms),
                                     jnp.result_type(x), max_tau_shift=max_tau_shift,
                                     tau_terms=tau_terms)
                       if leaf_name(path) in TAU_NAMES else x), params)


def quantize_params(params: PyTree, bits: int = 8, *, max_tau_shift: int = 6,
                    tau_terms: int = DEFAULT_TAU_TERMS,
                    threshold: float = 1.0) -> Tuple[PyTree, QuantInfo]:
  """Quantizes a trained parameter pytree (run after the clamp of Algorithm 1).

  Args:
    params: float params; leaves named ``kernel``, ``recurrent_kernel``, ``bias`` and
      ``tau`` are quantized, any other leaf is returned unchanged.
    bits: word length ``n >= 2`` of weights and biases (``n - 1`` fraction bits).
    max_tau_shift: the largest leak shift ``K`` (at most
      :data:`MAX_MULTI_TERM_SHIFT` for ``tau_terms >= 2``). Codes are stored in
      :attr:`QuantInfo.tau_bits` bits.
    tau_terms: signed power-of-two terms per tau: 1 is the paper's single right shift
      (``tau = 2^-k`` or 0, spikes exactly those of the dequantized float model); the
      default 2 (``tau = +-2^-a +- 2^-b``: one shift-add more per neuron and step) is
      four times finer and what keeps 8-bit PTQ within half a point. See the module
      docstring.
    threshold: ``U_th``, the clamp bound and the scale of the fixed-point range.

  Returns:
    ``(qparams, info)``: the integer pytree (int8 for ``bits <= 8``, int16 otherwise;
    tau codes as :func:`quantize_tau` returns them) and its :class:`QuantInfo`.

  Raises:
    ValueError: ``bits < 2`` or ``> 16``, ``threshold <= 0``, a bad ``tau_terms`` or
      ``max_tau_shift``.
  """
  _check(bits, threshold, max_tau_shift, tau_terms)
  info = QuantInfo(int(bits), float(threshold), int(max_tau_shift), int(tau_terms))
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
      return quantize_tau(x, info.max_tau_shift, info.tau_terms)
    return x

  return jax.tree_util.tree_map_with_path(quantize_leaf, params)


def dequantize_params(qparams: PyTree, info: QuantInfo, dtype=jnp.float32) -> PyTree:
  """The float params a quantized pytree stands for (``q * step``, tau's level).

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
      return tau_from_code(q, dtype, max_tau_shift=info.max_tau_shift,
                           tau_terms=info.tau_terms)
    return q

  return jax.tree_util.tree_map_with_path(dequantize_leaf, qparams)


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
