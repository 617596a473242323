"""Classify new data with a trained model: :class:`Predictor` (``bpsr_jax.load``).

::

    import bpsr_jax
    p = bpsr_jax.load("mnist")                    # a packaged model, a run's workdir or a .nir
    labels = p.predict(images)                    # [N, 28, 28, 1] floats in [0, 1] (or uint8)
    probs = p.predict_proba(images)               # [N, 10]: softmax(k * spike counts)
    out, hidden = p.spikes(images[:8])            # [T, 8, 10] output spikes, hidden layers
    print(p.measure(images[:256]).table())        # spikes, synapses, SOPs per layer

Models come from :func:`bpsr_jax.load` (:mod:`bpsr_jax.loading`): a packaged model's
name, a run's workdir or a ``.nir`` file.

Raw inputs (``raw``, sample-major ``[N, ...]``, as the dataset loaders return them) are
encoded exactly as in training (:func:`bpsr_jax.train.encode_input` with the run's
settings):

* ``encoding="rank_order" | "rate" | "analog"``: analog samples, e.g. MNIST images
  ``[N, 28, 28, 1]`` (or ``[N, 784]``) in ``[0, 1]``; ``uint8`` arrays are read as 8-bit
  pixels and divided by 255 (the MNIST / CIFAR10 loaders' normalization). Rate coding
  draws batch ``i``'s spikes with the key ``fold_in(fold_in(PRNGKey(seed), 3), i)``, the
  keys of the run's test evaluation.
* ``encoding="none"`` (spike datasets, ``.nir`` files): spike trains ``[N, T, ...]``
  (the datasets' ``x``). For an MIT-BIH run also the raw beat windows ``[N, W, 2]`` in
  mV (both leads, MLII first, ``W`` samples at 360 Hz around the R peak as set by the
  run's ``window_before`` / ``window_after``; 432 for the packaged model), level-crossing
  encoded with the run's ``lc_delta``, ``T`` and ``lc_counts``
  (:func:`bpsr_jax.data.mitbih.read_record_beats` cuts them from a record).

The class of a sample is the output neuron with the most spikes (ties: the lowest
index), as in training.

Engines: ``engine="dense"`` (default) runs the jitted :class:`bpsr_jax.SNN`;
``engine="event"`` the event-driven simulation of :mod:`bpsr_jax.event` (same spikes).
An engine is a replacement of :meth:`Predictor._forward`. :meth:`Predictor.stream` runs
one sample in real time, one step per call (:class:`bpsr_jax.stream.Stream`; with
``engine="event"`` the compiled host engine of :mod:`bpsr_jax.stream`).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import errors
from bpsr_jax import metrics
from bpsr_jax import models
from bpsr_jax import train

PyTree = Any

#: Inference engines: ``"dense"`` (the jitted model) and ``"event"`` (bpsr_jax.event).
ENGINES = ("dense", "event")
#: A dataset's experiment binary is recognized by the data flags it records.
_DATASET_FLAGS = (("mitbih", "lc_delta"), ("cifar10", "train_batches"),
                  ("gas", "gas_dataset"), ("nmnist", "duration_us"), ("mnist", "source"))
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                  "ship", "truck")
_MITBIH_FS = 360


# ----------------------------------------------------------------------------------------
# Datasets of a run.


def dataset_of(data_flags: Mapping[str, Any]) -> Optional[str]:
  """The experiment a run came from (``"mnist"``, ``"mitbih"``, ...), from its data flags."""
  for name, flag in _DATASET_FLAGS:
    if flag in data_flags:
      return name
  return None


def class_names_of(dataset: Optional[str], data_flags: Mapping[str, Any],
                   num_classes: int) -> Tuple[str, ...]:
  """The class names of a run's dataset (``"0"``.. ``str(C - 1)`` if unknown)."""
  names: Sequence[str] = ()
  if dataset == "mnist" or dataset == "nmnist":
    names = tuple(str(d) for d in range(10))
  elif dataset == "cifar10":
    names = _CIFAR10_NAMES
  elif dataset == "mitbih":
    from bpsr_jax.data import mitbih  # pylint: disable=g-import-not-at-top
    names = mitbih.class_mapping(int(data_flags.get("classes", 5)))[0]
  if len(names) != num_classes:
    names = tuple(str(c) for c in range(num_classes))
  return tuple(names)


# ----------------------------------------------------------------------------------------
# The predictor.


class Predictor:
  """A trained model with its input encoding: classify raw samples.

  Attributes:
    model: the :class:`bpsr_jax.SNN`.
    params: its params (numpy arrays).
    config: the :class:`bpsr_jax.train.TrainConfig` it was trained with (for a ``.nir``
      file: the network's settings and ``encoding="none"``).
    data_flags: the run's data-level flags (``lc_delta``, ``classes``, ...).
    dataset: the experiment it came from (``"mnist"``, ``"mitbih"``, ...) or None.
    class_names: one name per output neuron.
    results: the run's ``results.json`` (None for a ``.nir`` file).
    source: where it was loaded from.
    engine: ``"dense"`` or ``"event"``.
    batch_size: samples per forward pass (default: the run's evaluation batch size, so
      that rate-coded predictions use the keys of its test evaluation).
  """

  def __init__(self, model: models.SNN, params: PyTree, config: train.TrainConfig, *,
               data_flags: Optional[Mapping[str, Any]] = None,
               results: Optional[Mapping[str, Any]] = None, source: str = "",
               engine: str = "dense", batch_size: Optional[int] = None,
               fixed_time_steps: bool = True):
    if engine not in ENGINES:
      raise errors.ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
    self.model = model
    self.params = params
    self.config = config
    self.data_flags = dict(data_flags or {})
    self.results = None if results is None else dict(results)
    self.source = source
    self.engine = engine
    self.fixed_time_steps = fixed_time_steps
    self.dataset = dataset_of(self.data_flags)
    self.num_classes = models.parse_spec(config.model)[-1].size
    self.class_names = class_names_of(self.dataset, self.data_flags, self.num_classes)
    self.batch_size = int(batch_size or config.eval_batch_size or config.batch_size)
    if self.batch_size <= 0:
      raise errors.ConfigError(f"batch_size must be positive, got {self.batch_size}")
    cfg = config
    self._encode = jax.jit(lambda x, key: train.encode_input(x, key, cfg))
    self._apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    self._event = None
    if engine == "event":
      self._event = _event_engine(self)

  def __repr__(self):
    return (f"Predictor({self.config.model!r}, encoding={self.config.encoding!r}, "
            f"T={self.config.time_steps}, engine={self.engine!r}, source={self.source!r})")

  # -- the forward pass: the one method an engine replaces.

  def _forward(self, x: jax.Array) -> Tuple[jax.Array, Tuple[jax.Array, ...]]:
    """``(output_spikes [T, B, C], hidden_spikes)`` of one encoded batch."""
    if self._event is not None:
      return self._event(x)
    return self._apply(self.params, x)

  # -- inputs.

  def prepare(self, raw: Any) -> np.ndarray:
    """Host-side checks and conversions of raw samples (before :func:`encode_input`).

    Args:
      raw: ``[N, ...]`` raw samples (see the module docstring).

    Returns:
      ``[N, ...]``: what the run's dataset held (analog ``float32``, or spikes
      ``[N, T, ...]``).

    Raises:
      DataError: an input of the wrong shape or kind, naming the expected one.
    """
    x = np.asarray(raw)
    cfg = self.config
    if x.ndim < 2 or x.shape[0] == 0:
      raise errors.DataError(f"expected a batch of samples [N, ...] with N >= 1, got "
                             f"shape {x.shape}")
    if cfg.encoding == "none":
      if self.dataset == "mitbih" and x.ndim == 3 and x.shape[1:] == self._beat_shape():
        x = self._level_crossing(x)
      if x.ndim < 3 or (self.fixed_time_steps and x.shape[1] != cfg.time_steps):
        raise errors.DataError(
            "expected spike trains [N, "
            + (f"T={cfg.time_steps}" if self.fixed_time_steps else "T")
            + ", ...]"
            + (f" or beat windows [N, {self._beat_shape()[0]}, 2] in mV"
               if self.dataset == "mitbih" else "")
            + f", got shape {x.shape}")
      self._check_features(x.shape[2:])
      return x
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
      raise errors.DataError(f"expected numeric analog samples, got dtype {x.dtype}")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    self._check_features(x.shape[1:])
    return x

  def _beat_shape(self) -> Tuple[int, int]:
    before = int(round(float(self.data_flags.get("window_before", 0.7)) * _MITBIH_FS))
    after = int(round(float(self.data_flags.get("window_after", 0.5)) * _MITBIH_FS))
    return (before + after, 2)

  def _level_crossing(self, signal: np.ndarray) -> np.ndarray:
    from bpsr_jax import encode  # pylint: disable=g-import-not-at-top
    s = encode.level_crossing(signal, float(self.data_flags.get("lc_delta", 0.1)),
                              time_steps=self.config.time_steps,
                              binary=not self.data_flags.get("lc_counts", True))
    return np.minimum(s, 255).astype(np.uint8)  # as bpsr_jax.data.load_mitbih stores it

  def _check_features(self, sample_shape: Tuple[int, ...]):
    """The first layer's fan-in must match (dense: the flattened size; conv: channels)."""
    first = models.parse_spec(self.config.model)[0]
    name = {"fc": "fc0", "r": "r0", "conv": "conv0"}.get(first.kind)
    kernel = np.shape(self.params.get(name, {}).get("kernel", ()))
    if len(kernel) == 2 and int(np.prod(sample_shape)) != kernel[0]:
      raise errors.DataError(
          f"{self.config.model!r} takes {kernel[0]} input features per "
          f"{'sample' if self.config.encoding != 'none' else 'step'}, got samples of shape "
          f"{tuple(sample_shape)}")
    if len(kernel) == 4 and (len(sample_shape) != 3 or sample_shape[-1] != kernel[2]):
      raise errors.DataError(
          f"{self.config.model!r} takes images [H, W, {kernel[2]}] per "
          f"{'sample' if self.config.encoding != 'none' else 'step'}, got samples of shape "
          f"{tuple(sample_shape)}")

  def _keys(self, key: Optional[jax.Array]) -> jax.Array:
    if key is not None:
      return key
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 3)

  def _batches(self, x: np.ndarray, key: Optional[jax.Array]
               ) -> Iterator[Tuple[jax.Array, int]]:
    """Encoded batches ``(model input, valid rows)`` of :meth:`prepare`'s samples; the
    last one padded with sample 0."""
    base = self._keys(key)
    b = self.batch_size
    for i, start in enumerate(range(0, len(x), b)):
      xb = x[start:start + b]
      n = len(xb)
      if n < b:
        xb = np.concatenate([xb, np.repeat(x[:1], b - n, axis=0)])
      yield self._encode(jnp.asarray(xb), jax.random.fold_in(base, i)), n

  # -- outputs.

  def encode(self, raw: Any, *, key: Optional[jax.Array] = None) -> jax.Array:
    """The model input of raw samples: ``[T, N, ...]`` spikes (or ``[N, ...]`` for an
    encoding layer), encoded in one batch with the key of batch 0."""
    x = self.prepare(raw)
    return self._encode(jnp.asarray(x), jax.random.fold_in(self._keys(key), 0))

  def spikes(self, raw: Any, *, key: Optional[jax.Array] = None
             ) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
    """Output and hidden spikes of raw samples (keep ``N`` modest: all are kept).

    Returns:
      ``(output [T, N, C], hidden)``: ``hidden`` has ``[T, N, ...]`` per hidden layer,
      as :class:`bpsr_jax.SNN` returns them.
    """
    outs, hiddens = [], []
    for x, n in self._batches(self.prepare(raw), key):
      out, hidden = self._forward(x)
      outs.append(np.asarray(out)[:, :n])
      hiddens.append([np.asarray(h)[:, :n] for h in hidden])
    return (np.concatenate(outs, axis=1),
            tuple(np.concatenate(h, axis=1) for h in zip(*hiddens)))

  def spike_counts(self, raw: Any, *, key: Optional[jax.Array] = None) -> np.ndarray:
    """``[N, C]`` output spike counts over the time window."""
    counts = []
    for x, n in self._batches(self.prepare(raw), key):
      out, _ = self._forward(x)
      counts.append(np.asarray(jnp.sum(out, axis=0))[:n])
    return np.concatenate(counts)

  def predict(self, raw: Any, *, key: Optional[jax.Array] = None) -> np.ndarray:
    """``[N]`` int class indices (``class_names[i]`` names them)."""
    return np.argmax(self.spike_counts(raw, key=key), axis=-1)

  def predict_proba(self, raw: Any, *, key: Optional[jax.Array] = None) -> np.ndarray:
    """``[N, C]`` class probabilities ``softmax(k * counts)``, ``k = count_scale / T``
    (eq. 5, the distribution the training loss scores)."""
    x = self.prepare(raw)
    counts = self.spike_counts(x, key=key)
    T = x.shape[1] if self.config.encoding == "none" else self.config.time_steps
    k = self.config.count_scale / T
    return np.asarray(jax.nn.softmax(jnp.asarray(k * counts), axis=-1))

  def accuracy(self, raw: Any, labels: Any, *, key: Optional[jax.Array] = None) -> float:
    """The fraction of samples whose prediction equals ``labels`` ``[N]``."""
    labels = np.asarray(labels)
    pred = self.predict(raw, key=key)
    if labels.shape != pred.shape:
      raise errors.DataError(f"expected {pred.shape[0]} labels, got shape {labels.shape}")
    return float(np.mean(pred == labels))

  def measure(self, raw: Any, *, key: Optional[jax.Array] = None) -> metrics.Report:
    """:func:`bpsr_jax.metrics.measure` on raw samples (one batch: spikes, synapses,
    SOPs per layer; ``.table()`` prints them)."""
    return metrics.measure(self.model, {"params": self.params}, self.encode(raw, key=key))

  def stream(self):
    """A real-time session at batch 1: one time step's input per call, the state kept
    between calls (:class:`bpsr_jax.stream.Stream`: ``step(x_t) -> [classes]`` output
    spikes, ``predict()``, ``reset()``). ``x_t`` is one step of the encoded input
    (:meth:`encode`'s ``[T, N, ...]`` at ``[t, n]``). Flat and recurrent models only.

    Raises:
      ConfigError: a model with conv, pooling, residual or encoding layers.
    """
    return _stream(self)


def _stream(p: Predictor):
  from bpsr_jax import event  # pylint: disable=g-import-not-at-top
  from bpsr_jax import stream  # pylint: disable=g-import-not-at-top
  net = event.prepare(p.params, p.config.model, threshold=p.config.threshold)
  return stream.Stream(net, engine=p.engine)


def _event_engine(p: Predictor):
  """The forward pass of :mod:`bpsr_jax.event` (:func:`bpsr_jax.event.run`) for a
  predictor: ``x [T, B, ...] -> (output_spikes, hidden_spikes)``."""
  try:
    from bpsr_jax import event  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.ConfigError("engine='event' needs bpsr_jax.event, which this "
                             "installation lacks; use engine='dense'") from None
  net = event.prepare(p.params, p.config.model, threshold=p.config.threshold)
  return lambda x: event.run_jit(net, x)
