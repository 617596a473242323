"""MIT-BIH on the 48 real records of ../shared/data/mitdb, checked against wfdb.rdann."""

import collections
import shutil

import numpy as np
import pytest

from bpsr_jax import data
from bpsr_jax import encode
from bpsr_jax.data import mitbih
from bpsr_jax.errors import ConfigError
from bpsr_jax.errors import DataError

wfdb = pytest.importorskip("wfdb")

AAMI = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
BEFORE, AFTER, SIG_LEN = 252, 180, 650000  # 0.7 s and 0.5 s at 360 Hz


@pytest.fixture(scope="module")
def mitdb(shared_data):
  return shared_data / "mitdb"


@pytest.fixture(scope="module")
def annotations(mitdb):
  """Independent truth: every record's annotations read directly with wfdb."""
  out = {}
  for r in mitbih.RECORDS:
    ann = wfdb.rdann(str(mitdb / r), "atr")
    out[r] = (np.asarray(ann.symbol), np.asarray(ann.sample))
  return out


@pytest.fixture(scope="module")
def random_split(mitdb):
  return data.load_mitbih(mitdb, classes=5, split="random", time_steps=40, seed=0)


def _expected_beats(annotations, symbols):
  """Per record: annotations with a kept symbol whose window fits in the record."""
  counts = {}
  for r, (sym, smp) in annotations.items():
    ok = np.isin(sym, list(symbols)) & (smp >= BEFORE) & (smp + AFTER <= SIG_LEN)
    counts[r] = collections.Counter(sym[ok].tolist())
  return counts


def test_record_list_matches_files(mitdb):
  assert sorted(p.stem for p in mitdb.glob("*.hea")) == list(mitbih.RECORDS)
  assert len(mitbih.DS1) == len(mitbih.DS2) == 22
  assert not set(mitbih.DS1) & set(mitbih.DS2)
  assert set(mitbih.DS1) | set(mitbih.DS2) | set(mitbih.PACED_RECORDS) == set(mitbih.RECORDS)


def test_beat_counts_per_record_agree_with_annotations(random_split, annotations):
  train, test = random_split
  symbols = "".join(AAMI.values())
  expected = _expected_beats(annotations, symbols)
  records = np.concatenate([train.meta["record"], test.meta["record"]])
  syms = np.concatenate([train.meta["symbol"], test.meta["symbol"]])
  for r in mitbih.RECORDS:
    got = collections.Counter(syms[records == r].tolist())
    assert got == expected[r], r
  # Only beats in the first 0.7 s / last 0.5 s of a record are dropped.
  raw_total = sum(np.isin(s, list(symbols)).sum() for s, _ in annotations.values())
  assert 0 < raw_total - (len(train) + len(test)) < 100


def test_aami_histogram_and_labels(random_split, annotations):
  train, test = random_split
  expected = _expected_beats(annotations, "".join(AAMI.values()))
  hist = {c: sum(cnt[s] for cnt in expected.values() for s in syms) for c, syms in AAMI.items()}
  got = {c: train.class_histogram()[c] + test.class_histogram()[c] for c in AAMI}
  print("\nMIT-BIH AAMI class histogram (48 records):", got,
        "\n  train:", train.class_histogram(), "\n  test: ", test.class_histogram())
  assert got == hist
  assert train.class_names == ("N", "S", "V", "F", "Q")
  for ds in (train, test):  # label = AAMI class of the annotation symbol
    for c, syms in enumerate(AAMI.values()):
      assert np.isin(ds.meta["symbol"][ds.y == c], list(syms)).all()


def test_random_split_is_stratified_and_seeded(random_split, mitdb):
  train, test = random_split
  assert train.x.shape[1:] == (40, 4) and train.x.dtype == np.uint8 and train.kind == "spikes"
  assert train.x.max() > 1  # crossing counts per step (binary=False)
  binary, _ = data.load_mitbih(mitdb, records=("119",), binary=True, seed=0)
  assert set(np.unique(binary.x)) == {0, 1}
  n_tr, n_te = np.bincount(train.y, minlength=5), np.bincount(test.y, minlength=5)
  np.testing.assert_array_equal(n_te, np.round(0.2 * (n_tr + n_te)).astype(int))
  keys = lambda ds: set(zip(ds.meta["record"].tolist(), ds.meta["sample"].tolist()))
  assert not keys(train) & keys(test)
  other, _ = data.load_mitbih(mitdb, records=("100", "119"), seed=0)
  assert set(np.unique(other.meta["record"])) == {"100", "119"}


def _rdrecord_window(mitdb, record, sample, leads=("MLII", "V1")):
  """``[BEFORE + AFTER, len(leads)]`` mV around an R peak, read by wfdb for that range."""
  rec = wfdb.rdrecord(str(mitdb / record), sampfrom=int(sample) - BEFORE,
                      sampto=int(sample) + AFTER, channel_names=list(leads))
  assert rec.sig_name == list(leads)
  return rec.p_signal


def test_spikes_are_level_crossings_of_the_beat(random_split, mitdb, annotations):
  # The window: the real samples [R - 0.7 s, R + 0.5 s) of the R peak that wfdb.rdann
  # gives, read by wfdb.rdrecord for just that range and those leads by name (no code of
  # the loader's windowing); the spikes: its level crossings.
  train, _ = random_split
  sym, samples = annotations["119"]
  for i in np.flatnonzero(train.meta["record"] == "119")[:5]:
    r = int(train.meta["sample"][i])
    assert r in samples and sym[list(samples).index(r)] == train.meta["symbol"][i]
    window = _rdrecord_window(mitdb, "119", r)
    # The annotated R peak is the extremum of MLII near the middle of the window.
    assert abs(int(np.argmax(np.abs(window[:, 0] - np.median(window[:, 0])))) - BEFORE) < 30
    np.testing.assert_array_equal(train.x[i], encode.level_crossing(
        window.astype(np.float32), 0.1, time_steps=40))
  beats = mitbih.read_record_beats(mitdb, "119", symbols="".join(AAMI.values()))
  j = int(np.flatnonzero(beats["sample"] == r)[0])
  np.testing.assert_allclose(beats["signal"][j], _rdrecord_window(mitdb, "119", r),
                             rtol=1e-6)
  assert beats["leads"].tolist() == ["MLII", "V1"]


def test_record_114_leads_are_swapped_back(mitdb):
  # Record 114's header stores V5 first and MLII second; the loader puts MLII first.
  assert wfdb.rdheader(str(mitdb / "114")).sig_name == ["V5", "MLII"]
  with open(mitdb / "114.hea") as f:
    lines = f.read().split("\n")
  assert lines[1].split()[-1] == "V5" and lines[2].split()[-1] == "MLII"
  beats = mitbih.read_record_beats(mitdb, "114", symbols="N")
  assert beats["leads"].tolist() == ["MLII", "V5"]
  for j in (0, 100, len(beats["sample"]) - 1):
    np.testing.assert_allclose(
        beats["signal"][j], _rdrecord_window(mitdb, "114", beats["sample"][j],
                                             ("MLII", "V5")), rtol=1e-6)


def test_inter_patient_and_18_classes(mitdb, annotations):
  train, test = data.load_mitbih(mitdb, classes=18, split="inter_patient")
  assert set(np.unique(train.meta["record"])) == set(mitbih.DS1)
  assert set(np.unique(test.meta["record"])) == set(mitbih.DS2)
  assert train.num_classes == 18 and len(set(train.class_names)) == 18
  expected = _expected_beats({r: annotations[r] for r in mitbih.DS2}, mitbih.CLASSES_18)
  total = collections.Counter()
  for cnt in expected.values():
    total.update(cnt)
  got = test.class_histogram()
  assert {k: v for k, v in got.items() if v} == dict(total)
  print("\nMIT-BIH 18-class histogram, DS1:", train.class_histogram(), "\n  DS2:", got)


def test_custom_mapping_and_unknown_mapping(mitdb):
  train, test = data.load_mitbih(mitdb, classes={"normal": "N", "pvc": "V"}, records=("119",),
                                 time_steps=10)
  assert train.class_names == ("normal", "pvc") and train.x.shape[1:] == (10, 4)
  assert set(np.concatenate([train.meta["symbol"], test.meta["symbol"]])) == {"N", "V"}
  with pytest.raises(ValueError, match="unknown class mapping 7"):
    data.load_mitbih(mitdb, classes=7)
  with pytest.raises(ValueError, match="mapped to two classes"):
    data.load_mitbih(mitdb, classes={"a": "NV", "b": "V"})
  with pytest.raises(ValueError, match="split"):
    data.load_mitbih(mitdb, split="leave_one_out")
  with pytest.raises(ValueError, match="unknown records"):
    data.load_mitbih(mitdb, records=("999",))


def test_missing_and_truncated_files(tmp_path, mitdb):
  with pytest.raises(FileNotFoundError, match=r"absent.*NNN.hea, NNN.dat"):
    data.load_mitbih(tmp_path / "absent", records=("100",))
  with pytest.raises(FileNotFoundError, match=r"100.hea not found"):
    data.load_mitbih(tmp_path, records=("100",))  # wrong --data_dir: exists, no records
  for ext in ("hea", "atr"):
    shutil.copy(mitdb / f"100.{ext}", tmp_path / f"100.{ext}")
  (tmp_path / "100.dat").write_bytes((mitdb / "100.dat").read_bytes()[:1_000_000])
  with pytest.raises(ValueError, match=r"100.dat has 1000000 bytes, expected 1950000.*truncated"):
    data.load_mitbih(tmp_path, records=("100",))
  (tmp_path / "100.atr").unlink()
  with pytest.raises(FileNotFoundError, match=r"100.atr not found"):
    data.load_mitbih(tmp_path, records=("100",))


def test_download_route_uses_wfdb(tmp_path, monkeypatch, mitdb):
  """download=True fetches missing records with wfdb.dl_database (mocked: no network)."""
  calls = []

  def fake_dl_database(db_dir, dl_dir, records="all", **kwargs):
    calls.append((db_dir, dl_dir, list(records)))
    for r in records:
      for ext in ("hea", "dat", "atr"):
        shutil.copy(mitdb / f"{r}.{ext}", f"{dl_dir}/{r}.{ext}")

  monkeypatch.setattr(wfdb, "dl_database", fake_dl_database)
  train, test = data.load_mitbih(tmp_path / "dl", records=("100", "101"), download=True)
  assert calls == [("mitdb", str(tmp_path / "dl"), ["100", "101"])]
  assert set(np.unique(np.concatenate([train.meta["record"], test.meta["record"]]))) == {
      "100", "101"}
  data.load_mitbih(tmp_path / "dl", records=("100",), download=True)
  assert len(calls) == 1  # present records are not downloaded again


# --------------------------------------------------------------------------------------
# Corrupt annotations and settings that empty every input (issue 14).


@pytest.fixture()
def record_100(tmp_path, mitdb):
  """A copy of record 100 whose .atr the tests damage."""
  for ext in ("hea", "dat", "atr"):
    shutil.copy(mitdb / f"100.{ext}", tmp_path / f"100.{ext}")
  return tmp_path


def _load_100(directory):
  return data.load_mitbih(directory, records=("100",))


def test_truncated_annotations_are_a_data_error(record_100, mitdb):
  raw = (mitdb / "100.atr").read_bytes()
  atr = record_100 / "100.atr"
  for cut in (2000, 2001):  # wfdb reads the even cut silently, the odd one raises
    atr.write_bytes(raw[:cut])
    with pytest.raises(DataError, match=r"100.atr \(\d+ bytes\) does not end with the WFDB "
                                        r"end-of-file marker.*truncated"):
      _load_100(record_100)
  # Cut, then given a proper end marker: wfdb reads about 1000 of the 2274 annotations.
  atr.write_bytes(raw[:2000] + b"\0\0")
  assert 900 < len(wfdb.rdann(str(record_100 / "100"), "atr").sample) < 1100
  with pytest.raises(DataError, match=r"100.atr: \d+ beat annotations leave samples "
                                      r"\d+..650000 .* without a beat"):
    _load_100(record_100)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_annotation_file_is_a_data_error(record_100, mitdb, seed):
  size = (mitdb / "100.atr").stat().st_size
  noise = np.random.default_rng(seed).integers(0, 256, size - 2, dtype=np.uint8).tobytes()
  (record_100 / "100.atr").write_bytes(noise + b"\0\0")  # passes the end-marker check
  with pytest.raises(DataError, match=r"MIT-BIH: .*100.atr"):
    _load_100(record_100)


def test_annotations_past_the_signal_are_a_data_error(record_100, mitdb):
  """The header says 400,000 samples; the beats run to 650,000."""
  hea = record_100 / "100.hea"
  hea.write_text(hea.read_text().replace("650000", "400000", 1))
  with pytest.raises(DataError, match=r"100.atr: annotation sample indices span 18..649991, "
                                      r"outside the record's 400000 samples"):
    _load_100(record_100)


def test_real_annotations_pass_the_checks(mitdb, annotations):
  for r in ("100", "207", "232"):  # 207: flutter; 232: mitdb's longest pauses (5.9 s)
    sym, smp = mitbih.read_annotations(mitdb, r, SIG_LEN, 360)
    np.testing.assert_array_equal(smp, annotations[r][1])
    assert sym.tolist() == annotations[r][0].tolist()


@pytest.mark.parametrize("kwargs, match", [
    (dict(window_s=(0.0, 0.0)), r"window_s=\(0.0, 0.0\) \(--window_before, --window_after\) "
                                "is shorter than 2 samples"),
    (dict(window_s=(-0.1, 0.5)), r"window_s=.* must be finite and >= 0"),
    (dict(delta=0.0), r"delta \(--lc_delta.*\) must be positive"),
    (dict(delta=float("nan")), r"delta \(--lc_delta.*\) must be positive"),
    (dict(time_steps=0), r"time_steps must be a positive integer"),
])
def test_settings_that_empty_every_beat_are_rejected_up_front(tmp_path, kwargs, match):
  # Up front: no data is read (the folder is empty).
  with pytest.raises(ConfigError, match=match):
    data.load_mitbih(tmp_path, records=("100",), **kwargs)


def test_no_crossing_in_any_beat_is_a_config_error(mitdb):
  with pytest.raises(ConfigError, match=r"delta=1000.0 mV \(--lc_delta\).*no level crossing "
                                        r"in any of the \d+ beats"):
    data.load_mitbih(mitdb, records=("100",), delta=1000.0)
