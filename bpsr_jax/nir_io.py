"""bpsr_jax <-> NIR (Neuromorphic Intermediate Representation, the ``nir`` package).

``to_nir(model, params)`` exports a :class:`bpsr_jax.SNN` as a ``nir.NIRGraph``,
``from_nir(graph or path)`` imports one as ``(model, params)``; ``write_nir`` /
``read_nir`` are the file round trips through ``nir.write`` / ``nir.read``. (The module is
not named ``nir`` so that it does not shadow the package.)

The neuron. NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``, spike ``z = v > v_threshold``,
then ``v <- v_reset``; IF is ``dv/dt = r I``. One forward-Euler step of length ``dt``::

    v^t = v^(t-1) + (dt / tau) (v_leak - v^(t-1) + r I^t)
        = (1 - dt/tau) v^(t-1) + (dt r / tau) I^t        (v_leak = 0)

and BPSR's neuron (:mod:`bpsr_jax.neuron`) is ``u^t = tau_b u^(t-1) (1 - s^(t-1)) + I^t``
with ``I^t = W x^t + b (+ R s^(t-1))`` and ``s^t = [u^t >= U_th]``. The reset gate
``(1 - s^(t-1))`` zeroes the previous potential after a spike, which is NIR's
``v_reset = 0`` applied right after the spike. Matching the two::

    tau_b in [0, 1)  ->  LIF  tau = dt / (1 - tau_b), r = tau / dt = 1 / (1 - tau_b),
                              v_leak = 0, v_reset = 0       (leak 1 - dt/tau = tau_b,
                                                             input gain dt r / tau = 1)
    tau_b = 1        ->  IF   r = 1 / dt, v_reset = 0        (gain dt r = 1)

``tau`` and ``r`` are float64 (``1 - dt/tau`` gives the float32 ``tau_b`` back). In a
layer whose taus are partly 1 (one LIF node), a tau of 1 is written as ``tau = dt 2^60``,
``r = 2^60``: a leak of ``1 - 2^-60``, which float64 arithmetic cannot tell from 1 and
which reads back as float32 1.0 (NIR's ``tau = inf`` would need ``r = inf``).

The threshold. BPSR fires on ``u >= U_th``, NIR on ``v > v_threshold``. They differ only
when a potential lands exactly on the threshold, which float32 sums of quantized weights
(multiples of ``2^-(bits-1)``) do often. On float32 potentials ``u >= U_th`` is exactly
``u > theta`` with ``theta`` the largest float32 below ``U_th``, so the export writes
``v_threshold = nextafter(float32(U_th), -inf)`` (0.99999994 for 1.0), and the import
reads ``U_th = nextafter(float32(v_threshold / gain), +inf)``: the same spikes in float32,
and the round trip gives ``U_th`` back bit for bit. A simulator in float64 sees a threshold
6e-8 lower, well below float32 round-off.

Layers (NIR tensors are channels-first, bpsr_jax is channels-last):

* ``fcN`` / ``rN``: ``Affine(weight = kernel.T, bias)`` -> ``LIF``; ``rN`` adds
  ``Linear(weight = recurrent_kernel.T)`` on an edge from the LIF back to itself. NIR
  delays a cycle by one step, which is BPSR's ``s^(t-1) R``.
* ``CcK/S``: ``Conv2d(weight = kernel.transpose(3, 2, 0, 1))`` (HWIO -> OIHW), stride S,
  padding: XLA's SAME pads ``(total // 2, total - total // 2)``; written as the
  symmetric integer padding where both sides agree, else as ``"same"`` meaning XLA's
  convention (e.g. a 5x5 stride-2 conv on 34x34 pads (1, 2)). The LIF holds the
  layer's single tau broadcast to ``(C, H, W)``.
* ``pK``: NIR has no max pool; a max pool of spikes is their OR, exported as
  ``SumPool2d`` -> ``Threshold(0)`` (a max pool of analog values raises). ``aK``:
  ``AvgPool2d``. Both with window = stride = K, padding 0.
* Flattening: bpsr flattens ``(H, W, C)``, NIR ``(C, H, W)``; a ``Flatten`` node and the
  next dense kernel's rows permuted accordingly (lossless).
* Residual block ``[a-b]``: the block input feeds the last inner LIF by a plain edge
  (identity shortcut; NIR sums a node's inputs) or through a bias-free 1x1
  ``Conv2d`` / ``Linear`` (projection shortcut), named ``res<i>_shortcut``.
* Encoding layer (``e`` prefix): NIR has no "repeat a static input T times" node, but
  the layer is an ordinary ``Affine``/``Conv2d`` + ``LIF`` whose input is the analog
  sample, presented at each of the T steps. The graph's ``Input`` is that analog input;
  ``metadata["bpsr_jax"]["encoding"] = 1`` and ``["time_steps"] = T`` say so.
* Rewired kernels: zeros are written as zeros (dense arrays; NIR has no sparse format).
* Quantized params (``quant_info``): the dequantized values (exact: ``q * 2^-(bits-1)``
  and ``tau = M / 2^K``), the bit width, ``max_tau_shift`` and ``tau_terms`` in the graph
  metadata, and on each neuron node its ``tau_code`` and, for ``tau_terms >= 2``, the
  signed digits ``leak_digits`` of the shift-add leak at ``leak_shifts``.
  ``from_nir(..., quantized=True)`` returns the same integer pytree and QuantInfo.

Import runs the reverse mapping on any graph of these shapes (nested subgraphs, e.g.
Spyx's and snnTorch's recurrent layers, are inlined), and raises ConfigError naming the
node and field for what bpsr_jax cannot run exactly: CubaLIF/CubaLI (a synaptic current),
LI/I (no spikes), Delay, Scale, Conv1d, ``v_leak != 0``, ``v_reset != 0``, a subtractive
reset declared in node metadata, ``tau < dt`` (the dt does not fit), a dt other than the
one in the graph's metadata, thresholds whose ratio to the input gain ``r dt / tau``
differs between neurons (bpsr_jax has one threshold; a uniform gain g != 1 is folded into
the threshold ``U_th = theta / g``), conv taus that differ within a layer, non-SAME
padding, dilation, groups, pooling with padding or stride != window, and cycles other
than a neuron's self-loop. bpsr_jax's ``alpha``/``gradient`` training settings are not
part of a NIR graph (the imported model uses the defaults).
"""
from __future__ import annotations

import pathlib
from typing import Any, Optional, Sequence, Tuple, Union

import nir

from bpsr_jax import models
from bpsr_jax import quantize
from bpsr_jax.nir_export import META_KEY, nir_threshold, to_nir
from bpsr_jax.nir_import import from_graph, read_graph, requantize

PyTree = Any

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "META_KEY", "nir_threshold"]


def from_nir(graph_or_path: Union[nir.NIRGraph, str, pathlib.Path], *,
             dt: Optional[float] = None, quantized: bool = False):
  """Imports a NIR graph (or ``.nir`` file) as a bpsr_jax model.

  Args:
    graph_or_path: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
    dt: the time step the graph's time constants refer to; default: the graph's
      ``metadata["bpsr_jax"]["dt"]``, else 1.0. Graphs of snnTorch use 1e-4.
    quantized: return the integer model of a graph exported with ``quant_info``.

  Returns:
    ``(model, params)``: a :class:`bpsr_jax.SNN` and its float32 params (numpy); with
    ``quantized=True``, ``(model, qparams, quant_info)``. Feed the model channels-last
    inputs ``[T, batch, H, W, C]`` (NIR's ``(C, H, W)`` transposed) or ``[T, batch, F]``.

  Raises:
    ConfigError: a node or field bpsr_jax cannot simulate exactly (the message names
      node and field; a path is prefixed to it); DataError: an unreadable file.
  """
  if isinstance(graph_or_path, (str, pathlib.Path)):
    graph = read_graph(graph_or_path)
    try:
      model, params = from_graph(graph, dt=dt)
    except Exception as e:
      if hasattr(e, "exit_code"):
        raise type(e)(f"{str(graph_or_path)}: {e}") from None
      raise
  else:
    graph = graph_or_path
    model, params = from_graph(graph, dt=dt)
  if not quantized:
    return model, params
  qparams, info = requantize(model, params, dict(graph.metadata.get(META_KEY, {})))
  return model, qparams, info


def write_nir(path: Union[str, pathlib.Path], model: models.SNN, params: PyTree, *,
              dt: float = 1.0, input_shape: Optional[Sequence[int]] = None,
              quant_info: Optional[quantize.QuantInfo] = None) -> nir.NIRGraph:
  """Exports with :func:`to_nir` and writes the graph with ``nir.write`` (gzip HDF5).

  Returns the graph written.
  """
  graph = to_nir(model, params, dt=dt, input_shape=input_shape, quant_info=quant_info)
  nir.write(str(path), graph)
  return graph


def read_nir(path: Union[str, pathlib.Path], *, dt: Optional[float] = None
             ) -> Tuple[models.SNN, PyTree]:
  """``from_nir`` of a file: ``(model, params)``."""
  return from_nir(path, dt=dt)
