"""Parameter constraints of BPSR (Algorithm 1, line 18).

After every optimizer step the weights (``kernel``, ``recurrent_kernel``) and the biases
(``bias``) are clamped to ``[-U_th, +U_th]`` and the membrane time constants (``tau``) to
``[0, 1]``. Leaves with any other name are left alone.

Two equivalent forms:

* :func:`project_params`, a pure projection for the train step::

      params = bpsr_jax.project_params(optax.apply_updates(params, updates))

* :func:`clamp`, an optax transformation to put last in a chain, whose updates land the
  params inside the bounds::

      tx = optax.chain(bpsr_jax.rewire(optax.adam(1e-3), ...), bpsr_jax.clamp(1.0))
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpsr_jax.errors import ConfigError
from bpsr_jax.rewiring import leaf_name

PyTree = Any
Bounds = Tuple[float, float]

#: Names clamped to ``[-threshold, threshold]``.
SYMMETRIC_NAMES = ("kernel", "recurrent_kernel", "bias")


def param_bounds(threshold: float = 1.0,
                 tau_range: Bounds = (0.0, 1.0)) -> Dict[str, Bounds]:
  """The ``{leaf name: (lower, upper)}`` table used by :func:`project_params`.

  Args:
    threshold: the firing threshold ``U_th > 0``.
    tau_range: bounds of ``tau``.

  Returns:
    ``{"kernel": (-U_th, U_th), "recurrent_kernel": ..., "bias": ..., "tau": tau_range}``.

  Raises:
    ValueError: if ``threshold <= 0`` or ``tau_range`` is empty.
  """
  if not np.all(np.asarray(threshold) > 0):
    raise ValueError(f"threshold must be > 0, got {threshold}.")
  lo, hi = tau_range
  if not lo <= hi:
    raise ValueError(f"tau_range must satisfy lower <= upper, got {tau_range}.")
  bounds = {name: (-threshold, threshold) for name in SYMMETRIC_NAMES}
  bounds["tau"] = (lo, hi)
  return bounds


def _leaf_bounds(params: PyTree, bounds: Dict[str, Bounds]):
  """Flat list of per-leaf ``(lower, upper)`` (``None`` if not clamped), and the treedef."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  return [bounds.get(leaf_name(path)) for path, _ in flat], treedef


def project_params(params: PyTree, threshold: float = 1.0, *,
                   tau_range: Bounds = (0.0, 1.0),
                   bounds: Optional[Dict[str, Bounds]] = None) -> PyTree:
  """Clamps ``kernel``, ``recurrent_kernel``, ``bias`` to ``[-U_th, U_th]``, ``tau`` to ``[0, 1]``.

  A box projection (:func:`optax.projections.projection_box`) with per-leaf bounds
  chosen by leaf name.

  Args:
    params: the parameter pytree (any leaf shapes).
    threshold: ``U_th > 0``.
    tau_range: bounds of ``tau``.
    bounds: an explicit ``{leaf name: (lower, upper)}`` table overriding the two above;
      leaves whose name is absent are returned unchanged.

  Returns:
    The projected params, same structure, shapes and dtypes.
  """
  if bounds is None:
    bounds = param_bounds(threshold, tau_range)
  per_leaf, treedef = _leaf_bounds(params, bounds)
  leaves = treedef.flatten_up_to(params)
  inf = float("inf")
  lower = [-inf if b is None else b[0] for b in per_leaf]
  upper = [inf if b is None else b[1] for b in per_leaf]
  lower = [jnp.asarray(lo, jnp.result_type(x)) for lo, x in zip(lower, leaves)]
  upper = [jnp.asarray(hi, jnp.result_type(x)) for hi, x in zip(upper, leaves)]
  projected = optax.projections.projection_box(leaves, lower, upper)
  return jax.tree.unflatten(treedef, projected)


def clamp(threshold: float = 1.0, *, tau_range: Bounds = (0.0, 1.0),
          bounds: Optional[Dict[str, Bounds]] = None) -> optax.GradientTransformation:
  """Optax transformation whose updates keep the params inside the BPSR bounds.

  Returns ``u' = project(params + u) - params``, corrected by one ulp where float
  rounding would make ``params + u'`` overshoot a bound, so that
  ``optax.apply_updates(params, u')`` lies in the bounds exactly. Put it last in an
  :func:`optax.chain`. A zero update of a parameter already in bounds stays zero, and
  ``u = -w`` (a weight pruned by :func:`bpsr_jax.rewire`) still lands on exactly 0.

  Args:
    threshold: ``U_th > 0``; ``kernel``, ``recurrent_kernel`` and ``bias`` are clamped to
      ``[-U_th, U_th]``.
    tau_range: bounds of ``tau``.
    bounds: explicit ``{leaf name: (lower, upper)}`` table (see :func:`project_params`).

  Returns:
    An :class:`optax.GradientTransformation` with an empty state; ``update`` requires
    the params.
  """
  if bounds is None:
    bounds = param_bounds(threshold, tau_range)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("clamp needs the params: call update(updates, state, params).")
    target = project_params(optax.apply_updates(params, updates), bounds=bounds)
    flat_b, treedef = _leaf_bounds(params, bounds)
    p_leaves = treedef.flatten_up_to(params)
    t_leaves = treedef.flatten_up_to(target)
    u_leaves = treedef.flatten_up_to(updates)
    out = []
    for p, t, u, b in zip(p_leaves, t_leaves, u_leaves, flat_b):
      if b is None:
        out.append(u)
        continue
      lo, hi = (jnp.asarray(x, p.dtype) for x in b)
      new_u = (t - p).astype(jnp.result_type(u))
      landed = (p + new_u).astype(p.dtype)
      new_u = jnp.where(landed > hi, jnp.nextafter(new_u, jnp.asarray(-jnp.inf, new_u.dtype)),
                        new_u)
      new_u = jnp.where(landed < lo, jnp.nextafter(new_u, jnp.asarray(jnp.inf, new_u.dtype)),
                        new_u)
      out.append(new_u)
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformation(init_fn, update_fn)


def validate_params(params: PyTree, *, tau_range: Bounds = (0.0, 1.0)) -> None:
  """Raises unless every leaf is finite and every ``tau`` lies in ``tau_range``.

  A host-side check (it copies the params to the host once): call it where the params
  are concrete, e.g. after initializing or loading them, not inside the jitted step.
  :func:`bpsr_jax.lif` checks a concrete tau itself; a traced one is only checked here.

  Raises:
    ConfigError: naming the first bad leaf (``r0/tau``), its bad value and how many.
  """
  lo, hi = tau_range
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)
    v = np.asarray(leaf)
    if not np.issubdtype(v.dtype, np.floating):
      continue
    bad = ~np.isfinite(v)
    if leaf_name(path) == "tau":
      bad |= ~((v >= lo) & (v <= hi))
      what = f"finite and in [{lo}, {hi}]"
    else:
      what = "finite"
    if bad.any():
      raise ConfigError(f"param {name} must be {what}, got {v[bad].flat[0]} "
                        f"({int(bad.sum())} of {v.size} values)")
