"""Synaptic rewiring (BPSR eq. 14-15, Algorithm 1 lines 13-16) as an optax wrapper.

:func:`rewire` wraps the optimizer whose updates it masks, the way :func:`optax.masked`
or :class:`optax.MultiSteps` wrap theirs. At every update, for every synapse ``w`` of a
rewired leaf (existing or pruned)::

    m     <- beta_m * m + (1 - beta_m) * g                   # g: the raw gradient
    prune  = |w| < theta_w
    grow   = |m| > theta_m + mu_m * ||c_post - c_pre||_2
    mask   = (w != 0 and not prune) or grow
    inner optimizer sees mask * g
    update = inner update        where mask
           = -w                  elsewhere    (so that w + update == 0.0 exactly)

``c_pre`` and ``c_post`` are fixed coordinates of the pre- and post-synaptic neurons in
the unit cube, drawn once in ``init``. A synapse is "absent" exactly when its weight is
``0.0``: a pruned synapse stays at exactly zero until its gradient momentum passes the
growth threshold; a regrown synapse starts from ``0.0`` and the inner optimizer moves it
from the step it regrows on.

Example::

    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        bpsr_jax.rewire(optax.adamw(1e-3), prune_threshold=1e-3,
                        grow_threshold=1e-2),
        bpsr_jax.clamp(threshold=1.0),        # optional; only a clamp may follow rewire
    )
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)   # params are required
    params = optax.apply_updates(params, updates)
    print(bpsr_jax.synapse_counts(opt_state))

Any transformation placed *after* :func:`rewire` in a chain must keep a zero update zero
and keep ``-w`` exact (a clamp does; a learning-rate scale would not): put the learning
rate inside the wrapped optimizer.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpsr_jax.errors import ConfigError

Array = jax.Array
PyTree = Any

#: Leaf names that :func:`rewire`, :func:`synapse_counts` and the l1 term act on by default.
SYNAPSE_NAMES = ("kernel", "recurrent_kernel")

#: Dimension of the space neurons live in (the unit cube of the paper).
COORDINATE_DIM = 3

Where = Union[None, Sequence[str], PyTree, Callable[[PyTree], PyTree]]


class SynapseCoordinates(NamedTuple):
  """Fixed positions of the neurons a kernel connects, for the distance term of eq. 15.

  For a kernel of shape ``[..., n_pre, n_post]`` (dense ``[in, out]``, conv ``HWIO``,
  recurrent ``[N, N]``), the distance between pre-synaptic neuron (or input channel) ``j``
  and post-synaptic neuron (or output channel) ``i`` is ``||pre[j] - post[i]||_2``; a conv
  kernel shares it over its spatial taps.

  Attributes:
    pre: ``[n_pre, d]`` coordinates of the pre-synaptic neurons (``d = 3`` by default).
    post: ``[n_post, d]`` coordinates of the post-synaptic neurons. For a recurrent kernel
      the same array as ``pre``.
  """
  pre: Array
  post: Array


class RewireState(NamedTuple):
  """State of :func:`rewire`.

  The pytrees ``momentum``, ``mask`` and ``coordinates`` have the structure of the params;
  at the leaves that are not rewired (biases, taus, ...) they hold an empty
  :class:`optax.MaskedNode`.

  Attributes:
    momentum: per-synapse gradient momentum ``m`` (eq. 14), same shape and dtype as the
      weight, kept for every synapse whether it exists or not.
    mask: boolean connectivity, ``True`` where the synapse exists. Set to ``w != 0`` by
      ``init`` and to the mask of eq. 15 by every update (the synapses the returned update
      keeps).
    coordinates: a :class:`SynapseCoordinates` per rewired leaf of rank >= 2 (a
      :class:`optax.MaskedNode` for a rewired leaf of rank < 2, which has no distance
      term).
    inner_state: the state of the wrapped optimizer.
  """
  momentum: PyTree
  mask: PyTree
  coordinates: PyTree
  inner_state: optax.OptState


# ----------------------------------------------------------------------------------------
# Leaf selection.


def _key_name(key) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return str(key.name)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def path_str(path) -> str:
  """``"layers_0/kernel"`` for a key path of :func:`jax.tree_util.tree_flatten_with_path`."""
  return "/".join(_key_name(k) for k in path)


def leaf_name(path) -> str:
  """The last key of a key path as a string (``"kernel"``)."""
  return _key_name(path[-1]) if path else ""


def select_leaves(params: PyTree, where: Where = None) -> PyTree:
  """Resolves a ``where`` argument to a pytree of Python bools shaped like ``params``.

  Args:
    params: the parameter pytree.
    where: ``None`` (leaves named ``kernel`` or ``recurrent_kernel``), a sequence of leaf
      names, a pytree of bools with the structure of ``params`` (or a prefix of it), or a
      callable mapping ``params`` to such a pytree (as for :func:`optax.masked`).

  Returns:
    A pytree with the structure of ``params`` and a Python ``bool`` at every leaf.

  Raises:
    ValueError: if the selection is not static or selects no leaf.
  """
  if where is None or (isinstance(where, (list, tuple, set, frozenset))
                       and all(isinstance(n, str) for n in where)):
    names = frozenset(SYNAPSE_NAMES if where is None else where)
    selection = jax.tree_util.tree_map_with_path(
        lambda path, _: leaf_name(path) in names, params)
  else:
    tree = where(params) if callable(where) else where
    selection = jax.tree.broadcast(tree, params)
    try:
      selection = jax.tree.map(bool, selection)
    except jax.errors.ConcretizationTypeError as e:
      raise ValueError(
          "`where` must select leaves statically (Python bools), as for "
          "optax.masked.") from e
  if not any(jax.tree.leaves(selection)):
    raise ValueError(
        f"`where`={where!r} selects no leaf of the params (leaves: "
        f"{[path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]}).")
  return selection


# ----------------------------------------------------------------------------------------
# Coordinates.


def init_coordinates(params: PyTree, *, seed: Union[int, Array] = 0,
                     where: Where = None) -> PyTree:
  """Draws the neuron coordinates :func:`rewire` uses by default.

  Every rewired leaf of rank >= 2, read as ``[..., n_pre, n_post]``, gets one set of
  ``n_pre`` and one of ``n_post`` points uniform in the unit cube: per input/output neuron
  for a dense kernel, per input/output channel for a conv kernel. A ``recurrent_kernel``
  ``[N, N]`` gets one set used for both sides; when it sits beside a rewired ``kernel``
  with ``N`` outputs (the same layer), that set is the kernel's post-synaptic one, so that
  a neuron has one position.

  Use this to build (and then edit) coordinates to pass to :func:`rewire`.

  Args:
    params: the parameter pytree.
    seed: integer seed (a Python int or an integer array, possibly traced).
    where: which leaves are rewired; see :func:`select_leaves`.

  Returns:
    A pytree with the structure of ``params``: a :class:`SynapseCoordinates` at every
    rewired leaf of rank >= 2, an :class:`optax.MaskedNode` elsewhere.
  """
  selection = select_leaves(params, where)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  sel = treedef.flatten_up_to(selection)
  key = jax.random.key(seed)
  coords = [optax.MaskedNode()] * len(flat)
  post_of = {}  # parent path -> (n_post, post coordinates) of a sibling `kernel`.
  order = sorted(range(len(flat)),
                 key=lambda i: leaf_name(flat[i][0]) == "recurrent_kernel")
  for i in order:
    path, leaf = flat[i]
    if not sel[i] or jnp.ndim(leaf) < 2:
      continue
    n_pre, n_post = jnp.shape(leaf)[-2:]
    k_pre, k_post = jax.random.split(jax.random.fold_in(key, i))
    name, parent = leaf_name(path), tuple(path[:-1])
    if name == "recurrent_kernel" and n_pre == n_post:
      shared = post_of.get(parent)
      if shared is not None and shared.shape[0] == n_post:
        pts = shared
      else:
        pts = jax.random.uniform(k_post, (n_post, COORDINATE_DIM))
      coords[i] = SynapseCoordinates(pre=pts, post=pts)
      continue
    coords[i] = SynapseCoordinates(
        pre=jax.random.uniform(k_pre, (n_pre, COORDINATE_DIM)),
        post=jax.random.uniform(k_post, (n_post, COORDINATE_DIM)))
    if name == "kernel":
      post_of[parent] = coords[i].post
  return jax.tree_util.tree_unflatten(treedef, coords)


def _check_coordinates(coords: PyTree, params: PyTree, selection: PyTree) -> PyTree:
  treedef = jax.tree.structure(params)
  try:
    flat_c = treedef.flatten_up_to(coords)
  except (ValueError, TypeError) as e:
    raise ValueError("`coordinates` must have the structure of the params, with a "
                     "SynapseCoordinates(pre, post) at every rewired leaf.") from e
  out = []
  for (path, leaf), sel, c in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                  treedef.flatten_up_to(selection), flat_c):
    if not sel or jnp.ndim(leaf) < 2:
      out.append(optax.MaskedNode())
      continue
    if c is None or isinstance(c, optax.MaskedNode):
      raise ValueError(f"`coordinates` lacks the rewired leaf {path_str(path)}.")
    pre, post = (jnp.asarray(x) for x in c)
    n_pre, n_post = jnp.shape(leaf)[-2:]
    if (pre.ndim != 2 or post.ndim != 2 or pre.shape[0] != n_pre
        or post.shape[0] != n_post or pre.shape[1] != post.shape[1]):
      raise ValueError(
          f"coordinates of {path_str(path)} (shape {jnp.shape(leaf)}) must be "
          f"pre [{n_pre}, d] and post [{n_post}, d]; got {pre.shape} and {post.shape}.")
    out.append(SynapseCoordinates(pre=pre, post=post))
  return jax.tree_util.tree_unflatten(treedef, out)


def synapse_distances(coords: SynapseCoordinates) -> Array:
  """``[n_pre, n_post]`` Euclidean distances ``||pre[j] - post[i]||_2``."""
  diff = coords.pre[:, None, :] - coords.post[None, :, :]
  return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


# ----------------------------------------------------------------------------------------
# The transformation.


def _is_concrete(x) -> bool:
  return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(x))


def _check_hyperparams(prune_threshold, grow_threshold, distance_scale, momentum):
  for name, value in (("prune_threshold", prune_threshold),
                      ("grow_threshold", grow_threshold),
                      ("distance_scale", distance_scale)):
    if _is_concrete(value) and np.any(np.asarray(value) < 0):
      raise ValueError(f"rewire: {name} must be >= 0, got {value}.")
    if _is_concrete(value) and np.any(np.isnan(np.asarray(value))):
      raise ValueError(f"rewire: {name} must not be NaN, got {value}.")
  if _is_concrete(momentum):
    m = np.asarray(momentum)
    if not np.all((m >= 0) & (m < 1)):
      raise ValueError(f"rewire: momentum must lie in [0, 1), got {momentum}.")


def rewire(
    optimizer: optax.GradientTransformation,
    *,
    prune_threshold: Union[float, Array],
    grow_threshold: Union[float, Array],
    distance_scale: Union[float, Array] = 0.0,
    momentum: Union[float, Array] = 0.9,
    seed: Union[int, Array] = 0,
    where: Where = None,
    coordinates: Union[None, PyTree, Callable[[PyTree], PyTree]] = None,
) -> optax.GradientTransformationExtraArgs:
  """Prunes and regrows synapses around an inner optimizer (BPSR eq. 14-15).

  See the module docstring for the rule. ``update`` must be given the params. The raw
  gradient is the ``updates`` argument: place gradient clipping before ``rewire`` in an
  :func:`optax.chain` and the learning rate inside ``optimizer``.

  Under :func:`optax.inject_hyperparams` the numeric arguments become state (and may be
  scheduled); pass ``static_args=("where", "coordinates")`` when those are callables.

  A weight that is exactly ``0.0`` counts as absent: a kernel initialised to zeros starts
  fully pruned and only grows where its gradient momentum passes ``grow_threshold``.
  While a synapse is absent, the inner optimizer sees a zero gradient for it (its moments
  decay); its weight decay never moves it, because the returned update sets it to zero.

  Args:
    optimizer: the inner optimizer (SGD, Adam, AdamW, ...), whose updates are masked.
    prune_threshold: ``theta_w >= 0``; existing synapses with ``|w| < theta_w`` are pruned.
    grow_threshold: ``theta_m >= 0``; synapses with ``|m| > theta_m + distance_scale * d``
      exist after the update, whatever their weight.
    distance_scale: ``mu_m >= 0``, how much harder it is to grow a long synapse.
    momentum: ``beta_m`` in ``[0, 1)``, the decay of the gradient momentum.
    seed: seed of the neuron coordinates drawn in ``init``.
    where: which leaves are rewired; default: those named ``kernel`` and
      ``recurrent_kernel``. A sequence of leaf names, a pytree of bools or a callable
      ``params -> pytree of bools`` (see :func:`select_leaves`). The other leaves (bias,
      tau) are optimized by ``optimizer`` untouched.
    coordinates: the neuron coordinates to use instead of drawing them: a pytree as
      returned by :func:`init_coordinates` (or a callable ``params -> pytree``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`RewireState`.

  Raises:
    ValueError: on a negative threshold, a momentum outside ``[0, 1)``, a ``where`` that
      selects nothing (in ``init``), or ``update`` called without params.
  """
  if not (callable(getattr(optimizer, "init", None))
          and callable(getattr(optimizer, "update", None))):
    raise ConfigError(f"rewire expects an optax GradientTransformation (e.g. "
                      f"optax.adam(1e-3)), got {type(optimizer).__name__} {optimizer!r:.80}")
  _check_hyperparams(prune_threshold, grow_threshold, distance_scale, momentum)
  inner = optax.with_extra_args_support(optimizer)
  use_distance = not (isinstance(distance_scale, (int, float))
                      and float(distance_scale) == 0.0)

  def init_fn(params):
    selection = select_leaves(params, where)
    if coordinates is None:
      coords = init_coordinates(params, seed=seed, where=selection)
    else:
      given = coordinates(params) if callable(coordinates) else coordinates
      coords = _check_coordinates(given, params, selection)
    momentum_tree = jax.tree.map(
        lambda s, w: jnp.zeros_like(w) if s else optax.MaskedNode(), selection, params)
    mask = jax.tree.map(
        lambda s, w: (jnp.asarray(w) != 0) if s else optax.MaskedNode(),
        selection, params)
    return RewireState(momentum=momentum_tree, mask=mask, coordinates=coords,
                       inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
          "rewire needs the params: call update(updates, state, params). It reads the "
          "weights to prune them and sets pruned weights to exactly 0.")
    selection = select_leaves(params, where)
    treedef = jax.tree.structure(params)
    sel = treedef.flatten_up_to(selection)
    grads = treedef.flatten_up_to(updates)
    weights = treedef.flatten_up_to(params)
    moms = treedef.flatten_up_to(state.momentum)
    coords = treedef.flatten_up_to(state.coordinates)

    new_moms, masks, inner_grads = [], [], []
    for s, g, w, m, c in zip(sel, grads, weights, moms, coords):
      if not s:
        new_moms.append(optax.MaskedNode())
        masks.append(optax.MaskedNode())
        inner_grads.append(g)
        continue
      m = (momentum * m + (1 - momentum) * g).astype(m.dtype)
      prune = jnp.abs(w) < prune_threshold
      bar = grow_threshold
      if use_distance and isinstance(c, SynapseCoordinates):
        bar = bar + distance_scale * synapse_distances(c).astype(m.dtype)
      grow = jnp.abs(m) > bar
      mask = ((w != 0) & ~prune) | grow
      new_moms.append(m)
      masks.append(mask)
      inner_grads.append(jnp.where(mask, g, jnp.zeros_like(g)))

    unflat = lambda leaves: jax.tree_util.tree_unflatten(treedef, leaves)
    inner_updates, inner_state = inner.update(
        unflat(inner_grads), state.inner_state, params, **extra_args)
    out = [
        jnp.where(mask, u, -w) if s else u
        for s, u, w, mask in zip(sel, treedef.flatten_up_to(inner_updates), weights,
                                 masks)
    ]
    return unflat(out), RewireState(
        momentum=unflat(new_moms), mask=unflat(masks),
        coordinates=state.coordinates, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ----------------------------------------------------------------------------------------
# Logging helpers.


def find_rewire_states(opt_state: PyTree) -> list:
  """All :class:`RewireState` nodes in an optimizer state (chain, inject_hyperparams...)."""
  leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, RewireState))
  return [x for x in leaves if isinstance(x, RewireState)]


def _the_rewire_state(opt_state: PyTree) -> RewireState:
  found = find_rewire_states(opt_state)
  if not found:
    raise ValueError("no RewireState in this optimizer state: was it built with "
                     "bpsr_jax.rewire?")
  if len(found) > 1:
    raise ValueError(f"{len(found)} RewireStates in this optimizer state; pass the one "
                     "you mean (see find_rewire_states).")
  return found[0]


def rewire_masks(opt_state: PyTree) -> PyTree:
  """The current connectivity masks held by the (only) :func:`rewire` in ``opt_state``.

  Args:
    opt_state: an optimizer state containing exactly one :class:`RewireState` (anywhere:
      in a chain, under ``inject_hyperparams``, ...), or that state itself.

  Returns:
    A pytree with the structure of the params: a bool array (``True`` = the synapse
    exists) at every rewired leaf and an :class:`optax.MaskedNode` elsewhere.
  """
  return _the_rewire_state(opt_state).mask


def synapse_counts(tree: PyTree, where: Where = None) -> Dict[str, Array]:
  """Number of existing synapses per rewired leaf, for logging.

  Args:
    tree: an optimizer state holding one :class:`RewireState` (counts its masks), or a
      params pytree (counts the nonzero weights of the leaves ``where`` selects).
    where: for params only: which leaves to count (default ``kernel`` and
      ``recurrent_kernel``).

  Returns:
    ``{"layers_0/kernel": n0, ..., "total": n}``, int32 scalars (usable under ``jit``;
    ``int()`` them to print).
  """
  if find_rewire_states(tree):
    masks = rewire_masks(tree)
    flat, _ = jax.tree_util.tree_flatten_with_path(
        masks, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    counts = {path_str(p): jnp.sum(m, dtype=jnp.int32) for p, m in flat
              if not isinstance(m, optax.MaskedNode)}
  else:
    selection = select_leaves(tree, where)
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    counts = {path_str(p): jnp.sum(jnp.asarray(w) != 0, dtype=jnp.int32)
              for (p, w), s in zip(flat, treedef.flatten_up_to(selection)) if s}
  counts["total"] = sum(counts.values(), jnp.zeros((), jnp.int32))
  return counts


def count_synapses(params: PyTree) -> Dict[str, int]:
  """Existing (non-zero) synapses per ``kernel``/``recurrent_kernel`` leaf and ``total``,
  as Python ints (:func:`synapse_counts` on the host)."""
  return {k: int(v) for k, v in synapse_counts(params).items()}


def apply_mask(params: PyTree, mask: Dict[str, Any]) -> PyTree:
  """Zeroes the weights a connectivity mask marks absent.

  Args:
    params: the model params.
    mask: ``{"r0/kernel": bool array, ...}``: leaf paths (as in :func:`count_synapses`)
      to arrays of the leaf's shape, ``True`` = the synapse exists. Other leaves are kept.

  Returns:
    The params with ``w * mask`` at the named leaves.

  Raises:
    ValueError: a path that is not a leaf of ``params``, or a shape mismatch.
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path_str(p) for p, _ in flat]
  unknown = sorted(set(mask) - set(paths))
  if unknown:
    raise ValueError(f"mask names {unknown}, which are not params; params: {paths}")
  leaves = []
  for path, (_, w) in zip(paths, flat):
    if path in mask:
      m = np.asarray(mask[path], bool)
      if m.shape != w.shape:
        raise ValueError(f"mask[{path!r}] has shape {m.shape}, the weights {w.shape}")
      w = w * m
    leaves.append(w)
  return jax.tree_util.tree_unflatten(treedef, leaves)
