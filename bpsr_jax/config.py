"""The one source of a training run's settings: :class:`TrainConfig`.

Every field carries its help text (and, for a choice, its allowed values) in its
metadata; the experiment binaries generate their absl flags from it
(:func:`define_flags`), so a flag's name, type, default and help cannot drift from the
config. A run's identity (what :func:`bpsr_jax.train.fit` compares on resume) is every
field except :data:`MAY_CHANGE_ON_RESUME`.

Flagfiles (``experiments/flagfiles/*.flags``) stay the user's interface;
:func:`read_flagfile` reads one into a dict that :meth:`TrainConfig.from_dict` turns into
a config, as the notebook does.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Dict, Mapping, Optional, Tuple

from bpsr_jax import errors
from bpsr_jax import losses
from bpsr_jax import models
from bpsr_jax import neuron

ENCODINGS = ("rate", "rank_order", "analog", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "exponential")
GRADIENTS = ("bpsr", "band", "autodiff")
RANK_BY = ("value", "rank")

#: Settings a resumed run may change: they do not change the trained parameters.
#: ``epochs`` only where the schedule does not depend on it (every schedule but
#: ``cosine``); ``eval_batch_size`` is an evaluation setting (a finished run's results are
#: recomputed when it changes). Every other field must equal the checkpointed run's.
MAY_CHANGE_ON_RESUME = ("epochs", "eval_batch_size", "log_every", "checkpoint_every",
                        "keep_checkpoints", "balanced_accuracy", "divergence_patience")
#: The evaluation settings among them.
EVAL_SETTINGS = ("eval_batch_size",)


def _field(default, help_text: str, choices: Optional[Tuple[str, ...]] = None):
  return dataclasses.field(default=default,
                           metadata={"help": help_text, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run depends on; the experiment flags are generated from it.

  Each field's help text is in its metadata (``dataclasses.fields(TrainConfig)``) and is
  the help of the flag of the same name (``python -m experiments.mnist --help``).
  """

  # Model.
  model: str = _field("r1000-fc100-fc10", "Model spec, e.g. 'r1000-fc100-fc10' (fcN "
                      "flat, rN recurrent, CcK/S conv, pK/aK pooling, [..] residual block, "
                      "'e' prefix = encoding layer).")
  threshold: float = _field(1.0, "Firing threshold U_th (also the clamp bound of weights "
                            "and biases).")
  alpha: float = _field(0.5, "Width of the Gaussian surrogate gradient.")
  gradient: str = _field("bpsr", "'bpsr': the paper's iterative gradient; 'autodiff': "
                         "BPTT through the scan (same values); 'band': bpsr with the "
                         "gradient stopped at neurons outside |u - U_th| < --band_width "
                         "(Perez-Nieves & Goodman 2021; approximate).", GRADIENTS)
  band_width: float = _field(neuron.DEFAULT_BAND_WIDTH, "Half-width of the band around "
                             "the threshold, in units of membrane potential, inside which "
                             "--gradient=band propagates the gradient (ignored by the "
                             "other gradients). Neurons resting outside it get no "
                             "gradient: with the MNIST main job's zero biases 0.5 does "
                             "not learn, 1.5 (the default) does (README).")
  tau_init: float = _field(0.5, "Initial leak factor tau, in [0, 1].")
  bias_high: float = _field(1.0, "Biases start U(0, bias_high) (paper: 1).")
  weight_gain: float = _field(1.0, "Dense kernels start N(0, gain / sqrt(fan_in)).")
  # Input.
  time_steps: int = _field(25, "Time window T (for spike datasets: the frames or steps "
                           "of the encoding).")
  encoding: str = _field("rank_order", "Input coding: 'rate' (Bernoulli), 'rank_order' "
                         "(one spike per input, larger earlier), 'analog' (to the model's "
                         "encoding layer), 'none' (the dataset is already spikes).",
                         ENCODINGS)
  rank_by: str = _field("value", "Rank order: the spike step from the value, or from the "
                        "rank within the sample.", RANK_BY)
  augment_shift: int = _field(0, "Training augmentation of image datasets: translate each "
                              "image by a random offset in [-s, s] pixels (zero fill) "
                              "before encoding; 0 = off. Never applied to the test set.")
  # Optimization.
  epochs: int = _field(10, "Passes over the training set.")
  batch_size: int = _field(64, "Global batch size (divisible by the number of devices).")
  eval_batch_size: int = _field(0, "Evaluation batch size; 0 = --batch_size.")
  optimizer: str = _field("adam", "Inner optimizer (wrapped by rewiring when --rewire).",
                          OPTIMIZERS)
  learning_rate: float = _field(1e-3, "Peak learning rate.")
  weight_decay: float = _field(1e-4, "AdamW decoupled weight decay.")
  sgd_momentum: float = _field(0.9, "SGD momentum (0 = plain SGD).")
  schedule: str = _field("constant", "Learning-rate schedule: 'cosine' decays to 0 at the "
                         "last step; 'step' multiplies by --lr_decay every "
                         "--lr_decay_epochs epochs; 'exponential' decays smoothly at the "
                         "same rate.", SCHEDULES)
  lr_decay: float = _field(0.5, "Factor of the step/exponential schedule.")
  lr_decay_epochs: float = _field(10.0, "Period (epochs) of the step/exponential "
                                  "schedule.")
  warmup_steps: int = _field(0, "Linear learning-rate warmup steps (from 0).")
  clip_norm: float = _field(0.0, "Clip the gradient's global norm; 0 = off.")
  # BPSR loss and rewiring.
  lambda_s: float = _field(0.0, "Spiking-sparsity coefficient (eq. 4): times the hidden "
                           "spikes per sample.")
  lambda_w: float = _field(0.0, "Synaptic-sparsity coefficient (eq. 4): times the l1 "
                           "norm of all weights.")
  count_scale: float = _field(losses.DEFAULT_COUNT_SCALE, "k * T: output spike counts are "
                              "scaled by k = count_scale / T before the softmax (eq. 5).")
  rewire: bool = _field(False, "Prune and regrow synapses (eq. 14-15).")
  prune_threshold: float = _field(1e-3, "theta_w: synapses with |w| below it are pruned.")
  grow_threshold: float = _field(1e-3, "theta_m: synapses whose gradient momentum exceeds "
                                 "it (plus the distance term) grow.")
  distance_scale: float = _field(0.0, "mu_m: the growth bar rises by mu_m times the "
                                 "neurons' distance.")
  rewire_momentum: float = _field(0.9, "beta_m of the rewiring gradient momentum.")
  clamp: bool = _field(True, "Clamp weights and biases to [-U_th, U_th] and tau to "
                       "[0, 1] after every step.")
  # Run.
  seed: int = _field(0, "Seed of the init, shuffling, encoding and split.")
  log_every: int = _field(50, "One progress line (and TensorBoard point) every this many "
                          "steps; the loss is checked for NaN/inf there.")
  checkpoint_every: int = _field(500, "Checkpoint every this many steps (and at each "
                                 "epoch end).")
  keep_checkpoints: int = _field(3, "How many checkpoints to keep.")
  balanced_accuracy: bool = _field(False, "Show the balanced accuracy (mean per-class "
                                   "recall) in the epoch summaries (always in "
                                   "results.json).")
  divergence_patience: int = _field(5, "Divergence rule (README, 'Resuming'): stop with "
                                    "exit code 3 when, after the first epoch, the last this "
                                    "many log points show chance-level training accuracy "
                                    "and a cross entropy no better than a guess (or a flat "
                                    "loss); 0 = off.")

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
    """A config from a dict of field values, ignoring keys that are not fields.

    Accepts a ``results.json`` ``"flags"`` dict (typed values, plus non-config keys such
    as ``workdir``) or :func:`read_flagfile`'s dict (strings, parsed by field type).

    Raises:
      ConfigError: a value that does not parse as its field's type.
    """
    kwargs = {}
    for f in dataclasses.fields(cls):
      if f.name in values and values[f.name] is not None:
        kwargs[f.name] = _convert(f, values[f.name])
    return cls(**kwargs)


def help_text(name: str) -> str:
  """The help text of a field (the flag's help)."""
  return _FIELDS[name].metadata["help"]


def choices(name: str) -> Optional[Tuple[str, ...]]:
  """The allowed values of a choice field, ``None`` for a free one."""
  return _FIELDS[name].metadata["choices"]


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def field_type(name: str) -> type:
  """The Python type of a field (``str``, ``int``, ``float`` or ``bool``)."""
  t = _FIELDS[name].type
  return _TYPES[t] if isinstance(t, str) else t


def _convert(f: dataclasses.Field, value: Any) -> Any:
  t = field_type(f.name)
  if t is bool:
    if isinstance(value, str):
      low = value.strip().lower()
      if low not in ("true", "false", "1", "0"):
        raise errors.ConfigError(f"--{f.name} must be true or false, got {value!r}")
      return low in ("true", "1")
    return bool(value)
  try:
    return t(value) if t is not int or not isinstance(value, str) else int(value, 0)
  except (TypeError, ValueError):
    raise errors.ConfigError(
        f"--{f.name} must be {t.__name__}, got {value!r}") from None


def read_flagfile(path: str | pathlib.Path) -> Dict[str, Any]:
  """The flags of an absl flagfile as a dict: ``--x=v`` -> ``{"x": "v"}``.

  ``--flag`` / ``--noflag`` give ``True`` / ``False``; ``#`` lines are comments; nested
  ``--flagfile=`` lines are read in place (relative to the file's folder).
  """
  path = pathlib.Path(path)
  out: Dict[str, Any] = {}
  for line in path.read_text().splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    if not line.startswith("--"):
      raise errors.ConfigError(f"{path}: expected '--name=value' lines, got {line!r}")
    name, eq, value = line[2:].partition("=")
    if name == "flagfile":
      inner = pathlib.Path(value)
      out.update(read_flagfile(inner if inner.is_absolute() else path.parent / inner))
    elif eq:
      out[name] = value
    elif name.startswith("no") and name[2:] in _FIELDS and field_type(name[2:]) is bool:
      out[name[2:]] = False
    else:
      out[name] = True
  return out


# ----------------------------------------------------------------------------------------
# Flags.


def define_flags(flag_values, module_name: str) -> None:
  """Defines one absl flag per field (name, type, default, help and choices from it).

  Args:
    flag_values: an :class:`absl.flags.FlagValues` (``absl.flags.FLAGS``).
    module_name: the module the flags belong to (shown by ``--help`` where a binary
      adopts it with ``flags.adopt_module_key_flags``).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  for f in dataclasses.fields(TrainConfig):
    t, help_, choice = field_type(f.name), f.metadata["help"], f.metadata["choices"]
    if choice:
      flag = flags.EnumFlag(f.name, f.default, help_, list(choice))
    elif t is bool:
      flag = flags.BooleanFlag(f.name, f.default, help_)
    else:
      parser = {int: flags.IntegerParser, float: flags.FloatParser,
                str: flags.ArgumentParser}[t]()
      flag = flags.Flag(parser, flags.ArgumentSerializer(), f.name, f.default, help_)
    flags.DEFINE_flag(flag, flag_values, module_name=module_name)


def from_flags(flag_values) -> TrainConfig:
  """The config of the parsed flags (one field per flag, see :func:`define_flags`)."""
  return TrainConfig(**{f.name: flag_values[f.name].value
                        for f in dataclasses.fields(TrainConfig)})


# ----------------------------------------------------------------------------------------
# Validation.


def validate_config(cfg: TrainConfig, *, kind: Optional[str] = None,
                    num_classes: Optional[int] = None,
                    data_time_steps: Optional[int] = None,
                    num_devices: Optional[int] = None,
                    num_train: Optional[int] = None,
                    input_shape: Optional[Tuple[int, ...]] = None) -> None:
  """Raises :class:`bpsr_jax.errors.ConfigError` naming the flag for bad settings.

  Args:
    cfg: the configuration.
    kind: the dataset kind, ``"analog"`` or ``"spikes"``.
    num_classes: the dataset's number of classes.
    data_time_steps: T of a spike dataset.
    num_devices: the number of devices the batch is split over.
    num_train: the number of training examples.
    input_shape: one example's shape (checks pooling windows and image augmentation).
  """
  err = errors.ConfigError
  try:
    specs = models.parse_spec(cfg.model)
  except ValueError as e:
    raise err(f"--model: {e}") from None
  for f in dataclasses.fields(TrainConfig):
    allowed = f.metadata["choices"]
    if allowed and getattr(cfg, f.name) not in allowed:
      raise err(f"--{f.name} must be one of {allowed}, got {getattr(cfg, f.name)!r}")
  for name in ("epochs", "batch_size", "time_steps", "log_every", "checkpoint_every",
               "keep_checkpoints"):
    if getattr(cfg, name) <= 0:
      raise err(f"--{name} must be positive, got {getattr(cfg, name)}")
  for name in ("learning_rate", "threshold", "alpha", "count_scale", "band_width"):
    v = getattr(cfg, name)
    if not (v > 0 and math.isfinite(v)):
      raise err(f"--{name} must be a finite number > 0, got {v}")
  for name in ("lambda_s", "lambda_w", "weight_decay", "clip_norm", "eval_batch_size",
               "warmup_steps", "augment_shift", "divergence_patience", "bias_high",
               "sgd_momentum"):
    if not getattr(cfg, name) >= 0:
      raise err(f"--{name} must be >= 0, got {getattr(cfg, name)}")
  if not 0.0 <= cfg.tau_init <= 1.0:
    raise err(f"--tau_init must lie in [0, 1] (the leak factor), got {cfg.tau_init}")
  if cfg.rewire:
    for name in ("prune_threshold", "grow_threshold", "distance_scale"):
      if not getattr(cfg, name) >= 0:
        raise err(f"--rewire needs --{name} >= 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.rewire_momentum < 1:
      raise err(f"--rewire_momentum must lie in [0, 1), got {cfg.rewire_momentum}")
  has_encoding_layer = specs[0].encoding
  if has_encoding_layer and cfg.encoding != "analog":
    raise err(f"--model={cfg.model!r} starts with an encoding layer ('e' prefix), which "
              f"takes the analog input: use --encoding=analog, not {cfg.encoding!r}")
  if cfg.encoding == "analog" and not has_encoding_layer:
    raise err(f"--encoding=analog feeds the analog input to an encoding layer, but "
              f"--model={cfg.model!r} has none: prefix its first layer with 'e' or use "
              "--encoding=rate / rank_order")
  if kind is not None:
    if kind == "spikes" and cfg.encoding != "none":
      raise err(f"--encoding={cfg.encoding!r} conflicts with this dataset, which is "
                "already encoded as spikes: use --encoding=none")
    if kind == "analog" and cfg.encoding == "none":
      raise err("--encoding=none needs a spike dataset; this one is analog: use "
                "--encoding=rate, rank_order or analog (with an 'e' layer)")
    if kind != "analog" and cfg.augment_shift:
      raise err(f"--augment_shift={cfg.augment_shift} translates analog images; this "
                "dataset is already spikes: use --augment_shift=0")
  if data_time_steps is not None and data_time_steps != cfg.time_steps:
    raise err(f"--time_steps={cfg.time_steps} but the spike dataset has "
              f"T={data_time_steps} steps")
  if num_classes is not None and specs[-1].size != num_classes:
    raise err(f"--model={cfg.model!r} has {specs[-1].size} output neurons but the "
              f"dataset has {num_classes} classes")
  if num_devices is not None:
    for name in ("batch_size", "eval_batch_size"):
      v = getattr(cfg, name) or cfg.batch_size
      if v % num_devices:
        raise err(f"--{name}={v} is not divisible by the {num_devices} devices the "
                  "batch is split over")
  if num_train is not None and num_train < cfg.batch_size:
    raise err(f"--batch_size={cfg.batch_size} is larger than the {num_train} training "
              "examples")
  if input_shape is not None:
    _check_input_shape(cfg, specs, tuple(input_shape), kind)


def _check_input_shape(cfg, specs, shape, kind) -> None:
  """Image augmentation needs images; every conv/pool stage must keep a pixel."""
  err = errors.ConfigError
  image = shape[1:] if kind == "spikes" else shape
  if cfg.augment_shift and len(image) != 3:
    raise err(f"--augment_shift={cfg.augment_shift} translates images [N, H, W, C]; "
              f"this dataset's examples have shape {shape}")
  if len(image) != 3:
    return
  h, w = image[0], image[1]
  flat = [t for s in specs for t in (s.inner if s.kind == "residual" else (s,))]
  for t in flat:
    if t.kind == "conv":
      h, w = -(-h // t.strides), -(-w // t.strides)
    elif t.kind in ("maxpool", "avgpool"):
      token = ("p" if t.kind == "maxpool" else "a") + str(t.size)
      if t.size > min(h, w):
        raise err(f"--model={cfg.model!r}: pooling {token!r} needs a feature map of at "
                  f"least {t.size}x{t.size}, but it gets {h}x{w} from the input {image}")
      h, w = h // t.size, w // t.size
