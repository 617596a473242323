"""Shared plumbing of the sparsity studies: data, a training run through ``bpsr_jax.train``."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
from typing import Any, Dict, List, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))
SHARED_DATA = pathlib.Path(os.environ.get("BPSR_DATA", ROOT.parent / "shared" / "data"))
DOCS = ROOT / "docs"


def data_dir(name: str) -> pathlib.Path:
  d = SHARED_DATA / name
  if not d.is_dir():
    raise SystemExit(f"{d} not found: the studies read the real data from ../shared/data "
                     f"(or set BPSR_DATA to the folder holding {name}/)")
  return d


def load(dataset: str, limit: int | None = None, seed: int = 0):
  """``(train, test)`` of ``"gas"`` (UCI gas drift, 128 features, 6 gases), ``"mitbih"``
  (5 classes, level-crossing spikes, T = 40) or ``"mnist"``."""
  from bpsr_jax import data
  if dataset == "gas":
    return data.load_gas_drift(data_dir("gas-drift"), limit=limit, seed=seed)
  if dataset == "mitbih":
    return data.load_mitbih(data_dir("mitdb"), limit=limit, seed=seed)
  if dataset == "mnist":
    return data.load_mnist(data_dir("mnist"), limit=limit)
  raise SystemExit(f"unknown dataset {dataset!r}: gas, mitbih or mnist")


def fit(train_ds, test_ds, workdir: pathlib.Path, initial_mask=None, **cfg_kwargs
        ) -> Tuple[List[Dict[str, Any]], Any]:
  """A fresh run of ``bpsr_jax.train.fit``; returns (per-epoch metrics, final params)."""
  from absl import logging
  from bpsr_jax import train
  logging.set_verbosity(logging.WARNING)
  workdir = pathlib.Path(workdir)
  if workdir.exists():
    shutil.rmtree(workdir)
  cfg = train.TrainConfig(**cfg_kwargs)
  train.fit(train_ds, test_ds, cfg, workdir, initial_mask=initial_mask)
  hist = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()
          if l.strip()]
  return hist, train.final_params(workdir)


def save_json(obj, path: pathlib.Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(obj, indent=1, default=float))
