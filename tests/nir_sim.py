"""An independent NIR simulator for the tests: numpy, straight from the NIR node equations.

Shares no code with bpsr_jax. Time is discretized by forward Euler with step ``dt``;
every node reads the sum of its inputs' outputs of the same step, except along an edge
that closes a cycle, which reads the previous step's output (one step of delay).
Tensors are NIR's: channels-first, a leading batch axis added here.

Node equations (NIR 1.0):
  Affine y = W x + b; Linear y = W x; Conv2d (OIHW, stride, padding int / 'same' /
  'valid', dilation, groups = 1); SumPool2d / AvgPool2d; Flatten; Threshold z = x > t;
  LIF  v += dt / tau (v_leak - v + r I), z = v > v_threshold, v = v_reset where z;
  IF   v += dt r I, then the same spike and reset.
A string padding 'same' is taken as XLA's SAME (low = total // 2, the rest high), the
convention of bpsr_jax's export, for any stride.
"""
from __future__ import annotations

import numpy as np
import nir


def _flatten_subgraphs(nodes, edges):
  nodes, edges = dict(nodes), list(edges)
  while True:
    sub = [k for k, n in nodes.items() if isinstance(n, nir.NIRGraph)]
    if not sub:
      return nodes, edges
    g = sub[0]
    graph = nodes.pop(g)
    i = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)][0]
    o = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)][0]
    for k, n in graph.nodes.items():
      if k not in (i, o):
        nodes[g + "/" + k] = n
    into = [a for a, b in edges if b == g]
    out_of = [b for a, b in edges if a == g]
    edges = [(a, b) for a, b in edges if g not in (a, b)]
    for a, b in graph.edges:
      srcs = into if a == i else [g + "/" + a]
      dsts = out_of if b == o else [g + "/" + b]
      edges += [(s, d) for s in srcs for d in dsts]


def _order(nodes, edges):
  """A node order in which every non-cycle edge goes forward; the back edges."""
  succ = {k: [b for a, b in edges if a == k] for k in nodes}
  state, order, back = {}, [], set()

  def visit(k):
    state[k] = 1
    for b in succ[k]:
      if state.get(b) == 1:
        back.add((k, b))
      elif b not in state:
        visit(b)
    state[k] = 2
    order.append(k)

  for k in nodes:
    if isinstance(nodes[k], nir.Input):
      visit(k)
  for k in nodes:
    if k not in state:
      visit(k)
  return order[::-1], back


def _pad_amounts(padding, size, k, s, d):
  if isinstance(padding, bytes):
    padding = padding.decode()
  if isinstance(padding, str):
    if padding == "valid":
      return [(0, 0)] * 2
    out = [-(-n // st) for n, st in zip(size, s)]
    pads = []
    for o, n, kk, st, dd in zip(out, size, k, s, d):
      total = max((o - 1) * st + (kk - 1) * dd + 1 - n, 0)
      pads.append((total // 2, total - total // 2))
    return pads
  p = np.broadcast_to(np.atleast_1d(np.asarray(padding)).astype(int), (2,))
  return [(int(p[0]),) * 2, (int(p[1]),) * 2]


def _conv2d(x, node):
  w = np.asarray(node.weight)
  s = tuple(np.broadcast_to(np.atleast_1d(np.asarray(node.stride)).astype(int), (2,)))
  d = tuple(np.broadcast_to(np.atleast_1d(np.asarray(node.dilation)).astype(int), (2,)))
  assert int(node.groups) == 1
  k = w.shape[2:]
  pads = _pad_amounts(node.padding, x.shape[2:], k, s, d)
  x = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
  h = (x.shape[2] - (k[0] - 1) * d[0] - 1) // s[0] + 1
  wd = (x.shape[3] - (k[1] - 1) * d[1] - 1) // s[1] + 1
  y = np.zeros((x.shape[0], w.shape[0], h, wd), x.dtype)
  for i in range(k[0]):
    for j in range(k[1]):
      patch = x[:, :, i * d[0]: i * d[0] + (h - 1) * s[0] + 1: s[0],
                j * d[1]: j * d[1] + (wd - 1) * s[1] + 1: s[1]]
      y += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
  if node.bias is not None:
    y += np.asarray(node.bias).reshape(1, -1, 1, 1)
  return y


def _pool(x, node, mean):
  k = np.broadcast_to(np.atleast_1d(np.asarray(node.kernel_size)).astype(int), (2,))
  s = np.broadcast_to(np.atleast_1d(np.asarray(node.stride)).astype(int), (2,))
  p = np.broadcast_to(np.atleast_1d(np.asarray(node.padding)).astype(int), (2,))
  x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
  h = (x.shape[2] - k[0]) // s[0] + 1
  w = (x.shape[3] - k[1]) // s[1] + 1
  y = np.zeros(x.shape[:2] + (h, w), x.dtype)
  for i in range(k[0]):
    for j in range(k[1]):
      y += x[:, :, i: i + (h - 1) * s[0] + 1: s[0], j: j + (w - 1) * s[1] + 1: s[1]]
  return y / (k[0] * k[1]) if mean else y


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float = 1.0,
             dtype=np.float64) -> np.ndarray:
  """Runs ``graph`` on ``x`` ``[T, batch, *input shape]``; returns the Output node's
  ``[T, batch, *shape]`` (the graph must have one Input and one Output)."""
  nodes, edges = _flatten_subgraphs(graph.nodes, graph.edges)
  order, back = _order(nodes, edges)
  pre = {k: [a for a, b in edges if b == k] for k in nodes}
  (inp,) = [k for k in nodes if isinstance(nodes[k], nir.Input)]
  (out,) = [k for k in nodes if isinstance(nodes[k], nir.Output)]
  x = np.asarray(x, dtype)
  prev = {}   # node -> output of the previous step (for back edges)
  v = {}      # neuron -> membrane potential
  outputs = []
  for t in range(x.shape[0]):
    cur = {}
    for k in order:
      node = nodes[k]
      if isinstance(node, nir.Input):
        cur[k] = x[t]
        continue
      terms = []
      for a in pre[k]:
        if (a, k) in back:
          if a in prev:
            terms.append(prev[a])
        else:
          terms.append(cur[a])
      u = sum(terms[1:], terms[0]) if terms else 0.0
      p = lambda name: np.asarray(getattr(node, name), dtype)  # noqa: E731
      if isinstance(node, nir.Output):
        y = u
      elif isinstance(node, nir.Affine):
        y = u @ p("weight").T + p("bias")
      elif isinstance(node, nir.Linear):
        y = u @ p("weight").T
      elif isinstance(node, nir.Conv2d):
        y = _conv2d(u, node)
      elif isinstance(node, nir.SumPool2d):
        y = _pool(u, node, mean=False)
      elif isinstance(node, nir.AvgPool2d):
        y = _pool(u, node, mean=True)
      elif isinstance(node, nir.Threshold):
        y = (u > p("threshold")).astype(dtype)
      elif isinstance(node, nir.Flatten):
        shape = u.shape[1:]
        start = int(node.start_dim) % len(shape)
        end = int(node.end_dim) % len(shape)
        y = u.reshape((u.shape[0],) + shape[:start] + (-1,) + shape[end + 1:])
      elif isinstance(node, (nir.LIF, nir.IF)):
        vk = v.get(k, np.zeros_like(u))
        if isinstance(node, nir.LIF):
          vk = vk + dt / p("tau") * (p("v_leak") - vk + p("r") * u)
        else:
          vk = vk + dt * p("r") * u
        z = vk > p("v_threshold")
        v[k] = np.where(z, p("v_reset"), vk)
        y = z.astype(dtype)
      else:
        raise NotImplementedError(type(node).__name__)
      cur[k] = y
    prev = cur
    outputs.append(cur[out])
  return np.stack(outputs)
