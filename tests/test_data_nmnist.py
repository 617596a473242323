"""N-MNIST: the real sample in ../shared/data/nmnist plus synthetic files in the 40-bit format."""

import pathlib
import shutil

import numpy as np
import pytest

from bpsr_jax import data
from bpsr_jax import encode
from bpsr_jax.data import nmnist
from bpsr_jax.errors import ConfigError
from bpsr_jax.errors import DataError

pytest.importorskip("tonic")


def encode_nmnist_bin(x, y, t_us, p) -> bytes:
  """Writes events in N-MNIST's 40-bit format (independent of tonic's reader):
  byte 0 x, byte 1 y, byte 2 = polarity << 7 | t[22:16], bytes 3-4 = t[15:0]."""
  x, y, t, p = (np.asarray(a, np.int64) for a in (x, y, t_us, p))
  assert (t < 2**23).all()
  raw = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1)
  return raw.astype(np.uint8).tobytes()


def _digit_events(d, rng, n=200):
  """Events on column 3 * d (so the digit is visible in the frames), random times."""
  x = np.full(n, 3 * d)
  y = rng.integers(0, 34, n)
  t = np.sort(rng.integers(0, 300_000, n))
  p = rng.integers(0, 2, n)
  return x, y, t, p


def _write_layout(root):
  """Train/<d>/<id>.bin for digits 0..9 (2 files each) and Test/<d>/<id>.bin (1 each)."""
  rng = np.random.default_rng(0)
  for split, per_digit in (("Train", 2), ("Test", 1)):
    for d in range(10):
      folder = root / split / str(d)
      folder.mkdir(parents=True)
      for k in range(per_digit):
        (folder / f"{100 * d + k:05d}.bin").write_bytes(encode_nmnist_bin(*_digit_events(d, rng)))
  return root


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
  return _write_layout(tmp_path_factory.mktemp("nmnist"))


def test_real_sample_frames(shared_data):
  events = nmnist.read_nmnist_events(shared_data / "nmnist" / "sample_nmnist.bin")
  assert len(events) == 21625 // 5  # 5 bytes per event, no overflow markers in this file
  assert events["x"].max() <= 33 and events["y"].max() <= 33
  assert set(np.unique(events["p"])) == {0, 1}
  assert np.all(np.diff(events["t"]) >= 0) and 250_000 < events["t"].max() < 2**23
  frames = encode.frame_events(events, time_steps=20)
  assert frames.shape == (20, 2, 34, 34) and frames.dtype == np.uint8
  assert frames.max() == 1 and frames.sum() > 1000
  counts = encode.frame_events(events, time_steps=20, binary=False)
  # tonic's n_time_bins drops only the events after the last full bin.
  assert 0.99 * len(events) <= counts.sum() <= len(events)


def test_writer_roundtrip_through_tonic_reader(tmp_path):
  rng = np.random.default_rng(1)
  x, y, t, p = _digit_events(4, rng, n=50)
  path = tmp_path / "a.bin"
  path.write_bytes(encode_nmnist_bin(x, y, t, p))
  ev = nmnist.read_nmnist_events(path)
  for field, want in zip("xytp", (x, y, t, p)):
    np.testing.assert_array_equal(ev[field], want)


def test_load_subset_layout(nmnist_dir):
  train, test = data.load_nmnist(nmnist_dir, time_steps=8)
  assert train.x.shape == (20, 8, 34, 34, 2) and test.x.shape == (10, 8, 34, 34, 2)
  assert train.kind == "spikes" and train.x.dtype == np.uint8 and train.time_steps == 8
  np.testing.assert_array_equal(np.bincount(train.y), [2] * 10)
  np.testing.assert_array_equal(test.y, np.arange(10))
  # Synthetic digit d only fires on column x = 3 d: channels-last [T, H(y), W(x), P].
  for i in range(10):
    active_columns = np.flatnonzero(test.x[i].sum(axis=(0, 1, 3)))
    assert active_columns.tolist() == [3 * i]
  tm = data.to_time_major(train.x[:4])
  assert tm.shape == (8, 4, 34, 34, 2)


def test_load_with_the_real_sample(tmp_path, shared_data):
  root = _write_layout(tmp_path)
  shutil.copy(shared_data / "nmnist" / "sample_nmnist.bin", root / "Train" / "0" / "99999.bin")
  train, _ = data.load_nmnist(root, time_steps=8)
  assert len(train) == 21 and np.bincount(train.y)[0] == 3
  real = int(np.flatnonzero(train.meta["file"] == "99999.bin")[0])
  events = nmnist.read_nmnist_events(root / "Train" / "0" / "99999.bin")
  np.testing.assert_array_equal(
      train.x[real], encode.frame_events(events, time_steps=8, channels_last=True))
  assert train.x[real].shape == (8, 34, 34, 2) and train.x[real].sum() > 500


def test_download_route_uses_tonic(tmp_path, monkeypatch):
  """download=True calls tonic's NMNIST(save_to=data_dir) for both splits (mocked: no network)."""
  import tonic

  calls = []

  class FakeNMNIST:
    def __init__(self, save_to, train=True):
      calls.append((save_to, train))
      if not (pathlib.Path(save_to) / "NMNIST" / "Train").exists():
        _write_layout(pathlib.Path(save_to) / "NMNIST")

  monkeypatch.setattr(tonic.datasets, "NMNIST", FakeNMNIST)
  train, test = data.load_nmnist(tmp_path / "dl", time_steps=4, download=True)
  assert calls == [(str(tmp_path / "dl"), True), (str(tmp_path / "dl"), False)]
  assert len(train) == 20 and len(test) == 10


def test_load_options(nmnist_dir):
  train, _ = data.load_nmnist(nmnist_dir, time_steps=5, limit=6, seed=1)
  assert len(train) == 6
  again, _ = data.load_nmnist(nmnist_dir, time_steps=5, limit=6, seed=1)
  np.testing.assert_array_equal(train.meta["file"], again.meta["file"])
  fixed, _ = data.load_nmnist(nmnist_dir, time_steps=3, duration_us=300_000,
                              first_saccade_only=True,
                              limit=4)
  assert fixed.x.shape == (4, 3, 34, 34, 2)
  counts, _ = data.load_nmnist(nmnist_dir, time_steps=2, binary=False, limit=2)
  assert counts.x.max() > 1


def test_tonic_download_location_is_accepted(tmp_path, nmnist_dir):
  shutil.copytree(nmnist_dir, tmp_path / "NMNIST")
  train, _ = data.load_nmnist(tmp_path, time_steps=2, limit=3)
  assert len(train) == 3


def test_errors(tmp_path, nmnist_dir):
  with pytest.raises(FileNotFoundError, match=r"missing.*Train/<digit>/<id>.bin"):
    data.load_nmnist(tmp_path / "missing", time_steps=4)
  with pytest.raises(FileNotFoundError, match=r"NMNIST/Train.*Train/<digit>/<id>.bin"):
    data.load_nmnist(tmp_path, time_steps=4)  # exists but wrong layout
  (tmp_path / "Train" / "3").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=r"no <digit>/<id>.bin files in .*Train"):
    data.load_nmnist(tmp_path, time_steps=4)
  shutil.copy(nmnist_dir / "Train" / "3" / "00300.bin", tmp_path / "Train" / "3" / "1.bin")
  with pytest.raises(FileNotFoundError, match=r"Test not found"):
    data.load_nmnist(tmp_path, time_steps=4)
  bad = tmp_path / "bad.bin"
  bad.write_bytes((nmnist_dir / "Test" / "1" / "00100.bin").read_bytes()[:-2])
  with pytest.raises(ValueError, match=r"bad.bin.*not a multiple of 5.*truncated"):
    nmnist.read_nmnist_events(bad)


# --------------------------------------------------------------------------------------
# Empty recordings and settings that empty every input (issue 14).


def test_empty_bin_is_a_data_error(tmp_path, shared_data):
  root = _write_layout(tmp_path)
  (root / "Train" / "3" / "00300.bin").write_bytes(b"")
  with pytest.raises(DataError, match=r"00300.bin: empty file \(0 events\)"):
    data.load_nmnist(root, time_steps=4)


@pytest.mark.parametrize("duration_us", [-5, 0, 1, float("nan")])
def test_duration_shorter_than_the_bins_is_rejected_up_front(tmp_path, duration_us):
  with pytest.raises(ConfigError, match=r"duration_us=.* \(--duration_us\) must be at least "
                                        r"time_steps=4 microseconds"):
    data.load_nmnist(tmp_path / "absent", time_steps=4, duration_us=duration_us)


def test_no_event_in_the_framed_span_is_a_config_error(tmp_path, shared_data):
  """T=1, duration 1 us passes the up-front check; the real sample starts at 654 us."""
  root = tmp_path / "nm"
  for split in ("Train", "Test"):
    (root / split / "0").mkdir(parents=True)
    shutil.copy(shared_data / "nmnist" / "sample_nmnist.bin", root / split / "0" / "1.bin")
  with pytest.raises(ConfigError, match=r"every one of the 1 train recordings is empty after "
                                        r"framing with duration_us=1"):
    data.load_nmnist(root, time_steps=1, duration_us=1)
