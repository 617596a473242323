"""Efficiency metrics of a spiking network: spikes, synapses, operations, FLOPs, energy.

The counts follow the paper's efficiency study (section 3, Table 3 and Fig. 9):

* **Firing rate** of a layer: spikes / (neurons * T), averaged over the batch. The total
  excludes the input spikes (they are set by the encoder, not learned).
* **Synapses** (``synapses``): the non-zero entries of every ``kernel`` and
  ``recurrent_kernel`` (what is stored). **Connections** (``connections``): the synapses
  as the paper's Table 3 counts them: a conv kernel's shared weights are counted once per
  connection they make (per output position, padding excluded), pooling windows count
  one synapse per (input, output) pair, and an identity shortcut one per neuron.
* **Synaptic operations (SOPs)** per inference: every input spike that reaches a
  non-zero synapse is one accumulate (the event-driven cost). A recurrent synapse fires
  with the spike of the previous step, so the last step's spikes do not count there.
* **Learning FLOPs** per sample and training step, for a clock-driven (dense in time)
  implementation: the synaptic contractions forward (``2 * connections * T``) and backward
  (``dW`` and ``dx``; no ``dx`` into the network input), plus :data:`NEURON_FWD_FLOPS` /
  :data:`NEURON_BWD_FLOPS` per neuron and step. **Inference FLOPs** are event-driven:
  SOPs (adds) plus the neuron updates.
* **Energy** (Fig. 9): a weighted count of operations in units of one float add
  (:data:`ENERGY_COSTS`: float multiply 4, fixed-point add 0.2, bitwise op 0), for the
  float SNN, the PTQ fixed-point SNN and ANN / BNN / XNOR-Net references of the same
  structure (:func:`snn_ops`, :func:`reference_ops`, :func:`energy`).

Neuron update per step (eq. 1-2), float SNN: the leak ``tau * u`` (1 multiply), the
input current and bias (1 add each; encoding layers add their precomputed current) and
the threshold comparison (1 add); the reset is a bitwise mask. After PTQ (section 2.5) the
leak is a right shift (bitwise) and the adds and the comparison are fixed-point adds.

Usage::

    report = metrics.measure(model, {"params": params}, x)
    print(report.table())            # per layer and total
    ops = metrics.snn_ops(report)    # float SNN; quantized=True for PTQ
    metrics.energy(ops)

For a PTQ-quantized network pass the dequantized parameters
(``quantize.dequantize_params(quantize.quantize_params(params, ...))``): weights that
round to zero are then no synapses, and ``snn_ops(report, quantized=True)`` prices the
operations as fixed point.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import layers as L

Array = jax.Array

#: The paper's energy model (Fig. 9), in units of one floating-point add.
ENERGY_COSTS: Mapping[str, float] = {
    "fl_add": 1.0, "fl_mul": 4.0, "fi_add": 0.2, "bit_op": 0.0}

#: FLOPs of one neuron update in the forward pass (leak multiply, reset gate, current add,
#: threshold compare).
NEURON_FWD_FLOPS = 4
#: FLOPs of one neuron step of the reverse scan (Gaussian surrogate ~6, leak path 3,
#: tau gradient 3, accumulation 2).
NEURON_BWD_FLOPS = 14


# ---------------------------------------------------------------------------------------
# Per-layer records.


@dataclasses.dataclass
class LayerMetrics:
  """Measured and counted quantities of one layer, per sample (batch-averaged).

  Attributes:
    name: the module path, e.g. ``"r0"``, ``"res1/conv0"``, ``"pool2"``.
    kind: ``"dense"``, ``"recurrent"``, ``"conv"``, ``"pool"``, ``"shortcut"`` or
      ``"identity"`` (an identity residual shortcut).
    neurons: spiking neurons of the layer (0 for pooling and shortcuts).
    time_steps: T.
    synapses: stored non-zero synaptic weights (``kernel`` + ``recurrent_kernel``).
    connections: synapses counted per connection (Table 3: shared conv weights once per
      output position, pooling windows, identity shortcuts).
    recurrent_connections: the part of ``connections`` inside the layer.
    spikes: output spikes per sample over the window (0 for pooling and shortcuts).
    input_spikes: input spikes per sample over the window (for an encoding layer: 0,
      its input is analog).
    sops: synaptic operations (accumulates) per inference.
    macs: multiply-accumulates per inference (an encoding layer's analog input, once).
    encoding: the layer receives the analog input.
    first: the layer reads the network input (no gradient flows into its input).
  """

  name: str
  kind: str
  neurons: int
  time_steps: int
  synapses: int
  connections: int
  recurrent_connections: int
  spikes: float
  input_spikes: float
  sops: float
  macs: float = 0.0
  encoding: bool = False
  first: bool = False

  @property
  def firing_rate(self) -> float:
    """Spikes per neuron and time step (0 for layers without neurons)."""
    if not self.neurons:
      return 0.0
    return self.spikes / (self.neurons * self.time_steps)

  @property
  def neuron_updates(self) -> int:
    """Neuron-steps per inference: ``neurons * T``."""
    return self.neurons * self.time_steps


@dataclasses.dataclass
class Report:
  """Metrics of a network on a batch: one :class:`LayerMetrics` per layer, in order.

  Attributes:
    layers: per-layer records.
    batch: the batch size measured.
    time_steps: T.
    input_spikes: network input spikes per sample (0 for an analog input).
  """

  layers: List[LayerMetrics]
  batch: int
  time_steps: int
  input_spikes: float

  def spiking_layers(self) -> List[LayerMetrics]:
    return [l for l in self.layers if l.neurons]

  @property
  def neurons(self) -> int:
    return sum(l.neurons for l in self.layers)

  @property
  def spikes(self) -> float:
    """Spikes per sample, all spiking layers (input excluded)."""
    return float(sum(l.spikes for l in self.layers))

  @property
  def hidden_spikes(self) -> float:
    """Spikes per sample of all spiking layers but the output layer."""
    return float(sum(l.spikes for l in self.spiking_layers()[:-1]))

  @property
  def firing_rate(self) -> float:
    """Spikes / (neurons * T) over all spiking layers, the input excluded."""
    n = self.neurons
    return self.spikes / (n * self.time_steps) if n else 0.0

  @property
  def synapses(self) -> int:
    return int(sum(l.synapses for l in self.layers))

  @property
  def connections(self) -> int:
    return int(sum(l.connections for l in self.layers))

  @property
  def sops(self) -> float:
    return float(sum(l.sops for l in self.layers))

  @property
  def inference_flops(self) -> float:
    """Event-driven FLOPs per inference (see :func:`inference_flops`)."""
    return inference_flops(self)

  @property
  def learning_flops(self) -> float:
    """Clock-driven FLOPs per sample and training step (see :func:`learning_flops`)."""
    return learning_flops(self)

  def as_dict(self) -> Dict[str, Any]:
    """A JSON-ready summary: totals and one dict per layer."""
    return {
        "batch": self.batch, "time_steps": self.time_steps,
        "input_spikes": self.input_spikes, "neurons": self.neurons,
        "spikes": self.spikes, "hidden_spikes": self.hidden_spikes,
        "firing_rate": self.firing_rate, "synapses": self.synapses,
        "connections": self.connections, "sops": self.sops,
        "inference_flops": self.inference_flops, "learning_flops": self.learning_flops,
        "energy_float": energy(snn_ops(self)),
        "energy_fixed": energy(snn_ops(self, quantized=True)),
        "layers": [dict(dataclasses.asdict(l), firing_rate=l.firing_rate)
                   for l in self.layers],
    }

  def table(self) -> str:
    """A markdown table, one row per layer and a total row."""
    head = ("| layer | kind | neurons | synapses | connections | spikes/sample | "
            "firing rate | SOPs |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
    rows = [f"| {l.name} | {l.kind} | {l.neurons} | {l.synapses} | {l.connections} | "
            f"{l.spikes:.1f} | {l.firing_rate:.4f} | {l.sops:.0f} |" for l in self.layers]
    rows.append(f"| **total** | | {self.neurons} | {self.synapses} | {self.connections} | "
                f"{self.spikes:.1f} | {self.firing_rate:.4f} | {self.sops:.0f} |")
    return head + "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------
# Counting on arrays.


def _nonzero_mask(w: Array) -> Array:
  return (jnp.asarray(w) != 0).astype(jnp.float32)


def _conv(x: Array, kernel: Array, strides: int, padding: str) -> Array:
  """``[..., H, W, C]`` conv with an HWIO kernel (any leading dims), float32."""
  lead = x.shape[:-3]
  y = jax.lax.conv_general_dilated(
      x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32), kernel.astype(jnp.float32),
      (strides, strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(lead + y.shape[1:])


def _linear(kind: str, x: Array, mask: Array, module: Any) -> Array:
  if kind == "conv":
    return _conv(x, mask, module.strides, module.padding)
  if kind == "shortcut" and mask.ndim == 4:
    return _conv(x, mask, module.strides, "SAME")
  return x.astype(jnp.float32) @ mask


def _connections(kind: str, x_one: Array, mask: Array, module: Any) -> int:
  """Synapses counted per connection: the linear map of an all-ones sample."""
  return int(round(float(jnp.sum(_linear(kind, jnp.ones_like(x_one, jnp.float32), mask,
                                         module)))))


# ---------------------------------------------------------------------------------------
# Recording a forward pass.


def _module_name(module: nn.Module) -> str:
  path = getattr(getattr(module, "scope", None), "path", None)
  if path:
    return "/".join(str(p) for p in path)
  return module.name or type(module).__name__


def record(model: nn.Module, variables: Mapping[str, Any], x: Array,
           **apply_kwargs) -> List[Dict[str, Any]]:
  """Runs ``model.apply(variables, x)`` and records every layer's input and output.

  Args:
    model: a linen module built from :mod:`bpsr_jax.layers` (e.g. :class:`bpsr_jax.SNN`).
    variables: ``{"params": params}``.
    x: the model input (``[T, batch, ...]`` spikes, or ``[batch, ...]`` analog for an
      encoding first layer).
    **apply_kwargs: passed to ``model.apply``.

  Returns:
    One dict per layer call, in call order: ``module`` (the bound module), ``name``,
    ``kind``, ``x`` (its input), ``out`` (its output), ``params`` (its own parameters).

  Raises:
    ValueError: no spiking layer was recorded (the model holds no
      :mod:`bpsr_jax.layers` spiking layers, so there are no spikes to measure).
  """
  calls: List[Dict[str, Any]] = []

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(
        module, (L.Dense, L.Conv, L.Pool, L.Shortcut, L.Residual)):
      return next_fun(*args, **kwargs)
    entry: Dict[str, Any] = {"module": module, "name": _module_name(module),
                             "x": args[0] if args else kwargs.get("x")}
    if isinstance(module, L.Residual):
      entry["kind"] = "residual"
      calls.append(entry)
      out = next_fun(*args, **kwargs)
      entry["out"] = out[0]
      entry["params"] = jax.tree_util.tree_map(
          lambda a: a, module.variables.get("params", {}))
      return out
    out = next_fun(*args, **kwargs)
    params = module.variables.get("params", {})
    if isinstance(module, L.Dense):
      kind = "recurrent" if module.recurrent else "dense"
    elif isinstance(module, L.Conv):
      kind = "conv"
    elif isinstance(module, L.Pool):
      kind = "pool"
    else:
      kind = "shortcut"
    entry.update(kind=kind, out=out, params=params)
    calls.append(entry)
    return out

  with nn.intercept_methods(interceptor):
    model.apply(variables, x, **apply_kwargs)
  if not any(c["kind"] in ("dense", "recurrent", "conv") for c in calls):
    raise ValueError(
        f"no spikes recorded: {type(model).__name__} called no bpsr_jax spiking layer "
        "(Dense, EncodingDense, Conv), so there is nothing to measure. Pass a model "
        "built from bpsr_jax.layers (e.g. bpsr_jax.SNN), or compute the metrics from "
        "recorded spikes with firing_rates(spikes).")
  return calls


def measure(model: nn.Module, variables: Mapping[str, Any], x: Array,
            **apply_kwargs) -> Report:
  """Measures a spiking network on a batch: per-layer spikes, synapses and SOPs.

  Args:
    model: a linen module made of :mod:`bpsr_jax.layers` (e.g. ``SNN(spec)``).
    variables: ``{"params": params}``; for a PTQ network, the dequantized parameters.
    x: one batch of model input: time-major spikes ``[T, batch, ...]``, or the analog
      ``[batch, ...]`` input of a model whose first layer is an encoding layer.
    **apply_kwargs: passed to ``model.apply``.

  Returns:
    A :class:`Report` (per sample quantities are averaged over the batch).

  Raises:
    ValueError: the model records no spiking layer (see :func:`record`).
  """
  calls = record(model, variables, x, **apply_kwargs)
  first_call = next(c for c in calls if c["kind"] != "residual")
  encoding_input = bool(getattr(first_call["module"], "encoding", False)) or isinstance(
      first_call["module"], L.EncodingDense)
  if encoding_input:
    batch = int(x.shape[0])
    time_steps = int(first_call["module"].time_steps)
    input_spikes = 0.0
  else:
    time_steps, batch = int(x.shape[0]), int(x.shape[1])
    input_spikes = float(jnp.sum(x)) / batch
  out: List[LayerMetrics] = []
  seen_first = False
  for c in calls:
    module, kind, xin = c["module"], c["kind"], c["x"]
    if kind == "residual":
      if "shortcut" not in c["params"]:
        last = c["out"]
        neurons_out = int(np.prod(last.shape[2:]))
        out.append(LayerMetrics(
            name=c["name"] + "/identity", kind="identity", neurons=0,
            time_steps=time_steps, synapses=0, connections=neurons_out,
            recurrent_connections=0, spikes=0.0,
            input_spikes=float(jnp.sum(xin)) / batch,
            sops=float(jnp.sum(xin)) / batch))
      continue
    enc = kind in ("dense", "recurrent", "conv") and (
        isinstance(module, L.EncodingDense) or bool(getattr(module, "encoding", False)))
    first = not seen_first
    seen_first = True
    if enc:
      x_one = xin[:1]
    else:
      x_one = xin[:1, :1]
    params = c["params"]
    if kind == "pool":
      y = c["out"]
      per_out = module.size * module.size
      conns = int(np.prod(y.shape[2:])) * per_out
      s_in = float(jnp.sum(xin)) / batch
      out.append(LayerMetrics(
          name=c["name"], kind="pool", neurons=0, time_steps=time_steps, synapses=0,
          connections=conns, recurrent_connections=0, spikes=0.0, input_spikes=s_in,
          sops=s_in))
      continue
    kmask = _nonzero_mask(params["kernel"])
    conns = _connections(kind, x_one, kmask, module)
    syn = int(jnp.sum(kmask))
    rec_conns = 0
    if kind == "shortcut":
      s_in = float(jnp.sum(xin)) / batch
      sops = float(jnp.sum(_linear(kind, xin, kmask, module))) / batch
      out.append(LayerMetrics(
          name=c["name"], kind="shortcut", neurons=0, time_steps=time_steps, synapses=syn,
          connections=conns, recurrent_connections=0, spikes=0.0, input_spikes=s_in,
          sops=sops, first=first))
      continue
    s = c["out"]
    neurons = int(np.prod(s.shape[2:]))
    spikes = float(jnp.sum(s)) / batch
    if enc:
      s_in, sops, macs = 0.0, 0.0, float(conns)
    else:
      s_in = float(jnp.sum(xin)) / batch
      sops = float(jnp.sum(_linear(kind, xin, kmask, module))) / batch
      macs = 0.0
    if "recurrent_kernel" in params:
      rmask = _nonzero_mask(params["recurrent_kernel"])
      rsyn = int(jnp.sum(rmask))
      syn += rsyn
      rec_conns = rsyn
      conns += rsyn
      sops += float(jnp.sum(s[:-1].astype(jnp.float32) @ rmask)) / batch
    out.append(LayerMetrics(
        name=c["name"], kind=kind, neurons=neurons, time_steps=time_steps, synapses=syn,
        connections=conns, recurrent_connections=rec_conns, spikes=spikes,
        input_spikes=s_in, sops=sops, macs=macs, encoding=enc, first=first))
  return Report(out, batch, time_steps, input_spikes)


# ---------------------------------------------------------------------------------------
# Spikes only.


def firing_rates(spikes: Sequence[Array]) -> List[float]:
  """Firing rate of each layer from recorded spikes.

  Args:
    spikes: a sequence of spike arrays ``[T, batch, ...neurons]`` (e.g. the model's
      ``hidden_spikes`` plus its output spikes).

  Returns:
    Spikes per neuron and time step of each layer, batch-averaged.

  Raises:
    ValueError: no spikes were given (e.g. ``None`` or an empty tuple), or an array is
      not ``[T, batch, ...]``.
  """
  if spikes is None or (hasattr(spikes, "__len__") and len(spikes) == 0):
    raise ValueError(
        "no spikes recorded: firing_rates needs the spike arrays [T, batch, ...] of each "
        "layer (model.apply returns (output_spikes, hidden_spikes)); got "
        f"{spikes!r}")
  if hasattr(spikes, "shape"):
    spikes = (spikes,)
  rates = []
  for i, s in enumerate(spikes):
    if s is None or not hasattr(s, "ndim") or s.ndim < 3:
      raise ValueError(
          f"layer {i}: expected spikes [T, batch, ...neurons], got "
          f"{getattr(s, 'shape', s)!r}")
    rates.append(float(jnp.mean(s)))
  return rates


def spikes_per_sample(spikes: Sequence[Array]) -> List[float]:
  """Spikes per sample of each layer (sum over time and neurons, batch mean)."""
  firing_rates(spikes)  # validation
  if hasattr(spikes, "shape"):
    spikes = (spikes,)
  return [float(jnp.sum(s)) / s.shape[1] for s in spikes]


# ---------------------------------------------------------------------------------------
# FLOPs.


def learning_flops(report: Report) -> float:
  """FLOPs of one training step per sample, clock-driven (dense in time).

  Per layer: forward ``2 * connections * T`` (an encoding layer: once) plus
  ``NEURON_FWD_FLOPS`` per neuron-step; backward ``dW`` the same contraction, ``dx`` too
  except into the network input, plus ``NEURON_BWD_FLOPS`` per neuron-step. Pooling and
  shortcuts: forward and ``dx`` only.
  """
  t = report.time_steps
  total = 0.0
  for l in report.layers:
    steps = 1 if l.encoding else t
    fwd = 2.0 * l.connections * steps
    if l.kind in ("pool", "identity"):
      total += l.connections * t * 2  # forward window op and its gradient
      continue
    dw = fwd
    dx = 0.0 if (l.first or l.encoding) else 2.0 * (l.connections -
                                                   l.recurrent_connections) * steps
    dx += 2.0 * l.recurrent_connections * t  # the recurrent contraction in the scan
    total += fwd + dw + dx
    total += (NEURON_FWD_FLOPS + NEURON_BWD_FLOPS) * l.neuron_updates
  return float(total)


def inference_flops(report: Report) -> float:
  """Event-driven FLOPs per inference: the float adds and multiplies of :func:`snn_ops`."""
  ops = snn_ops(report)
  return float(ops["fl_add"] + ops["fl_mul"])


def dense_inference_flops(report: Report) -> float:
  """Clock-driven FLOPs per inference: every connection every step (``2 * conn * T``)."""
  t = report.time_steps
  total = 0.0
  for l in report.layers:
    total += 2.0 * l.connections * (1 if l.encoding else t)
    total += NEURON_FWD_FLOPS * l.neuron_updates
  return float(total)


def mlp_step_matmul_flops(sizes: Sequence[int], time_steps: int, batch: int) -> float:
  """Matmul FLOPs of one training step of a dense spiking MLP (the dense-matmul floor).

  Forward ``x @ W`` per layer, backward ``dW`` per layer and ``dx`` for every layer but
  the first; each a ``[T * batch, in] x [in, out]`` contraction of ``2 * T * batch * in *
  out`` FLOPs.

  Args:
    sizes: layer widths including the input, e.g. ``(784, 800, 10)``.
    time_steps: T.
    batch: batch size.

  Returns:
    FLOPs of the step.
  """
  if len(sizes) < 2:
    raise ValueError(f"sizes needs the input and at least one layer, got {sizes!r}")
  rows = float(time_steps * batch)
  total = 0.0
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    per = 2.0 * rows * a * b
    total += per * (2 if i == 0 else 3)
  return total


# ---------------------------------------------------------------------------------------
# Operation counts and energy (Fig. 9).


def _zero_ops() -> Dict[str, float]:
  return {"fl_add": 0.0, "fl_mul": 0.0, "fi_add": 0.0, "bit_op": 0.0}


def snn_ops(report: Report, *, quantized: bool = False) -> Dict[str, float]:
  """Operations of one SNN inference, by type.

  Float SNN: one float add per SOP; per neuron-step one multiply (leak), two adds
  (current + bias, threshold compare) and one bitwise reset. An encoding layer also
  computes its analog input's currents once (one multiply and one add per connection).
  Pooling: max pooling of spikes is a bitwise OR per SOP (average pooling's adds are
  priced the same way, as bitwise ops; the paper's networks max-pool).

  PTQ SNN (``quantized=True``, section 2.5): SOPs and neuron adds are fixed-point adds,
  the leak is a right shift (bitwise). An encoding layer's analog multiply-accumulates
  stay float.

  Args:
    report: from :func:`measure` (for PTQ, measured with the dequantized parameters).
    quantized: price the network as n-bit fixed point.

  Returns:
    ``{"fl_add", "fl_mul", "fi_add", "bit_op"}`` counts per inference.
  """
  ops = _zero_ops()
  add = "fi_add" if quantized else "fl_add"
  for l in report.layers:
    if l.kind == "pool":
      ops["bit_op"] += l.sops
      continue
    ops[add] += l.sops
    ops["fl_mul"] += l.macs
    ops["fl_add"] += l.macs
    n = l.neuron_updates
    if n:
      if quantized:
        ops["bit_op"] += 2 * n  # leak shift, reset mask
      else:
        ops["fl_mul"] += n
        ops["bit_op"] += n
      ops[add] += 2 * n
  return ops


REFERENCE_KINDS = ("ann", "bnn", "xnor", "addernet")


def reference_ops(report: Report, kind: str = "ann") -> Dict[str, float]:
  """Operations of one inference of a non-spiking network of the same structure.

  Each spiking layer becomes a layer of the same connections with one evaluation (no time
  axis); recurrent synapses are evaluated once.

  * ``"ann"``: a float MAC per connection, a bias add per neuron, ReLU (bitwise sign).
  * ``"addernet"`` (Chen et al. 2020): the multiply of each MAC becomes a subtraction
    (2 float adds per connection); batch norm per neuron (1 multiply, 1 add).
  * ``"bnn"`` (Hubara et al. 2016): binary weights and activations, XNOR + popcount
    (bitwise) per connection; the first layer sees real inputs (float MACs); batch norm
    per neuron (1 multiply, 1 add) and a bitwise sign.
  * ``"xnor"`` (XNOR-Net): as ``"bnn"`` plus one float multiply per neuron for the
    weight scale.

  Pooling: max pooling is ``window - 1`` comparisons (float adds; bitwise for binary
  networks) per output.

  Args:
    report: from :func:`measure` (only the structure is used).
    kind: one of :data:`REFERENCE_KINDS`.

  Returns:
    Operation counts per inference, as :func:`snn_ops`.
  """
  if kind not in REFERENCE_KINDS:
    raise ValueError(f"unknown reference network {kind!r}: expected one of "
                     f"{', '.join(REFERENCE_KINDS)}")
  ops = _zero_ops()
  binary = kind in ("bnn", "xnor")
  for l in report.layers:
    if l.kind == "pool":
      ops["bit_op" if binary else "fl_add"] += l.connections
      continue
    c = l.connections
    n = l.neurons
    if binary and not l.first:
      ops["bit_op"] += 2 * c
    elif kind == "addernet" and not l.first:
      ops["fl_add"] += 2 * c
    else:
      ops["fl_mul"] += c
      ops["fl_add"] += c
    if n:
      if kind == "ann":
        ops["fl_add"] += n
        ops["bit_op"] += n
      else:
        ops["fl_mul"] += n
        ops["fl_add"] += n
        ops["bit_op"] += n
        if kind == "xnor":
          ops["fl_mul"] += n
  return ops


def energy(ops: Mapping[str, float],
           costs: Mapping[str, float] = ENERGY_COSTS) -> float:
  """Normalized energy of a set of operations (unit: one float add).

  Args:
    ops: counts by type, e.g. from :func:`snn_ops` or :func:`reference_ops`.
    costs: the cost of each type; the default is the paper's model.

  Returns:
    ``sum_k ops[k] * costs[k]``.

  Raises:
    KeyError: an operation type that ``costs`` does not price.
  """
  total = 0.0
  for k, v in ops.items():
    if k not in costs:
      raise KeyError(f"no energy cost for operation {k!r}; known: {sorted(costs)}")
    total += float(v) * float(costs[k])
  return total


def parameter_bits(report: Report, bits: int = 32) -> int:
  """Storage of the synaptic weights: ``synapses * bits`` (Fig. 9's circle area)."""
  return int(report.synapses) * int(bits)


def energy_table(report: Report, quantized_report: Optional[Report] = None,
                 references: Sequence[str] = ("ann", "addernet", "bnn", "xnor")
                 ) -> List[Dict[str, Any]]:
  """Fig. 9 in numbers: operations and energy per inference of the SNN and references.

  Args:
    report: the float SNN.
    quantized_report: the PTQ SNN (measured with dequantized parameters); if None, the
      float report's structure and spikes priced as fixed point.
    references: reference networks to list (see :func:`reference_ops`).

  Returns:
    One dict per network: ``network``, the op counts, ``operations`` and ``energy``.
  """
  rows = []
  for name, ops in ([("snn", snn_ops(report)),
                     ("snn_ptq", snn_ops(quantized_report or report, quantized=True))]
                    + [(k, reference_ops(report, k)) for k in references]):
    rows.append(dict(network=name, **ops, operations=sum(ops.values()),
                     energy=energy(ops)))
  return rows
