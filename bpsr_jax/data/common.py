"""Dataset container, deterministic splitting, batching and feature normalization.

Shared by every loader of `bpsr_jax.data`. Everything here is plain numpy,
deterministic from explicit seeds.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from bpsr_jax.errors import DataError

__all__ = [
    "Dataset",
    "batch_indices",
    "iterate_batches",
    "get_batch",
    "to_time_major",
    "stratified_split",
    "fit_normalizer",
    "Normalizer",
    "require_dir",
]

KINDS = ("analog", "spikes")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An in-memory dataset, sample-major.

  Attributes:
    x: `[N, ...]`. For `kind="analog"`: float32 static features in `[0, 1]` (MNIST
      `[N, 28, 28, 1]`, CIFAR10 `[N, 32, 32, 3]`, gas `[N, F]`), encoded on the fly
      (`encode.rate`, `encode.rank_order`) or fed to an encoding layer. For
      `kind="spikes"`: pre-encoded spike trains `[N, T, ...]`, uint8 in {0, 1}
      (N-MNIST `[N, T, 34, 34, 2]` channels-last, MIT-BIH `[N, T, 4]`); batches go
      time-major with `to_time_major`.
    y: int32 labels `[N]` in `[0, num_classes)` (checked: a label outside is a
      `DataError`, so the loss can assume valid labels).
    num_classes: number of classes.
    class_names: `num_classes` names, `class_names[y]`.
    kind: `"analog"` or `"spikes"`.
    meta: optional per-sample arrays `[N, ...]` (record id, batch number,
      concentration, ...), kept aligned by `take`.
  """

  x: np.ndarray
  y: np.ndarray
  num_classes: int
  class_names: tuple[str, ...]
  kind: str
  meta: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Dataset.kind must be one of {KINDS}, got {self.kind!r}")
    if len(self.x) != len(self.y):
      raise ValueError(f"Dataset: x has {len(self.x)} samples but y has {len(self.y)}")
    if len(self.class_names) != self.num_classes:
      raise ValueError(
          f"Dataset: {len(self.class_names)} class names for {self.num_classes} classes")
    y = np.asarray(self.y)
    if len(y):
      if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"Dataset: labels must be integers, got dtype {y.dtype}")
      bad = (y < 0) | (y >= self.num_classes)
      if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Dataset: label {y[i]} of sample {i} is outside [0, {self.num_classes}) "
            f"({int(bad.sum())} such labels); the labels do not match the classes "
            f"{tuple(self.class_names)[:10]} (corrupt label file?)")
    for k, v in self.meta.items():
      if len(v) != len(self.y):
        raise ValueError(f"Dataset.meta[{k!r}] has {len(v)} rows, expected {len(self.y)}")

  def __len__(self) -> int:
    return len(self.y)

  @property
  def time_steps(self) -> int | None:
    """`T` of a spike dataset, None for analog data."""
    return int(self.x.shape[1]) if self.kind == "spikes" else None

  def take(self, indices: np.ndarray | Sequence[int]) -> "Dataset":
    """The samples at `indices` (x, y and every `meta` array), same classes."""
    idx = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(
        self, x=self.x[idx], y=self.y[idx], meta={k: v[idx] for k, v in self.meta.items()})

  def class_histogram(self) -> dict[str, int]:
    """Number of samples per class name."""
    counts = np.bincount(self.y, minlength=self.num_classes)
    return {name: int(c) for name, c in zip(self.class_names, counts)}


def require_dir(path: str | pathlib.Path | None, what: str, layout: str) -> pathlib.Path:
  """Returns `path` as a Path; raises FileNotFoundError naming the expected layout."""
  if path is None:
    raise FileNotFoundError(f"{what}: no data directory given; expected a directory with {layout}")
  p = pathlib.Path(path).expanduser()
  if not p.is_dir():
    raise FileNotFoundError(
        f"{what}: data directory {str(p)!r} does not exist or is not a directory; "
        f"expected a directory with {layout}")
  return p


def batch_indices(
    num_examples: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> np.ndarray:
  """Sample indices of every batch of one epoch, deterministic from `(seed, epoch)`.

  The permutation of epoch `e` is `np.random.default_rng([seed, e]).permutation(n)`,
  independent of any other epoch, so a resumed run can jump to batch `k` of epoch `e`
  as `batch_indices(...)[k]`.

  Args:
    num_examples: `N`.
    batch_size: `B`.
    seed: shuffling seed.
    epoch: epoch number.
    shuffle: if False, the order is `0..N-1` (evaluation).
    drop_remainder: drop the last incomplete batch. If False it is kept and padded
      with `-1` (use `idx >= 0` as the mask, or `get_batch`).

  Returns:
    int64 `[num_batches, B]`; `num_batches = N // B` (or `ceil(N / B)` without
    `drop_remainder`).
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if shuffle:
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples)
  else:
    order = np.arange(num_examples)
  if drop_remainder:
    nb = num_examples // batch_size
    return order[: nb * batch_size].reshape(nb, batch_size)
  nb = -(-num_examples // batch_size)
  padded = np.full(nb * batch_size, -1, dtype=np.int64)
  padded[:num_examples] = order
  return padded.reshape(nb, batch_size)


def get_batch(ds: Dataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Gathers one batch of `batch_indices`, sample-major.

  Returns:
    `(x [B, ...], y [B], mask [B] bool)`; padding entries (`idx == -1`) repeat sample
    0 and have `mask` False.
  """
  idx = np.asarray(idx)
  mask = idx >= 0
  safe = np.where(mask, idx, 0)
  return ds.x[safe], ds.y[safe], mask


def iterate_batches(
    ds: Dataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
    time_major: bool = False,
    start_batch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields `(x, y, mask)` batches of one epoch (see `batch_indices`, `get_batch`).

  With `time_major=True` a spike dataset's `x` comes as `[T, B, ...]`. `start_batch`
  skips the first batches of the epoch (resuming).
  """
  for idx in batch_indices(
      len(ds), batch_size, seed=seed, epoch=epoch, shuffle=shuffle,
      drop_remainder=drop_remainder)[start_batch:]:
    x, y, mask = get_batch(ds, idx)
    if time_major and ds.kind == "spikes":
      x = to_time_major(x)
    yield x, y, mask


def to_time_major(batch_x: Any) -> Any:
  """Moves a `[B, T, ...]` batch (numpy or jax) to `[T, B, ...]`."""
  if batch_x.ndim < 2:
    raise ValueError(f"to_time_major expects [B, T, ...], got shape {batch_x.shape}")
  return batch_x.swapaxes(0, 1)


def stratified_split(
    y: np.ndarray, test_fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded stratified split: in each class, `round(test_fraction * n_c)` go to test.

  Within class `c` the samples are permuted with
  `np.random.default_rng([seed, c])` and the first `round(test_fraction * n_c)` are
  the test samples.

  Returns:
    `(train_idx, test_idx)`, each sorted ascending.
  """
  if not 0.0 <= test_fraction <= 1.0:
    raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
  y = np.asarray(y)
  train, test = [], []
  for c in np.unique(y):
    idx = np.flatnonzero(y == c)
    idx = idx[np.random.default_rng([int(seed), int(c)]).permutation(len(idx))]
    n_test = int(round(test_fraction * len(idx)))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
  return cat(train), cat(test)


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """Per-feature affine map to `[0, 1]`, fitted on training data (see `fit_normalizer`)."""

  offset: np.ndarray
  scale: np.ndarray

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(x, np.float64) - self.offset) / self.scale, 0.0, 1.0).astype(
        np.float32)


def fit_normalizer(
    x_train: np.ndarray, method: str = "zscore", *, clip_sigma: float = 3.0
) -> Normalizer:
  """Fits a per-feature map of features `[N, F]` to `[0, 1]` on the training set.

  * `"zscore"`: standardize with the training mean and std, then map
    `[-clip_sigma, +clip_sigma]` linearly to `[0, 1]` and clip:
    `clip((z + clip_sigma) / (2 * clip_sigma), 0, 1)`. Robust to the heavy tails of
    gas-sensor features.
  * `"minmax"`: `clip((x - min) / (max - min), 0, 1)` with the training min/max.

  Constant features (zero spread) map to 0.5 (`"zscore"`) or 0 (`"minmax"`).
  """
  x = np.asarray(x_train, np.float64)
  if x.ndim != 2 or len(x) == 0:
    raise ValueError(f"fit_normalizer expects non-empty features [N, F], got shape {x.shape}")
  with np.errstate(over="ignore", invalid="ignore"):
    bad = ~np.isfinite(x.std(0) if method == "zscore" else x.max(0) - x.min(0))
  if bad.any():
    raise DataError(f"fit_normalizer: feature {int(np.flatnonzero(bad)[0])} has non-finite or "
                    "overflowing values in the training set")
  if method == "zscore":
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    return Normalizer(offset=mean - clip_sigma * std, scale=2 * clip_sigma * std)
  if method == "minmax":
    lo, hi = x.min(0), x.max(0)
    return Normalizer(offset=lo, scale=np.where(hi > lo, hi - lo, 1.0))
  raise ValueError(f"normalization must be 'zscore' or 'minmax', got {method!r}")
