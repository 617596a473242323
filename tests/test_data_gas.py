"""Gas sensor loaders on ../shared/data/gas-drift (8 batches) and gas-open-sampling (2 files)."""

import shutil

import numpy as np
import pytest

from bpsr_jax import data
from bpsr_jax import encode
from bpsr_jax.data import gas
from bpsr_jax.errors import DataError

BATCH_COUNTS = {1: 445, 2: 1244, 3: 1586, 4: 161, 5: 197, 6: 2300, 8: 294, 9: 470}


@pytest.fixture(scope="module")
def drift_dir(shared_data):
  return shared_data / "gas-drift"


@pytest.fixture(scope="module")
def open_dir(shared_data):
  return shared_data / "gas-open-sampling"


def test_drift_counts_per_batch_and_classes(drift_dir):
  train, test = data.load_gas_drift(drift_dir)
  batches = np.concatenate([train.meta["batch"], test.meta["batch"]])
  assert dict(zip(*np.unique(batches, return_counts=True))) == BATCH_COUNTS
  assert len(train) + len(test) == 6697
  assert train.class_names == ("Ethanol", "Ethylene", "Ammonia", "Acetaldehyde", "Acetone",
                               "Toluene")
  assert train.x.shape[1:] == (128,) and train.x.dtype == np.float32 and train.kind == "analog"
  for b, n in BATCH_COUNTS.items():  # independent: one sample per line, class before ';'
    lines = (drift_dir / f"batch{b}.dat").read_text().split("\n")
    lines = [l for l in lines if l.strip()]
    assert len(lines) == n
    expected = np.bincount([int(l.split(";")[0]) - 1 for l in lines], minlength=6)
    got = np.bincount(np.concatenate([train.y, test.y])[batches == b], minlength=6)
    np.testing.assert_array_equal(got, expected)
  hist = {k: train.class_histogram()[k] + test.class_histogram()[k] for k in train.class_names}
  print("\ngas drift class histogram (8 batches):", hist)


def test_drift_random_split_and_normalization(drift_dir):
  train, test = data.load_gas_drift(drift_dir, seed=0)
  n_tr, n_te = np.bincount(train.y), np.bincount(test.y)
  np.testing.assert_array_equal(n_te, np.round(0.2 * (n_tr + n_te)).astype(int))
  for ds in (train, test):
    assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
  # z-score on train: each feature's training median sits near the middle of [0, 1].
  assert 0.35 < float(np.median(train.x)) < 0.6
  raw, _, _ = gas.read_gas_drift_batch(drift_dir / "batch1.dat")
  assert raw[0, 0] == pytest.approx(15596.1621)  # first value of batch1.dat
  again, _ = data.load_gas_drift(drift_dir, seed=0)
  np.testing.assert_array_equal(again.x, train.x)
  mm, _ = data.load_gas_drift(drift_dir, normalization="minmax")
  np.testing.assert_allclose(mm.x.min(0), 0.0)
  np.testing.assert_allclose(mm.x.max(0), 1.0)
  spikes = encode.rank_order(train.x[:4], 20)  # the gas experiment's encoder
  assert spikes.shape == (20, 4, 128) and float(spikes.sum(0).max()) == 1.0


def test_drift_protocol_test_batches(drift_dir):
  train, test = data.load_gas_drift(drift_dir, test_batches=(8, 9), limit=None)
  assert set(np.unique(train.meta["batch"])) == {1, 2, 3, 4, 5, 6}
  assert set(np.unique(test.meta["batch"])) == {8, 9} and len(test) == 294 + 470
  small, small_test = data.load_gas_drift(drift_dir, batches=(1, 2), test_batches=(2,), limit=50)
  assert len(small) == 50 and len(small_test) == 50
  assert set(small.meta["batch"]) == {1} and set(small_test.meta["batch"]) == {2}
  with pytest.raises(ValueError, match=r"test_batches \[7\]"):
    data.load_gas_drift(drift_dir, test_batches=(7,))


def test_drift_errors(tmp_path, drift_dir):
  with pytest.raises(FileNotFoundError, match=r"nowhere.*batch1.dat .. batch10.dat"):
    data.load_gas_drift(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"no batch<k>.dat"):
    data.load_gas_drift(tmp_path)
  with pytest.raises(FileNotFoundError, match=r"batch7.dat not found"):
    data.load_gas_drift(drift_dir, batches=(7,))
  text = (drift_dir / "batch4.dat").read_text()
  (tmp_path / "batch4.dat").write_text(text[: len(text) // 2])  # cut mid-line
  with pytest.raises(ValueError, match=r"batch4.dat:\d+: .*truncated"):
    data.load_gas_drift(tmp_path)


def test_open_sampling_recordings(open_dir):
  files = sorted(p for p in open_dir.rglob("*") if p.is_file())
  assert len(files) == 2
  for path, gas_name, ppm, rows in ((files[0], "Butanol", 100.0, 11708),
                                    (files[1], "Methane", 1000.0, 11688)):
    assert gas.parse_open_sampling_name(path.name) == (gas_name, ppm, 7)
    t, s = gas.read_open_sampling_recording(path)
    assert s.shape == (rows, 72) and t.shape == (rows,)
    assert 259.0 < t[-1] < 261.0
    # Independent parse of row 0: columns 12..20 are board 1 (flag, 8 sensors), etc.
    first = path.read_text().split("\n", 1)[0].rstrip("\t").split("\t")
    assert len(first) == 92
    expected = np.asarray(first[11:], float).reshape(9, 9)[:, 1:].ravel()
    np.testing.assert_array_equal(s[0], expected)


def test_open_sampling_loader(open_dir):
  train, test = data.load_gas_open_sampling(open_dir)
  assert train.x.shape == (2, 72) and len(test) == 0  # one recording per gas stays in train
  assert [train.class_names[c] for c in train.y] == ["Butanol", "Methane"]
  assert train.num_classes == 10 and train.meta["ppm"].tolist() == [100.0, 1000.0]
  assert train.meta["board_voltage"].tolist() == [500.0, 500.0]
  assert train.x.min() >= 0.0 and train.x.max() <= 1.0 and train.x.dtype == np.float32
  t, s = gas.read_open_sampling_recording(
      sorted(p for p in open_dir.rglob("*") if p.is_file())[0])
  feats = gas.open_sampling_features(t, s)
  steady = s[(t >= 150) & (t < 200)].mean(0)
  base = s[t < 15].mean(0)
  np.testing.assert_allclose(feats, steady / base - 1)
  assert feats.shape == (72,)


def test_open_sampling_errors(tmp_path, open_dir):
  with pytest.raises(FileNotFoundError, match=r"missing.*_mfc_setPoint_<Gas>_<ppm>ppm_p<k>"):
    data.load_gas_open_sampling(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match=r"no recordings under"):
    data.load_gas_open_sampling(tmp_path)
  with pytest.raises(ValueError, match=r"unknown gas 'Xenon'"):
    gas.parse_open_sampling_name("x_mfc_setPoint_Xenon_10ppm_p1")
  src = sorted(p for p in open_dir.rglob("*") if p.is_file())[0]
  lines = src.read_text().split("\n")
  cut = tmp_path / src.name
  cut.write_text("\n".join(lines[:100]) + "\n" + lines[100][:40])
  with pytest.raises(ValueError, match=r"cannot parse as 92 tab-separated columns"):
    gas.read_open_sampling_recording(cut)
  # Copies under a gas folder (the archive's layout) are found recursively.
  folder = tmp_path / "other" / "Butanol_100"
  folder.mkdir(parents=True)
  shutil.copy(src, folder / src.name)
  train, _ = data.load_gas_open_sampling(tmp_path / "other")
  assert len(train) == 1


# --------------------------------------------------------------------------------------
# Corrupt values and feature indices (issue 14), on corrupted copies of batch4.dat.


@pytest.mark.parametrize("token, new", [
    ("5:", "5:inf"),      # read as 0 for every sample before
    ("5:", "5:1e308"),    # NaN for every training sample before (overflowing variance)
    ("5:", "5:nan"),
    ("1:", "-3:"),        # wrote into column 125 before
    ("1:", "129:"),
    ("1:", "0:"),
    ("2:", "1:"),         # feature 1 twice (and feature 2 missing)
])
def test_drift_bad_values_and_indices_are_data_errors(tmp_path, drift_dir, token, new):
  lines = (drift_dir / "batch4.dat").read_text().splitlines()
  head, *pairs = lines[2].split()
  pairs = [(new + p.split(":")[1] if new.endswith(":") else new) if p.startswith(token) else p
           for p in pairs]
  lines[2] = " ".join([head] + pairs)
  (tmp_path / "batch4.dat").write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"batch4.dat:3: bad feature '[-\w.:]+': expected a "
                                      r"feature index in 1..128, each once, with a finite"):
    data.load_gas_drift(tmp_path)


def test_open_sampling_non_finite_value_is_a_data_error(tmp_path, open_dir):
  src = next(p for p in open_dir.rglob("*") if p.is_file())
  lines = src.read_text().splitlines()
  cols = lines[5].split("\t")
  cols[20] = "inf"
  lines[5] = "\t".join(cols)
  (tmp_path / src.name).write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"row 6, column 21 is inf; expected finite values"):
    gas.read_open_sampling_recording(tmp_path / src.name)
