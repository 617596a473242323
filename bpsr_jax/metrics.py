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
  Pooling windows and identity shortcuts pass spikes on: one operation per input spike.
* FLOPs, operation counts and the energy model (Fig. 9) are in :mod:`bpsr_jax.flops`
  (re-exported here).

One recorder, :func:`count_events`, counts spikes and synaptic events per sample during
a forward pass (a :func:`flax.linen.intercept_methods` interceptor, usable under
``jit``). :func:`measure` and the evaluation step of :func:`bpsr_jax.train.fit` both use
it, so ``results.json``'s ``spikes_per_sample`` and ``synaptic_ops_per_sample`` equal
``measure(...).spikes`` and ``.sops`` on the same inputs.

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
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import layers as L
# pylint: disable=unused-import
from bpsr_jax.flops import (ENERGY_COSTS, NEURON_BWD_FLOPS, NEURON_FWD_FLOPS,
                            REFERENCE_KINDS, dense_inference_flops, energy, energy_table,
                            inference_flops, learning_flops, mlp_step_matmul_flops,
                            reference_ops, snn_ops)
# pylint: enable=unused-import

Array = jax.Array


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
# The recorder: spikes and synaptic events per sample, one rule for measure and eval.


@dataclasses.dataclass(frozen=True)
class LayerInfo:
  """The static description of one recorded layer (see :func:`count_events`).

  Attributes:
    name: the module path (``"r0"``, ``"res1/conv0"``, ``"pool2"``, ``"res1/identity"``).
    kind: ``"dense"``, ``"recurrent"``, ``"conv"``, ``"pool"``, ``"shortcut"`` or
      ``"identity"``.
    neurons: spiking neurons (0 for pooling and shortcuts).
    time_steps: T.
    encoding: the layer receives the analog input.
    first: the layer reads the network input.
  """

  name: str
  kind: str
  neurons: int
  time_steps: int
  encoding: bool = False
  first: bool = False


def _module_name(module: nn.Module) -> str:
  path = getattr(getattr(module, "scope", None), "path", None)
  if path:
    return "/".join(str(p) for p in path)
  return module.name or type(module).__name__


def _per_sample(a: Array, batch_axis: int = 1) -> Array:
  """``[..., B, ...]`` -> ``[B]``: the float32 sum over every other axis."""
  a = jnp.asarray(a, jnp.float32)
  return jnp.sum(a, axis=tuple(i for i in range(a.ndim) if i != batch_axis))


def _nonzero_mask(w: Array) -> Array:
  return (jnp.asarray(w) != 0).astype(jnp.float32)


def _conv(x: Array, kernel: Array, strides: int, padding: str) -> Array:
  """The layers' conv (:func:`bpsr_jax.layers._conv`) in float32, square strides."""
  return L._conv(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32),  # pylint: disable=protected-access
                 (strides, strides), padding)


def _events(kind: str, x: Array, mask: Array, module: Any, batch_axis: int) -> Array:
  """Per sample ``sum_j x_j * fanout_j`` over the existing synapses ``mask``: ``[B]``.

  A dense map contracts with the fan-out vector (``x @ mask`` summed over the outputs,
  without the matmul); a conv is the conv of ``x`` with the 0/1 kernel summed over the
  outputs, exact at borders and strides.
  """
  if mask.ndim == 4:
    padding = module.padding if kind == "conv" else "SAME"
    return _per_sample(_conv(x, mask, module.strides, padding), batch_axis)
  return _per_sample(jnp.asarray(x, jnp.float32) @ jnp.sum(mask, axis=-1)[:, None],
                     batch_axis)


def _connections(kind: str, x_one: Array, mask: Array, module: Any) -> Array:
  """Synapses counted per connection: the events of an all-ones sample (a scalar)."""
  ones = jnp.ones_like(x_one, jnp.float32)
  if mask.ndim == 4:
    padding = module.padding if kind == "conv" else "SAME"
    return jnp.sum(_conv(ones, mask, module.strides, padding))
  return jnp.sum(ones @ mask)


def record(model: nn.Module, variables: Mapping[str, Any], x: Array,
           **apply_kwargs) -> Tuple[Any, List[Dict[str, Any]]]:
  """Runs ``model.apply(variables, x)`` and records every layer's input and output.

  Args:
    model: a linen module built from :mod:`bpsr_jax.layers` (e.g. :class:`bpsr_jax.SNN`).
    variables: ``{"params": params}``.
    x: the model input (``[T, batch, ...]`` spikes, or ``[batch, ...]`` analog for an
      encoding first layer).
    **apply_kwargs: passed to ``model.apply``.

  Returns:
    ``(model output, calls)``: one dict per layer call, in call order: ``module`` (the
    bound module), ``name``, ``kind``, ``x`` (its input), ``out`` (its output),
    ``params`` (its own parameters).

  Raises:
    ValueError: no spiking layer was recorded (the model holds no
      :mod:`bpsr_jax.layers` spiking layers, so there are no spikes to measure).
  """
  calls: List[Dict[str, Any]] = []
  kinds = ((L.Dense, "dense"), (L.Conv, "conv"), (L.Pool, "pool"),
           (L.Shortcut, "shortcut"), (L.Residual, "residual"))

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    kind = next((k for cls, k in kinds if isinstance(module, cls)), None)
    if context.method_name != "__call__" or kind is None:
      return next_fun(*args, **kwargs)
    entry: Dict[str, Any] = {"module": module, "name": _module_name(module),
                             "x": args[0] if args else kwargs.get("x"), "kind": kind}
    calls.append(entry)  # before the call: a block precedes its inner layers
    out = next_fun(*args, **kwargs)
    if kind == "dense" and module.recurrent:
      entry["kind"] = "recurrent"
    entry["out"] = out[0] if kind == "residual" else out
    entry["params"] = module.variables.get("params", {})
    return out

  with nn.intercept_methods(interceptor):
    result = model.apply(variables, x, **apply_kwargs)
  if not any(c["kind"] in ("dense", "recurrent", "conv") for c in calls):
    raise ValueError(
        f"no spikes recorded: {type(model).__name__} called no bpsr_jax spiking layer "
        "(Dense, Conv), so there is nothing to measure. Pass a model built from "
        "bpsr_jax.layers (e.g. bpsr_jax.SNN), or compute the metrics from recorded "
        "spikes with firing_rates(spikes).")
  return result, calls


def count_events(model: nn.Module, variables: Mapping[str, Any], x: Array,
                 **apply_kwargs) -> Tuple[Any, List[LayerInfo], List[Dict[str, Array]]]:
  """Runs the model and counts, per sample, every layer's spikes and synaptic events.

  Works under ``jit`` (the counts are arrays; :class:`LayerInfo` is static). The rules:
  a spiking layer's ``sops`` are its input spikes times their fan-out over existing
  synapses (none for an encoding layer, whose input is analog: its ``macs`` are its
  connections), plus, for a recurrent layer, the spikes of steps ``0..T-2`` times their
  recurrent fan-out; a projection shortcut's are the same over its kernel; a pooling
  window or an identity shortcut passes each input spike on (one operation per spike).

  Args:
    model: a linen module made of :mod:`bpsr_jax.layers` (e.g. ``SNN(spec)``).
    variables: ``{"params": params}``.
    x: the model input (``[T, batch, ...]`` spikes or an encoding layer's ``[batch,
      ...]``).
    **apply_kwargs: passed to ``model.apply``.

  Returns:
    ``(model output, infos, counts)``: per recorded layer a :class:`LayerInfo` and a dict
    of ``spikes``, ``input_spikes``, ``sops`` (``[batch]`` each) and ``synapses``,
    ``connections``, ``recurrent_connections``, ``macs`` (scalars).
  """
  result, calls = record(model, variables, x, **apply_kwargs)
  first_call = next(c for c in calls if c["kind"] != "residual")
  if getattr(first_call["module"], "encoding", False):
    time_steps = int(first_call["module"].time_steps)
  else:
    time_steps = int(x.shape[0])
  infos: List[LayerInfo] = []
  counts: List[Dict[str, Array]] = []
  zero = jnp.zeros((), jnp.float32)
  seen_first = False
  for c in calls:
    module, kind, xin = c["module"], c["kind"], c["x"]
    if kind == "residual":
      if "shortcut" not in c["params"]:
        s_in = _per_sample(xin)
        infos.append(LayerInfo(c["name"] + "/identity", "identity", 0, time_steps))
        counts.append(dict(spikes=jnp.zeros_like(s_in), input_spikes=s_in, sops=s_in,
                           synapses=zero, macs=zero, recurrent_connections=zero,
                           connections=jnp.asarray(np.prod(c["out"].shape[2:]),
                                                   jnp.float32)))
      continue
    enc = bool(getattr(module, "encoding", False))
    first, seen_first = not seen_first, True
    batch_axis = 0 if enc else 1
    x_one = xin[:1] if enc else xin[:1, :1]
    if kind == "pool":
      s_in = _per_sample(xin)
      conns = np.prod(c["out"].shape[2:]) * module.size * module.size
      infos.append(LayerInfo(c["name"], "pool", 0, time_steps))
      counts.append(dict(spikes=jnp.zeros_like(s_in), input_spikes=s_in, sops=s_in,
                         synapses=zero, macs=zero, recurrent_connections=zero,
                         connections=jnp.asarray(conns, jnp.float32)))
      continue
    kmask = _nonzero_mask(c["params"]["kernel"])
    conns = _connections(kind, x_one, kmask, module)
    syn = jnp.sum(kmask)
    out = c["out"]
    entry = dict(synapses=syn, connections=conns, recurrent_connections=zero, macs=zero)
    if enc:
      entry.update(input_spikes=jnp.zeros((xin.shape[0],), jnp.float32),
                   sops=jnp.zeros((xin.shape[0],), jnp.float32), macs=conns)
    else:
      entry.update(input_spikes=_per_sample(xin),
                   sops=_events(kind, xin, kmask, module, batch_axis))
    if kind == "shortcut":
      entry["spikes"] = jnp.zeros_like(entry["sops"])
      infos.append(LayerInfo(c["name"], "shortcut", 0, time_steps, first=first))
      counts.append(entry)
      continue
    entry["spikes"] = _per_sample(out)
    if "recurrent_kernel" in c["params"]:
      rmask = _nonzero_mask(c["params"]["recurrent_kernel"])
      rsyn = jnp.sum(rmask)
      entry.update(synapses=syn + rsyn, connections=conns + rsyn,
                   recurrent_connections=rsyn,
                   sops=entry["sops"] + _events("dense", out[:-1], rmask, module, 1))
    infos.append(LayerInfo(c["name"], kind, int(np.prod(out.shape[2:])), time_steps,
                           encoding=enc, first=first))
    counts.append(entry)
  return result, infos, counts


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
    A :class:`Report` (per sample quantities are averaged over the batch), from the
    counts of :func:`count_events`.

  Raises:
    ValueError: the model records no spiking layer (see :func:`record`).
  """
  _, infos, counts = count_events(model, variables, x, **apply_kwargs)
  encoding_input = next(i for i in infos if i.kind != "identity").encoding
  batch = int(x.shape[0] if encoding_input else x.shape[1])
  input_spikes = 0.0 if encoding_input else float(jnp.sum(x)) / batch
  mean = lambda a: float(jnp.sum(a)) / batch
  exact = lambda a: int(round(float(a)))
  out = [LayerMetrics(
      name=i.name, kind=i.kind, neurons=i.neurons, time_steps=i.time_steps,
      synapses=exact(c["synapses"]), connections=exact(c["connections"]),
      recurrent_connections=exact(c["recurrent_connections"]), spikes=mean(c["spikes"]),
      input_spikes=mean(c["input_spikes"]), sops=mean(c["sops"]),
      macs=float(c["macs"]), encoding=i.encoding, first=i.first)
         for i, c in zip(infos, counts)]
  return Report(out, batch, infos[0].time_steps, input_spikes)


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
