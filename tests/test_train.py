"""Tests of bpsr_jax.train: config checks, steps, metrics, fit, results, non-finite stop."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import train as T
from bpsr_jax.data.common import Dataset


def _analog(n, f=12, classes=2, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n, f), dtype=np.float32)
  y = (x[:, 0] > 0.5).astype(np.int32) % classes
  return Dataset(x=x, y=y, num_classes=classes,
                 class_names=tuple(str(c) for c in range(classes)), kind="analog")


def _spikes(n, t=6, f=4, seed=0):
  rng = np.random.default_rng(seed)
  x = (rng.random((n, t, f)) < 0.3).astype(np.uint8)
  y = (x[:, :, 0].sum(1) > 1).astype(np.int32)
  return Dataset(x=x, y=y, num_classes=2, class_names=("a", "b"), kind="spikes")


CFG = T.TrainConfig(model="r8-fc2", epochs=2, batch_size=16, time_steps=6,
                    encoding="rate", lambda_s=1e-3, lambda_w=1e-4, rewire=True,
                    log_every=2, checkpoint_every=3)


@pytest.mark.parametrize("changes, match", [
    (dict(model="r8-xx2"), "--model"),
    (dict(encoding="rate", model="efc8-fc2"), "--encoding=analog"),
    (dict(encoding="analog"), "has none"),
    (dict(prune_threshold=-1.0), "prune_threshold"),
    (dict(batch_size=0), "batch_size"),
    (dict(optimizer="rmsprop"), "--optimizer"),
])
def test_validate_config_errors(changes, match):
  with pytest.raises(ValueError, match=match):
    T.validate_config(dataclasses.replace(CFG, **changes))


def test_validate_config_data_conflicts():
  with pytest.raises(ValueError, match="already encoded as spikes"):
    T.validate_config(CFG, kind="spikes")
  with pytest.raises(ValueError, match="needs a spike dataset"):
    T.validate_config(dataclasses.replace(CFG, encoding="none"), kind="analog")
  with pytest.raises(ValueError, match="not divisible by the 3 devices"):
    T.validate_config(CFG, num_devices=3)
  with pytest.raises(ValueError, match="2 output neurons but the dataset has 5"):
    T.validate_config(CFG, num_classes=5)
  with pytest.raises(ValueError, match="T=9"):
    T.validate_config(dataclasses.replace(CFG, encoding="none"), kind="spikes",
                      data_time_steps=9)


def test_optimizer_chain_rewire_and_clamp():
  model = T.make_model(CFG)
  tx = T.make_optimizer(CFG, 10)
  state = T.init_state(CFG, model, tx, np.zeros((1, 12), np.float32))
  from bpsr_jax import rewiring as rewire
  assert len(rewire.find_rewire_states(state.opt_state)) == 1
  # Huge gradients: the clamp keeps every weight and bias in [-1, 1], tau in [0, 1].
  grads = jax.tree.map(lambda p: 1e3 * jnp.ones_like(p), state.params)
  big = T.make_optimizer(dataclasses.replace(CFG, learning_rate=10.0, optimizer="sgd",
                                             sgd_momentum=0.0), 10)
  upd, _ = big.update(grads, big.init(state.params), state.params)
  new = jax.tree.map(lambda p, u: p + u, state.params, upd)
  for path, leaf in jax.tree_util.tree_flatten_with_path(new)[0]:
    name = str(path[-1].key)
    lo = 0.0 if name == "tau" else -1.0
    assert float(leaf.min()) >= lo and float(leaf.max()) <= 1.0, name


def test_loss_terms_add_up():
  cfg = dataclasses.replace(CFG, encoding="rank_order")
  model = T.make_model(cfg)
  state = T.init_state(cfg, model, T.make_optimizer(cfg), np.zeros((1, 12), np.float32))
  ds = _analog(16)
  loss, aux = T.loss_fn(state.params, model, jnp.asarray(ds.x), jnp.asarray(ds.y),
                        jax.random.PRNGKey(0), cfg)
  want = aux["ce"] + cfg.lambda_s * aux["spike_l2"] + cfg.lambda_w * aux["weight_l1"]
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  assert aux["spike_l2"] > 0 and 0 <= int(aux["correct"]) <= 16


def test_eval_metrics_dense_exact():
  """Firing rates and synaptic ops agree with a by-hand count on a dense net."""
  cfg = dataclasses.replace(CFG, model="r6-fc3-fc2", encoding="rank_order", time_steps=5)
  model = T.make_model(cfg)
  state = T.init_state(cfg, model, T.make_optimizer(cfg), np.zeros((1, 12), np.float32))
  params = jax.tree.map(np.array, state.params)
  params["r0"]["kernel"][:3] = 0.0  # some absent synapses
  ds = _analog(8)
  eval_step, slots = T.make_eval_step(model, cfg)
  out = eval_step(params, jnp.asarray(ds.x), jnp.asarray(ds.y), jax.random.PRNGKey(0))
  x = T.encode_input(jnp.asarray(ds.x), None, cfg)
  o, hidden = model.apply({"params": params}, x)
  s0, s1 = hidden
  fan = lambda k: (np.asarray(k) != 0).sum(1)
  want = (np.einsum("tbi,i->b", x, fan(params["r0"]["kernel"]))
          + np.einsum("tbi,i->b", s0[:-1], fan(params["r0"]["recurrent_kernel"]))
          + np.einsum("tbi,i->b", s0, fan(params["fc1"]["kernel"]))
          + np.einsum("tbi,i->b", s1, fan(params["fc2"]["kernel"])))
  np.testing.assert_allclose(out["synops"], want, rtol=1e-6)
  np.testing.assert_allclose(out["spikes/r0"], np.asarray(s0).sum((0, 2)))
  np.testing.assert_allclose(out["spikes/fc2"], np.asarray(o).sum((0, 2)))
  assert slots == {"r0": 5 * 6, "fc1": 5 * 3, "fc2": 5 * 2}


def test_fit_writes_results_and_resumes(tmp_path):
  train_ds, test_ds = _analog(96), _analog(40, seed=1)
  r = T.fit(train_ds, test_ds, CFG, tmp_path / "run", flags_used={"x": 1})
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  for k in ("test_accuracy", "balanced_accuracy", "firing_rate", "spikes_per_sample",
            "synapses", "synaptic_ops_per_sample", "train_seconds", "epochs", "flags"):
    assert k in saved, k
  assert saved["flags"] == {"x": 1} and saved["epochs"] == 2 and saved["steps"] == 12
  assert 0 <= saved["test_accuracy"] <= 1 and 0 < saved["firing_rate"] < 1
  assert set(saved["firing_rate_per_layer"]) == {"r0", "fc1"}
  assert saved["synapses"] == saved["synapses_per_layer"]["total"] > 0
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [0, 1]
  assert {"train_loss", "train_accuracy", "test_accuracy", "steps_per_second",
          "synaptic_ops_per_sample"} <= set(json.loads(lines[0]))
  # Re-running a finished run trains nothing and reports the same numbers.
  r2 = T.fit(train_ds, test_ds, CFG, tmp_path / "run")
  assert r2["test_accuracy"] == r["test_accuracy"] and r2["steps"] == 12
  # A run with other settings refuses the workdir.
  with pytest.raises(ValueError, match="holds a run with"):
    T.fit(train_ds, test_ds, dataclasses.replace(CFG, batch_size=8), tmp_path / "run")


def test_stop_and_resume_is_exact(tmp_path):
  train_ds, test_ds = _spikes(80), _spikes(32, seed=1)
  cfg = dataclasses.replace(CFG, encoding="none", checkpoint_every=2)
  T.fit(train_ds, test_ds, cfg, tmp_path / "a")
  assert T.fit(train_ds, test_ds, cfg, tmp_path / "b", stop_after_steps=3) == {}
  assert not (tmp_path / "b" / "results.json").exists()
  T.fit(train_ds, test_ds, cfg, tmp_path / "b", stop_after_steps=7)
  T.fit(train_ds, test_ds, cfg, tmp_path / "b")
  pa, pb = T.final_params(tmp_path / "a"), T.final_params(tmp_path / "b")
  for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    assert np.array_equal(a, b)
  la = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  lb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert [l["train_loss"] for l in la] == [l["train_loss"] for l in lb]
  assert [l["test_accuracy"] for l in la] == [l["test_accuracy"] for l in lb]


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
  train_ds = _analog(64)
  x = train_ds.x.copy()
  x[:] = np.nan  # every batch
  cfg = dataclasses.replace(CFG, model="efc8-fc2", encoding="analog", checkpoint_every=1)
  good = dataclasses.replace(train_ds)
  # Train 2 good steps (checkpointed), then poison the data.
  T.fit(good, _analog(16), cfg, tmp_path / "run", stop_after_steps=2)
  bad = dataclasses.replace(train_ds, x=x)
  with pytest.raises(T.NonFiniteLossError, match=r"non-finite loss.*step 3.*step 2"):
    T.fit(bad, _analog(16), cfg, tmp_path / "run")
  params = T.final_params(tmp_path / "run")
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_schedules():
  for name in T.SCHEDULES:
    sched = T.make_schedule(dataclasses.replace(CFG, schedule=name, warmup_steps=2,
                                                lr_decay_epochs=1), 10)
    assert float(sched(0)) == 0.0 and float(sched(2)) == pytest.approx(CFG.learning_rate)
    if name != "constant":
      assert float(sched(19)) < CFG.learning_rate


def test_random_shift_matches_a_loop_reference():
  x = np.random.default_rng(0).random((6, 5, 7, 2)).astype(np.float32)
  key = jax.random.PRNGKey(4)
  out = np.asarray(T.random_shift(key, jnp.asarray(x), 2))
  offsets = np.asarray(jax.random.randint(key, (6, 2), -2, 3))
  assert len({tuple(o) for o in offsets}) > 1
  for b, (dy, dx) in enumerate(offsets):
    ref = np.zeros_like(x[b])
    for i in range(5):
      for j in range(7):
        if 0 <= i - dy < 5 and 0 <= j - dx < 7:
          ref[i, j] = x[b, i - dy, j - dx]
    np.testing.assert_array_equal(out[b], ref)
  np.testing.assert_array_equal(T.random_shift(key, jnp.asarray(x), 0), x)
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    T.random_shift(key, jnp.zeros((3, 4)), 1)


def test_augment_shift_needs_images(tmp_path):
  with pytest.raises(ValueError, match="already spikes"):
    T.validate_config(dataclasses.replace(CFG, encoding="none", augment_shift=1),
                      kind="spikes")
  with pytest.raises(ValueError, match="--augment_shift must be >= 0"):
    T.validate_config(dataclasses.replace(CFG, augment_shift=-1))
  with pytest.raises(ValueError, match=r"images \[N, H, W, C\]"):
    T.fit(_analog(32), _analog(16), dataclasses.replace(CFG, augment_shift=1), tmp_path)


def test_augmented_training_step_sees_shifted_images_only():
  """The loss of a step with augment_shift equals the loss of the shifted batch."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.random((4, 6, 6, 1)), jnp.float32)
  y = jnp.asarray([0, 1, 0, 1])
  cfg = dataclasses.replace(CFG, model="fc8-fc2", encoding="rank_order", augment_shift=1)
  model = T.make_model(cfg)
  params = model.init(jax.random.PRNGKey(0), T.encode_input(x, None, cfg))["params"]
  key = jax.random.PRNGKey(7)
  loss, _ = T.loss_fn(params, model, x, y, key, cfg)
  shifted = T.random_shift(jax.random.fold_in(key, 1), x, 1)
  ref, _ = T.loss_fn(params, model, shifted, y, key, dataclasses.replace(cfg, augment_shift=0))
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  plain, _ = T.loss_fn(params, model, x, y, key, dataclasses.replace(cfg, augment_shift=0))
  assert abs(float(plain) - float(loss)) > 0


def test_fixed_mask_run_keeps_exactly_the_given_synapses(tmp_path):
  rng = np.random.default_rng(3)
  mask = {"r0/kernel": rng.random((12, 8)) < 0.3,
          "r0/recurrent_kernel": rng.random((8, 8)) < 0.5,
          "fc1/kernel": rng.random((8, 2)) < 0.7}
  cfg = dataclasses.replace(CFG, rewire=True, prune_threshold=0.0,
                            grow_threshold=float("inf"), lambda_w=1e-3)
  res = T.fit(_analog(64), _analog(32, seed=1), cfg, tmp_path, initial_mask=mask)
  params = T.final_params(tmp_path)
  for path, m in mask.items():
    layer, name = path.split("/")
    w = np.asarray(params[layer][name])
    np.testing.assert_array_equal(w != 0, m)
  assert res["synapses"] == sum(int(m.sum()) for m in mask.values())
  with pytest.raises(ValueError, match="not params"):
    T.apply_mask(params, {"r9/kernel": mask["r0/kernel"]})
  with pytest.raises(ValueError, match="shape"):
    T.apply_mask(params, {"r0/kernel": mask["fc1/kernel"]})
