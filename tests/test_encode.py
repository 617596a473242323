"""Tests of bpsr_jax.encode against hand-computed cases and independent references."""

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bpsr_jax import encode

PROPERTY = settings(derandomize=True, deadline=None, max_examples=40)


# ------------------------------------------------------------------------ rate


def test_rate_mean_within_statistical_bound():
  p = jnp.linspace(0.0, 1.0, 21)
  T = 4000
  spikes = encode.rate(jax.random.key(0), p, T)
  assert spikes.shape == (T, 21) and spikes.dtype == jnp.float32
  assert set(np.unique(np.asarray(spikes))) <= {0.0, 1.0}
  mean = np.asarray(spikes.mean(0))
  # Binomial: std of the empirical mean is sqrt(p (1 - p) / T); allow 5 sigma.
  bound = 5 * np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / T) + 1e-9
  np.testing.assert_array_less(np.abs(mean - np.asarray(p)), bound)
  assert mean[0] == 0.0 and mean[-1] == 1.0


def test_rate_is_jittable_keyed_and_clips():
  x = jnp.array([[-0.5, 0.3], [0.7, 2.0]])
  f = jax.jit(encode.rate, static_argnums=2)
  a = f(jax.random.key(1), x, 50)
  b = encode.rate(jax.random.key(1), x, 50)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (50, 2, 2)
  assert float(a[:, 0, 0].sum()) == 0.0 and float(a[:, 1, 1].sum()) == 50.0
  assert not np.array_equal(a, encode.rate(jax.random.key(2), x, 50))
  assert encode.rate(jax.random.key(1), x, 5, dtype=jnp.bfloat16).dtype == jnp.bfloat16


@PROPERTY
@given(hnp.arrays(np.float32, 24, elements=st.floats(0, 1, width=32)),
       st.integers(0, 2**31 - 1))
def test_rate_property_binary_and_mean(x, seed):
  T = 2000
  spikes = np.asarray(encode.rate(jax.random.key(seed), x, T))
  assert spikes.shape == (T, *x.shape)
  assert np.isin(spikes, (0.0, 1.0)).all()
  assert (spikes[:, x == 0] == 0).all() and (spikes[:, x == 1] == 1).all()
  bound = 6 * np.sqrt(x * (1 - x) / T) + 1e-6
  assert (np.abs(spikes.mean(0) - x) <= bound).all()


# ------------------------------------------------------------------ rank order


def test_rank_order_by_value_hand_case():
  # t = min(floor((1 - x) * T), T - 1); x = 0 never spikes.
  x = jnp.array([1.0, 0.75, 0.5, 0.125, 0.0])
  out = np.asarray(encode.rank_order(x, 4))
  expected = np.zeros((4, 5))
  expected[0, 0] = expected[1, 1] = expected[2, 2] = expected[3, 3] = 1
  np.testing.assert_array_equal(out, expected)


def test_rank_order_by_rank_hand_case_and_ties():
  # 4 positive values; ranks (number strictly larger): 0.9 -> 0, 0.5 -> 1 (twice), 0.1 -> 3.
  # step = floor(rank * T / 4) with T = 8: 0, 2, 2, 6; the tie shares its step.
  x = jnp.array([0.9, 0.1, 0.5, 0.5, 0.0])
  out = np.asarray(encode.rank_order(x, 8, by="rank"))
  steps = [np.flatnonzero(out[:, i]).tolist() for i in range(5)]
  assert steps == [[0], [6], [2], [2], []]


def test_rank_order_ties_share_a_step_and_batch_axes():
  x = jnp.array([[0.3, 0.3, 0.6], [0.2, 0.0, 0.2]])
  for by in ("value", "rank"):
    out = np.asarray(encode.rank_order(x, 10, by=by, sample_ndim=1))
    assert out.shape == (10, 2, 3)
    assert np.array_equal(out[:, 0, 0], out[:, 0, 1])
    assert np.array_equal(out[:, 1, 0], out[:, 1, 2])
    assert out[:, 1, 1].sum() == 0
  # by="rank" ranks each row separately: both rows' largest value spikes at step 0.
  out = np.asarray(encode.rank_order(x, 10, by="rank", sample_ndim=1))
  assert out[0, 0, 2] == 1 and out[0, 1, 0] == 1


def test_rank_order_jit_and_errors():
  x = jnp.linspace(0, 1, 7).reshape(7, 1)
  f = jax.jit(encode.rank_order, static_argnames=("T", "by", "sample_ndim"))
  np.testing.assert_array_equal(f(x, T=5), encode.rank_order(x, 5))
  np.testing.assert_array_equal(f(x, T=5, by="rank", sample_ndim=2),
                                encode.rank_order(x, 5, by="rank", sample_ndim=2))
  with pytest.raises(ValueError, match="by must be"):
    encode.rank_order(x, 5, by="latency")
  # A mode built at run time (a flag value), not the interned literal, is compared by
  # value.
  for by in ("value", "rank"):
    built = "".join(list(by))
    assert built is not by
    np.testing.assert_array_equal(encode.rank_order(x, 5, by=built),
                                  encode.rank_order(x, 5, by=by))
  with pytest.raises(ValueError, match="sample_ndim"):
    encode.rank_order(x, 5, by="rank", sample_ndim=3)


# A few fixed shapes and T values keep the number of jax compilations small.
@PROPERTY
@given(st.sampled_from([(9,), (2, 5), (2, 2, 3)]).flatmap(
           lambda shape: hnp.arrays(
               np.float32, shape,
               elements=st.one_of(st.just(0.0), st.just(0.5), st.floats(0, 1, width=32)))),
       st.sampled_from([1, 3, 8]), st.sampled_from(["value", "rank"]))
def test_rank_order_property(x, T, by):
  out = np.asarray(encode.rank_order(x, T, by=by))
  assert out.shape == (T, *x.shape)
  counts = out.sum(0)
  np.testing.assert_array_equal(counts, (x > 0).astype(counts.dtype))  # one spike iff x > 0
  steps = np.where(counts > 0, out.argmax(0), T).ravel()
  v = x.ravel()
  pos = v > 0
  # Larger values never spike later; equal values spike together.
  larger = (v[:, None] > v[None, :]) & pos[:, None] & pos[None, :]
  assert (steps[:, None] <= steps[None, :])[larger].all()
  equal = (v[:, None] == v[None, :]) & pos[:, None]
  assert (steps[:, None] == steps[None, :])[equal].all()


# -------------------------------------------------------------- level crossing


def reference_level_crossing(s, delta):
  """Independent scalar reference: lists of (sample index, "up"/"down") per crossing.

  Levels are s[0] + k * delta; the encoder moves one level at a time.
  """
  events, k = [], 0
  for i in range(1, len(s)):
    while s[i] >= s[0] + (k + 1) * delta:
      k += 1
      events.append((i, "up"))
    while s[i] <= s[0] + (k - 1) * delta:
      k -= 1
      events.append((i, "down"))
  return events


def test_level_crossing_ramp_hand_case():
  s = (np.arange(11) * 0.5)[:, None]  # 0, 0.5, ..., 5.0; levels 1, 2, ..., 5
  out = encode.level_crossing(s, 1.0)
  assert out.shape == (11, 2) and out.dtype == np.int32
  np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
  assert out[:, 1].sum() == 0
  # Falling ramp: only "down" spikes, same times.
  down = encode.level_crossing(-s + 7.0, 1.0)
  np.testing.assert_array_equal(down[:, 1], out[:, 0])
  assert down[:, 0].sum() == 0


def test_level_crossing_sine_hand_case():
  # One period of 1.2 sin(2 pi i / n), i = 0..n-1 with n odd (no sample lands exactly on
  # a zero), delta = 0.5, levels relative to s[0] = 0. Rising to 1.2 crosses 0.5 and 1.0;
  # falling to -1.2 crosses 0.5, 0, -0.5, -1.0; rising again crosses -0.5 (0 is only
  # reached at i = n). A crossing happens at the first sample at/past the level, i.e.
  # at ceil(t*) for the exact crossing time t*.
  n = 999
  s = 1.2 * np.sin(2 * np.pi * np.arange(n) / n)
  p5, p10 = (np.arcsin(level / 1.2) / (2 * np.pi) * n for level in (0.5, 1.0))
  up_times = [math.ceil(p5), math.ceil(p10), math.ceil(n - p5)]
  down_times = [math.ceil(n / 2 - p5), math.ceil(n / 2), math.ceil(n / 2 + p5),
                math.ceil(n / 2 + p10)]
  out = encode.level_crossing(s[:, None], 0.5)
  assert np.flatnonzero(out[:, 0]).tolist() == up_times
  assert np.flatnonzero(out[:, 1]).tolist() == down_times
  assert out.max() == 1
  assert out.sum() == 7  # the number of level crossings


def test_level_crossing_multichannel_layout_and_resampling():
  t = np.linspace(0, 1, 252)
  sig = np.stack([np.sin(2 * np.pi * 3 * t), 2 * t], axis=1)
  full = encode.level_crossing(sig, [0.1, 0.25])
  assert full.shape == (252, 4)
  for c, delta in enumerate([0.1, 0.25]):
    ev = reference_level_crossing(sig[:, c], delta)
    assert full[:, 2 * c].sum() == sum(d == "up" for _, d in ev)
    assert full[:, 2 * c + 1].sum() == sum(d == "down" for _, d in ev)
  res = encode.level_crossing(sig, [0.1, 0.25], time_steps=40)
  assert res.shape == (40, 4)
  np.testing.assert_array_equal(res.sum(0), full.sum(0))  # counts preserved
  bins = (np.arange(252) * 40) // 252
  expected = np.zeros((40, 4), np.int64)
  np.add.at(expected, bins, full)
  np.testing.assert_array_equal(res, expected)
  binary = encode.level_crossing(sig, [0.1, 0.25], time_steps=40, binary=True)
  np.testing.assert_array_equal(binary, np.minimum(expected, 1))
  # Leading batch axes are encoded independently.
  batch = encode.level_crossing(np.stack([sig, -sig]), 0.1, time_steps=40)
  np.testing.assert_array_equal(batch[0], encode.level_crossing(sig, 0.1, time_steps=40))


def test_level_crossing_offset_and_hysteresis():
  s = np.array([0.0, 0.6, 1.0, 0.9, 1.05, 0.95, 1.0, 0.5, 0.0])[:, None]
  out = encode.level_crossing(s, 1.0)
  # Reaches 1.0 once (up); wiggles around it without reaching 0 or 2; then falls to 0.
  assert np.flatnonzero(out[:, 0]).tolist() == [2]
  assert np.flatnonzero(out[:, 1]).tolist() == [8]
  np.testing.assert_array_equal(encode.level_crossing(s + 123.4, 1.0), out)
  assert encode.level_crossing(np.full((5, 3), 2.0), 0.1).sum() == 0


def test_level_crossing_errors():
  with pytest.raises(ValueError, match="time, channels"):
    encode.level_crossing(np.zeros(5), 0.1)
  with pytest.raises(ValueError, match="delta must be positive"):
    encode.level_crossing(np.zeros((5, 2)), 0.0)


@PROPERTY
@given(hnp.arrays(np.int64, st.tuples(st.integers(2, 60), st.integers(1, 3)),
                  elements=st.integers(-40, 40)),
       st.sampled_from([0.125, 0.25, 0.5, 0.75, 1.0, 1.5]), st.integers(1, 20))
def test_level_crossing_property_matches_reference(steps, delta, T):
  # Multiples of 1/8 and these deltas keep the arithmetic exact, so signals that land
  # exactly on a level test the "reaching a level counts" rule too.
  signal = steps / 8.0
  out = encode.level_crossing(signal, delta)
  for c in range(signal.shape[1]):
    ev = reference_level_crossing(signal[:, c], delta)
    for j, kind in enumerate(("up", "down")):
      times = np.zeros(len(signal), np.int64)
      for i, d in ev:
        times[i] += d == kind
      np.testing.assert_array_equal(out[:, 2 * c + j], times)
  resampled = encode.level_crossing(signal, delta, time_steps=T)
  assert resampled.shape == (T, 2 * signal.shape[1])
  np.testing.assert_array_equal(resampled.sum(0), out.sum(0))


# ---------------------------------------------------------------- event frames


def _events(xs, ys, ts, ps):
  ev = np.zeros(len(xs), dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
  ev["x"], ev["y"], ev["t"], ev["p"] = xs, ys, ts, ps
  return ev


def test_frame_events_fixed_duration_matches_histogram():
  rng = np.random.default_rng(0)
  n = 500
  ev = _events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 300_000, n)),
               rng.integers(0, 2, n))
  T = 10
  frames = encode.frame_events(ev, time_steps=T, duration_us=300_000, binary=False)
  assert frames.shape == (T, 2, 34, 34) and frames.dtype == np.uint8
  expected = np.zeros((T, 2, 34, 34), np.int64)
  np.add.at(expected, (ev["t"] // 30_000, ev["p"], ev["y"], ev["x"]), 1)
  np.testing.assert_array_equal(frames, expected)
  binary = encode.frame_events(ev, time_steps=T, duration_us=300_000)
  np.testing.assert_array_equal(binary, np.minimum(expected, 1))
  cl = encode.frame_events(ev, time_steps=T, duration_us=300_000, channels_last=True)
  np.testing.assert_array_equal(cl, binary.transpose(0, 2, 3, 1))


def test_frame_events_empty_and_denoise():
  empty = encode.frame_events(_events([], [], [], []), time_steps=5)
  assert empty.shape == (5, 2, 34, 34) and empty.sum() == 0
  # tonic's Denoise is causal: an event survives if a 4-neighbour fired within the last
  # filter_time. The isolated event and the first of the neighbouring pair are dropped.
  ev = _events([1, 20, 21], [1, 20, 20], [10_000, 20_000, 20_500], [0, 1, 1])
  kept = encode.frame_events(ev, time_steps=3, duration_us=30_000, denoise_us=1000,
                             binary=False)
  assert kept.sum() == 1 and kept[2, 1, 20, 21] == 1


# ---------------------------------------------------------------- random shift


def _shifted(img, dy, dx):
  """Loop reference: out[i, j] = img[i - dy, j - dx] inside the image, else 0."""
  h, w = img.shape[:2]
  ref = np.zeros_like(img)
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        ref[i, j] = img[i - dy, j - dx]
  return ref


def test_random_shift_matches_a_loop_reference():
  x = np.random.default_rng(0).random((6, 5, 7, 2)).astype(np.float32)
  key = jax.random.PRNGKey(4)
  out = np.asarray(encode.random_shift(key, jnp.asarray(x), 2))
  offsets = np.asarray(jax.random.randint(key, (6, 2), -2, 3))
  assert len({tuple(o) for o in offsets}) > 1
  for b, (dy, dx) in enumerate(offsets):
    np.testing.assert_array_equal(out[b], _shifted(x[b], dy, dx))
  np.testing.assert_array_equal(encode.random_shift(key, jnp.asarray(x), 0), x)
  for shape in ((3, 4), (3, 4, 5)):
    with pytest.raises(ValueError, match=r"random_shift expects \[B, H, W, C\]"):
      encode.random_shift(key, jnp.zeros(shape), 1)


def test_random_shift_draws_every_offset_in_range():
  # Distinct pixel values identify the offset of every sample; with 300 samples and
  # max_shift 1 each of the 9 offsets (dy, dx) in [-1, 1]^2 occurs (a missing one has
  # probability ~ 9 (8/9)^300 = 4e-15), and no other does.
  b, h, w = 300, 4, 5
  x = np.tile(np.arange(1, h * w + 1, dtype=np.float32).reshape(1, h, w, 1), (b, 1, 1, 1))
  out = np.asarray(encode.random_shift(jax.random.PRNGKey(0), jnp.asarray(x), 1))
  grid = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  seen = []
  for i in range(b):
    match = [o for o in grid if np.array_equal(out[i], _shifted(x[i], *o))]
    assert len(match) == 1, i
    seen.append(match[0])
  assert set(seen) == set(grid)
