"""Where trained models come from: :func:`load` (``bpsr_jax.load``).

``source`` is one of

* the name of a packaged model (:data:`bpsr_jax.pretrained.NAMES`: ``"mnist"``,
  ``"mitbih"``), shipped with its params, flags and results;
* a run's workdir: the folder of a finished :func:`bpsr_jax.train.fit` run
  (``results.json`` with its flags, and ``checkpoints/``);
* a ``.nir`` file (:func:`bpsr_jax.nir_io.from_nir`). NIR carries the network but no
  input encoding: the model takes spike trains ``[N, T, ...]`` of any ``T``, unless
  ``load("net.nir", encoding="rank_order", time_steps=10)`` attaches an encoder.

The result is a :class:`bpsr_jax.inference.Predictor`. A run's flags
(``results.json["flags"]``) hold the binary's data flags (``workdir``, ``lc_delta``, ...)
besides the :class:`bpsr_jax.train.TrainConfig` fields: :func:`config_from_flags` splits
them. Every failure is one line naming the file: :class:`bpsr_jax.errors.ConfigError` (an
unknown source), :class:`~bpsr_jax.errors.WorkdirError` (no finished run),
:class:`~bpsr_jax.errors.CheckpointError` (an unreadable checkpoint),
:class:`~bpsr_jax.errors.DataError` (a corrupt results, params or ``.nir`` file; the
NIR importer's own ConfigError for a node it cannot simulate exactly, prefixed with the
file).

Entry points of :mod:`bpsr_jax.train` used here: ``TrainConfig`` (its dataclass
fields), ``make_model``, ``validate_config`` and ``final_params``; the predictor uses
``encode_input``.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, Mapping, Optional, Tuple

from bpsr_jax import errors
from bpsr_jax import models
from bpsr_jax import train
from bpsr_jax.inference import ENGINES, Predictor

PyTree = Any

#: Config fields that :func:`load` may override (the input encoding).
INPUT_OVERRIDES = ("encoding", "time_steps", "rank_by")


# ----------------------------------------------------------------------------------------
# Flags of a run -> configuration (the only place that knows TrainConfig's fields).


def config_fields() -> Tuple[str, ...]:
  """The names of the :class:`bpsr_jax.train.TrainConfig` fields."""
  return tuple(f.name for f in dataclasses.fields(train.TrainConfig))


def config_from_flags(flags: Mapping[str, Any]) -> Tuple[train.TrainConfig, Dict[str, Any]]:
  """Splits a run's recorded flags into its config and its data-level flags.

  ``results.json["flags"]`` holds every flag of the binary (``workdir``, ``data_dir``,
  ``train_limit``, ``lc_delta``, ...) besides the config fields, so
  ``TrainConfig(**flags)`` fails; this keeps the known fields.

  Args:
    flags: the recorded flags.

  Returns:
    ``(config, data_flags)``: the :class:`bpsr_jax.train.TrainConfig` and the other
    flags.

  Raises:
    ConfigError: a value the config rejects.
  """
  names = set(config_fields())
  kwargs = {k: v for k, v in flags.items() if k in names and v is not None}
  data = {k: v for k, v in flags.items() if k not in names}
  try:
    return train.TrainConfig(**kwargs), data
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f"flags {sorted(kwargs)}: {e}") from None


# ----------------------------------------------------------------------------------------
# Sources.


def _one_line(e: BaseException, limit: int = 300) -> str:
  """An exception's message on one line, at most ``limit`` characters."""
  text = " ".join(str(e).split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _read_json(path: pathlib.Path) -> Dict[str, Any]:
  try:
    out = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise errors.DataError(f"{path}: not a readable results file ({e})") from None
  if not isinstance(out, dict) or not isinstance(out.get("flags"), dict):
    raise errors.DataError(f"{path}: not a run's results (no 'flags' record)")
  return out


def _checkpoint_steps(ckdir: pathlib.Path):
  if not ckdir.is_dir():
    return []
  return sorted(int(p.name) for p in ckdir.iterdir() if p.is_dir() and p.name.isdigit())


def read_workdir(workdir: str | pathlib.Path) -> Tuple[PyTree, Dict[str, Any]]:
  """``(params, results)`` of a finished run (numpy params, the results.json dict).

  Raises:
    WorkdirError: no finished run in ``workdir``; CheckpointError: its checkpoint cannot
    be restored; DataError: an unreadable results.json.
  """
  workdir = pathlib.Path(workdir)
  results_path = workdir / "results.json"
  ckdir = workdir / "checkpoints"
  steps = _checkpoint_steps(ckdir)
  if not results_path.is_file():
    if steps:
      raise errors.WorkdirError(
          f"{workdir}: no finished run (no results.json; the run stopped at step "
          f"{steps[-1]}): re-run its command to finish it")
    raise errors.WorkdirError(f"{workdir}: not a run's workdir (no results.json, no "
                              "checkpoints/)")
  results = _read_json(results_path)
  if not steps:
    raise errors.CheckpointError(f"{ckdir}: no checkpoint of the finished run")
  if "steps" in results and steps[-1] != results["steps"]:
    raise errors.WorkdirError(
        f"{workdir}: the latest checkpoint is at step {steps[-1]} but results.json is for "
        f"step {results['steps']} (the run was continued and not finished)")
  try:
    params = train.final_params(workdir)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.CheckpointError(f"{ckdir}: cannot restore step {steps[-1]} "
                                 f"({type(e).__name__}: {_one_line(e)})") from None
  return params, results


def _load_nir(path: pathlib.Path) -> Tuple[models.SNN, PyTree]:
  try:
    from bpsr_jax import nir_io  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.ConfigError(f"{path}: reading .nir files needs bpsr_jax.nir_io and the "
                             f"'nir' package ({e})") from None
  try:
    return nir_io.from_nir(path)
  except errors.BpsrError as e:
    if str(path) in str(e):
      raise
    raise type(e)(f"{path}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f"{path}: not a readable NIR file ({type(e).__name__}: "
                           f"{_one_line(e)})") from None


def _nir_config(model: models.SNN) -> train.TrainConfig:
  enc = models.parse_spec(model.spec)[0].encoding
  return train.TrainConfig(
      model=model.spec, threshold=model.threshold, alpha=model.alpha,
      gradient=model.gradient, band_width=model.band_width,
      time_steps=model.time_steps or 1,
      encoding="analog" if enc else "none")


def load(source: str | pathlib.Path, *, engine: str = "dense",
         batch_size: Optional[int] = None, **overrides) -> Predictor:
  """Loads a trained model: a packaged model's name, a run's workdir or a ``.nir`` file.

  Args:
    source: ``"mnist"`` / ``"mitbih"`` (:data:`bpsr_jax.pretrained.NAMES`), a workdir
      of a finished run, or a ``.nir`` file.
    engine: ``"dense"`` or ``"event"`` (see :data:`ENGINES`).
    batch_size: samples per forward pass (default: the run's evaluation batch size).
    **overrides: input settings (:data:`INPUT_OVERRIDES`) that replace the recorded
      ones, e.g. ``encoding="rank_order", time_steps=10`` for a ``.nir`` network that
      should take analog samples.

  Returns:
    A :class:`bpsr_jax.inference.Predictor`.

  Raises:
    ConfigError: an unknown source, engine or override.
    WorkdirError: a workdir without a finished run.
    CheckpointError: its checkpoint cannot be restored.
    DataError: a corrupt results.json, params file or ``.nir`` file, or a ``.nir``
      graph with nodes bpsr_jax cannot simulate exactly (the message names the file).
  """
  from bpsr_jax import pretrained  # pylint: disable=g-import-not-at-top
  bad = sorted(set(overrides) - set(INPUT_OVERRIDES))
  if bad:
    raise errors.ConfigError(f"load: unknown overrides {bad}; allowed: {INPUT_OVERRIDES}")
  if engine not in ENGINES:
    raise errors.ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
  name = str(source)
  path = pathlib.Path(source).expanduser()
  results = None
  if name in pretrained.NAMES and not path.exists():
    params, results = pretrained.load(name)
    where = f"bpsr_jax.pretrained:{name}"
  elif path.is_dir():
    params, results = read_workdir(path)
    where = str(path)
  elif path.is_file() and path.suffix == ".nir":
    model, params = _load_nir(path)
    cfg = dataclasses.replace(_nir_config(model), **overrides)
    _validate(cfg, str(path))
    if cfg.encoding != "none" and model.time_steps != cfg.time_steps:
      model = model.clone(time_steps=cfg.time_steps)
    return Predictor(model, params, cfg, source=str(path), engine=engine,
                     batch_size=batch_size,
                     fixed_time_steps=cfg.encoding != "none" or "time_steps" in overrides)
  elif path.is_file():
    raise errors.ConfigError(f"{path}: not a run's workdir, a .nir file or a packaged "
                             f"model ({', '.join(pretrained.NAMES)})")
  else:
    raise errors.ConfigError(f"{path}: no such workdir or .nir file, and not a packaged "
                             f"model ({', '.join(pretrained.NAMES)})")
  cfg, data_flags = config_from_flags(results["flags"])
  cfg = dataclasses.replace(cfg, **overrides)
  _validate(cfg, where)
  model = train.make_model(cfg)
  _check_params(model, params, cfg, where)
  return Predictor(model, params, cfg, data_flags=data_flags, results=results,
                   source=where, engine=engine, batch_size=batch_size)


def _validate(cfg: train.TrainConfig, where: str):
  try:
    train.validate_config(cfg)
  except ValueError as e:
    raise errors.ConfigError(f"{where}: {e}") from None


def _check_params(model: models.SNN, params: PyTree, cfg: train.TrainConfig, where: str):
  """The params must have the layers of the model's spec (names and ranks)."""
  specs = models.parse_spec(cfg.model)
  expected = []
  for i, ls in enumerate(specs):
    if ls.kind in ("fc", "r"):
      expected.append(f"{ls.kind}{i}")
    elif ls.kind == "conv":
      expected.append(f"conv{i}")
    elif ls.kind == "residual":
      expected.append(f"res{i}")
  if sorted(params) != sorted(expected):
    raise errors.DataError(f"{where}: params hold layers {sorted(params)}, the model "
                           f"{cfg.model!r} has {sorted(expected)}")
