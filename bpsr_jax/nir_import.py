"""Import of a NIR graph as a :class:`bpsr_jax.SNN` (see :mod:`bpsr_jax.nir_io`).

The graph is read back into the spec grammar of :mod:`bpsr_jax.models`: walking from
the ``Output`` node to the ``Input`` node, each neuron node with its synapse node becomes
a layer; a neuron with a second input (an edge straight from an earlier node, or a
bias-free ``Linear``/1x1 ``Conv2d`` from it) closes a residual block; a neuron's
self-loop through one ``Linear`` is its recurrent kernel. Anything bpsr_jax cannot run
exactly raises :class:`bpsr_jax.errors.ConfigError` naming the node and the field.
"""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List, Optional, Tuple, Union

import jax
import nir
import numpy as np

from bpsr_jax import models
from bpsr_jax import quantize
from bpsr_jax.errors import ConfigError, DataError
from bpsr_jax.nir_export import META_KEY, same_padding

PyTree = Any

_NEURONS = (nir.LIF, nir.IF)
_SYNAPSES = (nir.Affine, nir.Linear, nir.Conv2d)
_WHY = {
    "CubaLIF": ("tau_syn", "bpsr_jax neurons have no synaptic current state: a "
                "CubaLIF filters its input through tau_syn"),
    "CubaLI": ("tau_syn", "a non-spiking leaky integrator with a synaptic current"),
    "LI": ("tau", "a non-spiking leaky integrator (bpsr_jax's output layer spikes)"),
    "I": ("r", "a non-spiking integrator (bpsr_jax's output layer spikes)"),
    "Delay": ("delay", "bpsr_jax has no synaptic delays"),
    "Scale": ("scale", "bpsr_jax has no elementwise scaling node"),
    "Conv1d": ("weight", "bpsr_jax has 2-d convolutions only"),
}
#: Relative tolerance below which a NIR gain ``r dt / tau`` counts as 1 (float64
#: round-off of ``tau / dt``, ``dt / (1 - tau_b)`` for a ``dt`` that is not a power of 2).
GAIN_RTOL = 1e-9
#: Relative spread of ``v_threshold / gain`` over the graph tolerated as float32 storage
#: round-off of a peer's parameters (bpsr_jax has one threshold per model).
THRESHOLD_RTOL = 1e-6


def _err(name: str, node: Any, field: str, msg: str) -> ConfigError:
  return ConfigError(f"NIR node {name!r} ({type(node).__name__}) field {field!r}: {msg}")


def _inline(nodes: Dict[str, Any], edges: List[Tuple[str, str]]):
  """Replaces nested NIRGraph nodes by their contents (``<graph>.<node>`` names)."""
  nodes, edges = dict(nodes), list(edges)
  while any(isinstance(n, nir.NIRGraph) for n in nodes.values()):
    g = next(k for k, n in nodes.items() if isinstance(n, nir.NIRGraph))
    sub = nodes.pop(g)
    ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
    outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
      raise ConfigError(f"NIR subgraph {g!r}: expected one Input and one Output node, "
                        f"got {len(ins)} and {len(outs)}")
    for k, n in sub.nodes.items():
      if k not in (ins[0], outs[0]):
        nodes[f"{g}.{k}"] = n
    pre = [a for a, b in edges if b == g]
    post = [b for a, b in edges if a == g]
    edges = [e for e in edges if g not in e]
    for a, b in sub.edges:
      a2 = pre if a == ins[0] else [f"{g}.{a}"]
      b2 = post if b == outs[0] else [f"{g}.{b}"]
      edges.extend((x, y) for x in a2 for y in b2)
  return nodes, edges


def _check_node(name: str, node: Any, dt: float) -> None:
  kind = type(node).__name__
  if kind in _WHY:
    field, why = _WHY[kind]
    raise _err(name, node, field, f"unsupported: {why}")
  if not isinstance(node, _NEURONS + _SYNAPSES + (
      nir.Input, nir.Output, nir.Flatten, nir.SumPool2d, nir.AvgPool2d, nir.Threshold)):
    raise ConfigError(f"NIR node {name!r}: unsupported node type {kind}")
  meta = getattr(node, "metadata", None) or {}
  for k, v in meta.items():
    if "reset" in str(k).lower() and "subtract" in str(v).lower():
      raise _err(name, node, str(k), f"subtractive reset ({v!r}); bpsr_jax resets the "
                 "potential to 0 after a spike")
  if isinstance(node, _NEURONS):
    if np.any(np.asarray(node.v_reset) != 0):
      raise _err(name, node, "v_reset", "must be 0 (bpsr_jax resets to 0)")
  if isinstance(node, nir.LIF):
    if np.any(np.asarray(node.v_leak) != 0):
      raise _err(name, node, "v_leak", "must be 0 (bpsr_jax neurons leak towards 0)")
    tau = np.asarray(node.tau, np.float64)
    if np.any(~(tau >= dt)):
      raise _err(name, node, "tau", f"tau must be >= dt = {dt} (forward Euler with "
                 f"dt/tau > 1 overshoots; min tau {tau.min():.6g}): the dt does not fit "
                 "(pass the dt the graph was written for)")


def _neuron_params(name: str, node: Any, dt: float) -> Tuple[np.ndarray, np.ndarray]:
  """``(tau_b, v_threshold / gain)`` of a neuron node, in its NIR shape."""
  r = np.asarray(node.r, np.float64)
  if isinstance(node, nir.IF):
    tau_b, gain = np.ones_like(r), dt * r
  else:
    tau = np.asarray(node.tau, np.float64)
    tau_b, gain = 1.0 - dt / tau, dt * r / tau
  gain = np.where(np.abs(gain - 1) <= GAIN_RTOL, 1.0, gain)
  if np.any(~(gain > 0)):
    raise _err(name, node, "r", "the input gain r dt / tau must be > 0")
  return tau_b, np.asarray(node.v_threshold, np.float64) / gain


class _Reader:
  """The graph as predecessor/successor lists, with recurrent self-loops split off."""

  def __init__(self, nodes, edges):
    self.nodes = nodes
    self.pre = {k: [] for k in nodes}
    self.post = {k: [] for k in nodes}
    for a, b in edges:
      self.post[a].append(b)
      self.pre[b].append(a)
    self.rec = {}  # neuron -> recurrent synapse node
    for k, n in nodes.items():
      if (isinstance(n, (nir.Linear, nir.Affine)) and len(self.pre[k]) == 1
          and self.pre[k] == self.post[k] and isinstance(nodes[self.pre[k][0]], _NEURONS)):
        nrn = self.pre[k][0]
        if isinstance(n, nir.Affine) and np.any(np.asarray(n.bias) != 0):
          raise _err(k, n, "bias", "a recurrent synapse has no bias in bpsr_jax")
        self.rec[nrn] = k
    rec_nodes = set(self.rec.values())
    self.pre = {k: [p for p in v if p not in rec_nodes] for k, v in self.pre.items()
                if k not in rec_nodes}
    self.post = {k: [p for p in v if p not in rec_nodes] for k, v in self.post.items()
                 if k not in rec_nodes}
    self.depth = self._depths()

  def _depths(self):
    depth, indeg = {}, {k: len(v) for k, v in self.pre.items()}
    ready = [k for k, d in indeg.items() if d == 0]
    for k in ready:
      depth[k] = 0
    while ready:
      k = ready.pop()
      for b in self.post[k]:
        depth[b] = max(depth.get(b, 0), depth[k] + 1)
        indeg[b] -= 1
        if indeg[b] == 0:
          ready.append(b)
    left = [k for k, d in indeg.items() if d > 0]
    if left:
      raise ConfigError(f"NIR graph has a cycle through {sorted(left)}; bpsr_jax runs "
                        "only a neuron's self-loop through one Linear (its recurrent "
                        "kernel)")
    return depth

  def one_pre(self, k):
    if len(self.pre[k]) != 1:
      raise ConfigError(f"NIR node {k!r} ({type(self.nodes[k]).__name__}): expected "
                        f"one input, got {len(self.pre[k])} ({self.pre[k]})")
    return self.pre[k][0]

  def split_inputs(self, k):
    """``(main synapse, shortcut node or None, shortcut is identity)`` of a neuron."""
    syn = [p for p in self.pre[k] if isinstance(self.nodes[p], _SYNAPSES)]
    direct = [p for p in self.pre[k] if p not in syn]
    node = self.nodes[k]
    if len(syn) == 1 and not direct:
      return syn[0], None, False
    if len(syn) == 1 and len(direct) == 1:
      return syn[0], direct[0], True
    if len(syn) == 2 and not direct:
      a, b = sorted(syn, key=lambda s: self.depth[self.one_pre(s)])
      if self.depth[self.one_pre(a)] == self.depth[self.one_pre(b)]:
        zero = [s for s in syn if _bias_free(self.nodes[s])]
        if len(zero) != 1:
          raise ConfigError(f"NIR node {k!r}: two synapses from the same node; cannot "
                            "tell the residual shortcut (bias-free) from the layer")
        a, b = zero[0], next(s for s in syn if s != zero[0])
      return b, a, False
    raise ConfigError(f"NIR node {k!r} ({type(node).__name__}): inputs {self.pre[k]} "
                      "do not form a bpsr_jax layer (one synapse node, plus at most one "
                      "residual shortcut)")


def _bias_free(n) -> bool:
  return isinstance(n, nir.Linear) or np.all(np.asarray(n.bias) == 0)


def _walk(rd: _Reader, out_name: str) -> List[Any]:
  """The layers from Input to Output, as ``(kind, ...)`` tuples (backward walk)."""
  seq: List[Any] = []
  block: Optional[Dict[str, Any]] = None
  cur = rd.one_pre(out_name)
  while not isinstance(rd.nodes[cur], nir.Input):
    node = rd.nodes[cur]
    if isinstance(node, _NEURONS):
      syn, sc, identity = rd.split_inputs(cur)
      if len(rd.pre[syn]) != 1 or rd.post[syn] != [cur]:
        raise ConfigError(f"NIR node {syn!r}: a synapse node must have one input and "
                          f"feed one neuron node, got inputs {rd.pre[syn]} and outputs "
                          f"{rd.post[syn]}")
      layer = ("layer", cur, syn, rd.rec.get(cur))
      if sc is not None:
        if block is not None:
          raise ConfigError(f"NIR node {cur!r}: nested residual blocks")
        src = sc if identity else rd.one_pre(sc)
        block = dict(src=src, shortcut=None if identity else sc, layers=[layer])
      elif block is not None:
        block["layers"].append(layer)
      else:
        seq.append(layer)
      cur = rd.one_pre(syn)
      if block is not None and cur == block["src"]:
        seq.append(("block", block["layers"][::-1], block["shortcut"]))
        block = None
      continue
    if block is not None:
      raise ConfigError(f"NIR node {cur!r} ({type(node).__name__}) inside a residual "
                        "block: bpsr_jax blocks hold only spiking layers")
    if isinstance(node, nir.Threshold):
      pool = rd.one_pre(cur)
      if not isinstance(rd.nodes[pool], nir.SumPool2d):
        raise _err(cur, node, "threshold", "a Threshold is supported only after a "
                   "SumPool2d of spikes (a max pool)")
      thr = np.asarray(node.threshold)
      if np.any(thr < 0) or np.any(thr >= 1):
        raise _err(cur, node, "threshold", "must lie in [0, 1) (the OR of spikes)")
      seq.append(("maxpool", pool))
      cur = rd.one_pre(pool)
    elif isinstance(node, nir.SumPool2d):
      raise _err(cur, node, "kernel_size", "a SumPool2d must be followed by a Threshold "
                 "(a max pool of spikes); bpsr_jax has no sum pooling")
    elif isinstance(node, nir.AvgPool2d):
      seq.append(("avgpool", cur))
      cur = rd.one_pre(cur)
    elif isinstance(node, nir.Flatten):
      seq.append(("flatten", cur))
      cur = rd.one_pre(cur)
    else:
      raise ConfigError(f"NIR node {cur!r} ({type(node).__name__}) is not a bpsr_jax "
                        "layer")
  if block is not None:
    raise ConfigError(f"NIR residual shortcut from {block['src']!r} never rejoins the "
                      "main path")
  return seq[::-1]


def _pool_size(name, node) -> int:
  k = np.atleast_1d(np.asarray(node.kernel_size)).astype(int)
  s = np.atleast_1d(np.asarray(node.stride)).astype(int)
  p = np.atleast_1d(np.asarray(node.padding)).astype(int)
  if len(set(k.tolist())) != 1 or not np.array_equal(np.broadcast_to(s, k.shape), k):
    raise _err(name, node, "stride", "bpsr_jax pools square windows with stride = "
               f"window, got kernel_size {k.tolist()} stride {s.tolist()}")
  if np.any(p != 0):
    raise _err(name, node, "padding", f"must be 0, got {p.tolist()}")
  return int(k[0])


def _conv(name, node, shape):
  """``(token parts, HWIO kernel, bias, output shape)`` of a Conv2d on ``(C, H, W)``."""
  w = np.asarray(node.weight, np.float32)
  if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[1] != shape[0]:
    raise _err(name, node, "weight", f"expected a square OIHW kernel reading "
               f"{shape[0]} channels, got shape {w.shape}")
  if int(node.groups) != 1:
    raise _err(name, node, "groups", f"must be 1, got {node.groups}")
  if np.any(np.atleast_1d(np.asarray(node.dilation)) != 1):
    raise _err(name, node, "dilation", f"must be 1, got {node.dilation}")
  s = np.broadcast_to(np.atleast_1d(np.asarray(node.stride)).astype(int), (2,))
  if s[0] != s[1]:
    raise _err(name, node, "stride", f"must be equal in both dims, got {s.tolist()}")
  k, s = w.shape[2], int(s[0])
  pads = [same_padding(shape[1], k, s), same_padding(shape[2], k, s)]
  pad = node.padding
  pad = pad.decode() if isinstance(pad, bytes) else pad
  if isinstance(pad, np.ndarray) and pad.dtype.kind in "SUO":
    pad = str(pad.astype(str))
  if isinstance(pad, str):
    ok = pad == "same"
  else:
    p = np.broadcast_to(np.atleast_1d(np.asarray(pad)).astype(int), (2,))
    ok = all(lo == hi == int(q) for (lo, hi), q in zip(pads, p))
  if not ok:
    raise _err(name, node, "padding", f"bpsr_jax convs pad 'SAME' (here {pads}), "
               f"got {pad!r}")
  bias = (np.zeros(w.shape[0], np.float32) if getattr(node, "bias", None) is None
          else np.asarray(node.bias, np.float32))
  out = (w.shape[0], -(-shape[1] // s), -(-shape[2] // s))
  return (k, s), np.ascontiguousarray(w.transpose(2, 3, 1, 0)), bias, out


def _dense(name, node, n_in, flat_from):
  w = np.asarray(node.weight, np.float32)
  if w.ndim != 2 or w.shape[1] != n_in:
    raise _err(name, node, "weight", f"expected [out, {n_in}], got shape {w.shape}")
  if flat_from is not None:
    c, h, wd = flat_from
    kernel = w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1)
  else:
    kernel = w.T
  bias = (np.asarray(node.bias, np.float32) if isinstance(node, nir.Affine)
          else np.zeros(w.shape[0], np.float32))
  return np.ascontiguousarray(kernel), bias, (w.shape[0],)


class _Builder:
  """Turns the walked layers into spec tokens and params, tracking NIR shapes."""

  def __init__(self, rd: _Reader, dt: float):
    self.rd, self.dt = rd, dt
    self.thresholds: List[Tuple[str, np.ndarray]] = []

  def layer(self, item, shape, flat_from, binary_in=True):
    _, nrn, syn, rec = item
    rd = self.rd
    sn, nn_ = rd.nodes[syn], rd.nodes[nrn]
    if isinstance(sn, nir.Conv2d):
      if len(shape) != 3:
        raise _err(syn, sn, "weight", f"a Conv2d needs a (C, H, W) input, got {shape}")
      (k, s), kernel, bias, out = _conv(syn, sn, shape)
      token, kind = f"{out[0]}c{k}" + (f"/{s}" if s != 1 else ""), "conv"
    else:
      if len(shape) != 1:
        raise _err(syn, sn, "weight", f"a dense synapse needs a flat input, got shape "
                   f"{tuple(shape)} (add a Flatten node)")
      kernel, bias, out = _dense(syn, sn, shape[0], flat_from)
      kind = "r" if rec is not None else "fc"
      token = f"{kind}{out[0]}"
    if rec is not None and kind == "conv":
      raise _err(rec, rd.nodes[rec], "weight", "recurrent synapses on a conv layer")
    nshape = tuple(int(d) for d in np.shape(nn_.v_threshold))
    if nshape != tuple(out):
      raise _err(nrn, nn_, "v_threshold", f"shape {nshape} does not match its synapse "
                 f"output {tuple(out)}")
    tau_b, thr = _neuron_params(nrn, nn_, self.dt)
    self.thresholds.append((nrn, thr))
    if kind == "conv":
      if np.ptp(tau_b) != 0:
        raise _err(nrn, nn_, "tau", "a bpsr_jax conv layer shares one tau; the taus "
                   "of this node differ")
      tau = np.float32(tau_b.reshape(-1)[0])
    else:
      tau = tau_b.astype(np.float32)
    p = dict(kernel=kernel, bias=bias, tau=np.asarray(tau, np.float32))
    if rec is not None:
      w = np.asarray(rd.nodes[rec].weight, np.float32)
      if w.shape != (out[0], out[0]):
        raise _err(rec, rd.nodes[rec], "weight", f"expected [{out[0]}, {out[0]}], got "
                   f"{w.shape}")
      p["recurrent_kernel"] = np.ascontiguousarray(w.T)
    return token, kind, p, tuple(out)


def from_graph(graph: nir.NIRGraph, *, dt: Optional[float] = None
               ) -> Tuple[models.SNN, PyTree]:
  """The core of :func:`bpsr_jax.nir_io.from_nir` on an in-memory graph."""
  meta = dict((graph.metadata or {}).get(META_KEY, {}) or {})
  meta_dt = float(meta["dt"]) if "dt" in meta else None
  if dt is None:
    dt = meta_dt if meta_dt is not None else 1.0
  elif meta_dt is not None and float(dt) != meta_dt:
    raise ConfigError(f"dt={dt} does not fit the graph, which was written with "
                      f"dt={meta_dt} (metadata {META_KEY}.dt)")
  if not float(dt) > 0:
    raise ConfigError(f"dt must be > 0, got {dt!r}")
  dt = float(dt)
  nodes, edges = _inline(graph.nodes, graph.edges)
  for k, n in nodes.items():
    _check_node(k, n, dt)
  ins = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
  outs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
  if len(ins) != 1 or len(outs) != 1:
    raise ConfigError(f"NIR graph: expected one Input and one Output node, got "
                      f"{ins} and {outs}")
  rd = _Reader(nodes, edges)
  seq = _walk(rd, outs[0])
  shape = tuple(int(d) for d in np.asarray(nodes[ins[0]].input_type["input"]).reshape(-1))
  b = _Builder(rd, dt)
  tokens, params = [], {}
  flat_from, binary = None, False
  visited = {ins[0], outs[0]} | set(rd.rec.values())
  for item in seq:
    kind = item[0]
    if kind == "flatten":
      visited.add(item[1])
      if len(shape) == 3:
        flat_from = shape
      shape = (int(np.prod(shape)),)
      continue
    idx = len(tokens)
    if kind == "layer":
      token, k, p, shape = b.layer(item, shape, flat_from)
      visited.update(x for x in item[1:] if x)
      tokens.append(token)
      params[f"{'conv' if k == 'conv' else k}{idx}"] = p
      flat_from, binary = None, True
    elif kind in ("maxpool", "avgpool"):
      name = item[1]
      node = nodes[name]
      if kind == "maxpool":
        visited.update((name, rd.post[name][0]))
        if not binary:
          raise _err(name, node, "kernel_size", "SumPool2d + Threshold is a max pool "
                     "only of spikes; its input is not binary")
      else:
        visited.add(name)
        binary = False
      kk = _pool_size(name, node)
      if len(shape) != 3:
        raise _err(name, node, "kernel_size", f"pooling needs (C, H, W), got {shape}")
      shape = (shape[0], shape[1] // kk, shape[2] // kk)
      tokens.append(("p" if kind == "maxpool" else "a") + str(kk))
    else:  # block
      _, layers, sc = item
      in_shape, inner, bp, kinds = shape, [], {}, []
      for j, layer in enumerate(layers):
        token, k, p, shape = b.layer(layer, shape, flat_from if j == 0 else None)
        visited.update(x for x in layer[1:] if x)
        inner.append(token)
        kinds.append(k)
        bp[f"{k}{j}"] = p  # the names models.SNN gives the inner layers
      if len(set(kinds)) != 1 and "conv" in kinds:
        raise ConfigError(f"NIR residual block ending at {layers[-1][1]!r} mixes conv "
                          "and dense layers")
      conv = kinds[-1] == "conv"
      if conv:
        stride = int(np.prod([int(t.split("/")[1]) if "/" in t else 1 for t in inner]))
        identity = stride == 1 and in_shape[0] == shape[0]
      else:
        identity = in_shape[0] == shape[0]
      if (sc is None) != identity:
        what = "an identity" if sc is None else "a projection"
        raise ConfigError(f"NIR residual block ending at {layers[-1][1]!r}: {what} "
                          "shortcut where bpsr_jax's block of these shapes has "
                          f"{'a projection' if sc is None else 'an identity'}")
      if sc is None and flat_from is not None:
        raise ConfigError(f"NIR residual block ending at {layers[-1][1]!r}: identity "
                          "shortcut from a flattened conv map")
      if sc is not None:
        visited.add(sc)
        bp["shortcut"] = dict(kernel=_shortcut(sc, nodes[sc], in_shape, conv, stride
                                               if conv else 1, shape, flat_from))
      tokens.append("[" + "-".join(inner) + "]")
      params[f"res{idx}"] = bp
      flat_from, binary = None, True
  left = sorted(set(nodes) - visited)
  if left:
    raise ConfigError(f"NIR nodes {left} are not on bpsr_jax's path from input to "
                      "output")
  return _finish(meta, tokens, params, b)


def _shortcut(name, node, in_shape, conv, stride, out_shape, flat_from):
  if not _bias_free(node):
    raise _err(name, node, "bias", "a residual projection has no bias in bpsr_jax")
  if conv:
    if not isinstance(node, nir.Conv2d):
      raise _err(name, node, "weight", "the shortcut of a conv block must be a Conv2d")
    w = np.asarray(node.weight, np.float32)
    s = np.atleast_1d(np.asarray(node.stride)).astype(int)
    if w.shape[2:] != (1, 1) or np.any(s != stride):
      raise _err(name, node, "weight", f"expected a 1x1 projection with stride "
                 f"{stride}, got kernel {w.shape[2:]} stride {s.tolist()}")
    if np.any(np.atleast_1d(np.asarray(node.padding)) != 0) and not isinstance(
        node.padding, str):
      raise _err(name, node, "padding", "a 1x1 projection pads 0")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
  if isinstance(node, nir.Conv2d):
    raise _err(name, node, "weight", "the shortcut of a dense block must be dense")
  return _dense(name, node, in_shape[0], flat_from)[0]


def _finish(meta, tokens, params, b):
  """Checks the shared threshold, builds the SNN."""
  thr = np.concatenate([t.reshape(-1) for _, t in b.thresholds])
  lo, hi = thr.min(), thr.max()
  if hi - lo > THRESHOLD_RTOL * abs(hi):
    name, t = max(b.thresholds, key=lambda x: np.ptp(x[1]) if x[1].size else 0)
    raise _err(name, b.rd.nodes[name], "v_threshold",
               f"bpsr_jax has one threshold per model; v_threshold / (r dt / tau) spans "
               f"[{lo:.9g}, {hi:.9g}] over the graph")
  # NIR fires on v > theta; on float32 potentials that is u >= the next float32 up.
  threshold = float(np.nextafter(np.float32(np.median(thr)), np.float32(np.inf)))
  encoding = bool(int(meta.get("encoding", 0)))
  if encoding:
    tokens[0] = "e" + tokens[0]
  spec = "-".join(tokens)
  time_steps = int(meta.get("time_steps", 0)) or None
  try:
    models.parse_spec(spec)
  except ValueError as e:
    raise ConfigError(f"NIR graph maps to an unsupported bpsr_jax model: {e}") from None
  model = models.SNN(spec, threshold=threshold, time_steps=time_steps)
  return model, params


def requantize(model: models.SNN, params: PyTree, meta: Dict[str, Any]
               ) -> Tuple[PyTree, quantize.QuantInfo]:
  """The integer pytree and QuantInfo of a graph exported with ``quant_info``."""
  if not int(meta.get("quantized", 0)):
    raise ConfigError(f"the NIR graph carries no quantization (metadata "
                      f"{META_KEY}.quantized); import it with quantized=False")
  info = quantize.QuantInfo(int(meta["bits"]), float(model.threshold),
                            int(meta["max_tau_shift"]), int(meta["tau_terms"]))
  qparams, _ = quantize.quantize_params(params, info.bits, max_tau_shift=info.max_tau_shift,
                                        tau_terms=info.tau_terms, threshold=info.threshold)
  back = quantize.dequantize_params(qparams, info)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                          jax.tree.leaves(back)):
    if not np.array_equal(np.asarray(a, np.float32), np.asarray(b)):
      raise ConfigError(f"NIR graph parameter {jax.tree_util.keystr(path)} is not on "
                        f"the {info.bits}-bit grid its metadata declares")
  return qparams, info


def read_graph(path: Union[str, pathlib.Path]) -> nir.NIRGraph:
  """``nir.read`` with a one-line :class:`DataError` naming the file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"NIR file {str(path)!r} does not exist")
  try:
    try:
      return nir.read(path)
    except ValueError as e:
      if "type mismatch" not in str(e):
        raise
      # nir 1.0.8's type check infers a stride-S 'same' Conv2d's output as its input
      # size; such graphs (bpsr_jax's asymmetric SAME convs) are read unchecked.
      return nir.read(path, type_check=False)
  except Exception as e:  # h5py/nir raise OSError, KeyError, ValueError, AssertionError
    raise DataError(f"NIR file {str(path)!r} cannot be read as a NIR graph: "
                    f"{type(e).__name__}: {e}") from None
