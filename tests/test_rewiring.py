"""Tests of bpsr_jax.rewiring (bpsr_jax.rewire) against hand-computed cases (BPSR eq. 14-15)."""
import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from bpsr_jax import constraints

# The module bpsr_jax.rewiring (``bpsr_jax.rewire`` is the function).
rw = importlib.import_module("bpsr_jax.rewiring")

NEVER = 1e9  # a growth threshold no momentum reaches


def _params():
  return {
      "layer": {
          "kernel": jnp.array([[0.5, 0.005], [-0.002, -0.3]], jnp.float32),
          "bias": jnp.array([0.001, 0.0], jnp.float32),
          "tau": jnp.array([0.5, 0.0], jnp.float32),
      }
  }


@functools.partial(jax.jit, static_argnums=0)
def _step(tx, grads, state, params):
  """One update, compiled whole as a train step is (op by op, each primitive compiles
  alone: the orbax case took 17 s so)."""
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


def test_pruning_zeroes_exactly_the_weights_below_threshold():
  params = _params()
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.01, grow_threshold=NEVER)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  new, state = _step(tx, grads, state, params)
  k = np.asarray(new["layer"]["kernel"])
  # |0.005|, |-0.002| < 0.01: exactly zero. The others: their SGD step, w - 0.1 * 1.
  np.testing.assert_array_equal(
      k, np.array([[np.float32(0.5) - np.float32(0.1), 0.0],
                   [0.0, np.float32(-0.3) - np.float32(0.1)]], np.float32))
  np.testing.assert_array_equal(
      np.asarray(state.mask["layer"]["kernel"]), [[True, False], [False, True]])
  # A second step keeps the pruned ones at exactly 0 and moves the others by SGD.
  new2, _ = _step(tx, grads, state, new)
  np.testing.assert_array_equal(np.asarray(new2["layer"]["kernel"])[[0, 1], [1, 0]], 0.0)
  np.testing.assert_array_equal(np.asarray(new2["layer"]["kernel"])[[0, 1], [0, 1]],
                                k[[0, 1], [0, 1]] - np.float32(0.1))


def test_threshold_is_strict():
  params = {"kernel": jnp.array([[0.25, -0.25, 0.5]], jnp.float32)}
  tx = rw.rewire(optax.sgd(0.0), prune_threshold=0.25, grow_threshold=NEVER)
  new, _ = _step(tx, jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  # |w| < theta_w is pruned; |w| == theta_w is kept.
  np.testing.assert_array_equal(np.asarray(new["kernel"]), np.asarray(params["kernel"]))
  tx = rw.rewire(optax.sgd(0.0), prune_threshold=0.5, grow_threshold=NEVER)
  new, _ = _step(tx, jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(new["kernel"]), [[0.0, 0.0, 0.5]])


def test_bias_and_tau_are_never_masked():
  params = _params()
  # Huge prune threshold: every kernel weight goes; bias and tau (even the exact zeros
  # and the tiny ones) follow plain SGD.
  tx = rw.rewire(optax.sgd(0.5), prune_threshold=10.0, grow_threshold=NEVER)
  state = tx.init(params)
  assert isinstance(state.mask["layer"]["bias"], optax.MaskedNode)
  assert isinstance(state.mask["layer"]["tau"], optax.MaskedNode)
  assert isinstance(state.momentum["layer"]["tau"], optax.MaskedNode)
  grads = jax.tree.map(lambda x: jnp.full_like(x, -0.2), params)
  new, _ = _step(tx, grads, state, params)
  np.testing.assert_array_equal(np.asarray(new["layer"]["kernel"]), 0.0)
  for name in ("bias", "tau"):
    np.testing.assert_array_equal(
        np.asarray(new["layer"][name]),
        np.asarray(params["layer"][name]) + np.float32(0.1))


def test_inner_optimizer_sees_masked_gradient():
  params = {"kernel": jnp.array([[0.0, 1.0]]), "bias": jnp.zeros(2)}
  seen = []

  def spy_init(p):
    return optax.EmptyState()

  def spy_update(updates, state, p=None):
    seen.append(updates)
    return updates, state

  tx = rw.rewire(optax.GradientTransformation(spy_init, spy_update),
                 prune_threshold=0.0, grow_threshold=NEVER)
  tx.update({"kernel": jnp.array([[3.0, 4.0]]), "bias": jnp.array([5.0, 6.0])},
            tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(seen[0]["kernel"]), [[0.0, 4.0]])
  np.testing.assert_array_equal(np.asarray(seen[0]["bias"]), [5.0, 6.0])


def test_live_weight_below_prune_threshold_is_kept_by_growth_momentum():
  # eq. 15: mask = (w != 0 and not prune) or grow. A live weight below theta_w whose
  # momentum passes the growth bar is kept (and trained), not pruned. By hand, beta_m =
  # 0.5, theta_w = 0.01, theta_m = 0.05, grads g = [1.0, 0.01]:
  #   m = 0.5 * 0 + 0.5 * g = [0.5, 0.005]; grow = |m| > 0.05 = [True, False];
  #   both |w| = 0.005 < 0.01 are prune candidates -> the first is kept, SGD moves it to
  #   0.005 - 0.1 * 1.0 = -0.095; the second is pruned to exactly 0.
  params = {"kernel": jnp.array([[0.005, 0.005]], jnp.float32)}
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.01, grow_threshold=0.05, momentum=0.5)
  grads = {"kernel": jnp.array([[1.0, 0.01]], jnp.float32)}
  new, state = _step(tx, grads, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(state.mask["kernel"]), [[True, False]])
  np.testing.assert_array_equal(np.asarray(state.momentum["kernel"]),
                                np.array([[0.5, 0.005]], np.float32))
  np.testing.assert_array_equal(np.asarray(new["kernel"]),
                                [[np.float32(0.005) - np.float32(0.1), 0.0]])


@pytest.mark.parametrize("grow_threshold, grows_at", [(0.8, 3), (0.75, 3), (0.5, 2)])
def test_regrowth_once_momentum_passes_threshold_and_not_before(grow_threshold,
                                                                 grows_at):
  # Pruned synapse (w = 0) with a persistent gradient g = 1 and beta_m = 0.5:
  # m_t = 1 - 0.5^t = 0.5, 0.75, 0.875, ... Growth needs m > theta_m (strict).
  params = {"kernel": jnp.array([[0.0, 0.7]], jnp.float32)}
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.01, grow_threshold=grow_threshold,
                 momentum=0.5)
  state = tx.init(params)
  np.testing.assert_array_equal(np.asarray(state.mask["kernel"]), [[False, True]])
  grads = {"kernel": jnp.array([[1.0, 0.0]], jnp.float32)}
  expected_m = 0.0
  for t in range(1, 6):
    params, state = _step(tx, grads, state, params)
    expected_m = 0.5 * expected_m + 0.5
    assert float(state.momentum["kernel"][0, 0]) == expected_m
    w = float(params["kernel"][0, 0])
    if t < grows_at:
      assert w == 0.0, (t, w)
      assert not bool(state.mask["kernel"][0, 0])
    else:
      # Regrows from 0: the SGD step -0.1 * g at step `grows_at`, and on from there.
      assert bool(state.mask["kernel"][0, 0])
      assert w == pytest.approx(-0.1 * (t - grows_at + 1)), (t, w)
  # The unaffected synapse with zero gradient is untouched.
  assert float(params["kernel"][0, 1]) == pytest.approx(0.7)


def _two_point_coordinates(params):
  # pre neuron at the origin, post neuron at (1, 0, 0): distance exactly 1.
  return {"kernel": rw.SynapseCoordinates(pre=jnp.zeros((1, 3)),
                                          post=jnp.array([[1.0, 0.0, 0.0]]))}


@pytest.mark.parametrize("distance_scale, grows", [(0.0, True), (0.5, True),
                                                    (0.95, False), (1e6, False)])
def test_distance_scale_raises_the_growth_bar(distance_scale, grows):
  # momentum = 0: m = g = 1. Bar = 0.1 + distance_scale * 1.
  params = {"kernel": jnp.zeros((1, 1))}
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.0, grow_threshold=0.1,
                 distance_scale=distance_scale, momentum=0.0,
                 coordinates=_two_point_coordinates)
  state = tx.init(params)
  for _ in range(20):
    params, state = _step(tx, {"kernel": jnp.ones((1, 1))}, state, params)
  assert (float(params["kernel"][0, 0]) != 0.0) == grows


def test_large_distance_scale_prevents_growth_with_default_coordinates():
  params = {"kernel": jnp.zeros((8, 5)), "recurrent_kernel": jnp.zeros((5, 5))}
  grads = jax.tree.map(jnp.ones_like, params)
  for scale, alive in ((0.0, (40, 25)), (1e3, (0, 5))):
    tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.0, grow_threshold=0.5,
                   distance_scale=scale, momentum=0.0)
    state = tx.init(params)
    p = params
    for _ in range(3):
      p, state = _step(tx, grads, state, p)
    counts = rw.synapse_counts(p)
    assert (int(counts["kernel"]), int(counts["recurrent_kernel"])) == alive
    assert int(rw.synapse_counts(state)["total"]) == sum(alive)
    if scale:
      # The recurrent kernel shares the kernel's post-synaptic coordinates: only the
      # self-synapses (distance 0) can grow against a huge distance penalty.
      np.testing.assert_array_equal(np.asarray(p["recurrent_kernel"]) != 0, np.eye(5))


OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(0.05),
    "adamw": lambda: optax.adamw(0.05, weight_decay=0.5),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("gradient_at_pruned", [False, True])
def test_pruned_synapse_stays_exactly_zero(name, gradient_at_pruned):
  # Synapse (0, 1) starts at 0; synapse (1, 0) is alive for the first steps (so the
  # inner optimizer has momentum for it), then is pruned. Neither may move again: with no
  # gradient, or with one whose momentum stays under the growth threshold.
  params = {
      "layer": {
          "kernel": jnp.array([[0.8, 0.0], [0.12, -0.9]], jnp.float32),
          "bias": jnp.zeros(2),
          "tau": jnp.full(2, 0.5),
      }
  }
  tx = optax.chain(
      optax.clip_by_global_norm(10.0),
      rw.rewire(OPTIMIZERS[name](), prune_threshold=0.1, grow_threshold=5.0),
      constraints.clamp(1.0),
  )
  state = tx.init(params)
  step = jax.jit(tx.update)
  rng = np.random.default_rng(0)
  pruned_at = None
  for t in range(40):
    g = rng.normal(size=(2, 2)).astype(np.float32) * 0.1
    g[1, 0] = 1.0 if pruned_at is None else (0.5 if gradient_at_pruned else 0.0)
    if not gradient_at_pruned:
      g[0, 1] = 0.0
    grads = {"layer": {"kernel": jnp.asarray(g), "bias": jnp.ones(2) * 0.1,
                       "tau": jnp.ones(2) * 0.1}}
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    k = np.asarray(params["layer"]["kernel"])
    assert k[0, 1] == 0.0, (name, t)
    if pruned_at is None and k[1, 0] == 0.0:
      pruned_at = t
    if pruned_at is not None:
      assert k[1, 0] == 0.0, (name, t)
  assert pruned_at is not None, "the decaying synapse was never pruned"
  # The two big weights, bias and tau keep training.
  assert np.all(np.abs(np.asarray(params["layer"]["kernel"])[[0, 1], [0, 1]]) > 0.1)
  assert not np.allclose(np.asarray(params["layer"]["bias"]), 0.0)


def test_regrown_synapse_trains_under_adam():
  params = {"kernel": jnp.zeros((1, 1))}
  tx = rw.rewire(optax.adam(0.01), prune_threshold=1e-4, grow_threshold=0.3,
                 momentum=0.5)
  state = tx.init(params)
  vals = []
  for _ in range(6):
    params, state = _step(tx, {"kernel": -jnp.ones((1, 1))}, state, params)
    vals.append(float(params["kernel"][0, 0]))
  # m = -0.5 at step 1 (> 0.3 in magnitude): grows at once; Adam moves it by +lr a step.
  np.testing.assert_allclose(vals, 0.01 * np.arange(1, 7), rtol=1e-4)


def test_state_round_trips_through_orbax(tmp_path):
  params = {
      "l0": {"kernel": jnp.array([[0.5, 0.005], [-0.002, -0.3]]),
             "recurrent_kernel": jnp.eye(2) * 0.2, "bias": jnp.zeros(2),
             "tau": jnp.full(2, 0.5)},
      "l1": {"kernel": jnp.ones((2, 3)) * 0.1, "bias": jnp.zeros(3)},
  }
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   rw.rewire(optax.adamw(1e-2), prune_threshold=0.01,
                             grow_threshold=0.05, distance_scale=0.1),
                   constraints.clamp(1.0))
  state = tx.init(params)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.3), params)
  params, state = _step(tx, grads, state, params)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "opt", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(
      tmp_path / "opt", jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Training on from the restored state is identical.
  p1, _ = _step(tx, grads, state, params)
  p2, _ = _step(tx, grads, restored, params)
  jax.tree.map(np.testing.assert_array_equal, p1, p2)


def test_inject_hyperparams():
  params = {"kernel": jnp.array([[0.05, 0.5]]), "bias": jnp.zeros(2)}
  tx = optax.inject_hyperparams(rw.rewire, static_args=("where", "coordinates"))(
      optimizer=optax.sgd(0.0), prune_threshold=0.0, grow_threshold=NEVER,
      momentum=0.9)
  state = tx.init(params)
  step = jax.jit(tx.update)
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, state = step(grads, state, params)
  np.testing.assert_array_equal(np.asarray(optax.apply_updates(params, updates)["kernel"]),
                                np.asarray(params["kernel"]))
  state.hyperparams["prune_threshold"] = jnp.asarray(0.1)
  updates, state = step(grads, state, params)
  np.testing.assert_array_equal(np.asarray(optax.apply_updates(params, updates)["kernel"]),
                                np.array([[0.0, 0.5]], np.float32))
  assert int(rw.synapse_counts(state)["total"]) == 1


def test_inner_inject_hyperparams_and_multisteps():
  params = {"kernel": jnp.array([[0.05, 0.5]])}
  inner = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
  tx = optax.MultiSteps(rw.rewire(inner, prune_threshold=0.1, grow_threshold=NEVER), 2)
  state = tx.init(params)
  grads = {"kernel": jnp.ones((1, 2))}
  before = np.asarray(params["kernel"])
  params, state = _step(tx, grads, state, params)  # accumulating: no change
  np.testing.assert_array_equal(np.asarray(params["kernel"]), before)
  params, state = _step(tx, grads, state, params)
  np.testing.assert_allclose(np.asarray(params["kernel"]), [[0.0, 0.4]], rtol=1e-5)
  assert float(params["kernel"][0, 0]) == 0.0


class _Pair:
  """A pytree node registered without keys: its children get FlattenedIndexKeys."""

  def __init__(self, a, b):
    self.a, self.b = a, b


jax.tree_util.register_pytree_node(_Pair, lambda p: ((p.a, p.b), None),
                                   lambda _, c: _Pair(*c))


def test_path_str_names_every_key_kind():
  tree = {"net": [_Pair(1, rw.SynapseCoordinates(pre=2, post=3))]}
  paths = [rw.path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  assert paths == ["net/0/0", "net/0/1/pre", "net/0/1/post"]
  assert rw.leaf_name(jax.tree_util.tree_flatten_with_path(tree)[0][2][0]) == "post"


def test_explicit_coordinates_checked_by_shape():
  # Valid coordinates of a wide kernel (sizes past Python's small-int cache) are accepted;
  # a 1-d pre of the right length is not a [n_pre, d] array.
  params = {"kernel": jnp.zeros((2, 300))}
  coords = rw.init_coordinates(params, seed=1)
  state = rw.rewire(optax.sgd(0.1), prune_threshold=0.1, grow_threshold=0.1,
                    distance_scale=0.5, coordinates=coords).init(params)
  np.testing.assert_array_equal(state.coordinates["kernel"].post,
                                coords["kernel"].post)
  bad = {"kernel": rw.SynapseCoordinates(pre=jnp.zeros((2,)), post=jnp.zeros((300, 3)))}
  with pytest.raises(ValueError, match=r"must be pre \[2, d\] and post \[300, d\]"):
    rw.rewire(optax.sgd(0.1), prune_threshold=0.1, grow_threshold=0.1,
              coordinates=bad).init(params)


def test_coordinates_shapes_and_sharing():
  params = {
      "conv": {"kernel": jnp.ones((3, 3, 2, 4)), "tau": jnp.array(0.5)},
      "rec": {"kernel": jnp.ones((4, 6)), "recurrent_kernel": jnp.ones((6, 6)),
              "bias": jnp.zeros(6)},
      "lone": {"recurrent_kernel": jnp.ones((5, 5))},
  }
  coords = rw.init_coordinates(params, seed=3)
  c = coords["conv"]["kernel"]
  assert c.pre.shape == (2, 3) and c.post.shape == (4, 3)
  r = coords["rec"]["recurrent_kernel"]
  np.testing.assert_array_equal(np.asarray(r.pre), np.asarray(r.post))
  np.testing.assert_array_equal(np.asarray(r.pre), np.asarray(coords["rec"]["kernel"].post))
  lone = coords["lone"]["recurrent_kernel"]
  assert lone.pre.shape == (5, 3)
  np.testing.assert_array_equal(np.asarray(lone.pre), np.asarray(lone.post))
  leaves = jax.tree.leaves(coords)
  assert all(float(x.min()) >= 0.0 and float(x.max()) < 1.0 for x in leaves)
  assert isinstance(coords["rec"]["bias"], optax.MaskedNode)
  again = rw.init_coordinates(params, seed=3)
  other = rw.init_coordinates(params, seed=4)
  jax.tree.map(np.testing.assert_array_equal, coords, again)
  assert not np.array_equal(np.asarray(coords["rec"]["kernel"].pre),
                            np.asarray(other["rec"]["kernel"].pre))
  # The state holds the coordinates drawn from `seed`.
  state = rw.rewire(optax.sgd(0.1), prune_threshold=0.0, grow_threshold=0.0,
                    seed=3).init(params)
  jax.tree.map(np.testing.assert_array_equal, state.coordinates, coords)


def test_conv_kernel_distance_broadcasts_over_taps():
  params = {"kernel": jnp.zeros((2, 2, 1, 2))}  # HWIO
  coords = {"kernel": rw.SynapseCoordinates(
      pre=jnp.zeros((1, 3)), post=jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))}
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.0, grow_threshold=0.5,
                 distance_scale=1.0, momentum=0.0, coordinates=coords)
  _, state = tx.update({"kernel": jnp.ones((2, 2, 1, 2))}, tx.init(params), params)
  # Output channel 0 is at distance 0 (bar 0.5 < 1): grows at every tap; channel 1 at
  # distance 1 (bar 1.5): does not.
  np.testing.assert_array_equal(np.asarray(state.mask["kernel"][..., 0, 0]), True)
  np.testing.assert_array_equal(np.asarray(state.mask["kernel"][..., 0, 1]), False)


def test_where_selects_leaves():
  params = {"a": {"kernel": jnp.array([[0.001]]), "w": jnp.array([[0.001]])}}
  grads = jax.tree.map(jnp.zeros_like, params)
  for where, expect in ((None, (0.0, 0.001)), (["w"], (0.001, 0.0)),
                        (lambda p: {"a": {"kernel": True, "w": True}}, (0.0, 0.0)),
                        ({"a": {"kernel": False, "w": True}}, (0.001, 0.0))):
    tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.01, grow_threshold=NEVER,
                   where=where)
    new, _ = _step(tx, grads, tx.init(params), params)
    assert (float(new["a"]["kernel"][0, 0]), float(new["a"]["w"][0, 0])) == pytest.approx(
        expect)


def test_helpers_find_the_state_in_a_chain():
  params = {"l": {"kernel": jnp.array([[0.5, 0.0, 0.2]]), "bias": jnp.zeros(3)}}
  tx = optax.chain(optax.clip(1.0), rw.rewire(optax.adam(1e-3), prune_threshold=0.3,
                                               grow_threshold=NEVER))
  state = tx.init(params)
  masks = rw.rewire_masks(state)
  np.testing.assert_array_equal(np.asarray(masks["l"]["kernel"]), [[True, False, True]])
  _, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  counts = rw.synapse_counts(state)
  assert {k: int(v) for k, v in counts.items()} == {"l/kernel": 1, "total": 1}
  assert int(rw.synapse_counts(params)["total"]) == 2
  with pytest.raises(ValueError, match="no RewireState"):
    rw.rewire_masks(optax.adam(1e-3).init(params))


@pytest.mark.parametrize("kwargs, match", [
    (dict(prune_threshold=-0.1, grow_threshold=0.1), "prune_threshold"),
    (dict(prune_threshold=0.1, grow_threshold=-1.0), "grow_threshold"),
    (dict(prune_threshold=0.1, grow_threshold=0.1, distance_scale=-1.0), "distance_scale"),
    (dict(prune_threshold=0.1, grow_threshold=0.1, momentum=1.0), "momentum"),
    (dict(prune_threshold=0.1, grow_threshold=0.1, momentum=-0.1), "momentum"),
    (dict(prune_threshold=math.nan, grow_threshold=0.1), "prune_threshold"),
])
def test_bad_hyperparameters_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    rw.rewire(optax.sgd(0.1), **kwargs)


@pytest.mark.parametrize("where", [["nothing"], [], lambda p: jax.tree.map(lambda _: False, p)])
def test_where_selecting_nothing_raises(where):
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.1, grow_threshold=0.1, where=where)
  with pytest.raises(ValueError, match="selects no leaf"):
    tx.init(_params())


def test_update_without_params_raises():
  params = _params()
  tx = rw.rewire(optax.sgd(0.1), prune_threshold=0.1, grow_threshold=0.1)
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(params, tx.init(params))


def test_bad_coordinates_raise():
  params = {"kernel": jnp.zeros((2, 3))}
  bad = {"kernel": rw.SynapseCoordinates(pre=jnp.zeros((3, 3)), post=jnp.zeros((3, 3)))}
  with pytest.raises(ValueError, match="coordinates"):
    rw.rewire(optax.sgd(0.1), prune_threshold=0.1, grow_threshold=0.1,
              coordinates=bad).init(params)


# --------------------------------------------------------------------------------------
# Typed error for an inner optimizer that is not a transformation (issue 14).

from bpsr_jax.errors import ConfigError  # noqa: E402  (kept with its section)


@pytest.mark.parametrize("inner, name", [("adam", "str"), (optax.adam, "function"),
                                         (None, "NoneType")])
def test_rewire_around_a_non_transformation(inner, name):
  with pytest.raises(ConfigError, match=f"rewire expects an optax GradientTransformation "
                                        rf"\(e.g. optax.adam\(1e-3\)\), got {name}"):
    rw.rewire(inner, prune_threshold=0.0, grow_threshold=1.0)
  rw.rewire(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), prune_threshold=0.0,
            grow_threshold=1.0)  # an injected-hyperparams transformation is fine
