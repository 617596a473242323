"""Operation counts, FLOPs and the energy model of Fig. 9, from a :func:`measure` report.

Split from :mod:`bpsr_jax.metrics` (which re-exports every name here): the counting of
spikes, synapses and synaptic operations is there; this module prices them.

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
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

#: The paper's energy model (Fig. 9), in units of one floating-point add.
ENERGY_COSTS: Mapping[str, float] = {
    "fl_add": 1.0, "fl_mul": 4.0, "fi_add": 0.2, "bit_op": 0.0}

#: FLOPs of one neuron update in the forward pass (leak multiply, reset gate, current add,
#: threshold compare).
NEURON_FWD_FLOPS = 4
#: FLOPs of one neuron step of the reverse scan (Gaussian surrogate ~6, leak path 3,
#: tau gradient 3, accumulation 2).
NEURON_BWD_FLOPS = 14

Report = Any  # bpsr_jax.metrics.Report (not imported: metrics imports this module)


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
