"""Tests of bpsr_jax.workdir: the run identity, the resume check and the run's files.

Each case is written by hand: a run.json on disk, a new identity, and the verdict the
module docstring states for that difference. No training runs here (see test_train.py for
fit's use of the check).
"""
import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import errors
from bpsr_jax import workdir
from bpsr_jax.config import MAY_CHANGE_ON_RESUME, TrainConfig
from bpsr_jax.data.common import Dataset

BASE = TrainConfig(schedule="constant", epochs=3)


def _ds(n=6, seed=0, dtype=np.float32, shape=(4,)):
  x = np.random.default_rng(seed).random((n, *shape)).astype(dtype)
  return Dataset(x=x, y=np.arange(n, dtype=np.int32) % 2, num_classes=2,
                 class_names=("a", "b"), kind="analog")


def _saved(tmp_path, cfg=BASE, settings=None, train=None, test=None):
  """A workdir holding run.json of ``cfg`` (and its data), as ``fit`` writes it."""
  ident = workdir.identity(cfg, train or _ds(), test or _ds(4, seed=1), settings)
  workdir.write_identity(tmp_path, ident)
  return ident


def test_jsonable_hand_cases():
  value = {1: (np.float32(0.5), np.int64(3)), "a": [float("nan"), float("inf"),
                                                   -float("inf"), 2.5, 7, "s", None],
           "arr": np.array([[1, 2]]), "jax": jnp.array([0.25]), "z": np.float64(np.nan)}
  assert workdir.jsonable(value) == {
      "1": [0.5, 3], "a": [None, None, None, 2.5, 7, "s", None], "arr": [[1, 2]],
      "jax": [0.25], "z": None}
  # The result is JSON with no NaN/Infinity extension.
  json.dumps(workdir.jsonable(value), allow_nan=False)


def test_fingerprint_tells_apart_data_shape_dtype_and_labels():
  a = _ds()
  fp = workdir.fingerprint(a)
  assert (fp["n"], fp["x_shape"], fp["num_classes"]) == (6, [4], 2)
  assert len(fp["hash"]) == 32 and fp == workdir.fingerprint(_ds())
  x = a.x.copy()
  x[5, 3] += 1e-6
  others = [
      dataclasses.replace(a, x=x),                                  # one value
      dataclasses.replace(a, y=a.y[::-1].copy()),                   # the labels
      dataclasses.replace(a, x=a.x.reshape(6, 2, 2)),               # same bytes, shape
      dataclasses.replace(a, x=a.x.view(np.int32)),                 # same bytes, dtype
      dataclasses.replace(a, y=a.y.astype(np.int64)),               # label dtype
  ]
  hashes = {fp["hash"]} | {workdir.fingerprint(o)["hash"] for o in others}
  assert len(hashes) == 1 + len(others)


def test_fresh_and_unrelated_folders_start_afresh(tmp_path):
  ident = workdir.identity(BASE, _ds(), _ds(4, seed=1))
  assert workdir.check(tmp_path / "missing", ident) is None
  assert workdir.check(tmp_path, ident) is None
  (tmp_path / "notes.txt").write_text("mine")
  (tmp_path / "events.txt").write_text("not an event file")
  assert workdir.check(tmp_path, ident) is None


@pytest.mark.parametrize("name", ["checkpoints", "metrics.jsonl", "results.json",
                                  "events.out.tfevents.123.host"])
def test_files_of_a_run_without_run_json_are_refused(tmp_path, name):
  if name == "checkpoints":
    (tmp_path / name).mkdir()
  else:
    (tmp_path / name).write_text("{}")
  ident = workdir.identity(BASE, _ds(), _ds(4, seed=1))
  with pytest.raises(errors.WorkdirError,
                     match=rf"holds files of another run \({name}\) but no run.json"):
    workdir.check(tmp_path, ident)


def test_overwrite_removes_only_the_run_files(tmp_path):
  _saved(tmp_path, dataclasses.replace(BASE, model="r9-fc2"))
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  (tmp_path / "checkpoints" / "3" / "state").write_text("x")
  for name in ("metrics.jsonl", "results.json", "events.out.tfevents.1.h", "notes.txt"):
    (tmp_path / name).write_text("x")
  (tmp_path / "keep").mkdir()
  ident = workdir.identity(BASE, _ds(), _ds(4, seed=1))
  assert workdir.check(tmp_path, ident, overwrite=True) is None
  assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "notes.txt"]
  # Overwriting an empty or missing folder is a fresh start too.
  assert workdir.check(tmp_path, ident, overwrite=True) is None
  assert workdir.check(tmp_path / "missing", ident, overwrite=True) is None


def test_unreadable_run_json_is_refused(tmp_path):
  (tmp_path / "run.json").write_text("{not json")
  with pytest.raises(errors.WorkdirError, match="run.json is unreadable"):
    workdir.check(tmp_path, workdir.identity(BASE, _ds(), _ds(4, seed=1)))


def test_same_identity_resumes_and_returns_the_recorded_one(tmp_path):
  old = _saved(tmp_path, settings={"limit": 100})
  new = workdir.identity(BASE, _ds(), _ds(4, seed=1), {"limit": 100})
  assert workdir.check(tmp_path, new) == old
  assert json.loads((tmp_path / "run.json").read_text()) == old
  assert (tmp_path / "run.json").read_text().endswith("}\n")


@pytest.mark.parametrize("change", [
    dict(batch_size=BASE.batch_size + 1), dict(lambda_s=0.5), dict(model="r9-fc2"),
    dict(seed=BASE.seed + 1), dict(rewire=not BASE.rewire)])
def test_a_changed_setting_is_refused_by_name(tmp_path, change):
  _saved(tmp_path)
  (name, value), = change.items()
  new = workdir.identity(dataclasses.replace(BASE, **change), _ds(), _ds(4, seed=1))
  with pytest.raises(errors.WorkdirError,
                     match=rf"holds a run with {name}={getattr(BASE, name)!r}, "
                           rf"not {value!r}"):
    workdir.check(tmp_path, new)


def test_settings_that_may_change_resume(tmp_path):
  old = _saved(tmp_path)
  change = dict(epochs=BASE.epochs + 2, eval_batch_size=7, log_every=3,
                checkpoint_every=5, keep_checkpoints=9, balanced_accuracy=True,
                divergence_patience=11)
  assert set(change) == set(MAY_CHANGE_ON_RESUME)
  new = workdir.identity(dataclasses.replace(BASE, **change), _ds(), _ds(4, seed=1))
  assert workdir.check(tmp_path, new) == old


def test_epochs_grow_only_and_not_under_cosine(tmp_path):
  _saved(tmp_path)
  same = workdir.identity(BASE, _ds(), _ds(4, seed=1))
  assert workdir.check(tmp_path, same)["config"]["epochs"] == 3
  for epochs in (2, 0):
    new = workdir.identity(dataclasses.replace(BASE, epochs=epochs), _ds(), _ds(4, seed=1))
    with pytest.raises(errors.WorkdirError, match=rf"not shrink to {epochs}"):
      workdir.check(tmp_path, new)
  cosine = dataclasses.replace(BASE, schedule="cosine")
  _saved(tmp_path, cosine)
  assert workdir.check(tmp_path, workdir.identity(cosine, _ds(), _ds(4, seed=1)))
  for epochs in (2, 4):
    new = workdir.identity(dataclasses.replace(cosine, epochs=epochs), _ds(),
                           _ds(4, seed=1))
    with pytest.raises(errors.WorkdirError,
                       match=rf"epochs=3, not {epochs}: the cosine schedule depends"):
      workdir.check(tmp_path, new)


def test_data_settings_and_training_data(tmp_path):
  _saved(tmp_path, settings={"limit": 100, "test_limit": 10})
  test = _ds(4, seed=1)
  # test_limit and the test arrays are evaluation settings: they may change.
  for settings, test_ds in (({"limit": 100, "test_limit": 20}, test),
                            ({"limit": 100}, test), ({"limit": 100, "test_limit": 10},
                                                     _ds(5, seed=2))):
    assert workdir.check(tmp_path, workdir.identity(BASE, _ds(), test_ds, settings))
  for settings, match in (({"limit": 50, "test_limit": 10}, "limit=100, not 50"),
                          ({"test_limit": 10}, "limit=100, not None"),
                          ({"limit": 100, "test_limit": 10, "split": "b"},
                           "split=None, not 'b'")):
    with pytest.raises(errors.WorkdirError, match=match):
      workdir.check(tmp_path, workdir.identity(BASE, _ds(), test, settings))
  with pytest.raises(errors.WorkdirError,
                     match=r"trained on other data \(6 examples of \[4\], hash [0-9a-f]{32}; "
                           r"now 7 of \[4\]"):
    workdir.check(tmp_path, workdir.identity(BASE, _ds(7), test,
                                             {"limit": 100, "test_limit": 10}))
  with pytest.raises(errors.WorkdirError, match="other data"):
    workdir.check(tmp_path, workdir.identity(BASE, _ds(seed=3), test,
                                             {"limit": 100, "test_limit": 10}))


def test_eval_changed_names_only_evaluation_differences():
  old = workdir.identity(BASE, _ds(), _ds(4, seed=1), {"test_limit": 10, "limit": 5})
  same = workdir.identity(dataclasses.replace(BASE, epochs=9, log_every=2), _ds(),
                          _ds(4, seed=1), {"test_limit": 10, "limit": 5})
  assert not workdir.eval_changed(old, same)
  for new in (
      workdir.identity(BASE, _ds(), _ds(4, seed=2), {"test_limit": 10, "limit": 5}),
      workdir.identity(BASE, _ds(), _ds(4, seed=1), {"test_limit": 11, "limit": 5}),
      workdir.identity(BASE, _ds(), _ds(4, seed=1), {"limit": 5}),
      workdir.identity(dataclasses.replace(BASE, eval_batch_size=3), _ds(),
                       _ds(4, seed=1), {"test_limit": 10, "limit": 5})):
    assert workdir.eval_changed(old, new)


def test_eval_changed_on_the_identity_read_back_from_run_json(tmp_path):
  # fit compares the run.json that check() read back with the new identity: equal
  # settings are equal values, not the same objects (1000 is outside CPython's small-int
  # cache, so json.loads makes a new int).
  cfg = dataclasses.replace(BASE, eval_batch_size=1000)
  _saved(tmp_path, cfg)
  new = workdir.identity(cfg, _ds(), _ds(4, seed=1))
  old = workdir.check(tmp_path, new)
  assert not workdir.eval_changed(old, new)
  assert workdir.eval_changed(old, workdir.identity(
      dataclasses.replace(cfg, eval_batch_size=999), _ds(), _ds(4, seed=1)))
