"""N-MNIST (Orchard et al. 2015): event recordings of MNIST digits, framed with tonic.

Layout of the original dataset (what tonic's download extracts):
`<root>/Train/<digit>/<id>.bin` and `<root>/Test/<digit>/<id>.bin`; each `.bin` is a
sequence of 40-bit events: byte 0 x, byte 1 y, then 1 bit polarity and a 23-bit
timestamp in microseconds (big-endian); sensor 34 x 34, about 300 ms per recording
(three saccades of ~100 ms).

Local route: reads whatever `.bin` files the folders hold (any number) with tonic's
reader `tonic.io.read_mnist_file`. Online route (`download=True`): tonic's `NMNIST`
class downloads and extracts the full set into `<data_dir>/NMNIST/`; it only skips the
download when that folder holds the zip and at least 10,000 files, which is why the
local route does not go through it.
"""

from __future__ import annotations

import pathlib

import numpy as np

from bpsr_jax import encode
from bpsr_jax.data import common
from bpsr_jax.errors import ConfigError
from bpsr_jax.errors import DataError

__all__ = ["load_nmnist", "read_nmnist_events", "list_nmnist_files", "EVENT_DTYPE"]

CLASS_NAMES = tuple(str(d) for d in range(10))
# tonic's N-MNIST event dtype (fields x, y, t in microseconds, p in {0, 1}).
EVENT_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
_LAYOUT = ("N-MNIST's layout Train/<digit>/<id>.bin and Test/<digit>/<id>.bin "
           "(40-bit events: x, y, polarity bit + 23-bit timestamp in us)")
_FIRST_SACCADE_US = 100_000


def read_nmnist_events(path: str | pathlib.Path) -> np.ndarray:
  """Reads one N-MNIST `.bin` file with tonic's reader.

  Returns:
    tonic structured events (`EVENT_DTYPE`), time-sorted.

  Raises:
    DataError: an empty file, a size that is not a multiple of 5 bytes (truncated), or
      x/y outside the 34 x 34 sensor.
  """
  import tonic  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(path)
  size = path.stat().st_size
  if size == 0:
    raise DataError(f"{path}: empty file (0 events); an N-MNIST recording holds thousands "
                    "of 40-bit events: the file is truncated or corrupt")
  if size % 5:
    raise DataError(f"{path}: {size} bytes is not a multiple of 5 (N-MNIST events are 40 bits: "
                     "x, y, polarity + 23-bit timestamp); the file is truncated or corrupt")
  events = tonic.io.read_mnist_file(str(path), dtype=EVENT_DTYPE)
  if len(events) and (events["x"].max() > 33 or events["y"].max() > 33):
    raise DataError(f"{path}: event coordinates exceed the 34 x 34 N-MNIST sensor; not an "
                     "N-MNIST file")
  return events


def list_nmnist_files(root: str | pathlib.Path, split: str) -> list[tuple[pathlib.Path, int]]:
  """`(path, digit)` of every `<root>/<Train|Test>/<digit>/*.bin`, sorted by digit, name."""
  folder = pathlib.Path(root) / {"train": "Train", "test": "Test"}[split]
  if not folder.is_dir():
    raise FileNotFoundError(f"N-MNIST: {folder} not found; expected a directory with {_LAYOUT}")
  files = []
  for d in range(10):
    files += [(p, d) for p in sorted((folder / str(d)).glob("*.bin"))]
  if not files:
    raise FileNotFoundError(f"N-MNIST: no <digit>/<id>.bin files in {folder}; expected {_LAYOUT}")
  return files


def _resolve_root(data_dir, download: bool) -> pathlib.Path:
  root = pathlib.Path(data_dir).expanduser() if data_dir is not None else None
  for candidate in ([root, root / "NMNIST"] if root is not None else []):
    if (candidate / "Train").is_dir() or (candidate / "Test").is_dir():
      return candidate
  if download:
    if root is None:
      raise FileNotFoundError("N-MNIST: download=True needs a data_dir to download into")
    import tonic  # pylint: disable=g-import-not-at-top

    for train in (True, False):  # Downloads and extracts <root>/NMNIST/{Train,Test}.
      tonic.datasets.NMNIST(save_to=str(root), train=train)
    return root / "NMNIST"
  common.require_dir(root, "N-MNIST", _LAYOUT)
  raise FileNotFoundError(
      f"N-MNIST: neither {root}/Train nor {root}/NMNIST/Train exists; expected {_LAYOUT} "
      "(or pass download=True to fetch it with tonic)")


def _subset(files, limit, seed):
  """At most `limit` files, spread over the digits, deterministic from the seed."""
  if limit is None or limit >= len(files):
    return files
  order = np.random.default_rng(seed).permutation(len(files))[:limit]
  return [files[i] for i in np.sort(order)]


def load_nmnist(
    data_dir: str | pathlib.Path,
    *,
    time_steps: int,
    duration_us: float | None = None,
    first_saccade_only: bool = False,
    denoise_us: float | None = None,
    binary: bool = True,
    limit: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads N-MNIST as frames `[N, T, 34, 34, 2]` (channels-last: H, W, polarity).

  Each recording goes through `encode.frame_events` (tonic's `Denoise` when
  `denoise_us` is set, then `ToFrame`): by default `T` equal bins over the
  recording's own span; `duration_us` gives fixed bins over `[0, duration_us)`
  instead. `first_saccade_only` keeps events with t < 100 ms (and, unless
  `duration_us` is given, frames 100 ms). Normalization: none; a pixel of a frame is 1
  if it had at least one event of that polarity in the bin (`binary`), else the count
  (uint8, saturating at 255).

  Args:
    data_dir: the folder with `Train/` and `Test/` (or its parent holding `NMNIST/`,
      tonic's download location).
    time_steps: number of frames `T`.
    duration_us: fixed framing span in microseconds (see above).
    first_saccade_only: keep only the first of the three saccades.
    denoise_us: tonic `Denoise` filter time in microseconds, or None.
    binary: clip frame counts to 1.
    limit: at most `limit` recordings per split, a seeded random subset.
    seed: seed of that subset.
    download: if the folders are absent, download the full set with tonic.

  Returns:
    `(train, test)` `Dataset`s, `kind="spikes"`, x uint8 `[N, T, 34, 34, 2]`,
    labels 0..9 from the `<digit>` folder; `meta["file"]` is the source file name.
  """
  if not (isinstance(time_steps, (int, np.integer)) and time_steps > 0):
    raise ConfigError(f"N-MNIST: time_steps must be a positive integer, got {time_steps!r}")
  if duration_us is not None and not (np.isfinite(duration_us) and duration_us >= time_steps):
    raise ConfigError(
        f"N-MNIST: duration_us={duration_us} (--duration_us) must be at least time_steps="
        f"{time_steps} microseconds (bins of at least the 1 us timestamp resolution; a "
        "recording spans about 300,000 us)")
  if denoise_us is not None and not denoise_us > 0:
    raise ConfigError(f"N-MNIST: denoise_us must be positive, got {denoise_us!r}")
  root = _resolve_root(data_dir, download)
  if first_saccade_only and duration_us is None:
    duration_us = _FIRST_SACCADE_US
  out = []
  for split in ("train", "test"):
    files = _subset(list_nmnist_files(root, split), limit, seed)
    frames = np.zeros((len(files), time_steps, 34, 34, 2), np.uint8)
    for i, (path, _) in enumerate(files):
      events = read_nmnist_events(path)
      if first_saccade_only:
        events = events[events["t"] < _FIRST_SACCADE_US]
      frames[i] = encode.frame_events(
          events, time_steps=time_steps, sensor_size=encode.NMNIST_SENSOR_SIZE,
          duration_us=duration_us, denoise_us=denoise_us, binary=binary, channels_last=True)
    if len(files) and not frames.any():
      raise ConfigError(
          f"N-MNIST: every one of the {len(files)} {split} recordings is empty after framing "
          f"with duration_us={duration_us} (--duration_us), first_saccade_only="
          f"{first_saccade_only}, denoise_us={denoise_us}: no event falls in the framed span")
    labels = np.asarray([d for _, d in files], np.int32)
    names = np.asarray([p.name for p, _ in files])
    out.append(common.Dataset(x=frames, y=labels, num_classes=10, class_names=CLASS_NAMES,
                              kind="spikes", meta={"file": names}))
  return tuple(out)
