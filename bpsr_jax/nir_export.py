"""Export of a :class:`bpsr_jax.SNN` to a NIR graph (see :mod:`bpsr_jax.nir_io`).

The mapping and its derivation are in the docstring of :mod:`bpsr_jax.nir_io`; this
module builds the graph: one ``Affine``/``Conv2d`` synapse node and one ``LIF``/``IF``
neuron node per spiking layer, a ``Linear`` on a self-loop for recurrent synapses,
``SumPool2d`` + ``Threshold`` for a max pool of spikes, ``AvgPool2d``, ``Flatten`` and
shortcut edges (identity) or ``Conv2d``/``Linear`` nodes (projection) for residual blocks.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import nir
import numpy as np

from bpsr_jax import models
from bpsr_jax import quantize
from bpsr_jax.errors import ConfigError

PyTree = Any

#: Key of the bpsr_jax entry in a graph's metadata.
META_KEY = "bpsr_jax"
#: Version of the metadata layout.
META_VERSION = 1


def nir_threshold(threshold: float) -> np.float32:
  """NIR's strict ``v > theta`` equal to bpsr's ``u >= U_th`` on float32 potentials:
  ``theta`` is the largest float32 below ``U_th``."""
  return np.nextafter(np.float32(threshold), np.float32(-np.inf))


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
  """XLA's ``"SAME"`` padding ``(low, high)`` of one spatial dim."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def chw(shape: Sequence[int]) -> np.ndarray:
  """bpsr's channels-last per-sample shape -> NIR's channels-first (dense: unchanged)."""
  shape = tuple(int(d) for d in shape)
  return np.array((shape[2], shape[0], shape[1]) if len(shape) == 3 else shape)


def flat_kernel_to_nir(kernel: np.ndarray, hwc: Sequence[int]) -> np.ndarray:
  """A dense kernel ``[H*W*C, out]`` reading a flattened channels-last map -> NIR's
  ``[out, C*H*W]`` reading the channels-first flattening (a permutation, lossless)."""
  h, w, c = hwc
  return np.ascontiguousarray(
      kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[-1], -1))


def _neuron(tau: np.ndarray, shape: np.ndarray, threshold: float, dt: float,
            name: str, extra_meta: Optional[Dict[str, Any]] = None) -> nir.NIRNode:
  """The NIR neuron of a bpsr layer: LIF (all taus < 1) or IF (all taus == 1)."""
  tau = np.broadcast_to(np.asarray(tau, np.float32), tuple(shape))
  # NIR node shapes are channels-first; a conv layer's tau is one scalar, so the
  # broadcast above is already in NIR's layout.
  thr = np.full(tuple(shape), nir_threshold(threshold), np.float32)
  meta = dict(extra_meta or {})
  if np.all(tau == 1):
    return nir.IF(r=np.full(tuple(shape), 1.0 / dt), v_threshold=thr,
                  v_reset=np.zeros(tuple(shape), np.float32), metadata=meta)
  if np.any(tau < 0) or np.any(tau > 1):
    raise ConfigError(f"layer {name}: tau must lie in [0, 1], got "
                      f"[{tau.min()}, {tau.max()}]")
  tau64 = tau.astype(np.float64)
  # A neuron without leak in a layer with leaky ones (one LIF node): NIR's tau = inf
  # would make r = inf; tau = dt 2^60, r = 2^60 instead, a leak of 1 - 2^-60, which
  # reads back as float32 1.0 and which float64 arithmetic cannot tell from 1.
  free = tau64 == 1
  tau_nir = np.where(free, dt * 2.0**60, dt / np.where(free, 0.5, 1.0 - tau64))
  return nir.LIF(tau=tau_nir, r=tau_nir / dt, v_leak=np.zeros(tuple(shape)),
                 v_threshold=thr, v_reset=np.zeros(tuple(shape), np.float32),
                 metadata=meta)


def _leak_terms(code: np.ndarray, info: quantize.QuantInfo) -> Dict[str, np.ndarray]:
  """The shift-leak of quantized tau codes: shift codes (one term) or the signed digits
  of ``M`` per shift ``K, K-1, .., 0`` (``tau = sum_j digit_j 2^-shift_j``)."""
  code = np.asarray(code).astype(np.int64)
  if info.tau_terms == 1:
    return dict(tau_code=code.astype(np.int32))
  digits, m = [], code.copy()
  for _ in range(info.max_tau_shift + 1):
    d = np.where((m & 1) == 1, 2 - (m & 3), 0)
    m = (m - d) >> 1
    digits.append(d)
  return dict(tau_code=code.astype(np.int32),
              leak_digits=np.stack(digits, -1).astype(np.int8),
              leak_shifts=np.arange(info.max_tau_shift, -1, -1, dtype=np.int32))


class _Builder:
  """Accumulates nodes and edges while walking the spec."""

  def __init__(self, threshold: float, dt: float, qparams: Optional[PyTree],
               info: Optional[quantize.QuantInfo]):
    self.nodes: Dict[str, nir.NIRNode] = {}
    self.shapes: Dict[str, np.ndarray] = {}
    self.source: Dict[str, str] = {}
    self.edges: List[Tuple[str, str]] = []
    self.threshold, self.dt = threshold, dt
    self.qparams, self.info = qparams, info

  def add(self, name: str, node: nir.NIRNode, *sources: str, shape=None) -> str:
    self.nodes[name] = node
    self.edges.extend((s, name) for s in sources)
    if shape is not None:  # channels-last output shape, kept for the types above
      self.shapes[name] = chw(shape)
      if sources:
        self.source[name] = sources[0]
    return name

  def neuron(self, name: str, p: Dict[str, np.ndarray], shape: np.ndarray,
             qpath: Tuple[str, ...]) -> nir.NIRNode:
    meta = {}
    if self.info is not None:
      q = self.qparams
      for k in qpath:
        q = q[k]
      meta = _leak_terms(np.asarray(q["tau"]), self.info)
    return _neuron(np.asarray(p["tau"]), shape, self.threshold, self.dt, name, meta)


def _layer(b: _Builder, ls: models.LayerSpec, name: str, p: Dict[str, np.ndarray],
           src: str, shape: Tuple[int, ...], flat_from: Optional[Tuple[int, ...]],
           qpath: Tuple[str, ...], shortcut: Optional[str] = None
           ) -> Tuple[str, Tuple[int, ...]]:
  """Adds one spiking layer fed by node ``src`` (output shape ``shape``, channels-last);
  returns its neuron node and output shape. ``flat_from``: the channels-last map the
  dense layer's input is a flattening of (its kernel rows are permuted)."""
  kernel = np.asarray(p["kernel"], np.float32)
  bias = np.asarray(p["bias"], np.float32)
  if ls.kind == "conv":
    h, w, _ = shape
    k, s = ls.kernel_size, ls.strides
    pads = [same_padding(h, k, s), same_padding(w, k, s)]
    padding = ((pads[0][0], pads[1][0]) if all(lo == hi for lo, hi in pads)
               else "same")
    syn = nir.Conv2d(input_shape=(h, w), weight=np.ascontiguousarray(
        kernel.transpose(3, 2, 0, 1)), stride=(s, s), padding=padding, dilation=(1, 1),
        groups=1, bias=bias)
    out = (-(-h // s), -(-w // s), ls.size)
  else:
    weight = (flat_kernel_to_nir(kernel, flat_from) if flat_from is not None
              else np.ascontiguousarray(kernel.T))
    syn = nir.Affine(weight=weight, bias=bias)
    out = (ls.size,)
  b.add(f"{name}_syn", syn, src, shape=out)
  lif = b.add(f"{name}_lif", b.neuron(name, p, chw(out), qpath), f"{name}_syn",
              shape=out)
  if shortcut is not None:
    b.edges.append((shortcut, lif))
  if ls.kind == "r":
    rec = np.ascontiguousarray(np.asarray(p["recurrent_kernel"], np.float32).T)
    b.add(f"{name}_rec", nir.Linear(weight=rec), lif)
    b.edges.append((f"{name}_rec", lif))
  return lif, out


def to_nir(model: models.SNN, params: PyTree, *, dt: float = 1.0,
           input_shape: Optional[Sequence[int]] = None,
           quant_info: Optional[quantize.QuantInfo] = None,
           metadata: Optional[Dict[str, Any]] = None) -> nir.NIRGraph:
  """Exports a spiking network to a NIR graph (mapping: :mod:`bpsr_jax.nir_io`).

  Args:
    model: the :class:`bpsr_jax.SNN` (its spec, threshold and time_steps are read).
    params: its params (``model.init(...)["params"]``, or the integer pytree of
      :func:`bpsr_jax.quantize_params` together with ``quant_info``).
    dt: the time step that NIR's continuous time constants refer to (1.0: one step is
      one time unit; snnTorch's importer assumes 1e-4).
    input_shape: the per-sample input shape without time and batch axes, channels-last
      as bpsr_jax reads it (``(H, W, C)`` or ``(F,)``); required for conv nets; a
      3-d shape for a dense net adds a ``Flatten`` node.
    quant_info: the :class:`bpsr_jax.QuantInfo` of integer ``params``: the graph holds
      the dequantized values and the quantization (bit width, shift-leak terms) in its
      metadata.
    metadata: extra entries for the graph's metadata (str, numbers or arrays).

  Returns:
    The graph: nodes ``input``, ``<layer>_syn``/``_lif``/``_rec``, ``pool<i>``,
    ``flatten``, ``res<i>_shortcut``, ``output``; bpsr_jax's settings under
    ``graph.metadata["bpsr_jax"]``.

  Raises:
    ConfigError: a missing ``input_shape`` for a conv net, a max pool of analog values,
      a bad ``dt`` or params that do not fit the spec.
  """
  if not dt > 0:
    raise ConfigError(f"dt must be > 0, got {dt!r}")
  dt = float(dt)
  params = params.get("params", params) if isinstance(params, dict) else params
  params = jax.tree.map(np.asarray, params)
  qparams = None
  if quant_info is not None:
    if float(quant_info.threshold) != float(model.threshold):
      raise ConfigError(f"quant_info.threshold {quant_info.threshold} differs from the "
                        f"model's threshold {model.threshold}")
    qparams = params
    params = jax.tree.map(np.asarray, quantize.dequantize_params(params, quant_info))
  specs = models.parse_spec(model.spec)
  first = specs[0]
  if input_shape is None:
    if first.kind in ("fc", "r"):
      input_shape = (np.asarray(params[f"{first.kind}0"]["kernel"]).shape[0],)
    else:
      raise ConfigError(f"to_nir needs input_shape=(H, W, C) for the conv net "
                        f"{model.spec!r}")
  shape = tuple(int(d) for d in input_shape)
  if first.encoding and not model.time_steps:
    raise ConfigError("an encoding layer needs the model's time_steps")
  b = _Builder(float(model.threshold), dt, qparams, quant_info)
  cur = b.add("input", nir.Input(input_type={"input": chw(shape)}), shape=shape)
  binary = False  # the raw input is not assumed to be spikes
  flat_from = None
  try:
    for i, ls in enumerate(specs):
      dense = ls.kind in ("fc", "r") or (ls.kind == "residual"
                                         and ls.inner[0].kind != "conv")
      if dense and ls.kind == "residual" and len(shape) == 3:
        raise ConfigError(
            f"layer {i} of {model.spec!r}: a dense residual block on a conv map (the "
            "SNN applies its dense layers at each position, which NIR cannot express)")
      if dense and len(shape) != 1:
        if len(shape) == 3:
          flat_from = shape
          cur = b.add("flatten", nir.Flatten(input_type={"input": chw(shape)},
                                             start_dim=0, end_dim=-1), cur,
                      shape=(int(np.prod(shape)),))
        shape = (int(np.prod(shape)),)
      if ls.kind in ("fc", "r", "conv"):
        name = f"{ls.kind}{i}"
        cur, shape = _layer(b, ls, name, params[name], cur, shape, flat_from, (name,))
        flat_from, binary = None, True
      elif ls.kind in ("maxpool", "avgpool"):
        k = ls.size
        out = (shape[0] // k, shape[1] // k, shape[2])
        if ls.kind == "avgpool":
          cur = b.add(f"pool{i}", nir.AvgPool2d(kernel_size=np.array([k, k]),
                                                stride=np.array([k, k]),
                                                padding=np.array([0, 0])), cur,
                      shape=out)
          binary = False
        else:
          if not binary:
            raise ConfigError(
                f"layer {i} of {model.spec!r}: max pooling of analog values; NIR has no "
                "max pool (a max pool of spikes is exported as SumPool2d + Threshold)")
          b.add(f"pool{i}_sum", nir.SumPool2d(kernel_size=np.array([k, k]),
                                              stride=np.array([k, k]),
                                              padding=np.array([0, 0])), cur,
                shape=out)
          cur = b.add(f"pool{i}", nir.Threshold(
              threshold=np.zeros(tuple(chw(out)), np.float32)), f"pool{i}_sum", shape=out)
        shape = out
      else:  # residual
        cur, shape = _residual(b, ls, i, params[f"res{i}"], cur, shape, flat_from)
        flat_from, binary = None, True
  except KeyError as e:
    raise ConfigError(f"params do not fit the spec {model.spec!r}: missing {e}") from None
  b.add("output", nir.Output(output_type={"output": chw(shape)}), cur)
  meta = dict(version=META_VERSION, spec=model.spec, threshold=float(model.threshold),
              dt=dt, input_shape=np.array([int(d) for d in input_shape]),
              time_steps=int(model.time_steps or 0),
              encoding=int(bool(first.encoding)), comparison="u >= U_th",
              nir_threshold="largest float32 below U_th")
  if quant_info is not None:
    meta.update(quantized=1, bits=int(quant_info.bits),
                max_tau_shift=int(quant_info.max_tau_shift),
                tau_terms=int(quant_info.tau_terms), step=float(quant_info.step))
  graph_meta = {META_KEY: meta}
  graph_meta.update(metadata or {})
  # NIR 1.0.8 infers a 'same' conv's output as its input size whatever the stride, so
  # a graph with an asymmetric (XLA) SAME conv cannot pass nir's type check: it is built
  # without it and its types are set here from the shapes tracked above.
  asym = any(isinstance(n, nir.Conv2d) and isinstance(n.padding, str)
             for n in b.nodes.values())
  graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=graph_meta,
                       type_check=not asym)
  if asym:
    for name, shp in b.shapes.items():
      node = b.nodes[name]
      node.output_type = {"output": np.array(shp)}
      if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        node.input_type = {"input": np.array(b.shapes[b.source[name]])}
  return graph


def _residual(b: _Builder, ls: models.LayerSpec, i: int, p: PyTree, src: str,
              shape: Tuple[int, ...], flat_from) -> Tuple[str, Tuple[int, ...]]:
  cur, cur_shape = src, shape
  block_in, in_shape = src, shape
  last = ls.inner[-1]
  if last.kind == "conv":
    stride = int(np.prod([t.strides for t in ls.inner]))
    identity = stride == 1 and in_shape[-1] == last.size
  else:
    identity = in_shape[-1] == last.size
    if identity and flat_from is not None:
      raise ConfigError(
          f"residual block {i}: an identity shortcut from a flattened conv map; NIR "
          "flattens channels-first, so the shortcut would add permuted spikes")
  shortcut = None
  if identity:
    shortcut = block_in
  else:
    kernel = np.asarray(p["shortcut"]["kernel"], np.float32)
    if last.kind == "conv":
      sc = nir.Conv2d(input_shape=tuple(in_shape[:2]), weight=np.ascontiguousarray(
          kernel.transpose(3, 2, 0, 1)), stride=(stride, stride), padding=(0, 0),
          dilation=(1, 1), groups=1, bias=np.zeros(kernel.shape[-1], np.float32))
      sc_shape = (-(-in_shape[0] // stride), -(-in_shape[1] // stride), last.size)
    else:
      w = (flat_kernel_to_nir(kernel, flat_from) if flat_from is not None
           else np.ascontiguousarray(kernel.T))
      sc = nir.Linear(weight=w)
      sc_shape = (last.size,)
    shortcut = b.add(f"res{i}_shortcut", sc, block_in, shape=sc_shape)
  for j, t in enumerate(ls.inner):
    name = f"{t.kind}{j}"  # the names models.SNN gives a residual block's inner layers
    cur, cur_shape = _layer(b, t, f"res{i}_{j}", p[name], cur, cur_shape,
                            flat_from if j == 0 else None, (f"res{i}", name),
                            shortcut if j == len(ls.inner) - 1 else None)
  return cur, cur_shape
