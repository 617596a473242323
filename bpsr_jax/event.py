"""Event-driven (spike-sparse) inference of a dense :class:`bpsr_jax.SNN`.

At each step every layer takes the indices of its active input spikes (in ascending
index order) and adds up only the weight rows they select, instead of multiplying the
whole spike vector by the whole kernel. The LIF update around it is the dense path's, operation for operation
(:func:`bpsr_jax.lif`: ``u = tau * u * (1 - s) + (W x + b) + s @ R``; the integer path
of :func:`bpsr_jax.integer_apply` with its shift leak).

Capacity is static: each product selects at most ``capacity`` active inputs per sample
(the index array is ``[B, capacity]``) and adds their rows in a loop whose trip count
follows the step's largest spike count over the batch; a step with more active inputs
than ``capacity`` in some sample runs the dense product instead (``lax.cond``). No spike
is ever dropped.

Identity with the dense path:

* Integer (post-training-quantized) models: sums of integers do not depend on their
  order, so the spikes are identical to :func:`bpsr_jax.integer_apply`'s, always.
* Float models: with 0/1 inputs, ``x @ W`` is a sum of the selected rows of ``W``, whose
  float32 rounding depends on the order of the additions. The event fold adds the rows in
  one of two orders: ``"sequential"`` (``((w_a + w_b) + w_c) + ...``, ascending index) or
  ``"pairs"`` (two such sums, over the even and the odd indices, added at the end).
  ``order="auto"`` probes which of them the platform's dense ``[B, K] @ [K, N]`` uses for
  each product's shape (:func:`dense_order`; measured on XLA:CPU: a batch-1 product is
  sequential; Eigen's ``[64..2560, 784..1000] @ [.., 100..1000]`` products were pairs on
  an AVX2 machine and neither on an AVX-512 one)
  and then reproduces the dense spikes bit for bit. Where the probe recognizes neither
  order (:func:`dense_order` returns None) the fold is sequential and the spikes equal
  the dense ones except where a potential lies within float32 round-off (a few ulps of
  ``U_th``) of the threshold; the dense path itself differs between batch sizes in the
  same way.

Two modes: streaming (:func:`init_state` / :func:`step`, one step per call with the state
carried between calls, e.g. batch 1 in real time) and batched (:func:`run`, the whole
``T`` loop in one ``lax.scan``). Flat and recurrent layers fed with spikes (``fc``, ``r``)
are supported; conv, pooling, residual and encoding layers raise :class:`ConfigError`
(``benchmarks/sparse.py`` measures where event-driven conv would pay).
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import integer
from bpsr_jax import quantize
from bpsr_jax.errors import ConfigError

Array = jax.Array
PyTree = Any

#: Default capacity (active inputs per sample and step) of every event product; a step
#: with more runs the dense product.
DEFAULT_CAPACITY = 256
#: Products with fewer weights than this run dense in the event engine too (identical: it
#: is the dense path's own product). On XLA:CPU one event product costs ~15 us over the
#: dispatch at batch 1 (select + fold, measured), as much as a dense [1, K] @ [K, N] of
#: ~1e5 weights; e.g. MNIST's fc1 (1000 x 100) and fc2 (100 x 10) stay dense.
MIN_EVENT_WEIGHTS = 1 << 17
#: Selected rows added per iteration of the event fold's loop.
CHUNK = 16
ENGINES = ("event", "dense")
ORDERS = ("auto", "sequential", "pairs")


@flax.struct.dataclass
class EventNet:
  """A model prepared for :func:`step` / :func:`run` (:func:`prepare`).

  Attributes:
    layers: per layer a dict with ``kernel`` ``[in, N]``, ``bias`` ``[N]``, ``tau``
      ``[N]`` and, for ``r`` layers, ``recurrent_kernel`` ``[N, N]``: float32, or for a
      quantized model int32 (``recurrent_kernel`` already shifted by the guard bits) and
      the int tau codes.
    recurrent: per layer, whether it has a recurrent kernel (static).
    threshold: ``U_th`` (static).
    quant: the :class:`bpsr_jax.QuantInfo` of an integer model, None for float (static).
    binary_input: the model input is 0/1 spikes (True), may hold counts (False), or
      is checked at every step (None) (static).
  """
  layers: Tuple[dict, ...]
  recurrent: Tuple[bool, ...] = flax.struct.field(pytree_node=False)
  threshold: float = flax.struct.field(pytree_node=False, default=1.0)
  quant: Optional[quantize.QuantInfo] = flax.struct.field(pytree_node=False, default=None)
  binary_input: Optional[bool] = flax.struct.field(pytree_node=False, default=None)

  @property
  def sizes(self) -> Tuple[int, ...]:
    return tuple(int(lp["bias"].shape[-1]) for lp in self.layers)


def prepare(params: PyTree, spec: str, *, quant: Optional[quantize.QuantInfo] = None,
            threshold: float = 1.0, binary_input: Optional[bool] = None) -> EventNet:
  """Collects a dense SNN's params for event-driven inference.

  Args:
    params: ``model.init(...)["params"]`` of ``SNN(spec)`` (float), or the
      :func:`bpsr_jax.quantize_params` pytree of it with ``quant``.
    spec: the model spec; flat and recurrent layers fed with spikes only.
    quant: the :class:`bpsr_jax.QuantInfo` of quantized ``params``; None for float.
    threshold: the model's ``U_th`` (float models; a quantized one uses
      ``quant.threshold``).
    binary_input: True if the input is 0/1 spikes (e.g. rank-order MNIST), False if
      it may hold spike counts (MIT-BIH's level crossings); None checks every step.
      With True, a count > 1 would be added as 1.

  Returns:
    The :class:`EventNet`.

  Raises:
    ConfigError: a spec with conv, pooling, residual or encoding layers, or params that
      do not match it.
  """
  specs = integer.dense_specs(spec, "event-driven inference", " (use the dense path)")
  layers = []
  for i, ls in enumerate(specs):
    name = f"{ls.kind}{i}"
    if name not in params:
      raise ConfigError(f"params do not match {spec!r}: no layer {name!r} "
                        f"(got {sorted(params)})")
    p = params[name]
    if quant is None:
      lp = {k: jnp.asarray(p[k], jnp.float32) for k in ("kernel", "bias", "tau")}
      if ls.kind == "r":
        lp["recurrent_kernel"] = jnp.asarray(p["recurrent_kernel"], jnp.float32)
    else:
      g = quant.guard_bits
      lp = dict(kernel=jnp.asarray(p["kernel"]).astype(jnp.int32),
                bias=jnp.asarray(p["bias"]).astype(jnp.int32), tau=jnp.asarray(p["tau"]))
      if ls.kind == "r":
        lp["recurrent_kernel"] = jnp.left_shift(
            jnp.asarray(p["recurrent_kernel"]).astype(jnp.int32), g)
    if lp["kernel"].shape[-1] != ls.size:
      raise ConfigError(f"params do not match {spec!r}: layer {name!r} has "
                        f"{lp['kernel'].shape[-1]} neurons, the spec {ls.size}")
    layers.append(lp)
  thr = float(quant.threshold) if quant is not None else float(threshold)
  return EventNet(tuple(layers), tuple(ls.kind == "r" for ls in specs), thr, quant,
                  binary_input)


# ---------------------------------------------------------------------------------------
# Products.


@functools.lru_cache(maxsize=None)
def dense_order(rows: int, k: int, n: int) -> Optional[str]:
  """Which order the platform's dense float32 ``[rows, k] @ [k, n]`` adds its terms in.

  Probes the default backend's matmul with a random 0/1 matrix and random weights and
  compares it, bit for bit, with the two orders of the event fold (module docstring).

  Returns:
    ``"sequential"``, ``"pairs"`` or None (neither reproduces it).
  """
  rng = np.random.default_rng(0)
  rows_p = min(rows, 64)  # the order is a property of the kernel picked for the shape
  x = (rng.random((rows, k)) < 0.3).astype(np.float32)
  w = rng.normal(0.0, 1.0, (k, n)).astype(np.float32)
  with jax.ensure_compile_time_eval():  # also when called while tracing a step
    dense = np.asarray(jax.jit(jnp.matmul)(x, w))[:rows_p]
  x = x[:rows_p]
  acc = [np.zeros((rows_p, n), np.float32), np.zeros((rows_p, n), np.float32)]
  seq = np.zeros((rows_p, n), np.float32)
  for j in range(k):
    term = x[:, j:j + 1] * w[j]
    seq = seq + term
    acc[j % 2] = acc[j % 2] + term
  if np.array_equal(seq, dense):
    return "sequential"
  if np.array_equal(acc[0] + acc[1], dense):
    return "pairs"
  return None


def _inclusive_cumsum(m: Array) -> Array:
  """Row-wise inclusive prefix sums of a 0/1 float32 ``[B, K]`` (exact below 2^24), as
  two small triangular matmuls over blocks of the row."""
  # jnp.cumsum lowers to a reduce-window that XLA:CPU runs in O(K^2): 66 us for K = 1000
  # at batch 1, against a few us here.
  b, k = m.shape
  blk = next(d for d in (32, 25, 20, 16, 10, 8, 5, 4, 2, 1) if k % d == 0)
  rows = m.reshape(b, k // blk, blk)
  inner = rows @ jnp.triu(jnp.ones((blk, blk), m.dtype))
  before = inner[:, :, -1] @ jnp.triu(jnp.ones((k // blk, k // blk), m.dtype), 1)
  return (inner + before[:, :, None]).reshape(b, k)


def _select(h: Array, cap: int, stride: int = 1, offset: int = 0):
  """Indices of the nonzeros of ``h[:, offset::stride]`` ``[B, cap']`` (``cap'``: ``cap``
  rounded up to :data:`CHUNK`), ascending, as indices of ``h`` (padding:
  ``h.shape[-1]``, out of range). Nonzeros beyond the first ``cap'`` are left out (the
  caller checks the counts)."""
  # Prefix sums give each nonzero its slot and a scatter puts its index there: measured
  # 10 us at batch 1 and 1.4 ms at batch 256 for K = 1000, against 13-100 us and 23 ms
  # for lax.top_k and 17 us / 3.2 ms for jnp.nonzero(size=) on XLA:CPU.
  sub = h[:, offset::stride] if stride > 1 else h
  cap = cap + (-cap % CHUNK)
  mask = sub != 0
  slot = _inclusive_cumsum(mask.astype(jnp.float32)).astype(jnp.int32) - 1
  slot = jnp.where(mask, slot, cap)
  index = jnp.arange(sub.shape[-1], dtype=jnp.int32) * stride + offset
  empty = jnp.full((cap + 1,), h.shape[-1], jnp.int32)
  return jax.vmap(lambda sl: empty.at[sl].set(index, mode="drop"))(slot)[:, :cap]


def _fold(h: Array, w: Array, idx: Array, count: Array, weighted: bool) -> Array:
  """``sum_k h[b, idx[b, k]] * w[idx[b, k]]`` over ``k < count``, added left to right."""
  # A loop over chunks of CHUNK selected rows, each an explicit chain of adds: the order
  # is fixed (XLA does not reassociate float adds), the work follows the spike count
  # (the trip count is dynamic) and the program stays small (a fully unrolled fold of
  # 256 rows took minutes to compile). A chain of gathered rows measured 3x faster than
  # jnp.sum over the gathered [B, cap, N] rows (which adds in a tree order) at batch 1.
  def body(c, acc):
    chunk = jax.lax.dynamic_slice_in_dim(idx, c * CHUNK, CHUNK, axis=1)
    for k in range(CHUNK):
      row = w.at[chunk[:, k]].get(mode="fill", fill_value=0)
      if weighted:
        row = row * jnp.take_along_axis(h, chunk[:, k:k + 1], axis=1, mode="fill",
                                        fill_value=0)
      acc = acc + row
    return acc

  zeros = jnp.zeros((h.shape[0], w.shape[1]), w.dtype)
  return jax.lax.fori_loop(0, (count + CHUNK - 1) // CHUNK, body, zeros)


def _counts(h: Array, order: str) -> Tuple[Array, ...]:
  """The largest number of active inputs of a row (per half, for ``"pairs"``)."""
  if order == "pairs":
    return (jnp.max(jnp.sum(h[:, 0::2] != 0, -1)), jnp.max(jnp.sum(h[:, 1::2] != 0, -1)))
  return (jnp.max(jnp.sum(h != 0, -1)),)


def _event_product(h, w, counts, cap, order, weighted):
  if order == "pairs":
    half = max(1, cap // 2)
    even = _fold(h, w, _select(h, half, 2, 0), counts[0], weighted)
    odd = _fold(h, w, _select(h, half, 2, 1), counts[1], weighted)
    return even + odd
  return _fold(h, w, _select(h, cap), counts[0], weighted)


def product(h: Array, w: Array, *, capacity: int = DEFAULT_CAPACITY,
            order: str = "sequential", weighted: bool = False) -> Array:
  """``h @ w`` for a sparse ``h``: the event fold, or the dense product on overflow.

  Args:
    h: ``[B, K]`` inputs (spikes; any values with ``weighted``).
    w: ``[K, N]`` weights of ``h``'s dtype (float32 or int32).
    capacity: active inputs per row (static); a step whose largest row holds more runs
      the dense ``h @ w`` (``"pairs"``: ``capacity // 2`` per half).
    order: ``"sequential"`` or ``"pairs"`` (module docstring); integer products ignore it.
    weighted: multiply each selected row by its input value (non-binary inputs).

  Returns:
    ``[B, N]``, exactly ``h @ w`` for integers; for float, ``h @ w`` added in ``order``.
  """
  if jnp.issubdtype(w.dtype, jnp.integer):
    order = "sequential"
  cap = min(int(capacity), h.shape[-1])
  counts = _counts(h, order)
  limit = max(1, cap // 2) if order == "pairs" else cap
  fits = functools.reduce(jnp.logical_and, [c <= limit for c in counts])
  event = functools.partial(_event_product, cap=cap, order=order, weighted=weighted)
  return jax.lax.cond(fits, lambda h, w, c: event(h, w, c),
                      lambda h, w, c: _dense(h, w), h, w, counts)


def _dense(h, w):
  if jnp.issubdtype(w.dtype, jnp.integer):
    return integer.int_dot(h, w)
  return h @ w


def _maybe_weighted(h, w, **kw):
  """The first layer's product: its input may hold counts, not just 0/1."""
  binary = jnp.all((h == 0) | (h == 1))
  return jax.lax.cond(binary, functools.partial(product, weighted=False, **kw),
                      functools.partial(product, weighted=True, **kw), h, w)


# ---------------------------------------------------------------------------------------
# Streaming and batched inference.


def init_state(net: EventNet, batch: int = 1) -> Tuple[Tuple[Array, Array], ...]:
  """The state before the first step: per layer ``(potential, spikes)``, zeros
  ``[batch, N]`` (float32, or int32 for a quantized model)."""
  dtype = jnp.int32 if net.quant is not None else jnp.float32
  return tuple((jnp.zeros((batch, n), dtype), jnp.zeros((batch, n), dtype))
               for n in net.sizes)


def _check_engine(engine, order, capacity):
  if engine not in ENGINES:
    raise ConfigError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
  if order not in ORDERS:
    raise ConfigError(f"unknown order {order!r}: expected one of {', '.join(ORDERS)}")
  if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
    raise ConfigError(f"capacity must be a positive int (active inputs per sample and "
                      f"step), got {capacity!r}")


def step(net: EventNet, state, x: Array, *, engine: str = "event",
         capacity: int = DEFAULT_CAPACITY, order: str = "auto",
         min_event_weights: int = MIN_EVENT_WEIGHTS):
  """One time step of every layer.

  Args:
    net: :func:`prepare`'s result.
    state: :func:`init_state`'s, or the state a previous call returned.
    x: ``[B, ...]`` the input of this step (spikes or spike counts; extra feature dims
      are flattened as the model does).
    engine: ``"event"`` (folds of the selected weight rows) or ``"dense"`` (the jitted
      dense products, the reference).
    capacity: static capacities of each product (module docstring).
    order: float summation order: ``"auto"`` (the one the platform's dense product of
      the same shape uses, see :func:`dense_order`), ``"sequential"`` or ``"pairs"``.
    min_event_weights: products with fewer weights run dense (the dense path's own
      product; :data:`MIN_EVENT_WEIGHTS`); 0 runs every product as events.

  Returns:
    ``(state, spikes)``: the new state and a tuple with every layer's spikes ``[B, N]``
    of this step (the last is the output layer), float32 or int32 in {0, 1}.
  """
  _check_engine(engine, order, capacity)
  h = x.reshape((x.shape[0], -1))
  q = net.quant
  h = h.astype(jnp.int32 if q is not None else jnp.float32)
  new_state, spikes = [], []
  for i, (lp, rec, (u, s)) in enumerate(zip(net.layers, net.recurrent, state)):

    def prod(a, w, first=False):
      if engine == "dense" or w.size < min_event_weights:
        return _dense(a, w)
      o = order
      if q is None and o == "auto":
        o = dense_order(a.shape[0], a.shape[1], w.shape[1]) or "sequential"
      if first and net.binary_input is None:
        return _maybe_weighted(a, w, capacity=capacity, order=o)
      return product(a, w, capacity=capacity, order=o,
                     weighted=first and net.binary_input is False)

    if q is None:
      # The dense path's arithmetic, in its order (bpsr_jax.neuron._forward_potentials).
      current = prod(h, lp["kernel"], first=i == 0) + lp["bias"]
      u = lp["tau"] * u * (1 - s) + current
      if rec:
        u = u + prod(s, lp["recurrent_kernel"])
      s = (u >= jnp.asarray(net.threshold, u.dtype)).astype(u.dtype)
    else:
      # bpsr_jax.integer.integer_lif, one step.
      g = q.guard_bits
      current = jnp.left_shift(prod(h, lp["kernel"], first=i == 0) + lp["bias"], g)
      leak = integer.leak_fn(lp["tau"], q.tau_terms, q.max_tau_shift)
      v = jnp.where(s == 1, 0, leak(u)) + current
      if rec:
        v = v + prod(s, lp["recurrent_kernel"])
      s = (v >= (q.int_threshold << g)).astype(jnp.int32)
      u = v
    new_state.append((u, s))
    spikes.append(s)
    h = s
  return tuple(new_state), tuple(spikes)


def run(net: EventNet, x: Array, *, engine: str = "event",
        capacity: int = DEFAULT_CAPACITY, order: str = "auto",
        min_event_weights: int = MIN_EVENT_WEIGHTS):
  """Batched inference of a whole sequence (one ``lax.scan`` of :func:`step`).

  Args:
    net: :func:`prepare`'s result.
    x: ``[T, B, ...]`` input spikes (or counts).
    engine, capacity, order, min_event_weights: as for :func:`step`.

  Returns:
    ``(output_spikes, hidden_spikes)`` as :class:`bpsr_jax.SNN` returns them:
    ``[T, B, classes]`` and a tuple with each hidden layer's ``[T, B, N]``.
  """
  if x.ndim < 3:
    raise ConfigError(f"expected input spikes [T, batch, features], got shape {x.shape}")
  _check_engine(engine, order, capacity)
  body = functools.partial(step, net, engine=engine, capacity=capacity, order=order,
                           min_event_weights=min_event_weights)
  _, spikes = jax.lax.scan(lambda st, xt: body(st, xt), init_state(net, x.shape[1]), x)
  return spikes[-1], tuple(spikes[:-1])


#: :func:`step` and :func:`run` under ``jit`` (the keyword options static). One call of
#: ``step_jit`` is one dispatch: the real-time streaming case.
_STATIC = ("engine", "capacity", "order", "min_event_weights")
step_jit = jax.jit(step, static_argnames=_STATIC)
run_jit = jax.jit(run, static_argnames=_STATIC)
