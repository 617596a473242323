"""MNIST: the four original IDX files (shipped with the package), any IDX folder, or TFDS.

The package ships the canonical gzipped IDX files in `bpsr_jax/data/mnist/`
(CC BY-SA 3.0, Y. LeCun, C. Cortes, C. Burges; see the LICENSE.txt there), so the
main example needs no network. (The module is not named `mnist.py` so that it does
not share its name with that data folder.)
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from bpsr_jax.data import common
from bpsr_jax.errors import DataError
from bpsr_jax.data import tfds_source

__all__ = ["load_mnist", "read_idx", "SHIPPED_DIR", "IDX_FILES"]

SHIPPED_DIR = pathlib.Path(__file__).resolve().parent / "mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = tuple(str(d) for d in range(10))
_LAYOUT = ("the four MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
           "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally gzipped, '.gz')")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
  """Reads an IDX file (optionally gzipped): magic `00 00 <dtype> <ndim>`, big-endian
  uint32 dims, then the data.

  Raises:
    ValueError: not an IDX file, or truncated/oversized (names the file and the
      expected byte count).
  """
  path = pathlib.Path(path)
  try:
    if path.suffix == ".gz":
      with gzip.open(path, "rb") as f:
        raw = f.read()
    else:
      raw = path.read_bytes()
  except (EOFError, gzip.BadGzipFile, OSError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise DataError(f"{path}: cannot read the gzipped IDX file ({e}); the file is truncated "
                     "or corrupt, re-download it") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise DataError(f"{path}: not an IDX file (expected magic bytes 00 00 <type> <ndim>)")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = header + int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    raise DataError(
        f"{path}: IDX file of shape {shape} must be {expected} bytes, got {len(raw)} "
        "(truncated or corrupt file)")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem + ".gz", stem):
    if (directory / name).is_file():
      return directory / name
  raise FileNotFoundError(
      f"MNIST: {directory / stem}[.gz] not found; expected a directory with {_LAYOUT} "
      "(or use source='tfds')")


def _read_split(directory: pathlib.Path, split: str, limit: int | None):
  images_stem, labels_stem = IDX_FILES[split]
  images_path, labels_path = _find(directory, images_stem), _find(directory, labels_stem)
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
    raise DataError(f"MNIST: {images_path} must hold [N, 28, 28] images and {labels_path} "
                     f"[N] labels, got {images.shape} and {labels.shape}")
  if len(images) != len(labels):
    raise DataError(f"MNIST: {len(images)} images in {images_path} but {len(labels)} labels "
                     f"in {labels_path}")
  if labels.size and labels.max() > 9:
    i = int(np.argmax(labels > 9))
    raise DataError(f"MNIST: {labels_path}: label {labels[i]} of image {i} is outside 0..9 "
                    "(corrupt label file?)")
  if limit is not None:
    images, labels = images[:limit], labels[:limit]
  return images[..., None], labels.astype(np.int32)


def load_mnist(
    data_dir: str | pathlib.Path | None = None,
    *,
    source: str = "auto",
    limit: int | None = None,
    download: bool = True,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads MNIST (60,000 train / 10,000 test) as analog images.

  Normalization: pixel / 255, float32 in `[0, 1]`, `[N, 28, 28, 1]` (channels-last).
  No mean subtraction (rate and rank-order coding need values in `[0, 1]`).

  Args:
    data_dir: with `source="auto"` or `"idx"`: a directory holding the four IDX files
      (gzipped or not); None uses the files shipped in the package. With
      `source="tfds"`: the TFDS data directory (None: TFDS's default).
    source: `"auto"`/`"idx"` (IDX files) or `"tfds"` (`tfds.data_source("mnist")`).
    limit: keep only the first `limit` samples of each split (smoke tests).
    download: `source="tfds"` only: let TFDS download and prepare MNIST if absent.

  Returns:
    `(train, test)` `Dataset`s, `kind="analog"`, labels 0..9.

  Raises:
    FileNotFoundError: missing directory or files (the message names the layout).
    ValueError: a truncated or corrupt IDX file, an unknown `source`.
  """
  if source in ("auto", "idx"):
    directory = SHIPPED_DIR if data_dir is None else common.require_dir(data_dir, "MNIST", _LAYOUT)
    splits = [_read_split(directory, s, limit) for s in ("train", "test")]
    splits = [(im.astype(np.float32) / 255.0, lab) for im, lab in splits]
  elif source == "tfds":
    splits = []
    for s in ("train", "test"):
      im, lab = tfds_source.read_tfds_split(
          "mnist", s, data_dir=None if data_dir is None else str(data_dir), download=download,
          limit=limit)
      splits.append((im.astype(np.float32) / 255.0, lab))
  else:
    raise ValueError(f"load_mnist: source must be 'auto', 'idx' or 'tfds', got {source!r}")
  return tuple(
      common.Dataset(x=x, y=y, num_classes=10, class_names=CLASS_NAMES, kind="analog")
      for x, y in splits)
