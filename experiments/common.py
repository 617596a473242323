"""Flags and the main shared by the experiment binaries.

Every binary is ``python -m experiments.<name> [--flagfile=experiments/flagfiles/...]``;
it defines its data flags, its defaults and a loader, and calls :func:`run`. The flags
below map one to one onto :class:`bpsr_jax.train.TrainConfig`.
"""
from __future__ import annotations

import dataclasses
import logging as py_logging
import pathlib
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

# Run location and data.
flags.DEFINE_string("workdir", None, "Run folder: checkpoints/, metrics.jsonl, "
                    "results.json. Re-running with the same --workdir resumes the run. "
                    "Default: workdirs/<experiment> under the current directory.")
flags.DEFINE_string("data_dir", None, "Folder with the dataset's original files (see the "
                    "experiment's docstring for the layout).")
flags.DEFINE_integer("train_limit", None, "Use at most this many training examples "
                     "(a subset, for quick runs and tests).")
flags.DEFINE_integer("test_limit", None, "Use at most this many test examples.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Call jax.distributed.initialize (multi-host): 'auto' does when the "
                  "environment names a coordinator (JAX_COORDINATOR_ADDRESS, Slurm, "
                  "multi-host Cloud TPU).")
flags.DEFINE_integer("stop_after_steps", None, "Stop (with a checkpoint) once the "
                     "global step reaches this; re-run the same command to continue.")

# Model.
flags.DEFINE_string("model", None, "Model spec, e.g. 'r1000-fc100-fc10' (fcN flat, rN "
                    "recurrent, CcK/S conv, pK/aK pooling, [..] residual block, 'e' prefix "
                    "= encoding layer).")
flags.DEFINE_float("threshold", 1.0, "Firing threshold U_th (also the clamp bound of "
                   "weights and biases).")
flags.DEFINE_float("alpha", 0.5, "Width of the Gaussian surrogate gradient.")
flags.DEFINE_enum("gradient", "bpsr", ["bpsr", "autodiff"], "'bpsr': the paper's "
                  "iterative gradient; 'autodiff': BPTT through the scan (same values).")
flags.DEFINE_float("tau_init", 0.5, "Initial leak factor tau.")
flags.DEFINE_float("bias_high", 1.0, "Biases start U(0, bias_high) (paper: 1).")
flags.DEFINE_float("weight_gain", 1.0, "Dense kernels start N(0, gain / sqrt(fan_in)).")

# Input.
flags.DEFINE_integer("time_steps", 25, "Time window T (for spike datasets: the frames "
                     "or steps of the encoding).")
flags.DEFINE_enum("encoding", None, ["rate", "rank_order", "analog", "none"],
                  "Input coding: 'rate' (Bernoulli), 'rank_order' (one spike per input, "
                  "larger earlier), 'analog' (to the model's encoding layer), 'none' "
                  "(the dataset is already spikes).")
flags.DEFINE_enum("rank_by", "value", ["value", "rank"], "Rank order: the spike step "
                  "from the value, or from the rank within the sample.")

flags.DEFINE_integer("augment_shift", 0, "Training augmentation of image datasets: "
                     "translate each image by a random offset in [-s, s] pixels (zero "
                     "fill) before encoding; 0 = off. Never applied to the test set.")

# Optimization.
flags.DEFINE_integer("epochs", 10, "Passes over the training set.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (divisible by the number of "
                     "devices).")
flags.DEFINE_integer("eval_batch_size", 0, "Evaluation batch size; 0 = --batch_size.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamw", "sgd"], "Inner optimizer "
                  "(wrapped by rewiring when --rewire).")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.")
flags.DEFINE_float("weight_decay", 1e-4, "AdamW decoupled weight decay.")
flags.DEFINE_float("sgd_momentum", 0.9, "SGD momentum (0 = plain SGD).")
flags.DEFINE_enum("schedule", "constant", ["constant", "cosine", "step", "exponential"],
                  "Learning-rate schedule.")
flags.DEFINE_float("lr_decay", 0.5, "Factor of the step/exponential schedule.")
flags.DEFINE_float("lr_decay_epochs", 10.0, "Period (epochs) of the step/exponential "
                   "schedule.")
flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warmup steps.")
flags.DEFINE_float("clip_norm", 0.0, "Clip the gradient's global norm; 0 = off.")

# BPSR loss and rewiring.
flags.DEFINE_float("lambda_s", 0.0, "Spiking-sparsity coefficient (eq. 4): times the "
                   "hidden spikes per sample.")
flags.DEFINE_float("lambda_w", 0.0, "Synaptic-sparsity coefficient (eq. 4): times the "
                   "l1 norm of all weights.")
flags.DEFINE_float("count_scale", 10.0, "k * T: output spike counts are scaled by "
                   "k = count_scale / T before the softmax (eq. 5).")
flags.DEFINE_bool("rewire", False, "Prune and regrow synapses (eq. 14-15).")
flags.DEFINE_float("prune_threshold", 1e-3, "theta_w: synapses with |w| below it are "
                   "pruned.")
flags.DEFINE_float("grow_threshold", 1e-3, "theta_m: synapses whose gradient momentum "
                   "exceeds it (plus the distance term) grow.")
flags.DEFINE_float("distance_scale", 0.0, "mu_m: the growth bar rises by mu_m times "
                   "the neurons' distance.")
flags.DEFINE_float("rewire_momentum", 0.9, "beta_m of the rewiring gradient momentum.")
flags.DEFINE_bool("clamp", True, "Clamp weights and biases to [-U_th, U_th] and tau to "
                  "[0, 1] after every step.")

# Run.
flags.DEFINE_integer("seed", 0, "Seed of the init, shuffling, encoding and split.")
flags.DEFINE_integer("log_every", 50, "One progress line every this many steps.")
flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every this many steps (and at "
                     "each epoch end).")
flags.DEFINE_bool("balanced_accuracy", False, "Show the balanced accuracy (mean "
                  "per-class recall) in the epoch summaries (always in results.json).")
flags.DEFINE_integer("keep_checkpoints", 3, "How many checkpoints to keep.")

def _config_names() -> Tuple[str, ...]:
  from bpsr_jax import train  # pylint: disable=g-import-not-at-top
  return tuple(f.name for f in dataclasses.fields(train.TrainConfig))


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's INFO chatter (one dozen lines per checkpoint) from the log."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def _setup_logging():
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  py_logging.getLogger("absl").addFilter(_QuietOrbax())


def set_defaults(**defaults):
  """Sets the binary's defaults of the shared flags (call at import, before parsing)."""
  for k, v in defaults.items():
    FLAGS.set_default(k, v)


def flag_values(extra: Sequence[str] = ()) -> Dict[str, Any]:
  """The values of the shared flags and the binary's ``extra`` flags."""
  names = [f.name for f in FLAGS.get_flags_for_module(__name__)] + list(extra)
  return {n: FLAGS[n].value for n in names}


def make_config():
  """A :class:`bpsr_jax.train.TrainConfig` from the flags."""
  from bpsr_jax import train  # pylint: disable=g-import-not-at-top
  kwargs = {n: FLAGS[n].value for n in _config_names() if n in FLAGS}
  return train.TrainConfig(**kwargs)


def limit_dataset(ds, limit: Optional[int], seed: int):
  """A seeded random subset of at most ``limit`` examples (all when ``limit`` is None)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if limit is None or limit >= len(ds):
    return ds
  if limit <= 0:
    raise app.UsageError(f"limits must be positive, got {limit}")
  idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(ds))[:limit])
  return ds.take(idx)


def run(name: str, load: Callable[[], Tuple[Any, Any]], *,
        extra_flags: Sequence[str] = (),
        check: Optional[Callable[[Any], None]] = None) -> Dict[str, Any]:
  """The body of every experiment's main: flags -> config -> data -> :func:`fit`.

  Args:
    name: the experiment name (default workdir ``workdirs/<name>``).
    load: returns ``(train, test)`` datasets from the flags; may raise
      ``FileNotFoundError`` (reported as a usage error naming ``--data_dir``).
    extra_flags: the binary's own flags, recorded in results.json.
    check: optional extra validation of the config (raise ``ValueError``).

  Returns:
    The results dict.
  """
  _setup_logging()
  from bpsr_jax import _process  # pylint: disable=g-import-not-at-top
  _process.tune_malloc()  # freed step buffers reused: no GLIBC_TUNABLES needed
  from bpsr_jax import train  # pylint: disable=g-import-not-at-top
  train.maybe_initialize_distributed(FLAGS.distributed)
  import jax  # pylint: disable=g-import-not-at-top

  cfg = make_config()
  try:
    train.validate_config(cfg, num_devices=jax.device_count())
    if check is not None:
      check(cfg)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  try:
    train_ds, test_ds = load()
  except FileNotFoundError as e:
    raise app.UsageError(f"--data_dir={FLAGS.data_dir!r}: {e}") from None
  train_ds = limit_dataset(train_ds, FLAGS.train_limit, FLAGS.seed)
  test_ds = limit_dataset(test_ds, FLAGS.test_limit, FLAGS.seed + 1)
  workdir = FLAGS.workdir or str(pathlib.Path("workdirs") / name)
  logging.info("%s: %d train / %d test examples, %d classes, kind %s, x %s; workdir %s",
               name, len(train_ds), len(test_ds), train_ds.num_classes, train_ds.kind,
               train_ds.x.shape[1:], workdir)
  try:
    results = train.fit(train_ds, test_ds, cfg, workdir,
                        flags_used=flag_values(extra_flags),
                        stop_after_steps=FLAGS.stop_after_steps)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  except train.NonFiniteLossError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  if results:
    print(f"{name}: test accuracy {results['test_accuracy']:.4f}"
          f" (balanced {results['balanced_accuracy']:.4f}), firing rate "
          f"{results['firing_rate']:.4f}, {results['spikes_per_sample']:.1f} spikes/sample, "
          f"{results['synapses']} synapses, {results['synaptic_ops_per_sample']:.0f} "
          f"synops/sample, {results['train_seconds']:.0f} s; {workdir}/results.json")
  return results
