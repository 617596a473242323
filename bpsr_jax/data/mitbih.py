"""MIT-BIH Arrhythmia Database: heartbeats around annotated R peaks, level-crossing spikes.

Files (PhysioNet `mitdb` 1.0.0): for each of the 48 records `NNN.hea` (header),
`NNN.dat` (2 leads, format 212, 360 Hz, 650,000 samples) and `NNN.atr` (reference
beat annotations), read with wfdb. Online route: `wfdb.dl_database("mitdb", dir)`.

Beats: one window per annotation whose symbol is in the chosen class mapping, from
`window_s[0]` seconds before to `window_s[1]` seconds after the annotated R peak
(default 0.7 s + 0.5 s = 252 + 180 = 432 samples: with 0.7 s before the peak the previous
beat, and so the RR interval that marks premature beats, is usually inside the window);
beats whose window does not fit in the record (the first and last fraction of a second)
are dropped. Both leads are used,
the MLII lead first where the record has one (record 114 stores it second; 102 and 104
have no MLII).

Class mappings (annotation symbols, PhysioNet's codes):

* `classes=5`, the AAMI EC57 classes: N = {N, L, R, e, j} (normal, bundle branch
  blocks, escape beats), S = {A, a, J, S} (supraventricular ectopic), V = {V, E}
  (ventricular ectopic), F = {F} (fusion of ventricular and normal), Q = {/, f, Q}
  (paced, fusion of paced and normal, unclassifiable).
* `classes=18`: one class per event-type symbol that occurs in mitdb, i.e. every
  annotation except the rhythm/signal-quality/comment ones (+, ~, ", [, ]): the 15
  QRS beat labels N L R e j A a J S V E F / f Q plus ! (ventricular flutter wave),
  x (non-conducted P wave) and | (isolated QRS-like artifact). The paper does not list
  its 18 symbols; this is the reading that gives exactly 18 classes on mitdb.
* or a mapping `{class_name: symbols}` of your own.

Splits:

* `split="random"` (the common "intra-patient" protocol, optimistic because beats of
  the same patient are in both sets): a seeded stratified 80/20 split over the beats
  of `records` (default: all 48), `common.stratified_split(y, 0.2, seed=seed)`.
* `split="inter_patient"`: de Chazal et al. (2004): train on DS1, test on DS2
  (22 records each); the paced records 102, 104, 107 and 217 are in neither.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import numpy as np

from bpsr_jax import encode
from bpsr_jax.data import common
from bpsr_jax.errors import ConfigError
from bpsr_jax.errors import DataError

__all__ = ["load_mitbih", "read_record_beats", "read_annotations", "class_mapping", "RECORDS", "DS1", "DS2",
           "PACED_RECORDS", "AAMI_CLASSES", "CLASSES_18"]

RECORDS = (
    "100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "111", "112", "113",
    "114", "115", "116", "117", "118", "119", "121", "122", "123", "124", "200", "201", "202",
    "203", "205", "207", "208", "209", "210", "212", "213", "214", "215", "217", "219", "220",
    "221", "222", "223", "228", "230", "231", "232", "233", "234")
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
PACED_RECORDS = ("102", "104", "107", "217")
AAMI_CLASSES = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
CLASSES_18 = ("N", "L", "R", "e", "j", "A", "a", "J", "S", "V", "E", "F", "/", "f", "Q", "!",
              "x", "|")
FS = 360
_LAYOUT = ("the MIT-BIH Arrhythmia Database files NNN.hea, NNN.dat (format 212) and NNN.atr "
           "for each record (PhysioNet mitdb; wfdb.dl_database('mitdb', dir) downloads them)")


def class_mapping(
    classes: int | Mapping[str, str | Sequence[str]],
) -> tuple[tuple[str, ...], dict[str, int]]:
  """`(class_names, {annotation symbol: class index})` for 5, 18 or a custom mapping.

  Raises:
    ConfigError: an unknown class set, or a symbol mapped to two classes.
  """
  if isinstance(classes, Mapping):
    groups = {str(k): tuple(v) for k, v in classes.items()}
  elif classes == 5:
    groups = {k: tuple(v) for k, v in AAMI_CLASSES.items()}
  elif classes == 18:
    groups = {s: (s,) for s in CLASSES_18}
  else:
    raise ConfigError(
        f"MIT-BIH: unknown class mapping {classes!r}; use classes=5 (AAMI: "
        f"{AAMI_CLASSES}), classes=18 ({''.join(CLASSES_18)}) or a dict "
        "{class_name: annotation symbols}")
  sym_to_class = {}
  for i, (name, symbols) in enumerate(groups.items()):
    if not symbols:
      raise ConfigError(f"MIT-BIH: class {name!r} has no annotation symbols")
    for s in symbols:
      if s in sym_to_class:
        raise ConfigError(f"MIT-BIH: annotation symbol {s!r} is mapped to two classes")
      sym_to_class[s] = i
  return tuple(groups), sym_to_class


def _check_record_files(directory: pathlib.Path, record: str):
  import wfdb  # pylint: disable=g-import-not-at-top

  for ext in ("hea", "dat", "atr"):
    if not (directory / f"{record}.{ext}").is_file():
      raise FileNotFoundError(f"MIT-BIH: {directory / f'{record}.{ext}'} not found; expected "
                              f"{_LAYOUT}")
  header = wfdb.rdheader(str(directory / record))
  if set(header.fmt) == {"212"}:
    expected = (header.sig_len * header.n_sig * 3 + 1) // 2
    size = (directory / f"{record}.dat").stat().st_size
    if size < expected:
      raise DataError(
          f"MIT-BIH: {directory / f'{record}.dat'} has {size} bytes, expected {expected} "
          f"({header.sig_len} samples x {header.n_sig} leads in format 212); the file is "
          "truncated, re-download it")
  return header


# Longest stretch without a beat annotation accepted in a record (and at its start and
# end): mitdb's longest is 5.9 s (record 232's sinus pauses); a truncated .atr leaves the
# rest of the record without beats.
_MAX_BEAT_GAP_S = 10.0


def read_annotations(directory: str | pathlib.Path, record: str,
                     sig_len: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
  """Reads and checks a record's `.atr` against its signal: `(symbol [n], sample [n])`.

  Checks: the file ends with WFDB's end-of-file marker (two zero bytes), wfdb parses
  it, every annotation code is a known one, sample indices are non-decreasing and
  inside the `sig_len` samples of the signal, and no stretch of the record (its start
  and end included) longer than 10 s has no beat annotation (mitdb's longest is
  5.9 s).

  Raises:
    DataError: naming the file and what is wrong (truncated, corrupt, or another
      record's annotations).
  """
  import wfdb  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(directory)
  path = directory / f"{record}.atr"
  hint = "the annotation file is truncated or corrupt; re-download it"
  raw = path.read_bytes()
  if len(raw) < 2 or len(raw) % 2 or raw[-2:] != b"\0\0":
    raise DataError(f"MIT-BIH: {path} ({len(raw)} bytes) does not end with the WFDB "
                    f"end-of-file marker (two zero bytes): {hint}")
  try:
    ann = wfdb.rdann(str(directory / record), "atr")
  except Exception as e:  # pylint: disable=broad-except  # wfdb raises many types
    raise DataError(f"MIT-BIH: {path}: wfdb cannot parse it ({type(e).__name__}: {e}); "
                    f"{hint}") from e
  sym = np.asarray([s if isinstance(s, str) else "" for s in ann.symbol])
  samples = np.asarray(ann.sample, np.int64)
  if len(samples) == 0:
    raise DataError(f"MIT-BIH: {path} holds no annotations: {hint}")
  if (sym == "").any():
    i = int(np.flatnonzero(sym == "")[0])
    raise DataError(f"MIT-BIH: {path}: annotation {i} (of {len(sym)}) has a code unknown to "
                    f"WFDB: {hint}")
  if (np.diff(samples) < 0).any():
    i = int(np.flatnonzero(np.diff(samples) < 0)[0]) + 1
    raise DataError(f"MIT-BIH: {path}: annotation {i} is at sample {samples[i]}, before the "
                    f"previous one ({samples[i - 1]}); sample indices must not decrease: "
                    f"{hint}")
  if samples[0] < 0 or samples[-1] >= sig_len:
    raise DataError(f"MIT-BIH: {path}: annotation sample indices span {samples[0]}.."
                    f"{samples[-1]}, outside the record's {sig_len} samples: {hint}, or it "
                    "belongs to another record")
  beats = samples[np.isin(sym, CLASSES_18)]
  edges = np.concatenate([[0], beats, [sig_len]])
  gaps = np.diff(edges)
  i = int(np.argmax(gaps))
  if gaps[i] > _MAX_BEAT_GAP_S * fs:
    raise DataError(
        f"MIT-BIH: {path}: {len(beats)} beat annotations leave samples {edges[i]}.."
        f"{edges[i + 1]} ({gaps[i] / fs:.0f} s) of the {sig_len}-sample record without a "
        f"beat (mitdb's longest pause is 5.9 s): {hint}")
  return sym, samples


def read_record_beats(
    data_dir: str | pathlib.Path,
    record: str,
    *,
    symbols: Sequence[str] | Mapping[str, int],
    window_s: tuple[float, float] = (0.7, 0.5),
) -> dict[str, np.ndarray]:
  """Reads the beat windows of one record.

  Args:
    data_dir: the mitdb folder.
    record: record name, e.g. `"100"`.
    symbols: annotation symbols to keep.
    window_s: seconds before and after the annotated R peak.

  Returns:
    dict with `signal` float32 `[n, W, 2]` (mV, MLII first where present), `symbol`
    `[n]` (str), `sample` int64 `[n]` (R peak sample index), and `leads` (the two
    lead names in the order used).
  """
  import wfdb  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(data_dir)
  header = _check_record_files(directory, record)
  before, after = int(round(window_s[0] * header.fs)), int(round(window_s[1] * header.fs))
  sym, samples = read_annotations(directory, record, header.sig_len, header.fs)
  keep = (np.isin(sym, list(symbols)) & (samples - before >= 0)
          & (samples + after <= header.sig_len))
  sym, samples = sym[keep], samples[keep]
  rec = wfdb.rdrecord(str(directory / record))
  leads = list(rec.sig_name)
  sig = rec.p_signal.astype(np.float32)
  if "MLII" in leads and leads.index("MLII") != 0:
    order = [leads.index("MLII")] + [i for i in range(len(leads)) if leads[i] != "MLII"]
    sig, leads = sig[:, order], [leads[i] for i in order]
  idx = samples[:, None] + np.arange(-before, after)[None, :]
  return {"signal": sig[idx], "symbol": sym, "sample": samples, "leads": np.asarray(leads)}


def _check_input_settings(time_steps, delta, window_s):
  """Rejects settings that would make every beat's spike train empty (ConfigError)."""
  if not (isinstance(time_steps, (int, np.integer)) and time_steps > 0):
    raise ConfigError(f"MIT-BIH: time_steps must be a positive integer, got {time_steps!r}")
  d = np.asarray(delta, np.float64)
  if d.size == 0 or not np.all(np.isfinite(d) & (d > 0)):
    raise ConfigError(f"MIT-BIH: delta (--lc_delta, the level spacing in mV) must be positive "
                      f"and finite, got {delta!r}")
  try:
    before, after = (float(w) for w in window_s)
  except (TypeError, ValueError):
    raise ConfigError(f"MIT-BIH: window_s must be (seconds before, seconds after) the R "
                      f"peak, got {window_s!r}") from None
  if not (before >= 0 and after >= 0 and np.isfinite(before + after)):
    raise ConfigError(f"MIT-BIH: window_s={tuple(window_s)} (--window_before, --window_after) "
                      "must be finite and >= 0")
  if int(round(before * FS)) + int(round(after * FS)) < 2:
    raise ConfigError(
        f"MIT-BIH: window_s={tuple(window_s)} (--window_before, --window_after) is shorter "
        f"than 2 samples at {FS} Hz: every beat window would be empty of level crossings")


def _ensure_files(data_dir, records, download: bool) -> pathlib.Path:
  directory = pathlib.Path(data_dir).expanduser()
  missing = [r for r in records if not (directory / f"{r}.dat").is_file()]
  if missing and download:
    import wfdb  # pylint: disable=g-import-not-at-top

    directory.mkdir(parents=True, exist_ok=True)
    wfdb.dl_database("mitdb", dl_dir=str(directory), records=list(missing))
  common.require_dir(directory, "MIT-BIH", _LAYOUT)
  return directory


def load_mitbih(
    data_dir: str | pathlib.Path,
    *,
    classes: int | Mapping[str, str | Sequence[str]] = 5,
    split: str = "random",
    time_steps: int = 40,
    delta: float = 0.1,
    window_s: tuple[float, float] = (0.7, 0.5),
    test_fraction: float = 0.2,
    seed: int = 0,
    records: Sequence[str] | None = None,
    binary: bool = False,
    limit: int | None = None,
    download: bool = False,
) -> tuple[common.Dataset, common.Dataset]:
  """Loads MIT-BIH heartbeats as level-crossing spike trains `[N, T, 4]`.

  Each beat window (see the module docstring) of both leads, in mV, goes through
  `encode.level_crossing(beat, delta, time_steps=T)`: channels (MLII up, MLII down,
  other lead up, other lead down); levels are relative to the window's first sample,
  so no baseline removal or amplitude normalization is applied (delta is in mV).
  By default a step holds the number of crossings that fell into it (a steep QRS crosses
  several levels within one of the 40 steps); with `binary` the counts are clipped to 1.

  Args:
    data_dir: the folder with the mitdb files.
    classes: 5 (AAMI), 18, or `{class_name: symbols}` (module docstring).
    split: `"random"` or `"inter_patient"` (module docstring).
    time_steps: `T` (the paper uses 40).
    delta: level spacing in mV.
    window_s: seconds before and after the R peak.
    test_fraction: test share of the random split.
    seed: seed of the random split.
    records: records to use with `split="random"` (default all 48).
    binary: clip spike counts per step to 1.
    limit: keep at most `limit` beats per split (a seeded random subset).
    download: fetch missing records with `wfdb.dl_database("mitdb", data_dir)`.

  Returns:
    `(train, test)` `Dataset`s, `kind="spikes"`, x uint8 `[N, T, 4]`, with
    `meta` arrays `record`, `sample` (R peak index) and `symbol`.

  Raises:
    FileNotFoundError: a missing directory or record file.
    DataError: a truncated `.dat`, or an `.atr` inconsistent with its signal
      (`read_annotations`).
    ConfigError: an unknown class mapping, split or record, or settings that leave every
      beat without spikes (`delta <= 0`, a window under 2 samples, or no crossing in any
      beat).
  """
  _check_input_settings(time_steps, delta, window_s)
  class_names, sym_to_class = class_mapping(classes)
  if split == "random":
    use = tuple(RECORDS if records is None else (str(r) for r in records))
    unknown = sorted(set(use) - set(RECORDS))
    if unknown:
      raise ConfigError(f"MIT-BIH: unknown records {unknown}; mitdb has {RECORDS}")
  elif split == "inter_patient":
    if records is not None:
      raise ConfigError("MIT-BIH: records= cannot be combined with split='inter_patient' (DS1/DS2)")
    use = DS1 + DS2
  else:
    raise ConfigError(f"MIT-BIH: split must be 'random' or 'inter_patient', got {split!r}")
  directory = _ensure_files(data_dir, use, download)

  spikes, labels, rec_ids, samples, syms = [], [], [], [], []
  for r in use:
    beats = read_record_beats(directory, r, symbols=sym_to_class, window_s=window_s)
    s = encode.level_crossing(beats["signal"], delta, time_steps=time_steps, binary=binary)
    spikes.append(np.minimum(s, 255).astype(np.uint8))
    labels.append(np.asarray([sym_to_class[c] for c in beats["symbol"]], np.int32))
    rec_ids.append(np.full(len(s), r))
    samples.append(beats["sample"])
    syms.append(beats["symbol"])
  if not any(x.any() for x in spikes):
    raise ConfigError(
        f"MIT-BIH: delta={delta} mV (--lc_delta) and window_s={tuple(window_s)} (--window_before"
        f", --window_after) give no level crossing in any of the {sum(map(len, spikes))} "
        "beats; use a smaller delta or a wider window")
  full = common.Dataset(
      x=np.concatenate(spikes), y=np.concatenate(labels), num_classes=len(class_names),
      class_names=class_names, kind="spikes",
      meta={"record": np.concatenate(rec_ids), "sample": np.concatenate(samples),
            "symbol": np.concatenate(syms)})
  if split == "random":
    train_idx, test_idx = common.stratified_split(full.y, test_fraction, seed=seed)
  else:
    train_idx = np.flatnonzero(np.isin(full.meta["record"], DS1))
    test_idx = np.flatnonzero(np.isin(full.meta["record"], DS2))
  out = []
  for i, idx in enumerate((train_idx, test_idx)):
    if limit is not None and len(idx) > limit:
      idx = np.sort(np.random.default_rng([seed, i]).permutation(idx)[:limit])
    out.append(full.take(idx))
  return tuple(out)
