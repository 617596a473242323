"""CIFAR-10: the dataset's standard binary batches, or TFDS.

Binary version (`cifar-10-binary.tar.gz`, folder `cifar-10-batches-bin/`):
`data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`, 10,000 records each;
a record is 1 label byte (0..9) then 3072 pixel bytes: the 32x32 red plane, then
green, then blue, rows top to bottom.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from bpsr_jax.data import common
from bpsr_jax.data import tfds_source
from bpsr_jax.errors import DataError

__all__ = ["load_cifar10", "read_cifar10_bin", "CLASS_NAMES"]

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
RECORD_BYTES = 1 + 32 * 32 * 3
_LAYOUT = ("CIFAR-10's binary batches data_batch_1.bin .. data_batch_5.bin and test_batch.bin "
           f"({RECORD_BYTES} bytes per image: 1 label byte, then the 1024-byte R, G, B planes), "
           "directly or in a cifar-10-batches-bin/ subfolder")


def read_cifar10_bin(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads one binary batch: `(images uint8 [N, 32, 32, 3] HWC, labels int32 [N])`.

  Raises:
    ValueError: the size is not a multiple of 3073 bytes (truncated file) or a label
      byte is not in 0..9.
  """
  path = pathlib.Path(path)
  raw = np.fromfile(path, np.uint8)
  if raw.size == 0 or raw.size % RECORD_BYTES:
    raise DataError(
        f"{path}: {raw.size} bytes is not a positive multiple of {RECORD_BYTES} (1 label byte + "
        "3072 pixel bytes per image); the file is truncated or not a CIFAR-10 binary batch")
  records = raw.reshape(-1, RECORD_BYTES)
  labels = records[:, 0].astype(np.int32)
  if labels.max() > 9:
    raise DataError(f"{path}: label byte {labels.max()} out of range 0..9; not a CIFAR-10 batch "
                     "(CIFAR-100's binary format has 2 label bytes)")
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def _batch_dir(data_dir) -> pathlib.Path:
  directory = common.require_dir(data_dir, "CIFAR10", _LAYOUT)
  if not (directory / "test_batch.bin").is_file() and (
      directory / "cifar-10-batches-bin" / "test_batch.bin").is_file():
    directory = directory / "cifar-10-batches-bin"
  return directory


def _read_files(paths: Sequence[pathlib.Path], limit: int | None):
  for p in paths:
    if not p.is_file():
      raise FileNotFoundError(f"CIFAR10: {p} not found; expected a directory with {_LAYOUT}")
  parts = [read_cifar10_bin(p) for p in paths]
  images = np.concatenate([im for im, _ in parts])
  labels = np.concatenate([lab for _, lab in parts])
  if limit is not None:
    images, labels = images[:limit], labels[:limit]
  return images, labels


def load_cifar10(
    data_dir: str | pathlib.Path | None = None,
    *,
    source: str = "auto",
    train_batches: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    download: bool = True,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads CIFAR-10 (50,000 train / 10,000 test) as analog images.

  Normalization: pixel / 255, float32 in `[0, 1]`, `[N, 32, 32, 3]` (channels-last,
  RGB). No mean/std standardization: the network's encoding layer (first conv)
  receives these values at every step.

  Args:
    data_dir: `source="bin"`: the directory of the binary batches (or its parent
      holding `cifar-10-batches-bin/`). `source="tfds"`: the TFDS data directory
      (None: TFDS's default).
    source: `"bin"` (binary batches), `"tfds"` (`tfds.data_source("cifar10")`) or
      `"auto"`: `"bin"` when `data_dir` is given, else `"tfds"`.
    train_batches: `source="bin"` only: which `data_batch_<k>.bin` form the training
      set (all five by default; a subset must be asked for explicitly).
    limit: keep only the first `limit` samples of each split.
    download: `source="tfds"` only: let TFDS download and prepare CIFAR-10 if absent.

  Returns:
    `(train, test)` `Dataset`s, `kind="analog"`, labels 0..9 (`CLASS_NAMES`).

  Raises:
    FileNotFoundError: missing directory or batch file (names the layout).
    ValueError: a truncated batch file, an unknown `source` or batch number.
  """
  if source == "auto":
    source = "tfds" if data_dir is None else "bin"
  if source == "bin":
    bad = [b for b in train_batches if b not in (1, 2, 3, 4, 5)]
    if bad or not train_batches:
      raise ValueError(f"load_cifar10: train_batches must be a non-empty subset of 1..5, "
                       f"got {tuple(train_batches)}")
    directory = _batch_dir(data_dir)
    train = _read_files([directory / f"data_batch_{b}.bin" for b in train_batches], limit)
    test = _read_files([directory / "test_batch.bin"], limit)
  elif source == "tfds":
    train, test = (
        tfds_source.read_tfds_split(
            "cifar10", s, data_dir=None if data_dir is None else str(data_dir),
            download=download, limit=limit)
        for s in ("train", "test"))
  else:
    raise ValueError(f"load_cifar10: source must be 'auto', 'bin' or 'tfds', got {source!r}")
  return tuple(
      common.Dataset(x=im.astype(np.float32) / 255.0, y=lab, num_classes=10,
                     class_names=CLASS_NAMES, kind="analog")
      for im, lab in (train, test))
