"""Flags and the main shared by the experiment binaries.

Every binary is ``python -m experiments.<name> [--flagfile=experiments/flagfiles/...]``;
it defines its data flags and a loader, takes its defaults from its paper flagfile
(:func:`set_defaults_from_flagfile`: the one place an experiment's defaults live) and
calls :func:`run`. The training flags are generated from
:class:`bpsr_jax.config.TrainConfig` (name, type, default, help), so they cannot drift
from it; ``--help`` lists them (each binary adopts this module's flags).

Errors are one line on stderr with the exit codes of :mod:`bpsr_jax.errors` (2 bad
setting, 3 divergence, 4 data, 5 checkpoint, 6 workdir, 7 file system); ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import logging as py_logging
import pathlib
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from absl import flags
from absl import logging

from bpsr_jax import config
from bpsr_jax import errors

FLAGS = flags.FLAGS
FLAGFILES = pathlib.Path(__file__).resolve().parent / "flagfiles"

# Run location and data (not part of TrainConfig).
flags.DEFINE_string("workdir", None, "Run folder: run.json, checkpoints/, metrics.jsonl, "
                    "TensorBoard events, results.json. Re-running with the same --workdir "
                    "resumes the run. Default: workdirs/<experiment> under the current "
                    "directory.")
flags.DEFINE_bool("overwrite", False, "Delete the files of an earlier run in --workdir "
                  "and start afresh (without it, a workdir holding another run is "
                  "refused).")
flags.DEFINE_string("data_dir", None, "Folder with the dataset's original files (see the "
                    "experiment's docstring for the layout).")
flags.DEFINE_integer("train_limit", None, "Use at most this many training examples "
                     "(a seeded random subset, for quick runs and tests).")
flags.DEFINE_integer("test_limit", None, "Use at most this many test examples.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Call jax.distributed.initialize (multi-host): 'auto' does when the "
                  "environment names a coordinator (JAX_COORDINATOR_ADDRESS, Slurm, "
                  "multi-host Cloud TPU).")
flags.DEFINE_integer("stop_after_steps", None, "Stop (with a checkpoint) once the "
                     "global step reaches this (> 0); re-run the same command to "
                     "continue.")
flags.DEFINE_bool("debug", False, "Show the traceback of an error instead of one line.")
# The training settings: one flag per TrainConfig field.
config.define_flags(FLAGS, __name__)

#: Flags of this module that are not part of a run's identity.
_NOT_DATA = ("workdir", "overwrite", "data_dir", "distributed", "stop_after_steps",
             "debug")


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's INFO chatter (one dozen lines per checkpoint) from the log."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def _setup_logging():
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  py_logging.getLogger("absl").addFilter(_QuietOrbax())


def set_defaults_from_flagfile(name: str) -> None:
  """Makes ``flagfiles/<name>`` the binary's defaults (call at import, before parsing).

  The flagfile is the single place of an experiment's defaults: ``python -m
  experiments.mnist`` runs exactly ``--flagfile=experiments/flagfiles/mnist.flags``.
  """
  for k, v in config.read_flagfile(FLAGFILES / name).items():
    FLAGS.set_default(k, v if isinstance(v, bool) else FLAGS[k]._parse(v))  # pylint: disable=protected-access


def flag_values(extra: Sequence[str] = ()) -> Dict[str, Any]:
  """The values of the shared flags and the binary's ``extra`` flags."""
  names = [f.name for f in FLAGS.get_flags_for_module(__name__)] + list(extra)
  return {n: FLAGS[n].value for n in names}


def make_config() -> config.TrainConfig:
  """A :class:`bpsr_jax.config.TrainConfig` from the flags."""
  return config.from_flags(FLAGS)


def limit_dataset(ds, limit: Optional[int], seed: int):
  """A seeded random subset of at most ``limit`` examples (all when ``limit`` is None).

  The notebook uses the same function, so its runs select the same examples.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  if limit is None or limit >= len(ds):
    return ds
  if limit <= 0:
    raise errors.ConfigError(f"limits must be positive, got {limit}")
  idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(ds))[:limit])
  return ds.take(idx)


def _fail(e: BaseException) -> None:
  """One line and the documented exit code (a bug keeps its traceback)."""
  code = errors.exit_code(e)
  if FLAGS.debug or code == 1:
    raise e
  logging.error("%s", e)
  print(f"error: {e}", file=sys.stderr)
  sys.exit(code)


def run(name: str, load: Callable[[], Tuple[Any, Any]], *,
        extra_flags: Sequence[str] = (),
        check: Optional[Callable[[Any], None]] = None) -> Dict[str, Any]:
  """The body of every experiment's main: flags -> config -> data -> :func:`fit`.

  Args:
    name: the experiment name (default workdir ``workdirs/<name>``).
    load: returns ``(train, test)`` datasets from the flags; may raise
      ``FileNotFoundError`` (reported naming ``--data_dir``).
    extra_flags: the binary's own flags: recorded in results.json, and (as data
      settings) part of the run's identity.
    check: optional extra validation of the config (raise ``ConfigError``).

  Returns:
    The results dict.
  """
  try:
    return _run(name, load, extra_flags, check)
  except (errors.BpsrError, OSError) as e:
    _fail(e)
  return {}


def _run(name, load, extra_flags, check):
  _setup_logging()
  from bpsr_jax import _process  # pylint: disable=g-import-not-at-top
  _process.tune_malloc()  # freed step buffers reused: no GLIBC_TUNABLES needed
  from bpsr_jax import train  # pylint: disable=g-import-not-at-top
  train.maybe_initialize_distributed(FLAGS.distributed)
  import jax  # pylint: disable=g-import-not-at-top

  cfg = make_config()
  config.validate_config(cfg, num_devices=jax.device_count())
  if FLAGS.stop_after_steps is not None and FLAGS.stop_after_steps <= 0:
    raise errors.ConfigError(
        f"--stop_after_steps must be positive, got {FLAGS.stop_after_steps}")
  for n in ("train_limit", "test_limit"):
    if FLAGS[n].value is not None and FLAGS[n].value <= 0:
      raise errors.ConfigError(f"--{n} must be positive, got {FLAGS[n].value}")
  if check is not None:
    check(cfg)
  try:
    train_ds, test_ds = load()
  except FileNotFoundError as e:
    raise errors.DataError(f"--data_dir={FLAGS.data_dir!r}: {e}") from None
  except ValueError as e:
    if isinstance(e, errors.BpsrError):
      raise
    raise errors.DataError(f"{name} data (--data_dir={FLAGS.data_dir!r}): {e}") from None
  train_ds = limit_dataset(train_ds, FLAGS.train_limit, FLAGS.seed)
  test_ds = limit_dataset(test_ds, FLAGS.test_limit, FLAGS.seed + 1)
  workdir = FLAGS.workdir or str(pathlib.Path("workdirs") / name)
  logging.info("%s: %d train / %d test examples, %d classes, kind %s, x %s; workdir %s",
               name, len(train_ds), len(test_ds), train_ds.num_classes, train_ds.kind,
               train_ds.x.shape[1:], workdir)
  data_settings = {n: FLAGS[n].value for n in ("train_limit", "test_limit", *extra_flags)}
  data_settings["experiment"] = name
  results = train.fit(train_ds, test_ds, cfg, workdir,
                      flags_used=flag_values(extra_flags),
                      stop_after_steps=FLAGS.stop_after_steps,
                      data_settings=data_settings, overwrite=FLAGS.overwrite)
  if results:
    print(f"{name}: test accuracy {results['test_accuracy']:.4f}"
          f" (balanced {results['balanced_accuracy']:.4f}), firing rate "
          f"{results['firing_rate']:.4f}, {results['spikes_per_sample']:.1f} spikes/sample, "
          f"{results['synapses']} synapses, {results['synaptic_ops_per_sample']:.0f} "
          f"synops/sample, {results['train_seconds']:.0f} s; {workdir}/results.json")
  return results
