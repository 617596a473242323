"""Gas sensor arrays (UCI): the open-sampling raw recordings and the drift dataset.

* `load_gas_open_sampling`: "Gas sensor arrays in open sampling settings" (Vergara et
  al. 2013), the BPSR paper's gas dataset: 18,000 raw recordings of 72 metal-oxide
  sensors (9 boards x 8) exposed to 10 gases. One tab-separated file per recording,
  one row per ~20 ms: time (ms), 8 control columns (columns 4-6 are 100 while the gas
  valve is open, from 20 s to ~200 s), temperature, humidity, then 9 x (board flag,
  8 sensors). The gas and its concentration are in the file name
  (`..._mfc_setPoint_<Gas>_<ppm>ppm_p<k>`); the archive groups files by
  `<Gas>_<ppm>/` folders (searched recursively here).
* `load_gas_drift`: "Gas Sensor Array Drift" (Vergara et al. 2012): 13,910 samples of
  128 features (16 sensors x 8 features), 6 gases, in 10 batches recorded over 36
  months, files `batch1.dat` .. `batch10.dat` in the libsvm-like line format
  `<class>;<concentration> 1:<v1> ... 128:<v128>` (class 1..6).

Both produce analog features in `[0, 1]` (`kind="analog"`), meant for
`encode.rank_order`; the normalization is fitted on the training split only
(`common.fit_normalizer`).
"""

from __future__ import annotations

import pathlib
import re
from typing import Sequence

import numpy as np

from bpsr_jax.data import common
from bpsr_jax.errors import DataError

__all__ = ["load_gas_drift", "read_gas_drift_batch", "load_gas_open_sampling",
           "read_open_sampling_recording", "parse_open_sampling_name", "DRIFT_CLASSES",
           "DRIFT_BATCH_SIZES", "OPEN_SAMPLING_GASES"]

DRIFT_CLASSES = ("Ethanol", "Ethylene", "Ammonia", "Acetaldehyde", "Acetone", "Toluene")
# Samples per batch in the full UCI release (batch k -> count).
DRIFT_BATCH_SIZES = {1: 445, 2: 1244, 3: 1586, 4: 161, 5: 197, 6: 2300, 7: 3613, 8: 294,
                     9: 470, 10: 3600}
DRIFT_FEATURES = 128
# Largest feature magnitude accepted: float32's range (the features end up float32; the
# real files' largest is 6.7e5, and 1e308 would overflow the normalizer's variance).
_MAX_ABS = float(np.finfo(np.float32).max)
_DRIFT_LAYOUT = ("the UCI Gas Sensor Array Drift files batch1.dat .. batch10.dat, one sample "
                 "per line '<class 1-6>;<concentration> 1:<v1> ... 128:<v128>'")

# The 10 gases of the open-sampling dataset, as spelled in its file names.
OPEN_SAMPLING_GASES = ("Acetaldehyde", "Acetone", "Ammonia", "Benzene", "Butanol", "CO",
                       "Ethylene", "Methane", "Methanol", "Toluene")
OPEN_SAMPLING_CHANNELS = 72
_OPEN_NAME = re.compile(
    r"_mfc_setPoint_(?P<gas>[A-Za-z0-9]+)_(?P<ppm>\d+(?:\.\d+)?)ppm_p(?P<pos>\d+)$")
_OPEN_SETTING = re.compile(r"board_setPoint_(\d+)V_fan_setPoint_(\d+)_")
_OPEN_LAYOUT = ("UCI 'Gas sensor arrays in open sampling settings' raw recordings named "
                "'<timestamp>_board_setPoint_<V>V_fan_setPoint_<f>_"
                "mfc_setPoint_<Gas>_<ppm>ppm_p<k>' "
                "(tab-separated: time, 8 control columns, temperature, humidity, 9 x (flag + 8 "
                "sensors)), in any subfolders such as <Gas>_<ppm>/")
_OPEN_COLUMNS = 1 + 8 + 2 + 9 * 9


def _split_and_normalize(x, y, meta, train_mask, test_mask, normalization, class_names):
  norm = common.fit_normalizer(x[train_mask], normalization)
  return tuple(
      common.Dataset(x=norm(x[m]), y=y[m], num_classes=len(class_names),
                     class_names=tuple(class_names), kind="analog",
                     meta={k: v[m] for k, v in meta.items()})
      for m in (train_mask, test_mask))


def _limit(mask: np.ndarray, limit: int | None, seed: int, salt: int) -> np.ndarray:
  if limit is None or mask.sum() <= limit:
    return mask
  idx = np.random.default_rng([seed, salt]).permutation(np.flatnonzero(mask))[:limit]
  out = np.zeros_like(mask)
  out[idx] = True
  return out


# ---------------------------------------------------------------- drift dataset


_FEATURE_KEYS = np.arange(1, DRIFT_FEATURES + 1, dtype=np.float64)


def _checked_row(path, lineno, pairs) -> np.ndarray:
  """One line's `k:v` pairs as a row [128], checking each (the message names the pair)."""
  row = np.full(DRIFT_FEATURES, np.nan)
  for p in pairs:
    k, v = p.split(":")
    k, v = int(k), float(v)
    if not 1 <= k <= DRIFT_FEATURES or not np.isnan(row[k - 1]) or not abs(v) <= _MAX_ABS:
      raise DataError(
          f"{path}:{lineno}: bad feature {p!r}: expected a feature index in 1.."
          f"{DRIFT_FEATURES}, each once, with a finite value within float32's range "
          f"(corrupt file?); expected {_DRIFT_LAYOUT}")
    row[k - 1] = v
  return row


def read_gas_drift_batch(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Parses one `batchK.dat`: `(features float64 [n, 128], class 0..5 int32 [n],
  concentration float64 [n])`.

  Raises:
    DataError: a malformed line (names the file and line number), e.g. a truncated
      file whose last line lacks features, a feature index outside 1..128 or repeated,
      or a value that is not finite (`5:inf`, or `5:1e308`, which overflows float32).
  """
  path = pathlib.Path(path)
  feats, labels, concs = [], [], []
  with open(path, "r", encoding="ascii") as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        head, *pairs = line.split(None, 1)
        cls, c = head.split(";")
        # The usual line, "1:v1 2:v2 ... 128:v128", parsed by numpy in one call (6.2 s
        # for the 10 files by Python token by token, 1.5 s so; measured); any other
        # line goes through the checks of each pair, which name what is wrong.
        kv = np.array(pairs[0].replace(":", " ").split() if pairs else [], np.float64)
        if (kv.size == 2 * DRIFT_FEATURES and np.array_equal(kv[0::2], _FEATURE_KEYS)
            and np.all(np.abs(kv[1::2]) <= _MAX_ABS)):
          row = kv[1::2]
        else:
          row = _checked_row(path, lineno, pairs[0].split() if pairs else [])
        cls = int(float(cls))
        conc = float(c)
      except (ValueError, IndexError) as e:
        if isinstance(e, DataError):
          raise
        raise DataError(f"{path}:{lineno}: cannot parse line ({e}; truncated or corrupt file?); "
                        f"expected {_DRIFT_LAYOUT}") from e
      if not 1 <= cls <= 6 or np.isnan(row).any() or not np.isfinite(conc):
        raise DataError(f"{path}:{lineno}: expected class 1..6, features 1..128 and a finite "
                        f"concentration, got class {cls}, {int((~np.isnan(row)).sum())} "
                        f"features and concentration {conc} (truncated file?)")
      feats.append(row)
      labels.append(cls - 1)
      concs.append(conc)
  if not feats:
    raise DataError(f"{path}: no samples; expected {_DRIFT_LAYOUT}")
  return np.stack(feats), np.asarray(labels, np.int32), np.asarray(concs)


def load_gas_drift(
    data_dir: str | pathlib.Path,
    *,
    test_batches: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    normalization: str = "zscore",
    limit: int | None = None,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads the UCI Gas Sensor Array Drift dataset as 128 analog features.

  Splits:

  * default (`test_batches=None`): a seeded stratified random 80/20 split over all
    loaded samples (`common.stratified_split(y, test_fraction, seed=seed)`);
  * `test_batches=(k, ...)`: the drift protocol, train on the other loaded batches
    and test on these (e.g. train 1-5, test 6-10 with `test_batches=range(6, 11)`).

  Normalization (fitted on the training split only): `"zscore"` (default) standardizes
  each feature and maps `[-3, 3]` standard deviations linearly to `[0, 1]`, clipped;
  `"minmax"` maps the training min/max to `[0, 1]`, clipped (see
  `common.fit_normalizer`).

  Args:
    data_dir: the folder with `batchK.dat` files.
    test_batches: batch numbers held out as the test set, or None (random split).
    batches: batch numbers to load (default: every `batchK.dat` present).
    test_fraction: test share of the random split.
    seed: seed of the random split (and of `limit`).
    normalization: `"zscore"` or `"minmax"`.
    limit: keep at most `limit` samples per split (seeded random subset).

  Returns:
    `(train, test)` `Dataset`s, `kind="analog"`, x float32 `[N, 128]` in `[0, 1]`,
    labels 0..5 (`DRIFT_CLASSES`), `meta["batch"]` and `meta["concentration"]` (ppm).
  """
  directory = common.require_dir(data_dir, "gas drift", _DRIFT_LAYOUT)
  if batches is None:
    found = sorted(int(m.group(1)) for p in directory.glob("batch*.dat")
                   if (m := re.fullmatch(r"batch(\d+)\.dat", p.name)))
    if not found:
      raise FileNotFoundError(
          f"gas drift: no batch<k>.dat in {directory}; expected {_DRIFT_LAYOUT}")
    batches = found
  parts = []
  for b in batches:
    path = directory / f"batch{int(b)}.dat"
    if not path.is_file():
      raise FileNotFoundError(f"gas drift: {path} not found; expected {_DRIFT_LAYOUT}")
    x, y, c = read_gas_drift_batch(path)
    parts.append((x, y, c, np.full(len(y), int(b), np.int32)))
  x, y, conc, batch = (np.concatenate([p[i] for p in parts]) for i in range(4))
  if test_batches is None:
    train_idx, test_idx = common.stratified_split(y, test_fraction, seed=seed)
    train_mask = np.isin(np.arange(len(y)), train_idx)
  else:
    test_set = {int(b) for b in test_batches}
    missing = test_set - {int(b) for b in batches}
    if missing:
      raise ValueError(f"gas drift: test_batches {sorted(missing)} are not among the loaded "
                       f"batches {sorted(batches)}")
    train_mask = ~np.isin(batch, list(test_set))
    if not train_mask.any():
      raise ValueError("gas drift: every loaded batch is a test batch; nothing to train on")
  test_mask = ~train_mask
  train_mask, test_mask = _limit(train_mask, limit, seed, 0), _limit(test_mask, limit, seed, 1)
  return _split_and_normalize(x, y, {"batch": batch, "concentration": conc}, train_mask,
                              test_mask, normalization, DRIFT_CLASSES)


# ------------------------------------------------------- open sampling settings


def parse_open_sampling_name(name: str) -> tuple[str, float, int]:
  """`(gas, ppm, k)` from a recording's file name (`k`: its `p<k>` suffix).

  Raises:
    ValueError: the name does not follow the dataset's pattern or names an unknown gas.
  """
  m = _OPEN_NAME.search(name)
  if m is None:
    raise ValueError(f"gas open sampling: file name {name!r} does not match "
                     "'..._mfc_setPoint_<Gas>_<ppm>ppm_p<k>'")
  gas = m.group("gas")
  if gas not in OPEN_SAMPLING_GASES:
    raise ValueError(f"gas open sampling: unknown gas {gas!r} in {name!r}; known gases: "
                     f"{OPEN_SAMPLING_GASES}")
  return gas, float(m.group("ppm")), int(m.group("pos"))


def read_open_sampling_recording(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads one raw recording: `(time_s float64 [n], sensors float64 [n, 72])`.

  The 72 sensor channels are board-major (board 1 sensors 1..8, board 2, ...); the
  per-board flag columns, control columns, temperature and humidity are dropped.

  Raises:
    ValueError: rows without the 92 columns of the format (truncated file).
  """
  path = pathlib.Path(path)
  try:
    table = np.loadtxt(path, delimiter="\t", usecols=range(_OPEN_COLUMNS), ndmin=2)
  except (ValueError, IndexError) as e:
    raise DataError(f"{path}: cannot parse as {_OPEN_COLUMNS} tab-separated columns ({e}); "
                     f"expected {_OPEN_LAYOUT}") from e
  if len(table) == 0:
    raise DataError(f"{path}: empty recording; expected {_OPEN_LAYOUT}")
  if not np.isfinite(table).all():
    row, col = np.argwhere(~np.isfinite(table))[0]
    raise DataError(f"{path}: row {row + 1}, column {col + 1} is {table[row, col]}; expected "
                    f"finite values ({_OPEN_LAYOUT})")
  boards = table[:, 11:].reshape(len(table), 9, 9)
  return table[:, 0] / 1000.0, boards[:, :, 1:].reshape(len(table), OPEN_SAMPLING_CHANNELS)


def open_sampling_features(
    time_s: np.ndarray,
    sensors: np.ndarray,
    *,
    steady_s: tuple[float, float] = (150.0, 200.0),
    baseline_s: tuple[float, float] | None = (0.0, 15.0),
) -> np.ndarray:
  """The steady-state response of each channel, float64 `[72]`.

  `mean(sensors over steady_s) / mean(sensors over baseline_s) - 1` (relative change
  from the clean-air baseline), or the raw steady-state mean when `baseline_s` is
  None. The gas flows from 20 s to about 200 s, so the default steady window is its
  last 50 s and the baseline the first 15 s of clean air.
  """
  def window_mean(lo, hi):
    m = (time_s >= lo) & (time_s < hi)
    if not m.any():
      raise ValueError(f"gas open sampling: no samples in the window [{lo}, {hi}) s "
                       f"(recording spans {time_s[0]:.1f}..{time_s[-1]:.1f} s)")
    return sensors[m].mean(0)

  steady = window_mean(*steady_s)
  if baseline_s is None:
    return steady
  base = window_mean(*baseline_s)
  return steady / np.where(base != 0, base, 1.0) - 1.0


def load_gas_open_sampling(
    data_dir: str | pathlib.Path,
    *,
    steady_s: tuple[float, float] = (150.0, 200.0),
    baseline_s: tuple[float, float] | None = (0.0, 15.0),
    test_fraction: float = 0.2,
    seed: int = 0,
    normalization: str = "zscore",
    limit: int | None = None,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads the open-sampling recordings as one 72-channel steady-state vector each.

  Features: `open_sampling_features` per recording (relative steady-state response
  of the 72 sensors); normalization fitted on the training split (see
  `load_gas_drift`). Classes: the 10 gases (`OPEN_SAMPLING_GASES`, alphabetical, so
  labels do not depend on which files are present). Split: seeded stratified random
  `test_fraction` over recordings (a class with one recording goes to train).

  Args:
    data_dir: the dataset folder (searched recursively for recording files).
    steady_s: steady-state window, seconds.
    baseline_s: clean-air baseline window, seconds, or None for raw levels.
    test_fraction: test share.
    seed: split seed.
    normalization: `"zscore"` or `"minmax"`.
    limit: read at most `limit` recordings (a seeded random subset).

  Returns:
    `(train, test)` `Dataset`s, `kind="analog"`, x float32 `[N, 72]` in `[0, 1]`,
    `meta` arrays `ppm`, `p` (the `p<k>` of the file name), `board_voltage` (the
    sensors' heater setting, V), `fan_setpoint` and `file`.
  """
  directory = common.require_dir(data_dir, "gas open sampling", _OPEN_LAYOUT)
  files = sorted(p for p in directory.rglob("*") if p.is_file() and _OPEN_NAME.search(p.name))
  if not files:
    raise FileNotFoundError(f"gas open sampling: no recordings under {directory}; expected "
                            f"{_OPEN_LAYOUT}")
  if limit is not None and limit < len(files):
    files = [files[i] for i in np.sort(np.random.default_rng(seed).permutation(len(files))[:limit])]
  feats, labels, ppm, pos, volts, fans = [], [], [], [], [], []
  for p in files:
    gas, conc, k = parse_open_sampling_name(p.name)
    t, s = read_open_sampling_recording(p)
    feats.append(open_sampling_features(t, s, steady_s=steady_s, baseline_s=baseline_s))
    labels.append(OPEN_SAMPLING_GASES.index(gas))
    ppm.append(conc)
    pos.append(k)
    setting = _OPEN_SETTING.search(p.name)
    volts.append(float(setting.group(1)) if setting else np.nan)
    fans.append(float(setting.group(2)) if setting else np.nan)
  x, y = np.stack(feats), np.asarray(labels, np.int32)
  train_idx, _ = common.stratified_split(y, test_fraction, seed=seed)
  train_mask = np.isin(np.arange(len(y)), train_idx)
  meta = {"ppm": np.asarray(ppm), "p": np.asarray(pos, np.int32),
          "board_voltage": np.asarray(volts), "fan_setpoint": np.asarray(fans),
          "file": np.asarray([p.name for p in files])}
  return _split_and_normalize(x, y, meta, train_mask, ~train_mask, normalization,
                              OPEN_SAMPLING_GASES)
