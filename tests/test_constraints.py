"""Tests of the BPSR parameter clamp (Algorithm 1, line 18)."""
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bpsr_jax import constraints

# The module bpsr_jax.rewiring (``bpsr_jax.rewire`` is the function).
rw = importlib.import_module("bpsr_jax.rewiring")


def _params():
  return {
      "layer": {
          "kernel": jnp.array([[-2.0, -1.0], [0.3, 1.5]]),
          "recurrent_kernel": jnp.array([[0.9, -0.8], [3.0, 0.0]]),
          "bias": jnp.array([1.2, -0.2]),
          "tau": jnp.array([-0.1, 1.2]),
          "other": jnp.array([5.0, -5.0]),
      }
  }


def test_project_params_hand_cases():
  out = constraints.project_params(_params(), threshold=1.0)["layer"]
  f32 = lambda x: np.array(x, np.float32)
  np.testing.assert_array_equal(np.asarray(out["kernel"]), f32([[-1.0, -1.0], [0.3, 1.0]]))
  np.testing.assert_array_equal(np.asarray(out["recurrent_kernel"]),
                                f32([[0.9, -0.8], [1.0, 0.0]]))
  np.testing.assert_array_equal(np.asarray(out["bias"]), f32([1.0, -0.2]))
  np.testing.assert_array_equal(np.asarray(out["tau"]), f32([0.0, 1.0]))
  np.testing.assert_array_equal(np.asarray(out["other"]), f32([5.0, -5.0]))
  half = constraints.project_params(_params(), threshold=0.5)["layer"]
  np.testing.assert_array_equal(np.asarray(half["kernel"]), f32([[-0.5, -0.5], [0.3, 0.5]]))
  np.testing.assert_array_equal(np.asarray(half["tau"]), f32([0.0, 1.0]))
  assert jax.tree.map(lambda x: x.dtype, out) == jax.tree.map(lambda x: x.dtype,
                                                              _params()["layer"])


def test_defaults_are_the_papers_bounds():
  # U_th = 1 and tau in [0, 1] when nothing is passed.
  assert constraints.param_bounds() == {"kernel": (-1.0, 1.0),
                                        "recurrent_kernel": (-1.0, 1.0),
                                        "bias": (-1.0, 1.0), "tau": (0.0, 1.0)}
  out = constraints.project_params(_params())["layer"]
  np.testing.assert_array_equal(np.asarray(out["kernel"]),
                                np.array([[-1.0, -1.0], [0.3, 1.0]], np.float32))
  np.testing.assert_array_equal(np.asarray(out["tau"]), np.array([0.0, 1.0], np.float32))
  with pytest.raises(ValueError, match="lower <= upper"):
    constraints.param_bounds(tau_range=(1.0, 0.5))
  fixed = 0.5
  assert constraints.param_bounds(tau_range=(fixed, fixed))["tau"] == (0.5, 0.5)
  # clamp() with its defaults: updates that overshoot land exactly on -1, 1 and 0.
  params = {"kernel": jnp.array([0.5, -0.5], jnp.float32),
            "tau": jnp.array([0.25, 0.75], jnp.float32)}
  updates = {"kernel": jnp.array([1.5, -1.5], jnp.float32),
             "tau": jnp.array([-0.75, 0.75], jnp.float32)}
  tx = constraints.clamp()
  u, _ = tx.update(updates, tx.init(params), params)
  u_kw, _ = constraints.clamp(threshold=1.0, tau_range=(0.0, 1.0)).update(
      updates, tx.init(params), params)  # threshold and tau_range by keyword
  chex.assert_trees_all_equal(u, u_kw)
  new = optax.apply_updates(params, u)
  np.testing.assert_array_equal(np.asarray(new["kernel"]), [1.0, -1.0])
  np.testing.assert_array_equal(np.asarray(new["tau"]), [0.0, 1.0])
  # An update landing exactly on a bound is kept as it is.
  exact = {"kernel": jnp.array([-1.0, 1.0], jnp.float32) - params["kernel"],
           "tau": -params["tau"]}
  u, _ = tx.update(exact, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(u["kernel"]), np.asarray(exact["kernel"]))
  np.testing.assert_array_equal(np.asarray(u["tau"]), np.asarray(exact["tau"]))


@pytest.mark.parametrize("threshold", [1.0, 0.7, 0.3])
def test_clamp_bounds_hold_after_every_step(threshold):
  rng = np.random.default_rng(0)
  params = constraints.project_params(jax.tree.map(
      lambda x: jnp.asarray(rng.normal(size=(16, 16)), jnp.float32), _params()),
      threshold)
  tx = optax.chain(optax.sgd(0.5), constraints.clamp(threshold))
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(30):
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    layer = params["layer"]
    for name in ("kernel", "recurrent_kernel", "bias"):
      assert float(jnp.max(jnp.abs(layer[name]))) <= np.float32(threshold), name
    assert float(layer["tau"].min()) >= 0.0 and float(layer["tau"].max()) <= 1.0
  # Leaves of other names are free.
  assert float(jnp.max(jnp.abs(params["layer"]["other"]))) > 1.0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    p=hnp.arrays(np.float32, 64, elements=st.floats(-1.0, 1.0, width=32)),
    u=hnp.arrays(np.float32, 64, elements=st.floats(-4.0, 4.0, width=32)),
    threshold=st.sampled_from([1.0, 0.7, 0.1, 0.333]),
)
def test_clamp_lands_inside_exactly(p, u, threshold):
  p = np.clip(p, -np.float32(threshold), np.float32(threshold))
  params = {"kernel": jnp.asarray(p), "tau": jnp.asarray(np.abs(p) / 1.0 % 1.0)}
  updates = {"kernel": jnp.asarray(u), "tau": jnp.asarray(u)}
  out, _ = constraints.clamp(threshold).update(updates, optax.EmptyState(), params)
  new = optax.apply_updates(params, out)
  assert np.all(np.abs(np.asarray(new["kernel"])) <= np.float32(threshold))
  assert np.all((np.asarray(new["tau"]) >= 0) & (np.asarray(new["tau"]) <= 1))
  # Where no bound is hit, the update is the projection's (to float round-off).
  ref = np.asarray(constraints.project_params(optax.apply_updates(params, updates),
                                              threshold)["kernel"])
  np.testing.assert_allclose(np.asarray(new["kernel"]), ref, atol=1e-6)


def test_clamp_in_bounds_update_passes_and_keeps_rewire_zeros():
  params = {"kernel": jnp.array([[0.5, 0.005], [0.9, -0.3]]), "bias": jnp.array([0.0, 0.9])}
  tx = optax.chain(rw.rewire(optax.sgd(1.0), prune_threshold=0.01, grow_threshold=1e9),
                   constraints.clamp(1.0))
  grads = {"kernel": jnp.array([[0.1, 0.0], [-0.5, 0.0]]), "bias": jnp.array([0.1, -0.5])}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(new["kernel"]), [[0.4, 0.0], [1.0, -0.3]], rtol=1e-6)
  assert float(new["kernel"][0, 1]) == 0.0
  np.testing.assert_allclose(np.asarray(new["bias"]), [-0.1, 1.0], rtol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_bad_threshold_raises(threshold):
  with pytest.raises(ValueError, match="threshold"):
    constraints.clamp(threshold)
  with pytest.raises(ValueError, match="threshold"):
    constraints.project_params(_params(), threshold)


def test_clamp_needs_params():
  with pytest.raises(ValueError, match="needs the params"):
    constraints.clamp().update(_params(), optax.EmptyState())


# --------------------------------------------------------------------------------------
# validate_params: the host-side check of a concrete parameter tree (issue 14).

from bpsr_jax.errors import ConfigError  # noqa: E402  (kept with its section)


def test_validate_params_names_the_bad_leaf():
  good = {"r0": {"tau": np.array([0.0, 0.5, 1.0]), "kernel": np.ones((2, 3)),
                 "bias": np.zeros(3)}, "step_count": np.array(3)}
  constraints.validate_params(good)
  for leaf, value, match in [("tau", np.array([0.5, 1.5, 0.1]), r"r0/tau must be finite and "
                                                                r"in \[0.0, 1.0\], got 1.5"),
                             ("tau", np.array([0.5, np.nan, 0.1]), r"r0/tau .* got nan"),
                             ("kernel", np.full((2, 3), np.inf), r"r0/kernel must be finite, "
                                                                 r"got inf \(6 of 6")]:
    bad = {"r0": dict(good["r0"], **{leaf: value})}
    with pytest.raises(ConfigError, match=match):
      constraints.validate_params(bad)
