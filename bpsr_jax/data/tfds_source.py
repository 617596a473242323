"""Reading image classification splits through `tfds.data_source` (no TensorFlow needed).

`tfds.data_source(name, split=...)` gives random access to a prepared TFDS dataset
(ArrayRecord files); with `download=True` TFDS downloads and prepares it first (needs
a network). Used by the MNIST and CIFAR10 loaders' `source="tfds"` route.
"""

from __future__ import annotations

import numpy as np

__all__ = ["read_tfds_split"]


def read_tfds_split(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Reads `(images uint8 [N, H, W, C], labels int32 [N])` of a TFDS split.

  Args:
    name: TFDS name, e.g. `"mnist"`, `"cifar10"` (features `image`, `label`).
    split: `"train"` or `"test"`.
    data_dir: TFDS data directory (default: TFDS's, `~/tensorflow_datasets`).
    download: let TFDS download and prepare the dataset if it is absent.
    limit: read only the first `limit` records.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"source='tfds' needs tensorflow-datasets (pip install 'bpsr_jax[data]') to read {name!r}"
    ) from e
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  except Exception as e:  # TFDS raises several types for a missing/unprepared dataset.
    raise FileNotFoundError(
        f"tfds.data_source({name!r}, split={split!r}, data_dir={data_dir!r}) failed: {e}. "
        f"Prepare it with `tfds build {name}` (or download=True on a machine with a network), "
        f"or use the loader's local route with the dataset's original files.") from e
  n = len(source) if limit is None else min(int(limit), len(source))
  images, labels = [], []
  for i in range(n):
    record = source[i]
    images.append(np.asarray(record["image"], np.uint8))
    labels.append(int(record["label"]))
  if not images:
    raise ValueError(f"TFDS {name!r} split {split!r} is empty")
  return np.stack(images), np.asarray(labels, np.int32)
