"""Spike encoders: analog values or event streams to time-major spike trains.

Every encoder returns a time-major array `[T, ...]` (see WORKSPACE.md). Spikes are
values in {0, 1}.

* `rate`: Bernoulli (Poisson-like) rate coding; jax, jit-able.
* `rank_order`: at most one spike per input, larger values earlier; jax, jit-able.
* `level_crossing`: level-crossing (send-on-delta) sampling of a multichannel signal
  into "up" and "down" spike channels, as used for ECG; numpy.
* `frame_events`: bins an event-camera stream (N-MNIST) into frames with tonic's
  transforms; numpy.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numba
import numpy as np

__all__ = ["rate", "rank_order", "level_crossing", "frame_events", "NMNIST_SENSOR_SIZE"]

# N-MNIST's ATIS sensor crop: (width x, height y, polarities), tonic's convention.
NMNIST_SENSOR_SIZE = (34, 34, 2)


def rate(key: jax.Array, x: jax.Array, T: int, *, dtype: Any = jnp.float32) -> jax.Array:
  """Rate coding: at each step every input spikes with probability `x`.

  `out[t, ...] ~ Bernoulli(clip(x, 0, 1))`, independently over `t` and inputs, so the
  expected spike count of an input over `T` steps is `T * x`.

  Args:
    key: a `jax.random` key.
    x: analog values, any shape `[...]`; expected in `[0, 1]` (clipped).
    T: number of time steps (static under `jit`).
    dtype: dtype of the returned spikes.

  Returns:
    Spikes `[T, *x.shape]` of `dtype`, values in {0, 1}.
  """
  p = jnp.clip(jnp.asarray(x, jnp.float32), 0.0, 1.0)
  return jax.random.bernoulli(key, p, shape=(T, *p.shape)).astype(dtype)


def _spike_steps_by_rank(x: jax.Array, T: int, sample_ndim: int) -> jax.Array:
  """Step of each positive input when steps are given by its rank within a sample."""
  batch_shape = x.shape[: x.ndim - sample_ndim]
  flat = x.reshape((*batch_shape, -1))

  def one(v):
    n_pos = jnp.sum(v > 0)
    descending = -jnp.sort(-v)
    # Number of entries strictly larger than each value: ties share a rank.
    rank = jnp.searchsorted(-descending, -v, side="left")
    return jnp.floor(rank * T / jnp.maximum(n_pos, 1)).astype(jnp.int32)

  fn = one
  for _ in batch_shape:
    fn = jax.vmap(fn)
  return fn(flat).reshape(x.shape)


def rank_order(
    x: jax.Array,
    T: int,
    *,
    by: str = "value",
    sample_ndim: int | None = None,
    dtype: Any = jnp.float32,
) -> jax.Array:
  """Rank-order (time-to-first-spike) coding: one spike per input at most.

  Inputs are clipped to `[0, 1]`; inputs `<= 0` never spike; every positive input
  spikes exactly once, and a larger value never spikes later than a smaller one.

  * `by="value"` (default): the step is a linear function of the value,
    `t(x) = min(floor((1 - x) * T), T - 1)`: `x = 1` spikes at step 0 and the interval
    `(0, 1]` is cut into `T` bins of width `1 / T`. Inputs are encoded independently,
    so the same value always gets the same step.
  * `by="rank"`: the step depends on the rank of the value among the positive inputs of
    its sample (Thorpe's rank-order code): with `n` positive inputs and `r` of them
    strictly larger than `x`, `t(x) = floor(r * T / n)`. The largest value spikes at
    step 0 and the ranks are spread over the `T` steps.

  Ties: equal values always spike at the same step (in both modes), so the result
  does not depend on the order of the inputs.

  Args:
    x: analog values `[...]`.
    T: number of time steps (static under `jit`).
    by: `"value"` or `"rank"`.
    sample_ndim: for `by="rank"`, how many trailing axes of `x` form one sample (the
      inputs ranked together); the leading axes are batch axes. Default: all axes.
    dtype: dtype of the returned spikes.

  Returns:
    Spikes `[T, *x.shape]` of `dtype`, values in {0, 1}, at most one per input.
  """
  x = jnp.clip(jnp.asarray(x, jnp.float32), 0.0, 1.0)
  if by == "value":
    steps = jnp.minimum(jnp.floor((1.0 - x) * T), T - 1).astype(jnp.int32)
  elif by == "rank":
    nd = x.ndim if sample_ndim is None else sample_ndim
    if not 0 < nd <= x.ndim:
      raise ValueError(f"sample_ndim must be in [1, {x.ndim}] for x of shape {x.shape}, got {nd}")
    steps = _spike_steps_by_rank(x, T, nd)
  else:
    raise ValueError(f"rank_order: by must be 'value' or 'rank', got {by!r}")
  t = jnp.arange(T, dtype=jnp.int32).reshape((T,) + (1,) * x.ndim)
  return ((t == steps[None]) & (x[None] > 0)).astype(dtype)


def level_crossing(
    signal: np.ndarray,
    delta: float | Sequence[float] | np.ndarray,
    *,
    time_steps: int | None = None,
    binary: bool = False,
) -> np.ndarray:
  """Level-crossing (send-on-delta) sampling into "up" and "down" spike channels.

  Per channel the levels are `s[0] + k * delta` (integer `k`), i.e. relative to the
  first sample, so a constant offset (ECG baseline) does not matter. The encoder holds
  the last level crossed (`k = 0` at the start). At each sample `s[i]` (i >= 1):

  * if `s[i] >= level(k + 1)`, the signal rose past `m = floor((s[i]-s[0])/delta) - k`
    levels: `m` "up" spikes, `k += m`;
  * if `s[i] <= level(k - 1)`, it fell past `m = k - ceil((s[i]-s[0])/delta)` levels:
    `m` "down" spikes, `k -= m`.

  Reaching a level counts as crossing it. Because the next levels are always one
  `delta` above and below the last level crossed, a signal wiggling by less than
  `delta` around a level emits nothing (hysteresis of one level). The total number of
  spikes equals the number of level crossings.

  Resampling to `time_steps`: the crossing at sample `i` of `n` goes to step
  `floor(i * time_steps / n)`; the counts of a step add up (so spike counts are
  preserved exactly unless `binary`).

  Args:
    signal: `[..., time, channels]` (leading axes, e.g. beats, are encoded
      independently; the loop runs over time only).
    delta: level spacing, a positive scalar or one per channel `[channels]`, in the
      signal's units.
    time_steps: output steps `T`; default: one per input sample.
    binary: if True, clip the per-step counts to 1 (spikes in {0, 1}).

  Returns:
    int32 `[..., T, 2 * channels]`: channel `2c` is "up" and `2c + 1` is "down" for
    input channel `c` (2 ECG leads give 4 spike channels). Counts per step, or {0, 1}
    if `binary`.
  """
  s = np.asarray(signal, dtype=np.float64)
  if s.ndim < 2:
    raise ValueError(f"level_crossing expects a [..., time, channels] signal, got shape {s.shape}")
  n, c = s.shape[-2], s.shape[-1]
  d = np.broadcast_to(np.asarray(delta, dtype=np.float64), (c,))
  if np.any(~(d > 0)):
    raise ValueError(f"level_crossing: delta must be positive, got {delta!r}")
  T = n if time_steps is None else int(time_steps)
  if T <= 0:
    raise ValueError(f"level_crossing: time_steps must be positive, got {time_steps}")

  u = (s - s[..., :1, :]) / d  # position in units of levels, relative to s[0]
  bins = (np.arange(n) * T) // n
  out = _crossings(np.ascontiguousarray(u.reshape((-1, n, c))), bins, T)
  out = out.reshape(s.shape[:-2] + (T, 2 * c))
  if binary:
    out = np.minimum(out, 1)
  return out


@numba.njit(cache=True)
def _crossings(u, bins, T):  # pragma: no cover - compiled
  """The encoder of :func:`level_crossing` on positions ``u`` ``[B, n, c]`` (in levels)
  -> counts ``[B, T, c, 2]`` (up, down). One compiled loop: with numpy's loop over
  time, vectorized over beats, loading all of MIT-BIH took 27-35 s, 17 s of it here; with
  this one 12 s, identical counts (measured).
  """
  b_, n, c = u.shape
  out = np.zeros((b_, T, c, 2), np.int32)
  for b in range(b_):
    for ch in range(c):
      k = 0.0
      for i in range(1, n):
        ui = u[b, i, ch]
        if ui >= k + 1:
          m = np.floor(ui) - k
          out[b, bins[i], ch, 0] += np.int32(m)
          k += m
        elif ui <= k - 1:
          m = k - np.ceil(ui)
          out[b, bins[i], ch, 1] += np.int32(m)
          k -= m
  return out


def frame_events(
    events: np.ndarray,
    *,
    time_steps: int,
    sensor_size: tuple[int, int, int] = NMNIST_SENSOR_SIZE,
    duration_us: float | None = None,
    denoise_us: float | None = None,
    binary: bool = True,
    channels_last: bool = False,
) -> np.ndarray:
  """Bins an event stream into `time_steps` frames with tonic's transforms.

  Optionally `tonic.transforms.Denoise(filter_time=denoise_us)` first (drops events
  with no neighbour within 1 pixel and `denoise_us`), then
  `tonic.transforms.ToFrame`:

  * `duration_us=None`: `n_time_bins=time_steps`, equal bins spanning the recording's
    own first to last event (tonic's rule: the bin width is rounded down to an integer
    number of microseconds, the few events after the last full bin are dropped);
  * `duration_us=D`: fixed bins of `D / time_steps` microseconds over `[0, D)`, the
    same for every recording (events after `D` are dropped).

  Args:
    events: tonic structured array with fields `x`, `y`, `t` (microseconds), `p`.
    time_steps: number of frames `T`.
    sensor_size: `(width, height, polarities)`, tonic's convention.
    duration_us: fixed time span to frame, or None (see above).
    denoise_us: if set, apply tonic's `Denoise` with this filter time.
    binary: clip the event count of a pixel in a frame to 1 (spikes in {0, 1});
      otherwise counts saturate at 255.
    channels_last: return `[T, H, W, P]` instead of tonic's `[T, P, H, W]`.

  Returns:
    uint8 frames `[T, P, H, W]` (N-MNIST: `[T, 2, 34, 34]`) or `[T, H, W, P]`.
  """
  import tonic.transforms as tt  # pylint: disable=g-import-not-at-top

  w, h, p = sensor_size
  if len(events) and denoise_us is not None:
    events = tt.Denoise(filter_time=denoise_us)(events)
  if len(events) == 0:
    frames = np.zeros((time_steps, p, h, w), np.int64)
  elif duration_us is None:
    frames = tt.ToFrame(sensor_size=sensor_size, n_time_bins=time_steps)(events)
  else:
    events = events[events["t"] < duration_us]
    frames = tt.ToFrame(
        sensor_size=sensor_size,
        time_window=float(duration_us) / time_steps,
        start_time=0,
        end_time=float(duration_us),
        include_incomplete=True,
    )(events) if len(events) else np.zeros((time_steps, p, h, w), np.int64)
    frames = frames[:time_steps]
    if frames.shape[0] < time_steps:
      pad = np.zeros((time_steps - frames.shape[0], *frames.shape[1:]), frames.dtype)
      frames = np.concatenate([frames, pad])
  frames = np.asarray(frames)
  frames = np.minimum(frames, 1 if binary else 255).astype(np.uint8)
  if channels_last:
    frames = frames.transpose(0, 2, 3, 1)
  return frames


def random_shift(key: Array, x: Array, max_shift: int) -> Array:
  """Translates each image by a random integer offset, filling with zeros.

  Args:
    key: PRNG key.
    x: ``[B, H, W, C]`` images.
    max_shift: offsets are drawn uniformly from ``[-max_shift, max_shift]``, per sample
      and independently along H and W.

  Returns:
    ``[B, H, W, C]``: ``out[b, i, j] = x[b, i - dy_b, j - dx_b]`` where that lies inside
    the image, else 0.
  """
  if x.ndim != 4:
    raise ValueError(f"random_shift expects [B, H, W, C] images, got shape {x.shape}")
  if max_shift == 0:
    return x
  b, h, w, c = x.shape
  s = max_shift
  padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), -s, s + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (s - off[0], s - off[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)
