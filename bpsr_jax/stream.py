"""Streaming event-driven inference on the host: one sample, one step per call.

The real-time case (a sensor, MIT-BIH beats arriving one at a time) runs one sample at
batch 1, one time step per call, with the state carried between calls. There the cost of
the jitted step (:func:`bpsr_jax.event.step_jit`) is not arithmetic but XLA's dispatch
and its fixed cost per operation: the MNIST main-job step does ~40 k additions as events
and still costs hundreds of microseconds. This module runs the same step as one compiled
numba function on host (numpy) arrays: every layer takes the indices of its active input
spikes and adds only the weight rows they select; a silent neuron costs nothing
(``benchmarks/sparse.py`` measures it against the jitted dense step).

The arithmetic is that of :func:`bpsr_jax.event.step`, operation for operation:

* float: ``u = tau * u * (1 - s) + (x @ W + b)``, then ``u = u + s @ R`` for a
  recurrent layer, ``s = u >= U_th``; every product adds the selected rows in the order
  that the platform's dense ``[1, K] @ [K, N]`` uses (:func:`bpsr_jax.event.dense_order`:
  in sequence on XLA:CPU), so the spikes equal the jitted dense step's at batch 1 bit for
  bit. Unless the net was prepared with ``binary_input=True``, the first layer weights
  each row by its input (``x_k * W[k]``, rounded before the add; MIT-BIH's
  level-crossing counts), which for ``x_k = 1`` is the row itself.
* integer (a :func:`bpsr_jax.quantize_params` model): the shift leak and int32 adds of
  :func:`bpsr_jax.integer_apply` (sums of integers do not depend on their order):
  identical always.

There is no capacity: the fold visits every active input, whatever their number, so no
spike is ever dropped and no fallback is needed.

Example::

  net = stream.prepare(event.prepare(params, "r1000-fc100-fc10", binary_input=True))
  state = stream.init_state(net)
  for x_t in sensor:                      # x_t: [784] (or [1, 784]) spikes of one step
    state, spikes = stream.step(net, state, x_t)   # spikes[-1]: the output layer's [10]
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from bpsr_jax import event
from bpsr_jax import integer
from bpsr_jax import quantize
from bpsr_jax.errors import ConfigError

try:  # numba is a dependency; kept optional at import like bpsr_jax.spmm.
  import numba
except ImportError:  # pragma: no cover - exercised only without numba
  numba = None

#: Summation orders of the products (the codes the kernel reads).
_SEQUENTIAL, _PAIRS = 0, 1
#: Columns of :attr:`HostNet.layout`: where each layer's arrays start in
#: :attr:`HostNet.values` (-1: absent) and their sizes.
(_KERNEL, _IN, _OUT, _REC, _BIAS, _TAU, _ORDER_IN, _ORDER_REC, _SHIFTS, _DEPTH,
 _DIGITS) = range(11)


class HostNet(NamedTuple):
  """A :class:`bpsr_jax.event.EventNet` as two flat host arrays for :func:`step`.

  One flat buffer and one table, not a list of arrays: numba unboxes each argument
  array at every call (~0.7 us, ~5 us for a typed list, measured), which at one call per
  step would cost more than the step's arithmetic.

  Attributes:
    values: every layer's ``kernel`` ``[in, N]``, ``recurrent_kernel`` ``[N, N]``
      (integer models: already shifted by the guard bits), ``bias`` ``[N]`` and ``tau``
      ``[N]`` (float32), or for an integer model the int32 values and the shift leak:
      ``[D, N]`` shifts and ``[D, N]`` signs in {-1, 0, 1} (``D = tau_terms``; each
      neuron's nonzero signed digits of its tau code), ``leak(v) = sum_d [sign > 0]
      (v >> shift) + [sign < 0] ((-v) >> shift)`` (``TAU_ZERO``: all signs 0, no
      memory), flattened one after the other.
    layout: ``[L, 11]`` int64: per layer the offsets and sizes of those arrays in
      ``values`` and the summation order codes of its two products (columns ``_KERNEL``
      ... ``_DIGITS``).
    offsets: ``[L + 1]`` where each layer's neurons start in the flat state.
    threshold: ``U_th`` (float) or the integer threshold shifted by the guard bits.
    guard_bits: the integer model's guard bits (0 for float).
    integer: whether the model is quantized.
    binary_input: as :attr:`bpsr_jax.event.EventNet.binary_input` (True: 0/1 spikes;
      otherwise each input row is weighted by its value).
    bounds: per layer ``(start, stop)`` of its neurons in the flat state (Python ints:
      slicing with numpy integers cost ~10 us a step).
  """
  values: np.ndarray
  layout: np.ndarray
  offsets: np.ndarray
  threshold: float
  guard_bits: int
  integer: bool
  binary_input: Optional[bool]
  bounds: Tuple[Tuple[int, int], ...]

  @property
  def sizes(self) -> Tuple[int, ...]:
    return tuple(int(n) for n in np.diff(self.offsets))


class State(NamedTuple):
  """Potentials and spikes of every neuron of every layer, flat ``[sum N]``."""
  potentials: np.ndarray
  spikes: np.ndarray


def available() -> bool:
  """Whether the host engine can run (numba importable)."""
  return numba is not None


def _order_code(k: int, n: int) -> int:
  return _PAIRS if event.dense_order(1, k, n) == "pairs" else _SEQUENTIAL


def _leak_table(code: np.ndarray, q: quantize.QuantInfo):
  """``(shifts [D, N], signs [D, N])`` of the integer leak (:class:`HostNet`): each
  neuron's nonzero signed digits first, ``D = tau_terms``."""
  if q.tau_terms == 1:  # one shift per neuron; TAU_ZERO: no term (no memory)
    return (np.maximum(code, 0)[None].astype(np.int32),
            (code != quantize.TAU_ZERO)[None].astype(np.int32))
  pairs = integer.signed_digits(code, q.max_tau_shift)
  shifts = np.asarray([sh for sh, _ in pairs], np.int32)               # [K + 1]
  digits = np.stack([np.asarray(d, np.int32) for _, d in pairs])       # [K + 1, N]
  first = np.argsort(digits == 0, axis=0, kind="stable")[:q.tau_terms]  # nonzero first
  signs = np.take_along_axis(digits, first, axis=0)
  return np.where(signs != 0, shifts[first], 0).astype(np.int32), signs


def prepare(net: event.EventNet) -> HostNet:
  """Copies an :class:`bpsr_jax.event.EventNet` to host arrays for :func:`step`.

  Args:
    net: :func:`bpsr_jax.event.prepare`'s result (float or integer).

  Returns:
    The :class:`HostNet`.

  Raises:
    ConfigError: numba is not installed.
  """
  if numba is None:
    raise ConfigError("bpsr_jax.stream needs numba (pip install numba); use "
                      "bpsr_jax.event.step_jit instead")
  q = net.quant
  dtype = np.int32 if q is not None else np.float32
  chunks, rows, size = [], [], 0

  def put(a):
    nonlocal size
    chunks.append(np.asarray(a, dtype).reshape(-1))
    size += chunks[-1].size
    return size - chunks[-1].size

  for lp, rec in zip(net.layers, net.recurrent):
    k, n = lp["kernel"].shape
    row = np.full(11, -1, np.int64)
    row[_IN], row[_OUT] = k, n
    row[_KERNEL] = put(lp["kernel"])
    if rec:
      row[_REC] = put(lp["recurrent_kernel"])
    row[_BIAS] = put(np.broadcast_to(np.asarray(lp["bias"]), (n,)))
    row[_ORDER_IN] = _order_code(k, n) if q is None else _SEQUENTIAL
    row[_ORDER_REC] = _order_code(n, n) if (rec and q is None) else _SEQUENTIAL
    tau = np.broadcast_to(np.asarray(lp["tau"]), (n,))
    if q is None:
      row[_TAU] = put(tau)
    else:
      shifts, signs = _leak_table(tau.astype(np.int32), q)
      row[_SHIFTS], row[_DEPTH] = put(shifts), shifts.shape[0]
      row[_DIGITS] = put(signs)
    rows.append(row)
  sizes = [int(r[_OUT]) for r in rows]
  if q is not None:
    thr, g = float(int(q.int_threshold) << q.guard_bits), int(q.guard_bits)
  else:
    thr, g = float(net.threshold), 0
  offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
  bounds = tuple((int(offsets[i]), int(offsets[i + 1])) for i in range(len(sizes)))
  return HostNet(np.concatenate(chunks), np.stack(rows), offsets, thr, g, q is not None,
                 net.binary_input, bounds)


def init_state(net: HostNet) -> State:
  """The state before the first step: zeros ``[sum N]``."""
  dtype = np.int32 if net.integer else np.float32
  n = int(net.offsets[-1])
  return State(np.zeros(n, dtype), np.zeros(n, dtype))


def step(net: HostNet, state: State, x) -> Tuple[State, Tuple[np.ndarray, ...]]:
  """One time step of every layer for one sample.

  Args:
    net: :func:`prepare`'s result.
    state: :func:`init_state`'s, or the state a previous call returned (not modified).
    x: the input of this step, ``[features]`` or ``[1, features]`` (spikes, or spike
      counts for a model prepared with ``binary_input`` False or None).

  Returns:
    ``(state, spikes)``: the new state and every layer's spikes ``[N]`` of this step
    (views of ``state.spikes``; the last is the output layer), float32 or int32 in
    {0, 1}.

  Raises:
    ConfigError: ``x`` has not the input layer's size.
  """
  dtype = np.int32 if net.integer else np.float32
  x = np.array(x, dtype).reshape(-1)  # a writable copy (one numba type)
  if x.shape[0] != net.layout[0, _IN]:
    raise ConfigError(f"expected one step's input of {net.layout[0, _IN]} features "
                      f"([features] or [1, features]), got shape {x.shape}")
  # A count input adds x_k * W[k]; for x_k = 1 that is W[k] exactly, so a possibly
  # non-binary input is always weighted (checking it in numpy cost ~50 us a step).
  weighted = net.binary_input is not True
  u, s = state.potentials.copy(), state.spikes.copy()
  kernel = _int_step if net.integer else _float_step
  kernel(net.values, net.layout, net.offsets, dtype(net.threshold), net.guard_bits, x,
         weighted, u, s)
  return State(u, s), tuple([s[a:b] for a, b in net.bounds])


def run(net: HostNet, x) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
  """One sample's whole sequence, step by step (the streaming arithmetic).

  Args:
    net: :func:`prepare`'s result.
    x: ``[T, features]`` or ``[T, 1, features]`` input of one sample.

  Returns:
    ``(output_spikes, hidden_spikes)`` like :class:`bpsr_jax.SNN` at batch 1:
    ``[T, 1, classes]`` and a tuple with each hidden layer's ``[T, 1, N]``.
  """
  x = np.asarray(x)
  state, steps = init_state(net), []
  for t in range(x.shape[0]):
    state, _ = step(net, state, x[t])
    steps.append(state.spikes)
  every = np.stack(steps)[:, None]
  layers = [every[..., a:b] for a, b in net.bounds]
  return layers[-1], tuple(layers[:-1])


class Stream:
  """One sample in real time: one time step's input per call, the state kept between.

  The stateful shell over :func:`step` that :meth:`bpsr_jax.Predictor.stream` returns::

    s = bpsr_jax.load("mitbih", engine="event").stream()
    for x_t in steps:                # x_t [features]: this step's (encoded) input
      out = s.step(x_t)              # [classes] output spikes of this step
    label = s.predict()              # the class with the most output spikes so far
    s.reset()                        # the next sample

  Args:
    net: :func:`bpsr_jax.event.prepare`'s result.
    engine: ``"event"`` (the host engine of this module; the jitted
      :func:`bpsr_jax.event.step` where numba is missing) or ``"dense"`` (the jitted step
      with dense products).
  """

  def __init__(self, net: event.EventNet, engine: str = "event"):
    if engine not in event.ENGINES:
      raise ConfigError(f"unknown engine {engine!r}: expected one of "
                        f"{', '.join(event.ENGINES)}")
    self.engine = engine
    self._net = net
    self._host = prepare(net) if (engine == "event" and available()) else None
    self.reset()

  def reset(self):
    """Forgets the sample: zero state, zero counts."""
    if self._host is not None:
      self._state = init_state(self._host)
    else:
      self._state = event.init_state(self._net, 1)
    self.steps = 0
    self.counts = np.zeros(self._net.sizes[-1], np.int64)

  def step(self, x) -> np.ndarray:
    """Feeds one step's input ``[features]`` (or ``[1, features]``); returns the output
    layer's spikes ``[classes]`` of this step."""
    if self._host is not None:
      self._state, spikes = step(self._host, self._state, x)
      out = spikes[-1]
    else:
      x = np.asarray(x).reshape(1, -1)
      self._state, spikes = event.step_jit(self._net, self._state, x, engine=self.engine)
      out = np.asarray(spikes[-1])[0]
    self.steps += 1
    self.counts += out.astype(np.int64)
    return out

  def predict(self) -> int:
    """The class with the most output spikes so far (ties: the lowest index)."""
    return int(np.argmax(self.counts))


# ---------------------------------------------------------------------------------------
# Kernels. One call runs every layer: the call's fixed cost is paid once a step.

if numba is not None:

  @numba.njit(cache=True)
  def _fold(h, w, order, weighted):  # pragma: no cover - compiled
    """``h @ w`` over the nonzeros of ``h`` ``[K]``, in the dense product's order."""
    n = w.shape[1]
    acc = np.zeros(n, w.dtype)
    odd = np.zeros(n if order == _PAIRS else 0, w.dtype)
    for k in range(h.shape[0]):
      if h[k] != 0:
        hk = h[k] if weighted else w.dtype.type(1)
        if order == _PAIRS and k % 2 == 1:
          for j in range(n):
            odd[j] += hk * w[k, j] if weighted else w[k, j]
        else:
          for j in range(n):
            acc[j] += hk * w[k, j] if weighted else w[k, j]
    for j in range(odd.shape[0]):
      acc[j] += odd[j]
    return acc

  @numba.njit(cache=True)
  def _products(values, row, h, s_prev, weighted):  # pragma: no cover - compiled
    """A layer's input current ``h @ W`` and recurrent current ``s_prev @ R``."""
    k, n = row[_IN], row[_OUT]
    w = values[row[_KERNEL]:row[_KERNEL] + k * n].reshape((k, n))
    current = _fold(h, w, row[_ORDER_IN], weighted)
    if row[_REC] >= 0:
      r = values[row[_REC]:row[_REC] + n * n].reshape((n, n))
      return current, _fold(s_prev, r, row[_ORDER_REC], False)
    return current, np.zeros(0, values.dtype)

  @numba.njit(cache=True)
  def _float_update(values, row, u, s, c, g):  # pragma: no cover - compiled
    """``u = tau * u * (1 - s) + c`` of a layer, (1 - s) in {0, 1}: the same float32."""
    tau = values[row[_TAU]:row[_TAU] + u.shape[0]]
    for i in range(u.shape[0]):
      u[i] = c[i] if s[i] != 0 else tau[i] * u[i] + c[i]

  @numba.njit(cache=True)
  def _int_update(values, row, u, s, c, g):  # pragma: no cover - compiled
    """``u = leak(u) * (1 - s) + (c << g)`` of a layer (the leak of :class:`HostNet`);
    stored as int32, which wraps like :func:`bpsr_jax.integer_apply`'s adds. Only the
    nonzero digits are visited: with all K + 1 of them the MNIST int8 stream took 0.70
    instead of 0.57 ms per sample (one quiet run; repeats here vary up to 1.6x)."""
    n, depth = u.shape[0], row[_DEPTH]
    shifts = values[row[_SHIFTS]:row[_SHIFTS] + depth * n].reshape((depth, n))
    signs = values[row[_DIGITS]:row[_DIGITS] + depth * n].reshape((depth, n))
    for i in range(n):
      v = u[i]
      leak = 0
      if s[i] == 0:
        for d in range(depth):
          if signs[d, i] > 0:
            leak += v >> shifts[d, i]
          elif signs[d, i] < 0:
            leak += (-v) >> shifts[d, i]
      u[i] = leak + (c[i] << g)

  def _make_step(update):
    """The kernel running every layer in place on ``u`` and ``s``, with ``update`` the
    type's membrane rule compiled in (as an argument it cost 1.7x float, 3.8x int)."""

    @numba.njit(cache=True)
    def step_all(values, layout, offsets, thr, g, x, weighted, u,
                 s):  # pragma: no cover - compiled
      h = x
      for l in range(layout.shape[0]):
        row, a, b = layout[l], offsets[l], offsets[l + 1]
        current, rcur = _products(values, row, h, s[a:b], weighted and l == 0)
        current += values[row[_BIAS]:row[_BIAS] + b - a]
        # The update stores u before the recurrent add: int32 wraps like
        # integer_apply's adds, and a float32 store is the dense step's rounding.
        update(values, row, u[a:b], s[a:b], current, g)
        for i in range(b - a):
          if rcur.shape[0] > 0:
            u[a + i] = u[a + i] + rcur[i]
          s[a + i] = 1 if u[a + i] >= thr else 0
        h = s[a:b]

    return step_all

  # One kernel per type. numba's cache keys a closure by its signature, not by the
  # captured rule: each rule has its own dtype, so the two never share a key.
  _float_step = _make_step(_float_update)
  _int_step = _make_step(_int_update)
