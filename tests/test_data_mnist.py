"""MNIST loader on the shipped IDX files, the real files in ../shared/data, tiny IDX files and
a mocked TFDS."""

import gzip
import hashlib
import shutil
import struct

import numpy as np
import pytest

from bpsr_jax import data
from bpsr_jax.data import mnist_loader
from bpsr_jax.errors import DataError

# The canonical label histograms of MNIST (train 60,000, test 10,000).
TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def shipped():
  return data.load_mnist()


def test_shipped_counts_shapes_labels(shipped):
  train, test = shipped
  assert train.x.shape == (60000, 28, 28, 1) and test.x.shape == (10000, 28, 28, 1)
  assert train.x.dtype == np.float32 and train.y.dtype == np.int32
  assert train.kind == "analog" and train.num_classes == 10
  assert train.class_names == tuple("0123456789")
  np.testing.assert_array_equal(np.bincount(train.y), TRAIN_HIST)
  np.testing.assert_array_equal(np.bincount(test.y), TEST_HIST)
  assert train.x.min() == 0.0 and train.x.max() == 1.0
  # Well-known first labels of each split.
  assert train.y[:5].tolist() == [5, 0, 4, 1, 9]
  assert test.y[:5].tolist() == [7, 2, 1, 0, 4]
  # Mean pixel intensity of MNIST's training set: 0.1307.
  assert abs(float(train.x.mean()) - 0.1307) < 5e-4


def test_shipped_files_match_shared_data(shared_data):
  sums = {}
  for line in (shared_data / "SHA256SUMS").read_text().splitlines():
    digest, name = line.split()
    sums[name.removeprefix("./")] = digest
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shipped = mnist_loader.SHIPPED_DIR / name
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == sums[f"mnist/{name}"]
  assert "CC BY-SA 3.0" in (mnist_loader.SHIPPED_DIR / "LICENSE.txt").read_text()


def test_load_from_shared_directory(shared_data, shipped):
  train, test = data.load_mnist(shared_data / "mnist", limit=100)
  np.testing.assert_array_equal(train.x, shipped[0].x[:100])
  np.testing.assert_array_equal(test.y, shipped[1].y[:100])


def _write_idx(path, array, compress):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + array.astype(np.uint8).tobytes()
  if compress:
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
      f.write(payload)
  else:
    path.write_bytes(payload)


def _tiny_idx_dir(tmp_path, compress=False):
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (("train", 6), ("test", 4)):
    im = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    lab = rng.integers(0, 10, n).astype(np.uint8)
    images_stem, labels_stem = mnist_loader.IDX_FILES[split]
    _write_idx(tmp_path / images_stem, im, compress)
    _write_idx(tmp_path / labels_stem, lab, compress)
    arrays[split] = (im, lab)
  return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_any_idx_directory(tmp_path, compress):
  arrays = _tiny_idx_dir(tmp_path, compress)
  train, test = data.load_mnist(tmp_path)
  np.testing.assert_allclose(train.x[..., 0], arrays["train"][0] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(test.y, arrays["test"][1])
  assert train.x.shape == (6, 28, 28, 1)


def test_errors_name_path_and_layout(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"does_not_exist.*train-images-idx3-ubyte"):
    data.load_mnist(tmp_path / "does_not_exist")
  with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*not found"):
    data.load_mnist(tmp_path)  # exists, but empty: a wrong --data_dir
  with pytest.raises(ValueError, match="source"):
    data.load_mnist(source="kaggle")


def test_truncated_files(tmp_path):
  _tiny_idx_dir(tmp_path)
  raw = tmp_path / "train-images-idx3-ubyte"
  raw.write_bytes(raw.read_bytes()[:-100])
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*must be \d+ bytes.*truncated"):
    data.load_mnist(tmp_path)
  gz_dir = tmp_path / "gz"
  gz_dir.mkdir()
  for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(mnist_loader.SHIPPED_DIR / name, gz_dir / name)
  blob = (mnist_loader.SHIPPED_DIR / "train-images-idx3-ubyte.gz").read_bytes()
  (gz_dir / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz.*truncated"):
    data.load_mnist(gz_dir)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
  with pytest.raises(ValueError, match="not an IDX file"):
    data.read_idx(tmp_path / "bad")


def _raw_idx(name):
  """Raw uint8 contents of a shipped IDX file after its header (magic, dims; big-endian)."""
  raw = gzip.decompress((mnist_loader.SHIPPED_DIR / name).read_bytes())
  ndim = raw[3]
  dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def test_tfds_route_reads_the_records_of_the_real_files(tmp_path):
  # TFDS cannot prepare MNIST offline: its data source is replaced by the records of the
  # real MNIST files (decoded here with gzip/struct), shaped as TFDS's mnist features
  # (image uint8 [28, 28, 1], label int). The route must give those images / 255 and
  # those labels, in order.
  tfds = pytest.importorskip("tensorflow_datasets")
  files = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
           "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
  raw = {k: (_raw_idx(i), _raw_idx(l)) for k, (i, l) in files.items()}

  def as_data_source(builder, split, *args, **kwargs):
    assert builder.name == "mnist"
    images, labels = raw[split]
    return [{"image": images[i][:, :, None], "label": int(labels[i])} for i in range(1000)]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    train, test = data.load_mnist(source="tfds", data_dir=str(tmp_path))
    small, _ = data.load_mnist(source="tfds", limit=5)
  for ds, split in ((train, "train"), (test, "test")):
    images, labels = raw[split]
    assert ds.x.shape == (1000, 28, 28, 1) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x[..., 0], images[:1000].astype(np.float32) / 255.0)
    assert ds.y.dtype == np.int32
    np.testing.assert_array_equal(ds.y, labels[:1000])
  assert train.y[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's first training labels
  assert len(small) == 5
  np.testing.assert_array_equal(small.x, train.x[:5])


# --------------------------------------------------------------------------------------
# Labels outside the classes (issue 14), on a corrupted copy of the real files.


def test_label_outside_0_9_is_a_data_error(tmp_path, shared_data):
  for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
    shutil.copy(shared_data / "mnist" / f"{name}.gz", tmp_path / f"{name}.gz")
  with gzip.open(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", "rb") as f:
    raw = bytearray(f.read())
  raw[8 + 7] = 200  # label of test image 7 (after the 8-byte header)
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
  with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 200 of image 7 is "
                                      r"outside 0..9"):
    data.load_mnist(tmp_path)
