"""A run's folder: its identity (``run.json``), the resume check, and what it may hold.

``<workdir>/run.json`` is written when a run starts and records everything that changes
its result: the whole :class:`bpsr_jax.config.TrainConfig` and the data (the loader's
settings, e.g. limits, split, windows, and a fingerprint of the training and test arrays:
shapes and a BLAKE2 hash). :func:`check` compares a new invocation's identity with it
before anything is restored:

* a config field outside :data:`bpsr_jax.config.MAY_CHANGE_ON_RESUME`, a data setting
  other than ``test_limit``, or different training arrays: a one-line
  :class:`bpsr_jax.errors.WorkdirError` naming the setting;
* ``epochs`` may grow, and only where the schedule does not depend on it (not
  ``cosine``);
* evaluation settings (``eval_batch_size``, ``test_limit``, the test arrays) may change:
  the results are then computed afresh from the restored parameters.

A workdir holding a run's files but no ``run.json`` (another run, or one written before
``run.json`` existed) is refused. ``overwrite=True`` deletes the earlier run's files
(:data:`RUN_FILES`) first; nothing else in the folder is touched.
"""
from __future__ import annotations

import hashlib
import json
import math
import pathlib
import shutil
from typing import Any, Dict, Mapping, Optional

import jax
import numpy as np

from bpsr_jax import errors
from bpsr_jax.config import MAY_CHANGE_ON_RESUME, TrainConfig

RUN_FILE = "run.json"
#: What a run writes into its workdir (TensorBoard event files match ``events.out.*``).
RUN_FILES = ("run.json", "checkpoints", "metrics.jsonl", "results.json")
_EVAL_DATA = ("test_limit",)


def jsonable(x):
  """``x`` with numpy/JAX values as Python ones and non-finite floats as ``None``."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.generic, jax.Array, np.ndarray)):
    return jsonable(np.asarray(x).tolist())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def fingerprint(ds) -> Dict[str, Any]:
  """``{"n", "x_shape", "num_classes", "hash"}`` of a dataset (BLAKE2b of x and y)."""
  h = hashlib.blake2b(digest_size=16)
  for a in (ds.x, ds.y):
    a = np.ascontiguousarray(a)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))
  return dict(n=len(ds), x_shape=list(ds.x.shape[1:]), num_classes=int(ds.num_classes),
              hash=h.hexdigest())


def identity(cfg: TrainConfig, train_ds, test_ds,
             data_settings: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """The identity of a run (what ``run.json`` holds)."""
  return jsonable(dict(config=cfg.to_dict(), data_settings=dict(data_settings or {}),
                       train_data=fingerprint(train_ds), test_data=fingerprint(test_ds)))


def _other_run_files(workdir: pathlib.Path):
  found = [n for n in RUN_FILES if (workdir / n).exists()]
  return found + sorted(p.name for p in workdir.glob("events.out.tfevents.*"))


def remove_run(workdir: pathlib.Path) -> None:
  """Deletes the files a run wrote (:data:`RUN_FILES` and event files), nothing else."""
  for name in _other_run_files(workdir):
    p = workdir / name
    if p.is_dir():
      shutil.rmtree(p)
    else:
      p.unlink()


def check(workdir: pathlib.Path, ident: Mapping[str, Any], *,
          overwrite: bool = False) -> Optional[Dict[str, Any]]:
  """Compares a run's identity with the workdir's, before anything is restored.

  Args:
    workdir: the run folder.
    ident: the new run's :func:`identity`.
    overwrite: delete an earlier run's files (any identity) and start afresh.

  Returns:
    The identity recorded in the workdir (``None`` for a fresh start).

  Raises:
    WorkdirError: the workdir holds another run (names the first differing setting).
  """
  found = _other_run_files(workdir) if workdir.is_dir() else []
  if overwrite:
    remove_run(workdir)
    return None
  if not found:
    return None
  path = workdir / RUN_FILE
  hint = ("use the original settings to resume it, another --workdir, or --overwrite to "
          "delete it")
  if not path.exists():
    raise errors.WorkdirError(
        f"{workdir} holds files of another run ({', '.join(found)}) but no {RUN_FILE} "
        f"saying which: {hint}")
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise errors.WorkdirError(f"{path} is unreadable ({e}): {hint}") from None
  new_cfg, old_cfg = ident["config"], old.get("config", {})
  # A setting that an older run.json lacks was added to TrainConfig after that run, which
  # ran as its default does (e.g. band_width, used only by --gradient=band).
  old_cfg = {**TrainConfig().to_dict(), **old_cfg} if old_cfg else old_cfg
  for name, v in new_cfg.items():
    if name in MAY_CHANGE_ON_RESUME:
      continue
    if old_cfg.get(name) != v:
      raise errors.WorkdirError(
          f"{workdir} holds a run with {name}={old_cfg.get(name)!r}, not {v!r}: {hint}")
  if new_cfg["epochs"] != old_cfg.get("epochs") and new_cfg["schedule"] == "cosine":
    raise errors.WorkdirError(
        f"{workdir} holds a run with epochs={old_cfg.get('epochs')!r}, not "
        f"{new_cfg['epochs']!r}: the cosine schedule depends on the number of epochs; "
        + hint)
  if new_cfg["epochs"] < old_cfg.get("epochs", 0):
    raise errors.WorkdirError(
        f"{workdir} holds a run of epochs={old_cfg.get('epochs')!r}; --epochs may grow on "
        f"resume, not shrink to {new_cfg['epochs']!r}: {hint}")
  old_ds, new_ds = old.get("data_settings", {}), ident["data_settings"]
  for name in sorted(set(old_ds) | set(new_ds)):
    if name not in _EVAL_DATA and old_ds.get(name) != new_ds.get(name):
      raise errors.WorkdirError(
          f"{workdir} holds a run with {name}={old_ds.get(name)!r}, not "
          f"{new_ds.get(name)!r}: {hint}")
  if old.get("train_data") != ident["train_data"]:
    o, n = old.get("train_data", {}), ident["train_data"]
    raise errors.WorkdirError(
        f"{workdir} holds a run trained on other data ({o.get('n')} examples of "
        f"{o.get('x_shape')}, hash {o.get('hash')}; now {n['n']} of {n['x_shape']}, hash "
        f"{n['hash']}): {hint}")
  return old


def eval_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
  """Whether two identities differ in their evaluation settings or test data."""
  return (old.get("test_data") != new["test_data"]
          or any(old.get("data_settings", {}).get(k) != new["data_settings"].get(k)
                 for k in _EVAL_DATA)
          or old["config"].get("eval_batch_size") != new["config"]["eval_batch_size"])


def write_identity(workdir: pathlib.Path, ident: Mapping[str, Any]) -> None:
  (workdir / RUN_FILE).write_text(json.dumps(ident, indent=2) + "\n")
