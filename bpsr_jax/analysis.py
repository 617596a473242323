"""Network-structure analysis: three-node motifs and significance profiles (Fig. 8F).

The significance profile (SP) of Milo et al. (Science 303:1538, 2004) compares how often
each of the 13 connected three-node motifs (directed triads) occurs in a network against
an ensemble of random networks with the same in- and out-degree of every node::

    Z_i  = (N_real_i - mean(N_rand_i)) / std(N_rand_i)
    SP_i = Z_i / sqrt(sum_j Z_j^2)

Counts come from ``networkx.triadic_census``; the random ensemble from
``networkx.directed_edge_swap`` (three-edge swaps that keep every node's in- and
out-degree and create no parallel edges).

Adjacency convention: ``adjacency[k, i] != 0`` is a directed edge k -> i, the convention
of ``recurrent_kernel[k, i]`` (synapse from neuron k to neuron i). Self-loops are ignored
(a motif has three distinct nodes).

The biological reference (the C. elegans connectomes of Cook et al. 2019) is read with
the optional PyPI package ``cect`` by :func:`celegans_adjacency`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

#: The 13 connected directed triads, in the order of networkx's census names (MAN code:
#: mutual, asymmetric, null dyads; letters for Down, Up, Cyclic, Transitive).
MOTIFS: Tuple[str, ...] = ("021D", "021U", "021C", "111D", "111U", "030T", "030C",
                           "201", "120D", "120U", "120C", "210", "300")


def _check_adjacency(adjacency: Any) -> np.ndarray:
  a = np.asarray(adjacency)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(
        "adjacency must be a square [N, N] matrix (adjacency[k, i] != 0 is an edge "
        f"k -> i), got shape {a.shape}")
  if a.shape[0] < 3:
    raise ValueError(f"a three-node motif needs at least 3 nodes, got {a.shape[0]}")
  if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
    raise TypeError(f"adjacency must be numeric or boolean, got dtype {a.dtype}")
  return a


def to_digraph(adjacency: Any, threshold: float = 0.0):
  """A ``networkx.DiGraph`` with an edge k -> i wherever ``|adjacency[k, i]| > threshold``.

  Args:
    adjacency: ``[N, N]`` weights or booleans.
    threshold: magnitude at or below which an entry is no edge.

  Returns:
    The directed graph on nodes ``0..N-1``, self-loops dropped.

  Raises:
    ValueError: a non-square matrix or fewer than 3 nodes.
  """
  import networkx as nx
  a = _check_adjacency(adjacency)
  mask = np.abs(a.astype(np.float64)) > threshold
  np.fill_diagonal(mask, False)
  g = nx.DiGraph()
  g.add_nodes_from(range(a.shape[0]))
  ks, is_ = np.nonzero(mask)
  g.add_edges_from(zip(ks.tolist(), is_.tolist()))
  return g


def motif_counts(adjacency: Any, threshold: float = 0.0) -> Dict[str, int]:
  """Counts of the 13 connected three-node motifs (induced subgraphs).

  Args:
    adjacency: ``[N, N]``; ``adjacency[k, i] != 0`` is an edge k -> i.
    threshold: see :func:`to_digraph`.

  Returns:
    ``{motif name: count}`` for the names in :data:`MOTIFS`.
  """
  import networkx as nx
  census = nx.triadic_census(to_digraph(adjacency, threshold))
  return {m: int(census[m]) for m in MOTIFS}


def _counts_vector(g) -> np.ndarray:
  import networkx as nx
  census = nx.triadic_census(g)
  return np.array([census[m] for m in MOTIFS], dtype=np.float64)


def random_references(adjacency: Any, num: int = 20, *, swaps_per_edge: int = 10,
                      seed: int = 0, threshold: float = 0.0) -> List[Any]:
  """Degree-preserving random networks: ``num`` edge-swapped copies of the graph.

  Args:
    adjacency: ``[N, N]``.
    num: networks to draw.
    swaps_per_edge: three-edge swaps per edge for each network.
    seed: random seed (deterministic ensemble).
    threshold: see :func:`to_digraph`.

  Returns:
    A list of ``networkx.DiGraph`` with every node's in- and out-degree unchanged.
    A graph too small or too dense to swap (fewer than 4 nodes or 3 edges, or no valid
    swap found) is returned as an unchanged copy.
  """
  import networkx as nx
  g0 = to_digraph(adjacency, threshold)
  m = g0.number_of_edges()
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num):
    g = g0.copy()
    nswap = max(1, swaps_per_edge * m)
    if g.number_of_nodes() >= 4 and m >= 3:
      try:
        nx.directed_edge_swap(g, nswap=nswap, max_tries=max(100, 20 * nswap),
                              seed=int(rng.integers(2**31 - 1)))
      except nx.NetworkXAlgorithmError:
        pass  # fewer swaps than asked were possible; keep what was reached
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    out.append(g)
  return out


def z_scores(real: np.ndarray, random: np.ndarray, std_floor: float = 1.0) -> np.ndarray:
  """Z scores of motif counts against an ensemble.

  Args:
    real: ``[13]`` counts of the network.
    random: ``[R, 13]`` counts of the random networks.
    std_floor: a motif whose count does not vary over the ensemble has std 0; its std
      is taken as ``max(std, std_floor)`` so a difference of one count is one unit and
      an absent-everywhere motif scores 0.

  Returns:
    ``[13]`` Z scores.
  """
  real = np.asarray(real, np.float64)
  random = np.atleast_2d(np.asarray(random, np.float64))
  mean = random.mean(axis=0)
  std = random.std(axis=0)
  return (real - mean) / np.maximum(std, std_floor)


def normalize_profile(z: np.ndarray) -> np.ndarray:
  """``SP = Z / ||Z||_2`` (all zeros stay zeros)."""
  z = np.asarray(z, np.float64)
  norm = np.sqrt(np.sum(z * z))
  return z / norm if norm > 0 else np.zeros_like(z)


def significance_profile(adjacency: Any, *, num_random: int = 20,
                         swaps_per_edge: int = 10, seed: int = 0, threshold: float = 0.0,
                         std_floor: float = 1.0, return_details: bool = False):
  """Significance profile of a directed network (Milo et al. 2004; the paper's Fig. 8F).

  Args:
    adjacency: ``[N, N]`` weights or booleans; ``adjacency[k, i] != 0`` is an edge k -> i
      (e.g. a ``recurrent_kernel``, or a connectome). Self-loops are ignored.
    num_random: degree-preserving random networks in the reference ensemble.
    swaps_per_edge: three-edge swaps per edge when drawing each random network.
    seed: seed of the ensemble (the result is deterministic given the seed).
    threshold: entries with ``|a| <= threshold`` are no edge.
    std_floor: see :func:`z_scores`.
    return_details: also return the counts and Z scores.

  Returns:
    ``sp`` ``[13]`` in the order of :data:`MOTIFS`, unit norm (or all zeros); with
    ``return_details=True`` a dict with ``sp``, ``z``, ``real`` ``[13]``, ``random``
    ``[R, 13]`` and ``motifs``.

  Raises:
    ValueError: a non-square adjacency matrix or fewer than 3 nodes.
  """
  g = to_digraph(adjacency, threshold)
  real = _counts_vector(g)
  refs = random_references(adjacency, num_random, swaps_per_edge=swaps_per_edge,
                           seed=seed, threshold=threshold)
  rand = np.stack([_counts_vector(r) for r in refs]) if refs else real[None]
  z = z_scores(real, rand, std_floor)
  sp = normalize_profile(z)
  if return_details:
    return {"sp": sp, "z": z, "real": real, "random": rand, "motifs": MOTIFS}
  return sp


def profile_similarity(sp_a: np.ndarray, sp_b: np.ndarray) -> float:
  """Pearson correlation of two significance profiles (1 = same structure)."""
  a, b = np.asarray(sp_a, np.float64), np.asarray(sp_b, np.float64)
  if a.std() == 0 or b.std() == 0:
    return 0.0
  return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------------------------------
# C. elegans (Cook et al. 2019) through the optional `cect` package.

_SEXES = {"hermaphrodite": "Cook2019HermReader", "herm": "Cook2019HermReader",
          "male": "Cook2019MaleReader"}


def celegans_adjacency(sex: str = "hermaphrodite", synapses: str = "chemical",
                       neurons_only: bool = True) -> Tuple[np.ndarray, List[str]]:
  """The C. elegans connectome of Cook et al. (2019) as a directed adjacency matrix.

  Read with the PyPI package ``cect`` (``pip install cect openpyxl``), which ships the
  data (no download).

  Args:
    sex: ``"hermaphrodite"`` (302 neurons) or ``"male"`` (385 neurons).
    synapses: ``"chemical"`` (directed chemical synapses), ``"electrical"`` (gap
      junctions, symmetric) or ``"both"``.
    neurons_only: keep neurons only (drop muscles and other end organs).

  Returns:
    ``(adjacency [N, N] float (synapse counts), node names)``; ``adjacency[k, i]`` is the
    number of synapses from k to i.

  Raises:
    ImportError: ``cect`` (or its reader's dependency ``openpyxl``) is not installed.
    ValueError: an unknown ``sex`` or ``synapses``.
  """
  if sex not in _SEXES:
    raise ValueError(f"unknown sex {sex!r}: expected 'hermaphrodite' or 'male'")
  keys = {"chemical": ("Generic_CS",), "electrical": ("Generic_GJ",),
          "both": ("Generic_CS", "Generic_GJ")}
  if synapses not in keys:
    raise ValueError(f"unknown synapses {synapses!r}: expected one of {sorted(keys)}")
  try:
    import importlib
    reader = importlib.import_module(f"cect.readers.{_SEXES[sex]}")
    import cect.Cells as cells
  except ImportError as e:
    raise ImportError(
        "the C. elegans connectomes need the optional package 'cect' (and 'openpyxl'): "
        f"pip install cect openpyxl ({e})") from e
  ds = reader.get_instance()
  nodes = list(ds.nodes)
  a = np.zeros((len(nodes), len(nodes)), np.float64)
  for k in keys[synapses]:
    if k in ds.connections:
      a = a + np.asarray(ds.connections[k], np.float64)
  if neurons_only:
    test = cells.is_herm_neuron if sex != "male" else cells.is_male_neuron
    keep = [i for i, n in enumerate(nodes) if test(n)]
    a = a[np.ix_(keep, keep)]
    nodes = [nodes[i] for i in keep]
  return a, nodes
