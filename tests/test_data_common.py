"""Tests of bpsr_jax.data.common: Dataset, batching, splitting, normalization."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bpsr_jax import data
from bpsr_jax.data import common
from bpsr_jax.errors import DataError


def _toy(n=10, kind="spikes"):
  x = np.arange(n * 3 * 2).reshape(n, 3, 2).astype(np.uint8)
  return data.Dataset(x=x, y=(np.arange(n) % 3).astype(np.int32), num_classes=3,
                      class_names=("a", "b", "c"), kind=kind, meta={"id": np.arange(n) * 10})


def test_dataset_validation_take_histogram():
  ds = _toy()
  assert len(ds) == 10 and ds.time_steps == 3
  sub = ds.take([4, 1])
  np.testing.assert_array_equal(sub.y, [1, 1])
  np.testing.assert_array_equal(sub.meta["id"], [40, 10])
  np.testing.assert_array_equal(sub.x[0], ds.x[4])
  assert ds.class_histogram() == {"a": 4, "b": 3, "c": 3}
  with pytest.raises(ValueError, match="kind"):
    data.Dataset(x=ds.x, y=ds.y, num_classes=3, class_names=("a", "b", "c"), kind="events")
  with pytest.raises(ValueError, match="samples"):
    data.Dataset(x=ds.x[:3], y=ds.y, num_classes=3, class_names=("a", "b", "c"), kind="spikes")
  with pytest.raises(ValueError, match="class names"):
    data.Dataset(x=ds.x, y=ds.y, num_classes=4, class_names=("a", "b", "c"), kind="spikes")


@settings(derandomize=True, deadline=None, max_examples=30)
@given(st.integers(1, 200), st.integers(1, 32), st.integers(0, 10**6), st.integers(0, 50))
def test_batch_indices_property(n, b, seed, epoch):
  idx = data.batch_indices(n, b, seed=seed, epoch=epoch)
  assert idx.shape == (n // b, b)
  assert len(np.unique(idx)) == idx.size and (idx >= 0).all() and (idx < n).all()
  np.testing.assert_array_equal(idx, data.batch_indices(n, b, seed=seed, epoch=epoch))
  full = data.batch_indices(n, b, seed=seed, epoch=epoch, drop_remainder=False)
  assert full.shape == (-(-n // b), b)
  np.testing.assert_array_equal(np.sort(full[full >= 0]), np.arange(n))
  assert (full[:-1] >= 0).all()  # only the last batch is padded
  np.testing.assert_array_equal(full[: n // b], idx)


def test_batch_indices_epochs_differ_and_eval_order():
  a = data.batch_indices(100, 10, seed=0, epoch=0)
  assert not np.array_equal(a, data.batch_indices(100, 10, seed=0, epoch=1))
  assert not np.array_equal(a, data.batch_indices(100, 10, seed=1, epoch=0))
  np.testing.assert_array_equal(
      data.batch_indices(7, 3, seed=5, epoch=2, shuffle=False, drop_remainder=False),
      [[0, 1, 2], [3, 4, 5], [6, -1, -1]])
  # The documented generator: a resumed run can recompute any epoch's order.
  np.testing.assert_array_equal(
      a.ravel(), np.random.default_rng([0, 0]).permutation(100))
  with pytest.raises(ValueError, match="batch_size"):
    data.batch_indices(10, 0, seed=0, epoch=0)


def test_get_batch_iterate_and_time_major():
  ds = _toy(7)
  idx = data.batch_indices(7, 3, seed=0, epoch=0, shuffle=False, drop_remainder=False)
  x, y, mask = data.get_batch(ds, idx[-1])
  np.testing.assert_array_equal(mask, [True, False, False])
  np.testing.assert_array_equal(y[:1], ds.y[6:7])
  batches = list(data.iterate_batches(ds, 2, seed=3, epoch=1, time_major=True))
  assert len(batches) == 3 and batches[0][0].shape == (3, 2, 2)
  resumed = list(data.iterate_batches(ds, 2, seed=3, epoch=1, time_major=True, start_batch=1))
  np.testing.assert_array_equal(resumed[0][0], batches[1][0])
  x = np.arange(2 * 5 * 4).reshape(2, 5, 4)
  tm = data.to_time_major(x)
  assert tm.shape == (5, 2, 4) and tm[3, 1, 2] == x[1, 3, 2]
  import jax.numpy as jnp
  assert data.to_time_major(jnp.asarray(x)).shape == (5, 2, 4)
  with pytest.raises(ValueError):
    data.to_time_major(np.zeros(3))


def test_stratified_split():
  y = np.repeat(np.arange(4), [100, 50, 10, 1])
  tr, te = data.stratified_split(y, 0.2, seed=0)
  assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
  np.testing.assert_array_equal(np.bincount(y[te], minlength=4), [20, 10, 2, 0])
  tr2, te2 = data.stratified_split(y, 0.2, seed=0)
  np.testing.assert_array_equal(te, te2)
  assert not np.array_equal(te, data.stratified_split(y, 0.2, seed=1)[1])
  with pytest.raises(ValueError):
    data.stratified_split(y, 1.5, seed=0)


def test_fit_normalizer():
  rng = np.random.default_rng(0)
  x = rng.normal(5.0, 2.0, size=(1000, 3))
  x[:, 2] = 7.0  # constant feature
  z = data.fit_normalizer(x, "zscore")(x)
  assert z.dtype == np.float32 and z.min() >= 0 and z.max() <= 1
  assert abs(np.median(z[:, 0]) - 0.5) < 0.02 and np.allclose(z[:, 2], 0.5)
  # Mean +- 3 std map to 0 and 1.
  norm = data.fit_normalizer(x[:, :2], "zscore")
  m, s = x[:, :2].mean(0), x[:, :2].std(0)
  np.testing.assert_allclose(norm(np.stack([m - 3 * s, m + 3 * s])), [[0, 0], [1, 1]], atol=1e-6)
  mm = data.fit_normalizer(x, "minmax")
  out = mm(x)
  np.testing.assert_allclose(out[:, :2].min(0), 0)
  np.testing.assert_allclose(out[:, :2].max(0), 1)
  assert mm(x[:, :] + 100).max() == 1.0  # clipped
  with pytest.raises(ValueError, match="normalization"):
    data.fit_normalizer(x, "robust")


def test_require_dir_message(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.*expected a directory with X files"):
    common.require_dir(tmp_path / "nowhere", "Toy", "X files")


# --------------------------------------------------------------------------------------
# Labels checked at the data boundary (issue 14).


@pytest.mark.parametrize("bad", [-1, 3, 200])
def test_labels_outside_the_classes_are_data_errors(bad):
  y = (np.arange(10) % 3).astype(np.int32)
  y[4] = bad
  with pytest.raises(DataError, match=rf"label {bad} of sample 4 is outside \[0, 3\)"):
    data.Dataset(x=np.zeros((10, 2), np.float32), y=y, num_classes=3,
                 class_names=("a", "b", "c"), kind="analog")
  with pytest.raises(DataError, match="labels must be integers"):
    data.Dataset(x=np.zeros((10, 2), np.float32), y=y.astype(np.float32), num_classes=3,
                 class_names=("a", "b", "c"), kind="analog")


def test_fit_normalizer_rejects_overflowing_features():
  x = np.ones((4, 3))
  x[1, 2] = 1e308  # finite, but its variance overflows
  with pytest.raises(DataError, match="feature 2 has non-finite or overflowing values"):
    data.fit_normalizer(x)
