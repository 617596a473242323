"""Pretrained models shipped with the package, stored sparse: ``bpsr_jax.load("mnist")``.

Each model is a folder ``bpsr_jax/pretrained/<name>/`` with

* ``params.npz`` (:func:`save_params`): every ``kernel`` / ``recurrent_kernel`` as its
  shape, a bit mask of its non-zero entries (``np.packbits``, C order) and the non-zero
  float32 values in that order; the other leaves (``bias``, ``tau``) dense; all in one
  ``np.savez_compressed`` file. Loading restores the float32 params exactly.
* ``results.json``: the run's results, with the flags it was trained with;
* ``NOTE.md``: the data it was trained on and the command that trained it.

:func:`pack` writes such a folder from a finished run's workdir.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Dict, Tuple

import numpy as np

from bpsr_jax import errors

PyTree = Any

#: The packaged models.
NAMES = ("mnist", "mitbih")
DIR = pathlib.Path(__file__).resolve().parent
#: Leaves stored sparse (mask + non-zero values); the rest are stored dense.
SPARSE_LEAVES = ("kernel", "recurrent_kernel")


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = np.asarray(v)
  return out


def _unflatten(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  tree: Dict[str, Any] = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def save_params(params: PyTree, path: str | pathlib.Path) -> None:
  """Writes params (nested dicts of arrays) to a sparse compressed ``.npz``.

  Args:
    params: the model params; every leaf float32.
    path: the ``.npz`` file.
  """
  arrays = {}
  for name, w in _flatten(params).items():
    w = np.asarray(w, np.float32)
    if name.rsplit("/", 1)[-1] in SPARSE_LEAVES:
      nonzero = w != 0
      arrays[name + ".shape"] = np.asarray(w.shape, np.int64)
      arrays[name + ".mask"] = np.packbits(nonzero.ravel())
      arrays[name + ".values"] = w[nonzero]
    else:
      arrays[name] = w
  np.savez_compressed(path, **arrays)


def load_params(path: str | pathlib.Path) -> PyTree:
  """Reads params written by :func:`save_params` (numpy float32 arrays).

  Raises:
    DataError: a missing, truncated or inconsistent file (named).
  """
  path = pathlib.Path(path)
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f"{path}: not a readable params file ({type(e).__name__}: "
                           f"{e})") from None
  flat = {}
  for key, v in arrays.items():
    if key.endswith((".mask", ".values")):
      continue
    if key.endswith(".shape"):
      name = key[:-len(".shape")]
      shape = tuple(int(d) for d in v)
      size = int(np.prod(shape))
      mask_key, values_key = name + ".mask", name + ".values"
      if mask_key not in arrays or values_key not in arrays:
        raise errors.DataError(f"{path}: {name} lacks its mask or values")
      mask = np.unpackbits(arrays[mask_key], count=size).astype(bool)
      values = arrays[values_key]
      if mask.size != size or int(mask.sum()) != values.size:
        raise errors.DataError(f"{path}: {name} has {values.size} values for "
                               f"{int(mask.sum())} non-zero entries of shape {shape}")
      w = np.zeros(size, np.float32)
      w[mask] = values
      flat[name] = w.reshape(shape)
    else:
      flat[key] = np.asarray(v, np.float32)
  return _unflatten(flat)


def load(name: str) -> Tuple[PyTree, Dict[str, Any]]:
  """``(params, results)`` of a packaged model.

  Raises:
    ConfigError: an unknown name.
    DataError: a missing or corrupt packaged file.
  """
  if name not in NAMES:
    raise errors.ConfigError(f"no packaged model {name!r}; packaged: {', '.join(NAMES)}")
  folder = DIR / name
  results_path = folder / "results.json"
  try:
    results = json.loads(results_path.read_text())
  except (OSError, ValueError) as e:
    raise errors.DataError(f"{results_path}: cannot read the packaged results ({e})") from None
  return load_params(folder / "params.npz"), results


def pack(workdir: str | pathlib.Path, name: str, note: str,
         out_dir: str | pathlib.Path | None = None) -> pathlib.Path:
  """Packages a finished run: ``params.npz``, ``results.json`` and ``NOTE.md``.

  Args:
    workdir: the run's workdir (finished: ``results.json`` and its last checkpoint).
    name: the model's name (the folder name).
    note: the text of ``NOTE.md`` (the data, the command).
    out_dir: the parent folder; default this package's folder.

  Returns:
    The model's folder. The params are read back and checked to be identical.
  """
  from bpsr_jax import loading  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  params, _ = loading.read_workdir(workdir)
  folder = pathlib.Path(out_dir or DIR) / name
  folder.mkdir(parents=True, exist_ok=True)
  save_params(params, folder / "params.npz")
  shutil.copyfile(workdir / "results.json", folder / "results.json")
  (folder / "NOTE.md").write_text(note.rstrip() + "\n")
  back = _flatten(load_params(folder / "params.npz"))
  for k, v in _flatten(params).items():
    if not np.array_equal(back[k], np.asarray(v, np.float32)):
      raise errors.DataError(f"{folder / 'params.npz'}: {k} did not read back identical")
  return folder
