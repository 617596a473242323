"""Exact spike-sparse products: ``x @ w`` and ``x^T d`` for binary ``x``, per spike.

A spiking layer's synaptic products contract over spikes: the forward current
``x @ w`` of a binary input ``x`` ``[M, K]`` is the sum of the weight rows its spikes
select, and the weight gradient ``x^T d`` adds the cotangent row of every spike into
the row of its input. At a firing rate ``p`` that is ``p * M * K`` row additions
against ``M * K * N`` multiply-adds for the dense product. Both functions here compute
the same sums (exact to float round-off: only the order of the additions differs) and
choose at run time between two paths:

* **sparse** (CPU): a compiled row-gather / row-scatter kernel (numba, through
  ``jax.pure_callback``) when the input's density is at most the measured crossover
  :data:`CPU_CROSSOVER` and numba is installed;
* **dense**: XLA's matmul otherwise, and always on GPU/TPU (``lax.platform_dependent``)
  until a crossover has been measured there.

A recurrent layer's forward loop adds ``s^(t-1) @ R`` at every step; as one product
per step that is ``T`` callbacks. :func:`recurrent_potentials` runs the whole loop in
one kernel call instead (same sums, same order), falling back to the XLA loop where a
step's spikes pass the crossover.

XLA's own gather/scatter (``jnp.nonzero`` + ``segment_sum``) is no use for this: on a
CPU it ran 2-10x *slower* than the dense product at densities 0.005-0.1 for
``[640, 784] @ [784, 1000]`` (scatter-add is a scalar loop), hence the kernel.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Input density (non-zeros / (M * K)) up to which the sparse kernel runs on a CPU.
#: Measured with ``python benchmarks/sparse_train.py`` (2-core x86_64, shared machine):
#: ``[640, 784] @ [784, 1000]`` and ``[784, 640] @ [640, 1000]`` (the MNIST main job's
#: input layer) and ``[640, 1000] x [1000, 1000]`` (its recurrent layer) are faster
#: sparse up to a density of about 0.1-0.2 (1.0-5x) and slower at 0.3 (0.66-0.95x).
CPU_CROSSOVER = 0.1

#: Products with fewer output columns than this stay dense (a readout to 10 classes is
#: cheaper as one small matmul than as a callback).
MIN_COLUMNS = 64

#: Products with fewer rows than this stay dense (the callback's fixed cost). 64 keeps
#: the recurrent current of each step (``[64, 1000] @ [1000, 1000]``) sparse: alone it
#: timed 0.13-0.92x of dense (each call a separate dispatch, loaded machine), but inside
#: the main job's step it measured 2.57x and 3.22x over dense against 1.89x with it
#: dense (``benchmarks/sparse_train.py --tables step --min_rows 1`` / ``256``).
MIN_ROWS = 64

#: :func:`sparse_matmul` (the ``delta @ R^T`` of ``gradient="band"``, once per step) stays
#: dense for a weight matrix smaller than this (as ``event.MIN_EVENT_WEIGHTS``): MIT-BIH
#: wide's ``[64, 128] @ [128, 128]`` timed 0.17-0.19x of dense as a callback at every
#: density 0.01-0.3 (``python benchmarks/band.py --tables products``, shared machine); the
#: MNIST main job's 1000 x 1000 stays sparse (README, "Approximate sparse backward").
MIN_SPARSE_WEIGHTS = 1 << 17

try:  # numba is optional: without it every product is dense.
  import numba
except ImportError:  # pragma: no cover - exercised only without numba
  numba = None

# The callbacks hold this lock: numba's default (workqueue) threading layer must not be
# entered from two threads at once, and XLA may run two callbacks concurrently.
_LOCK = threading.Lock()


def available() -> bool:
  """Whether the sparse kernel can run (numba importable)."""
  return numba is not None


if numba is not None:

  @numba.njit(parallel=True, cache=True)
  def _gather_rows(x, w, weighted):  # pragma: no cover - compiled
    """``x @ w`` as one row of ``w`` added per nonzero ``x[r, c]``, scaled by it if
    ``weighted`` (else ``x`` holds spikes: the row itself)."""
    m, k = x.shape
    n = w.shape[1]
    out = np.zeros((m, n), w.dtype)
    for r in numba.prange(m):
      for c in range(k):
        v = x[r, c]
        if v != 0:
          if weighted:
            for j in range(n):
              out[r, j] += v * w[c, j]
          else:
            for j in range(n):
              out[r, j] += w[c, j]
    return out

  @numba.njit(parallel=True, cache=True)
  def _scatter_rows(xt, d):  # pragma: no cover - compiled
    k, m = xt.shape
    n = d.shape[1]
    out = np.zeros((k, n), d.dtype)
    for c in numba.prange(k):
      for r in range(m):
        if xt[c, r]:
          for j in range(n):
            out[c, j] += d[r, j]
    return out

  @numba.njit(parallel=True, cache=True)
  def _recurrent_loop(cur, tau, bias, r, thr, max_active):  # pragma: no cover - compiled
    """A recurrent LIF layer's potentials ``[T, M, N]``, one row of ``R`` added per spike.

    Per row and step: ``u = tau * u * (1 - s) + (cur + bias)``, then ``u = u + s @ R``
    with the recurrent sum added up first in ascending spike order (as
    :func:`_gather_rows` and the dense path's separate product). A row with more than
    ``max_active`` spikes in a step stops the loop: the flag tells the caller to run
    the dense loop instead.
    """
    t_, m_, n = cur.shape
    u = np.zeros((t_, m_, n), cur.dtype)
    over = np.zeros(m_, np.bool_)
    for m in numba.prange(m_):
      prev = np.zeros(n, cur.dtype)
      spiked = np.zeros(n, np.bool_)
      acc = np.zeros(n, cur.dtype)
      active = np.empty(n, np.int64)
      for t in range(t_):
        count = 0
        for k in range(n):
          if spiked[k]:
            active[count] = k
            count += 1
        if count > max_active:
          over[m] = True
          break
        acc[:] = 0
        for c in range(count):
          row = active[c]
          for j in range(n):
            acc[j] += r[row, j]
        for j in range(n):
          v = cur[t, m, j] + bias[m, j]
          if not spiked[j]:
            v = tau[m, j] * prev[j] + v
          v = v + acc[j]
          u[t, m, j] = v
          prev[j] = v
          spiked[j] = v >= thr
    return u, over.any()

def _host_recurrent(cur, tau, bias, r, thr, max_active):
  with _LOCK:
    return _recurrent_loop(np.asarray(cur), np.asarray(tau), np.asarray(bias),
                           np.asarray(r), thr.item(), max_active.item())


def _host_weighted(d, w):
  with _LOCK:
    return _gather_rows(np.asarray(d), np.asarray(w), True)


def _host_matmul(bits, w):
  with _LOCK:
    return _gather_rows(np.asarray(bits), np.asarray(w), False)


def _host_outer(bits_t, d):
  with _LOCK:
    return _scatter_rows(np.ascontiguousarray(bits_t), np.asarray(d))


def _sparse_pays(bits: Array, n: int) -> bool:
  """Static part of the choice: numba present, enough rows and output columns."""
  return numba is not None and n >= MIN_COLUMNS and bits.shape[0] >= MIN_ROWS


def _dense_count(bits: Array, crossover: float) -> Array:
  return jnp.sum(bits, dtype=jnp.int32) <= int(crossover * bits.size)


def _gathered(x: Array, w: Array, host: Callable, crossover: float,
              dense: Callable[[Array, Array], Array]) -> Array:
  """``x @ w`` by ``host``'s row gather on a CPU at density <= ``crossover``, else
  ``dense(x, w)`` (always on GPU/TPU)."""
  shape = jax.ShapeDtypeStruct((x.shape[0], w.shape[1]), w.dtype)

  def cpu(x, w):
    sparse = lambda x, w: jax.pure_callback(host, shape, x, w, vmap_method="sequential")
    return jax.lax.cond(_dense_count(x != 0, crossover), sparse, dense, x, w)

  return jax.lax.platform_dependent(x, w, cpu=cpu, default=dense)


def sparse_matmul(d: Array, w: Array, *, crossover: float | None = None) -> Array:
  """``d @ w`` for a float ``d`` ``[M, K]`` whose entries are mostly zero.

  The product of ``gradient="band"``'s deltas (zero outside the band) with a weight
  matrix: the sparse path adds ``d[r, c] * w[c]`` for every non-zero ``d[r, c]``, a
  weighted form of :func:`spike_matmul` with the same crossover and the same choice
  (sparse on a CPU at density <= ``crossover``, dense elsewhere and on GPU/TPU).

  Args:
    d: ``[M, K]`` floating point.
    w: ``[K, N]`` of ``d``'s dtype.
    crossover: as in :func:`spike_matmul`.

  Returns:
    ``[M, N]``, equal to ``d @ w`` to float round-off.
  """
  crossover = CPU_CROSSOVER if crossover is None else crossover
  if not _sparse_pays(d, w.shape[1]) or w.size < MIN_SPARSE_WEIGHTS:
    return d @ w
  return _gathered(d, w, _host_weighted, crossover, jnp.matmul)


def spike_matmul(bits: Array, w: Array, *, crossover: float | None = None,
                 dense: Optional[Callable[[Array, Array], Array]] = None) -> Array:
  """``bits @ w`` for a binary ``bits`` ``[M, K]`` (bool or 0/1) and ``w`` ``[K, N]``.

  Args:
    bits: ``[M, K]`` spikes; non-zero entries count as 1.
    w: ``[K, N]`` floating point.
    crossover: density up to which the sparse kernel runs on a CPU; default
      :data:`CPU_CROSSOVER`.
    dense: the dense product ``(x, w) -> x @ w`` of a float ``x`` (default
      ``jnp.matmul``; the layers pass their row-blocked CPU matmul).

  Returns:
    ``[M, N]`` of ``w``'s dtype, equal to the dense product to float round-off.
  """
  crossover = CPU_CROSSOVER if crossover is None else crossover
  bits = bits != 0
  dense_fn = jnp.matmul if dense is None else dense
  dense = lambda bits, w: dense_fn(bits.astype(w.dtype), w)
  if not _sparse_pays(bits, w.shape[1]):
    return dense(bits, w)
  return _gathered(bits, w, _host_matmul, crossover, dense)


def spike_outer(bits: Array, d: Array, *, crossover: float | None = None) -> Array:
  """``bits^T @ d`` for a binary ``bits`` ``[M, K]`` and ``d`` ``[M, N]`` (a weight
  gradient: the cotangent row of every spike added into its input's row).

  Args:
    bits: ``[M, K]`` spikes; non-zero entries count as 1.
    d: ``[M, N]`` floating point.
    crossover: as in :func:`spike_matmul`.

  Returns:
    ``[K, N]`` of ``d``'s dtype, equal to the dense product to float round-off.
  """
  crossover = CPU_CROSSOVER if crossover is None else crossover
  bits = bits != 0
  shape = jax.ShapeDtypeStruct((bits.shape[1], d.shape[1]), d.dtype)

  def dense(bits, d):
    return jax.lax.dot_general(bits.astype(d.dtype), d, (((0,), (0,)), ((), ())))

  if not _sparse_pays(bits, d.shape[1]):
    return dense(bits, d)

  def cpu(bits, d):
    sparse = lambda b, d: jax.pure_callback(_host_outer, shape, b.T, d,
                                            vmap_method="sequential")
    return jax.lax.cond(_dense_count(bits, crossover), sparse, dense, bits, d)

  return jax.lax.platform_dependent(bits, d, cpu=cpu, default=dense)


def recurrent_potentials(currents: Array, tau: Array, recurrent_kernel: Array,
                         bias: Optional[Array], threshold: float,
                         dense: Callable[[], Array], *,
                         crossover: float | None = None) -> Array:
  """The potentials ``[T, ..., N]`` of a recurrent LIF layer's forward loop, as one call.

  On a CPU with numba, the whole loop over ``T`` runs in one compiled kernel that adds
  one row of ``recurrent_kernel`` per spike (:func:`_recurrent_loop`): one callback per
  layer instead of one per step (each costs ~1-2 ms of dispatch; measured in the main
  job's step). If any row of any step has more than ``crossover * N`` spikes, the
  result is discarded and ``dense()`` (the XLA loop) runs instead. Elsewhere, and for
  layers below :data:`MIN_COLUMNS` neurons or :data:`MIN_ROWS` rows, ``dense()``.

  Args:
    currents: ``[T, ..., N]`` input currents (without the bias).
    tau: broadcastable to ``[..., N]``.
    recurrent_kernel: ``[N, N]``.
    bias: broadcastable to ``[..., N]``, or None.
    threshold: ``U_th``.
    dense: the XLA loop computing the same potentials (the fallback).
    crossover: as in :func:`spike_matmul`.

  Returns:
    ``[T, ..., N]`` potentials, equal to ``dense()``'s to float round-off.
  """
  crossover = CPU_CROSSOVER if crossover is None else crossover
  n = currents.shape[-1]
  rows = int(np.prod(currents.shape[1:-1], dtype=np.int64))
  if numba is None or n < MIN_COLUMNS or rows < MIN_ROWS:
    return dense()
  dtype = currents.dtype
  cur = currents.reshape((currents.shape[0], rows, n))
  step = (rows, n)
  tau_b = jnp.broadcast_to(jnp.asarray(tau, dtype), currents.shape[1:]).reshape(step)
  bias_b = (jnp.zeros(step, dtype) if bias is None else
            jnp.broadcast_to(jnp.asarray(bias, dtype), currents.shape[1:]).reshape(step))
  shapes = (jax.ShapeDtypeStruct(cur.shape, dtype), jax.ShapeDtypeStruct((), jnp.bool_))
  thr = jnp.asarray(threshold, dtype)
  limit = jnp.asarray(int(crossover * n), jnp.int64 if jax.config.jax_enable_x64
                      else jnp.int32)

  def cpu(cur, tau_b, bias_b, r, thr, limit):
    u, over = jax.pure_callback(_host_recurrent, shapes, cur, tau_b, bias_b, r, thr,
                                limit, vmap_method="sequential")
    return jax.lax.cond(over, lambda u: dense(), lambda u: u.reshape(currents.shape), u)

  def other(cur, tau_b, bias_b, r, thr, limit):
    return dense()

  return jax.lax.platform_dependent(cur, tau_b, bias_b, recurrent_kernel, thr, limit,
                                    cpu=cpu, default=other)
