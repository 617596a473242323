"""Spiking layers: thin Flax linen shells over :func:`bpsr_jax.lif`.

Every layer holds its parameters under the project's names (``kernel``,
``recurrent_kernel``, ``bias``, ``tau``), computes the input currents of all ``T`` steps at
once (one matmul or conv over ``T * batch``) and hands them to the LIF scan. Inputs and
outputs are time-major: ``[T, batch, features]`` for dense layers and
``[T, batch, H, W, C]`` for conv layers; the encoding variants take an analog input with
no time axis and feed it at every one of ``time_steps`` steps.

Initialization follows Algorithm 1 of the paper: ``W ~ N(0, sigma)`` with
``sigma = gain / sqrt(fan_in)`` for dense layers, Kaiming (He) normal for conv layers,
``b ~ U(0, bias_scale)`` (the paper: ``U(0, 1)``) and ``tau = 0.5``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from bpsr_jax import neuron
from bpsr_jax import spmm
from bpsr_jax.errors import ConfigError

Array = jax.Array
Initializer = Callable[..., Array]


def normal_fan_in(gain: float = 1.0) -> Initializer:
  """``N(0, gain / sqrt(fan_in))`` for a ``[fan_in, out]`` kernel (Algorithm 1)."""
  return nn.initializers.variance_scaling(gain**2, "fan_in", "normal")


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
  """``U(low, high)``; the paper initializes biases from ``U(0, 1)``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, low, high)

  return init


#: Rows per chunk of a large matmul on a CPU (see :func:`rows_matmul`).
CPU_CHUNK_ROWS = 1024


def _chunk_count(m: int, rows: int) -> int:
  """The number ``n >= 2`` of equal chunks that ``m`` rows split into: the divisor of
  ``m`` whose chunks are closest to ``rows`` rows, among those of ``rows / 4`` to
  ``2 * rows`` rows (1 if there is none; one chunk is not a candidate, the caller only
  chunks products of at least ``2 * rows`` rows)."""
  best, best_gap = 1, None
  for n in range(2, m // max(1, rows // 4) + 1):
    size = m // n
    if m % n == 0 and rows // 4 <= size <= 2 * rows:
      gap = abs(size - rows)
      if best_gap is None or gap < best_gap:
        best, best_gap = n, gap
  return best


def _chunked_matmul(a: Array, b: Array) -> Array:
  n = _chunk_count(a.shape[0], CPU_CHUNK_ROWS)
  if n == 1:
    return a @ b
  chunks = a.reshape((n, a.shape[0] // n, a.shape[1]))
  return jax.lax.map(lambda c: c @ b, chunks).reshape((a.shape[0], b.shape[1]))


def _platform_matmul(a: Array, b: Array) -> Array:
  # Chunks only pay for a compute-bound product: many rows, and inner and outer sizes
  # that are not tiny (a readout to 10 classes is bound by memory traffic, and its
  # chunked input would have to be materialized).
  if a.shape[0] < 2 * CPU_CHUNK_ROWS or min(a.shape[1], b.shape[1]) < 32:
    return a @ b
  return jax.lax.platform_dependent(a, b, cpu=_chunked_matmul,
                                    default=lambda a, b: a @ b)


@jax.custom_jvp
def rows_matmul(a: Array, b: Array) -> Array:
  """``a @ b`` for ``a`` ``[M, K]`` with many rows (``M = T * batch``), ``b`` ``[K, N]``.

  On a CPU a product with at least ``2 * CPU_CHUNK_ROWS`` rows (and ``K, N >= 32``) is
  computed in chunks of about ``CPU_CHUNK_ROWS`` rows (a ``lax.map`` over row blocks):
  XLA's CPU matmul runs 1.25x faster on ``[1024, 784] @ [784, 800]`` blocks than on one
  ``[10240, 784] @ [784, 800]`` product (measured on one core; see
  ``benchmarks/efficiency.py``). Other platforms run one matmul. The gradient of ``b``
  stays one contraction over all ``M`` rows (``a^T g``), which is the fast shape for
  it; the gradient of ``a`` is chunked like the forward product.

  Args:
    a: ``[M, K]``.
    b: ``[K, N]``, of ``a``'s dtype.

  Returns:
    ``[M, N]``, equal to ``a @ b`` up to float round-off (each row is computed by the
    same dot products).
  """
  return _platform_matmul(a, b)


@functools.partial(rows_matmul.defjvp, symbolic_zeros=True)
def _rows_matmul_jvp(primals, tangents):
  a, b = primals
  da, db = tangents
  y = _platform_matmul(a, b)
  dy = None
  if not isinstance(da, jax.custom_derivatives.SymbolicZero):
    dy = _platform_matmul(da, b)
  if not isinstance(db, jax.custom_derivatives.SymbolicZero):
    dy_b = a @ db  # transposed by JAX into a^T g: one contraction over the M rows
    dy = dy_b if dy is None else dy + dy_b
  return y, jnp.zeros_like(y) if dy is None else dy


def _matmul(x: Array, kernel: Array) -> Array:
  """``x @ kernel`` for ``x`` ``[..., in]``, as one 2-d matmul over the leading dims.

  Flattening first matters for the backward pass: the kernel gradient is then a plain
  ``[in, T*batch] @ [T*batch, out]`` contraction, which XLA's CPU backend runs without
  transposing the ``[T, batch, out]`` cotangent (measured 1.8x faster than the
  contraction over two leading axes for ``[80, 128, 784] x [80, 128, 800]``).
  """
  y = rows_matmul(x.reshape((-1, x.shape[-1])), kernel.astype(x.dtype))
  return y.reshape(x.shape[:-1] + (kernel.shape[-1],))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def spike_linear(op: Callable[[Array, Array], Array], x: Array, kernel: Array) -> Array:
  """``op(x, kernel)`` for binary ``x``, keeping ``x`` as 1-byte booleans for the backward.

  ``op`` is linear in each argument (a matmul or a convolution). Autodiff would keep the
  float32 spikes ``x`` to form the kernel gradient; this keeps ``x != 0`` (4x smaller)
  and rebuilds the exact 0/1 floats in the backward pass. The backward is ``op``'s own
  VJP, whose unused forward result XLA removes under ``jit``, so no work is repeated.

  Args:
    op: a hashable function ``(x, kernel) -> y`` linear in both (module-level, e.g.
      :func:`_matmul`, or a ``functools.partial`` of :func:`_conv` built once).
    x: spikes in {0, 1}, any float dtype (other values are not preserved: the
      gradient would use ``x != 0``).
    kernel: the weights.

  Returns:
    ``op(x, kernel)``.
  """
  return op(x, kernel)


def _spike_linear_fwd(op, x, kernel):
  return op(x, kernel), (x != 0, kernel)


def _spike_linear_bwd(op, res, g):
  bits, kernel = res
  _, vjp = jax.vjp(op, bits.astype(g.dtype), kernel)
  return vjp(g)


spike_linear.defvjp(_spike_linear_fwd, _spike_linear_bwd)


@jax.custom_vjp
def spike_dense(x: Array, kernel: Array) -> Array:
  """``x @ kernel`` for binary ``x`` ``[..., in]``, with spike-sparse products.

  Like :func:`spike_linear` with :func:`_matmul` (the spikes are kept for the backward
  pass as booleans), but the forward product and the kernel gradient ``x^T g`` add one
  weight (cotangent) row per spike when the spikes are sparse enough
  (:func:`bpsr_jax.spmm.spike_matmul`, :func:`bpsr_jax.spmm.spike_outer`: on a CPU up
  to the measured density crossover; elsewhere dense). Equal to ``x @ kernel`` and its
  gradients to float round-off.

  Args:
    x: ``[..., in]`` spikes in {0, 1}.
    kernel: ``[in, out]``.

  Returns:
    ``[..., out]`` in ``x``'s dtype.
  """
  return _spike_dense_fwd(x, kernel)[0]


def _spike_dense_fwd(x, kernel):
  bits = x.reshape((-1, x.shape[-1])) != 0
  kernel_x = kernel.astype(x.dtype)
  y = spmm.spike_matmul(bits, kernel_x, dense=_platform_matmul)
  return y.reshape(x.shape[:-1] + (kernel.shape[-1],)), (bits, kernel)


def _spike_dense_bwd(res, g):
  bits, kernel = res
  g2 = g.reshape((-1, g.shape[-1]))
  dkernel = spmm.spike_outer(bits, g2).astype(kernel.dtype)
  dx = _platform_matmul(g2, kernel.astype(g.dtype).T).reshape(
      g.shape[:-1] + (kernel.shape[0],))
  return dx, dkernel


spike_dense.defvjp(_spike_dense_fwd, _spike_dense_bwd)


class _LIFConfig(nn.Module):
  """Fields shared by all spiking layers (not instantiated directly).

  ``spike_input``: the layer's input is known to be binary spikes (the output of a
  spiking layer or a max pool); the synaptic matmul/conv then keeps it for the backward
  pass as booleans (:func:`spike_linear`), a quarter of the float32 memory. The models
  set it for ``gradient="bpsr"`` and ``"band"``; a non-binary input with it set gets wrong gradients.
  """

  threshold: float = 1.0
  alpha: float = neuron.DEFAULT_ALPHA
  gradient: str = "bpsr"
  band_width: float = neuron.DEFAULT_BAND_WIDTH
  tau_init: float = 0.5
  bias_init: Initializer = uniform(0.0, 1.0)
  param_dtype: Any = jnp.float32
  spike_input: bool = False

  def _tau_initializer(self) -> Initializer:
    t = self.tau_init
    if isinstance(t, (int, float)) and not 0.0 <= t <= 1.0:  # NaN fails too
      raise ConfigError(f"layer {self.name}: tau_init={t} must lie in [0, 1] (tau is the "
                        "leak factor)")
    return nn.initializers.constant(t)

  def _lif(self, currents, tau, recurrent_kernel=None, bias=None):
    return neuron.lif(
        currents, tau, threshold=self.threshold, alpha=self.alpha,
        recurrent_kernel=recurrent_kernel, bias=bias, gradient=self.gradient,
        band_width=self.band_width)

  def _currents_to_spikes(self, currents, bias, tau, extra_current=None, rec=None):
    """``currents`` ``[T, batch, ..., N]`` (``[batch, ..., N]`` for an encoding layer,
    repeated over ``time_steps`` here) plus the bias and ``extra_current`` -> spikes.

    The bias goes into the LIF loop (:func:`bpsr_jax.lif`'s ``bias``) rather than being
    added here, which saves a pass over the ``[T, ...]`` currents; an encoding layer adds
    it once before the currents are repeated over time.
    """
    bias = bias.astype(currents.dtype)
    if getattr(self, "encoding", False):
      if not self.time_steps:
        raise ValueError("an encoding layer needs time_steps (the model's time_steps)")
      currents = currents + bias
      bias = None
      currents = jnp.broadcast_to(currents[None], (self.time_steps,) + currents.shape)
    if extra_current is not None:
      currents = currents + extra_current
    return self._lif(currents, tau, rec, bias)


class Dense(_LIFConfig):
  """Flat (``fcN``) or recurrent (``rN``) spiking layer with per-neuron tau.

  Attributes:
    features: number of neurons N.
    recurrent: adds the intra-layer synapses ``recurrent_kernel`` ``[N, N]``.
    kernel_init: initializer of ``kernel`` ``[in, N]``.
    recurrent_init: initializer of ``recurrent_kernel`` ``[N, N]``.
    encoding: the layer receives an analog vector ``[batch, in]`` (no time axis); its
      affine part runs once and the currents are repeated over ``time_steps`` steps.
    time_steps: T, needed when ``encoding`` is set.
  """

  features: int = 0
  recurrent: bool = False
  kernel_init: Initializer = normal_fan_in(1.0)
  recurrent_init: Initializer = normal_fan_in(0.5)
  encoding: bool = False
  time_steps: Optional[int] = None

  @nn.compact
  def __call__(self, x: Array, extra_current: Optional[Array] = None) -> Array:
    """Args: ``x`` ``[T, batch, in]`` spikes (``[batch, in]`` analog if ``encoding``).
    Returns ``[T, batch, N]`` spikes."""
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    tau = self.param("tau", self._tau_initializer(), (self.features,),
                     self.param_dtype)
    rec = None
    if self.recurrent:
      rec = self.param("recurrent_kernel", self.recurrent_init,
                       (self.features, self.features), self.param_dtype)
    if self.spike_input and not self.encoding:
      currents = spike_dense(x, kernel)
    else:
      currents = _matmul(x, kernel)
    return self._currents_to_spikes(currents, bias, tau, extra_current, rec)


def _conv(x: Array, kernel: Array, strides: Tuple[int, int], padding: str) -> Array:
  """2-d convolution of ``[..., H, W, C]`` (any leading dims) with an HWIO kernel."""
  lead = x.shape[:-3]
  y = jax.lax.conv_general_dilated(
      x.reshape((-1,) + x.shape[-3:]), kernel.astype(x.dtype), strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(lead + y.shape[1:])


@functools.lru_cache(maxsize=None)
def _conv_op(strides: Tuple[int, int], padding: str) -> Callable[[Array, Array], Array]:
  """``(x, kernel) -> _conv(x, kernel, strides, padding)``, one object per setting (so
  :func:`spike_linear` sees the same hashable ``op`` at every trace)."""
  return functools.partial(_conv, strides=strides, padding=padding)


class Conv(_LIFConfig):
  """Convolutional spiking layer (``{C}c{K}/{S}``) with one tau shared per layer.

  Attributes:
    features: output channels.
    kernel_size: square kernel size K.
    strides: stride S.
    padding: ``"SAME"`` (default) or ``"VALID"``.
    encoding: the layer receives an analog image ``[batch, H, W, C]`` (no time axis),
      computes its conv once and feeds it at each of ``time_steps`` steps (the paper's
      encoding layer for CIFAR10).
    time_steps: T, needed when ``encoding`` is set.
  """

  features: int = 0
  kernel_size: int = 3
  strides: int = 1
  padding: str = "SAME"
  encoding: bool = False
  time_steps: Optional[int] = None
  kernel_init: Initializer = nn.initializers.he_normal()

  @nn.compact
  def __call__(self, x: Array, extra_current: Optional[Array] = None) -> Array:
    """Args: ``x`` ``[T, batch, H, W, C]`` spikes (``[batch, H, W, C]`` analog if
    ``encoding``). Returns ``[T, batch, H', W', features]`` spikes."""
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    tau = self.param("tau", self._tau_initializer(), (),
                     self.param_dtype)
    s = (self.strides, self.strides)
    if self.spike_input and not self.encoding:
      currents = spike_linear(_conv_op(s, self.padding), x, kernel)
    else:
      currents = _conv(x, kernel, s, self.padding)
    return self._currents_to_spikes(currents, bias, tau, extra_current)


class Pool(nn.Module):
  """Spatial pooling of spikes ``[T, batch, H, W, C]`` (window = stride = ``size``).

  ``kind="max"`` (``p2``) keeps spikes binary (a logical OR over the window);
  ``kind="avg"`` (``a2``) averages them (an analog current for the next layer).
  """

  size: int = 2
  kind: str = "max"

  def __call__(self, x: Array) -> Array:
    if x.ndim < 3 or self.size > min(x.shape[-3], x.shape[-2]):
      name = self.name or "Pool"
      got = (f"{x.shape[-3]}x{x.shape[-2]} input" if x.ndim >= 3
             else f"input of shape {tuple(x.shape)}")
      raise ConfigError(f"pooling layer {name} ({self.kind} {self.size}x{self.size}) does not "
                        f"fit its {got} ([T, batch, H, W, C]): the output would be empty; "
                        "use a smaller window")
    lead = x.shape[:-3]
    y = x.reshape((-1,) + x.shape[-3:])
    win = (self.size, self.size)
    if self.kind == "max":
      y = nn.max_pool(y, win, strides=win, padding="VALID")
    elif self.kind == "avg":
      y = nn.avg_pool(y, win, strides=win, padding="VALID")
    else:
      raise ValueError(f"unknown pooling kind {self.kind!r}: expected 'max' or 'avg'")
    return y.reshape(lead + y.shape[1:])


class Shortcut(nn.Module):
  """Projection shortcut of a residual block: a 1x1 conv (or dense) current, no bias.

  Its weight is named ``kernel`` so rewiring and the l1 term act on it too.
  """

  features: int
  strides: int = 1
  conv: bool = True
  kernel_init: Initializer = nn.initializers.he_normal()
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.conv:
      kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features),
                          self.param_dtype)
      return _conv(x, kernel, (self.strides, self.strides), "SAME")
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                        self.param_dtype)
    return _matmul(x, kernel)


class Residual(nn.Module):
  """Residual block ``[l1-l2-...]`` of spiking layers.

  The block's input spikes (or their projection by :class:`Shortcut` when the shape
  changes) are added to the input current of the block's last layer, before its LIF
  neurons: ``s_out = LIF(conv_last(s_prev) + b + shortcut(s_in))``.

  Attributes:
    layers: the inner layers, already-built modules (:class:`Conv` or :class:`Dense`).
  """

  layers: Sequence[nn.Module]
  # Keep the inner layers' given names (``res1/conv0``), not ``layers_0``.
  preserve_adopted_names = True

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Tuple[Array, ...]]:
    """Returns the block output spikes and the spikes of every inner layer."""
    h = x
    inner = []
    for layer in self.layers[:-1]:
      h = layer(h)
      inner.append(h)
    last = self.layers[-1]
    if isinstance(last, Conv):
      stride = 1
      for layer in self.layers:
        stride *= layer.strides
      same = stride == 1 and x.shape[-1] == last.features
      shortcut = x if same else Shortcut(last.features, stride, conv=True, name="shortcut")(x)
    else:
      same = x.shape[-1] == last.features
      shortcut = x if same else Shortcut(last.features, conv=False, name="shortcut")(x)
    out = last(h, extra_current=shortcut)
    inner.append(out)
    return out, tuple(inner)
