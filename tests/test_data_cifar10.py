"""CIFAR-10: the 200 real images of ../shared/data/cifar10-sample and a mocked TFDS."""

import numpy as np
import pytest

from bpsr_jax import data
from bpsr_jax.data import cifar10

RECORD = 3073
# The first ten labels of CIFAR-10's data_batch_1: frog truck truck deer automobile
# automobile bird horse ship cat.
FIRST_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


@pytest.fixture()
def sample_path(shared_data):
  return shared_data / "cifar10-sample" / "sample_batch.bin"


def test_read_sample_batch(sample_path, shared_data):
  images, labels = cifar10.read_cifar10_bin(sample_path)
  assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and labels[:10].tolist() == FIRST_LABELS
  raw = np.fromfile(sample_path, np.uint8)  # independent: every 3073rd byte is a label
  np.testing.assert_array_equal(labels, raw[::RECORD])
  # Pixel (row 0, col 5) of image 3: R, G, B planes at offsets 0, 1024, 2048 of the record.
  rec = raw[3 * RECORD + 1:4 * RECORD]
  np.testing.assert_array_equal(images[3, 0, 5], [rec[5], rec[1024 + 5], rec[2048 + 5]])
  names = (shared_data / "cifar10-sample" / "batches.meta.txt").read_text().split()
  assert tuple(names) == cifar10.CLASS_NAMES
  print("\nCIFAR-10 sample label histogram:",
        dict(zip(cifar10.CLASS_NAMES, np.bincount(labels, minlength=10).tolist())))


@pytest.fixture()
def batch_dir(tmp_path, sample_path):
  """A binary-batch folder holding the sample as data_batch_1.bin and test_batch.bin."""
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  for name in ("data_batch_1.bin", "test_batch.bin"):
    (folder / name).symlink_to(sample_path)
  return folder


def test_load_binary_batches(batch_dir, sample_path):
  train, test = data.load_cifar10(batch_dir, train_batches=(1,))
  assert train.x.shape == (200, 32, 32, 3) and test.x.shape == (200, 32, 32, 3)
  assert train.x.dtype == np.float32 and 0.0 <= train.x.min() and train.x.max() <= 1.0
  assert train.kind == "analog" and train.class_names[6] == "frog"
  images, labels = cifar10.read_cifar10_bin(sample_path)
  np.testing.assert_allclose(train.x, images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(test.y, labels)
  # The parent folder of cifar-10-batches-bin/ works too (the tarball's layout).
  small, _ = data.load_cifar10(batch_dir.parent, train_batches=(1,), limit=7)
  assert small.x.shape == (7, 32, 32, 3)


def test_errors(batch_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"data_batch_2.bin not found.*data_batch_1.bin"):
    data.load_cifar10(batch_dir)  # all five training batches by default
  with pytest.raises(FileNotFoundError, match=r"nope.*data_batch_1.bin .. data_batch_5.bin"):
    data.load_cifar10(tmp_path / "nope")
  with pytest.raises(ValueError, match="train_batches"):
    data.load_cifar10(batch_dir, train_batches=(6,))
  truncated = tmp_path / "data_batch_1.bin"
  truncated.write_bytes((batch_dir / "data_batch_1.bin").read_bytes()[:RECORD * 3 + 100])
  with pytest.raises(ValueError, match=r"data_batch_1.bin.*multiple of 3073.*truncated"):
    cifar10.read_cifar10_bin(truncated)
  with pytest.raises(ValueError, match="source"):
    data.load_cifar10(batch_dir, source="pickle")


def test_tfds_route_reads_the_records_of_the_real_file(sample_path):
  # TFDS cannot prepare CIFAR-10 offline: its data source is replaced by the 200 real
  # records of sample_batch.bin, decoded here (label byte, then R, G, B planes of 32x32)
  # into TFDS's cifar10 features (image uint8 [32, 32, 3], label int). The route must give
  # those images / 255 and labels, in order.
  tfds = pytest.importorskip("tensorflow_datasets")
  raw = np.fromfile(sample_path, np.uint8).reshape(200, RECORD)
  labels = raw[:, 0].astype(np.int64)
  images = raw[:, 1:].reshape(200, 3, 32, 32).transpose(0, 2, 3, 1)
  halves = {"train": slice(0, 120), "test": slice(120, 200)}

  def as_data_source(builder, split, *args, **kwargs):
    assert builder.name == "cifar10"
    return [{"image": images[i], "label": int(labels[i])}
            for i in range(200)[halves[split]]]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    train, test = data.load_cifar10()  # no data_dir: the TFDS route
  for ds, split in ((train, "train"), (test, "test")):
    assert ds.x.dtype == np.float32 and ds.class_names == cifar10.CLASS_NAMES
    np.testing.assert_array_equal(ds.x, images[halves[split]].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ds.y, labels[halves[split]])
  assert train.y[:10].tolist() == FIRST_LABELS
