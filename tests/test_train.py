"""Tests of bpsr_jax.train: config checks, steps, metrics, fit, results, non-finite stop."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import config
from bpsr_jax import errors
from bpsr_jax import metrics
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


def _fresh_eval(params, cfg, ds):
  """Accuracy, spikes and synaptic ops per sample of ``params`` on ``ds``, recomputed with
  model.apply (accuracy, spikes) and metrics.measure (ops) on the whole set."""
  model = T.make_model(cfg)
  x = T.encode_input(jnp.asarray(ds.x), None, cfg)
  out, hidden = model.apply({"params": params}, x)
  pred = np.asarray(jnp.argmax(out.sum(0), -1))
  spikes = sum(float(np.asarray(h).sum()) for h in (*hidden, out)) / len(ds)
  report = metrics.measure(model, {"params": params}, x)
  synapses = sum(int((np.asarray(v) != 0).sum())
                 for p_, v in jax.tree_util.tree_flatten_with_path(params)[0]
                 if p_[-1].key in ("kernel", "recurrent_kernel"))
  return dict(test_accuracy=float(np.mean(pred == ds.y)), spikes_per_sample=spikes,
              synaptic_ops_per_sample=report.sops, synapses=synapses)


def _check_fresh(results, params, cfg, ds):
  want = _fresh_eval(params, cfg, ds)
  assert results["test_accuracy"] == want["test_accuracy"]
  assert results["synapses"] == want["synapses"]
  np.testing.assert_allclose(results["spikes_per_sample"], want["spikes_per_sample"],
                             rtol=1e-6)
  np.testing.assert_allclose(results["synaptic_ops_per_sample"],
                             want["synaptic_ops_per_sample"], rtol=1e-5)


def test_fit_writes_results_and_resumes(tmp_path):
  cfg = dataclasses.replace(CFG, encoding="rank_order")  # deterministic evaluation
  train_ds, test_ds = _analog(96), _analog(40, seed=1)
  run = tmp_path / "run"
  r = T.fit(train_ds, test_ds, cfg, run, flags_used={"x": 1})
  saved = json.loads((run / "results.json").read_text())
  assert saved["flags"] == {"x": 1} and saved["epochs"] == 2 and saved["steps"] == 12
  assert set(saved["firing_rate_per_layer"]) == {"r0", "fc1"}
  assert saved["synapses"] == saved["synapses_per_layer"]["total"]
  # The results are those of the trained parameters, evaluated afresh.
  _check_fresh(saved, T.final_params(run), cfg, test_ds)
  lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert [l["epoch"] for l in lines] == [0, 1]
  assert {k: lines[-1][k] for k in ("test_accuracy", "synapses")} == {
      k: saved[k] for k in ("test_accuracy", "synapses")}
  assert list(run.glob("events.out.tfevents.*"))
  assert json.loads((run / "run.json").read_text())["config"]["lambda_s"] == cfg.lambda_s
  # Re-running a finished run trains nothing and reports the same numbers.
  r2 = T.fit(train_ds, test_ds, cfg, run)
  assert r2["test_accuracy"] == r["test_accuracy"] and r2["steps"] == 12
  # Another test set (an evaluation setting): evaluated afresh from the restored params.
  small = test_ds.take(np.arange(25))
  r3 = T.fit(train_ds, small, cfg, run)
  assert r3["num_test"] == 25 and r3["steps"] == 12
  _check_fresh(r3, T.final_params(run), cfg, small)
  # Settings that change the result refuse the workdir, naming the setting, before any
  # restore; so do other training data.
  for change, name in ((dict(batch_size=8), "batch_size=16"),
                       (dict(lambda_s=0.5), "lambda_s=0.001"),
                       (dict(model="r9-fc2"), "model='r8-fc2'"),
                       (dict(epochs=1), "not shrink")):
    with pytest.raises(errors.WorkdirError, match=name):
      T.fit(train_ds, test_ds, dataclasses.replace(cfg, **change), run)
  with pytest.raises(errors.WorkdirError, match="other data"):
    T.fit(_analog(96, seed=5), test_ds, cfg, run)


def test_resume_rules_on_epochs(tmp_path):
  from bpsr_jax import workdir
  base = T.TrainConfig(schedule="cosine", epochs=3)
  ds = _analog(8)
  old = workdir.identity(base, ds, ds)
  tmp = tmp_path
  workdir.write_identity(tmp, old)
  with pytest.raises(errors.WorkdirError, match="cosine schedule depends"):
    workdir.check(tmp, workdir.identity(dataclasses.replace(base, epochs=4), ds, ds))
  const = dataclasses.replace(base, schedule="constant")
  workdir.write_identity(tmp, workdir.identity(const, ds, ds))
  new = workdir.identity(dataclasses.replace(const, epochs=5, log_every=7), ds, ds)
  assert workdir.check(tmp, new)["config"]["epochs"] == 3
  assert not workdir.eval_changed(workdir.identity(const, ds, ds), new)
  assert workdir.eval_changed(new, workdir.identity(const, ds, ds.take([0, 1])))


def test_run_json_without_a_newer_setting_counts_it_at_its_default(tmp_path):
  # A run.json written before band_width existed resumes with the default band_width,
  # and refuses another one, naming it.
  from bpsr_jax import workdir
  ds = _analog(8)
  old = workdir.identity(CFG, ds, ds)
  del old["config"]["band_width"]
  workdir.write_identity(tmp_path, old)
  assert workdir.check(tmp_path, workdir.identity(CFG, ds, ds)) is not None
  with pytest.raises(errors.WorkdirError, match="band_width=1.5, not 0.25"):
    workdir.check(tmp_path, workdir.identity(
        dataclasses.replace(CFG, band_width=0.25), ds, ds))


def test_workdir_of_another_run_is_refused_unless_overwrite(tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  (run / "results.json").write_text("{}")
  (run / "notes.txt").write_text("mine")
  with pytest.raises(errors.WorkdirError, match="no run.json"):
    T.fit(_analog(32), _analog(16), dataclasses.replace(CFG, epochs=1), run)
  assert (run / "results.json").read_text() == "{}"
  r = T.fit(_analog(32), _analog(16), dataclasses.replace(CFG, epochs=1), run,
            overwrite=True)
  assert r["steps"] == 2 and (run / "notes.txt").read_text() == "mine"


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
  # Train 2 good steps (checkpointed), then poison the data.
  T.fit(train_ds, _analog(16), cfg, tmp_path / "run", stop_after_steps=2)
  T.fit(train_ds, _analog(16), cfg, tmp_path / "two", stop_after_steps=2)
  bad = dataclasses.replace(train_ds, x=x)
  with pytest.raises(T.NonFiniteLossError, match=r"non-finite loss.*step 3.*step 2"):
    _resume_with_other_data(bad, cfg, tmp_path)
  assert isinstance(T.NonFiniteLossError("x"), errors.DivergenceError)
  # The kept checkpoint is exactly the step-2 state of a run that never saw the NaNs.
  pa, pb = T.final_params(tmp_path / "run"), T.final_params(tmp_path / "two")
  for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(a, b)


def _resume_with_other_data(bad, cfg, tmp_path):
  # The poisoned data are other training data: the run identity allows them only as a
  # new identity, so replace run.json's data fingerprint by the poisoned set's.
  from bpsr_jax import workdir
  ident = workdir.identity(cfg, bad, _analog(16))
  workdir.write_identity(tmp_path / "run", ident)
  T.fit(bad, _analog(16), cfg, tmp_path / "run")


def test_schedules():
  """Closed-form values (lr 1e-3, warmup 2 steps, 10 steps per epoch, 2 epochs)."""
  lr, w = CFG.learning_rate, 2
  cases = {
      "constant": lambda s: lr,
      "cosine": lambda s: lr * 0.5 * (1 + np.cos(np.pi * min(s, 18) / 18)),
      "step": lambda s: lr * 0.5 ** ((s) // 10),
      "exponential": lambda s: lr * 0.5 ** (s / 10),
  }
  for name, want in cases.items():
    sched = T.make_schedule(dataclasses.replace(CFG, schedule=name, warmup_steps=w,
                                                lr_decay_epochs=1), 10)
    assert float(sched(0)) == 0.0
    assert float(sched(1)) == pytest.approx(lr / 2)
    for s in (2, 5, 11, 12, 19, 20):
      assert float(sched(s)) == pytest.approx(want(s - w), rel=1e-5, abs=1e-12), (name, s)


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


# ----------------------------------------------------------------------------------------
# One counter: measure() and the eval step against a loop reference, batch > 1.


def _ref_conv_events(x, kernel, stride):
  """Per sample: input spikes times their fan-out over existing conv synapses (loops;
  SAME padding as XLA: pad_before = total // 2)."""
  t_, b_, h, w, c = x.shape
  k = kernel.shape[0]
  oh, ow = -(-h // stride), -(-w // stride)
  pad_h = max((oh - 1) * stride + k - h, 0) // 2
  pad_w = max((ow - 1) * stride + k - w, 0) // 2
  exists = (np.asarray(kernel) != 0)
  out = np.zeros(b_)
  for oi in range(oh):
    for oj in range(ow):
      for di in range(k):
        for dj in range(k):
          i, j = oi * stride + di - pad_h, oj * stride + dj - pad_w
          if 0 <= i < h and 0 <= j < w:
            fan = exists[di, dj].sum(-1)  # [C_in]
            out += np.einsum("tbc,c->b", np.asarray(x)[:, :, i, j, :], fan)
  return out


@pytest.mark.parametrize("spec, encoding", [
    ("4c3/2-p2-fc3", "rate"),  # strided conv, max pooling, dense
    ("e4c3-[4c3-4c3]-[6c3/2-6c3]-a2-fc3", "analog"),  # encoding, identity + projection
    ("efc6-[fc6-fc6]-r5-fc3", "analog"),  # encoding dense, identity shortcut, recurrent
])
def test_measure_and_eval_step_count_the_same_events(spec, encoding):
  cfg = dataclasses.replace(CFG, model=spec, encoding=encoding, time_steps=3,
                            bias_high=0.5)
  rng = np.random.default_rng(0)
  shape = (5, 6) if spec.startswith("efc") else (5, 8, 8, 1)
  x_raw = rng.random(shape).astype(np.float32)
  y = np.arange(5) % 3
  model = T.make_model(cfg)
  key = jax.random.PRNGKey(3)
  params = jax.tree.map(np.array, model.init(key, T.encode_input(jnp.asarray(x_raw), key,
                                                                 cfg))["params"])
  for leaf_path, v in jax.tree_util.tree_flatten_with_path(params)[0]:
    if leaf_path[-1].key == "kernel":
      v.reshape(-1)[::3] = 0.0  # absent synapses
  x = T.encode_input(jnp.asarray(x_raw), key, cfg)
  report = metrics.measure(model, {"params": params}, x)
  eval_step, slots = T.make_eval_step(model, cfg)
  ev = jax.device_get(eval_step(params, jnp.asarray(x_raw), jnp.asarray(y), key))
  # Spikes: from the model's own outputs (no recorder involved).
  out, hidden = model.apply({"params": params}, x)
  per_layer = [np.asarray(h).sum((0,) + tuple(range(2, h.ndim))) for h in (*hidden, out)]
  spiking = ["spikes/" + l.name for l in report.spiking_layers()]  # in call order
  assert sorted(spiking) == sorted(k for k in ev if k.startswith("spikes/"))
  assert len(spiking) == len(per_layer)
  for k, want in zip(spiking, per_layer):
    np.testing.assert_allclose(ev[k], want, rtol=1e-6)
  assert report.spikes == pytest.approx(sum(w.sum() for w in per_layer) / 5, rel=1e-6)
  assert report.batch == 5
  # Synaptic operations: per-sample eval counts average to measure's total.
  np.testing.assert_allclose(ev["synops"].mean(), report.sops, rtol=1e-5)
  if spec == "4c3/2-p2-fc3":
    s0 = np.asarray(hidden[0])
    pooled = s0.reshape(3, 5, 2, 2, 2, 2, 4).max((3, 5))
    fc = (params["fc2"]["kernel"] != 0).sum(-1)
    want = (_ref_conv_events(np.asarray(x), params["conv0"]["kernel"], 2)
            + s0.sum((0, 2, 3, 4))  # the pooling window passes each spike on
            + np.einsum("tbi,i->b", pooled.reshape(3, 5, -1), fc))
    np.testing.assert_allclose(ev["synops"], want, rtol=1e-6)
    assert [l.kind for l in report.layers] == ["conv", "pool", "dense"]
  if spec.startswith("e4c3"):
    names = [l.name for l in report.layers]
    assert "res1/identity" in names and "res2/shortcut" in names
    assert report.layers[0].encoding and report.layers[0].sops == 0.0
    # The identity shortcut passes the block input's spikes on.
    ident = names.index("res1/identity")
    assert report.layers[ident].sops == pytest.approx(
        float(np.asarray(hidden[0]).sum()) / 5, rel=1e-6)


def test_results_json_equals_measure_on_a_residual_net_with_pooling(tmp_path):
  cfg = dataclasses.replace(CFG, model="e4c3-[4c3-4c3]-[6c3/2-6c3]-p2-fc2",
                            encoding="analog", time_steps=3, epochs=1, batch_size=8,
                            bias_high=0.5)
  rng = np.random.default_rng(0)
  def images(n, seed):
    r = np.random.default_rng(seed)
    x = r.random((n, 8, 8, 1), dtype=np.float32)
    return Dataset(x=x, y=(x.mean((1, 2, 3)) > 0.5).astype(np.int32), num_classes=2,
                   class_names=("a", "b"), kind="analog")
  del rng
  test_ds = images(12, 1)
  res = T.fit(images(32, 0), test_ds, cfg, tmp_path / "run", )
  params = T.final_params(tmp_path / "run")
  model = T.make_model(cfg)
  report = metrics.measure(model, {"params": params}, jnp.asarray(test_ds.x))
  assert res["synapses"] == report.synapses
  np.testing.assert_allclose(res["spikes_per_sample"], report.spikes, rtol=1e-6)
  np.testing.assert_allclose(res["synaptic_ops_per_sample"], report.sops, rtol=1e-5)
  np.testing.assert_allclose(res["firing_rate"], report.firing_rate, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Config validation and the divergence rule.


@pytest.mark.parametrize("changes, match", [
    (dict(tau_init=2.0), "--tau_init must lie in"),
    (dict(count_scale=0.0), "--count_scale must be"),
    (dict(learning_rate=float("nan")), "--learning_rate"),
    (dict(gradient="band", band_width=0.0), "--band_width must be a finite number > 0"),
    (dict(band_width=float("inf")), "--band_width must be a finite number > 0"),
    (dict(gradient="sparse"), "--gradient must be one of"),
])
def test_config_rejects_bad_values(changes, match):
  with pytest.raises(errors.ConfigError, match=match):
    T.validate_config(dataclasses.replace(CFG, **changes))


def test_pooling_larger_than_the_image_is_a_config_error(tmp_path):
  cfg = dataclasses.replace(CFG, model="a30-fc10", encoding="rate")
  with pytest.raises(errors.ConfigError, match="'a30' needs a feature map of at least 30x30"):
    T.validate_config(cfg, kind="analog", input_shape=(28, 28, 1))
  with pytest.raises(errors.ConfigError, match="stop_after_steps"):
    T.fit(_analog(32), _analog(16), CFG, tmp_path, stop_after_steps=0)


def test_divergence_rule():
  from bpsr_jax import monitor
  # MNIST at learning rate 1e6 (measured): accuracy around chance, confidently wrong.
  wrong = [dict(loss=5.0 + 0.4 * (i % 3), ce=4.0 + 0.4 * (i % 3), accuracy=0.1 + 0.01 * i)
           for i in range(5)]
  assert "does not learn" in monitor.divergence(wrong, num_classes=10, patience=5)
  assert monitor.divergence(wrong[:4], num_classes=10, patience=5) is None
  assert monitor.divergence(wrong, num_classes=10, patience=0) is None
  learned = [dict(loss=0.5, ce=0.4, accuracy=0.9)] + wrong
  assert "collapsed" in monitor.divergence(learned, num_classes=10, patience=5)
  flat = [dict(loss=2.0, ce=1.9, accuracy=0.1)] * 5
  assert monitor.divergence(flat, num_classes=10, patience=5)
  # Near chance but learning (cross entropy below ln 10, loss moving): not diverged.
  slow = [dict(loss=2.2 - 0.05 * i, ce=2.1 - 0.05 * i, accuracy=0.12) for i in range(5)]
  assert monitor.divergence(slow, num_classes=10, patience=5) is None
  better = [dict(w, accuracy=0.3) for w in wrong]
  assert monitor.divergence(better, num_classes=10, patience=5) is None


def test_config_from_dict_and_flagfile(tmp_path):
  f = tmp_path / "x.flags"
  f.write_text("# c\n--model=r4-fc2\n--norewire\n--clamp\n--lambda_s=1e-3\n--epochs=3\n"
               "--workdir=/tmp/x\n")
  cfg = T.TrainConfig.from_dict(config.read_flagfile(f))
  assert (cfg.model, cfg.rewire, cfg.clamp, cfg.lambda_s, cfg.epochs) == (
      "r4-fc2", False, True, 1e-3, 3)
  assert T.TrainConfig.from_dict(dict(cfg.to_dict(), workdir="w")) == cfg
  with pytest.raises(errors.ConfigError, match="--epochs must be int"):
    T.TrainConfig.from_dict({"epochs": "many"})
