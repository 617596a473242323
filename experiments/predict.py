"""Classify samples with a trained model: one class name per line on stdout.

    python -m experiments.predict --model=mnist --input=bpsr_jax/data/mnist/t10k-images-idx3-ubyte.gz
    python -m experiments.predict --model=workdirs/mnist --input=digits.npy
    python -m experiments.predict --model=mitbih --input=../shared/data/mitdb/100
    python -m experiments.predict --model=net.nir --input=spikes.npz

``--model``: a packaged model (``mnist``, ``mitbih``), a finished run's workdir or a
``.nir`` file (see :func:`bpsr_jax.load`).

``--input`` (raw samples, sample-major, encoded as in training; see
:mod:`bpsr_jax.inference`):

* ``.npy``: one array ``[N, ...]`` (MNIST: ``[N, 28, 28(, 1)]`` uint8 pixels or floats
  in ``[0, 1]``; MIT-BIH: beat windows ``[N, 432, 2]`` in mV or spikes ``[N, 40, 4]``;
  a ``.nir`` model: spike trains ``[N, T, ...]``);
* ``.npz``: the array ``x`` (or its only array) and optional labels ``y`` ``[N]``;
* an IDX image file (``*-idx3-ubyte[.gz]``, e.g. MNIST's ``t10k-images-idx3-ubyte.gz``);
  the labels file beside it (``*-idx1-ubyte[.gz]``) is used when present;
* an MIT-BIH record (``.../mitdb/100``, or its ``.hea`` / ``.dat`` / ``.atr`` file) for
  an MIT-BIH model: every annotated beat of the model's classes, cut with the model's
  window; the annotations are the labels.

With labels, a summary line with the accuracy goes to stderr. Errors: one line
``error: ...`` on stderr and the exit code of :func:`bpsr_jax.errors.exit_code`
(``--debug`` shows the traceback).
"""
from __future__ import annotations

import pathlib
import sys
from typing import Optional, Tuple

from absl import app
from absl import flags
from absl import logging

flags.DEFINE_string("model", None, "A packaged model (mnist, mitbih), a run's workdir "
                    "or a .nir file.")
flags.DEFINE_string("input", None, "Samples: .npy, .npz (x, optional y), an IDX image "
                    "file, or an MIT-BIH record path.")
flags.DEFINE_enum("engine", "dense", ["dense", "event"], "Inference engine.")
flags.DEFINE_integer("batch_size", None, "Samples per forward pass (default: the run's "
                     "evaluation batch size).")
flags.DEFINE_integer("limit", None, "Classify only the first this many samples.")
flags.DEFINE_bool("proba", False, "Also print the class probabilities on each line.")
flags.DEFINE_bool("debug", False, "Show the traceback of an error.")
FLAGS = flags.FLAGS

_RECORD_SUFFIXES = (".hea", ".dat", ".atr")


def _read_npz(path: pathlib.Path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bpsr_jax import errors  # pylint: disable=g-import-not-at-top
  with np.load(path) as f:
    names = list(f.files)
    if "x" in names:
      x = f["x"]
    elif len(names) == 1:
      x = f[names[0]]
    else:
      raise errors.DataError(f"{path}: expected an array 'x' (and optional labels 'y'), "
                             f"got {names}")
    y = f["y"] if "y" in names else None
  return x, y


def _read_idx_images(path: pathlib.Path):
  from bpsr_jax.data import mnist_loader  # pylint: disable=g-import-not-at-top
  x = mnist_loader.read_idx(path)
  if x.ndim == 3:
    x = x[..., None]
  y = None
  labels = path.parent / path.name.replace("images-idx3", "labels-idx1")
  if labels != path and labels.is_file():
    y = mnist_loader.read_idx(labels).astype("int64")
  return x, y


def _read_record(path: pathlib.Path, predictor):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bpsr_jax import errors  # pylint: disable=g-import-not-at-top
  from bpsr_jax.data import mitbih  # pylint: disable=g-import-not-at-top
  if predictor.dataset != "mitbih":
    raise errors.ConfigError(f"{path}: an MIT-BIH record, but the model "
                             f"{predictor.source} is not an MIT-BIH model")
  classes = int(predictor.data_flags.get("classes", 5))
  _, sym_to_class = mitbih.class_mapping(classes)
  window = (float(predictor.data_flags.get("window_before", 0.7)),
            float(predictor.data_flags.get("window_after", 0.5)))
  beats = mitbih.read_record_beats(path.parent, path.name, symbols=sym_to_class,
                                   window_s=window)
  y = np.asarray([sym_to_class[s] for s in beats["symbol"]], np.int64)
  return beats["signal"], y


def read_input(path: str, predictor) -> Tuple[object, Optional[object]]:
  """``(x, labels or None)`` from an input file (see the module docstring).

  Raises:
    DataError: a missing, unreadable or unknown file (named).
  """
  from bpsr_jax import errors  # pylint: disable=g-import-not-at-top
  p = pathlib.Path(path).expanduser()
  record = p.with_suffix("") if p.suffix in _RECORD_SUFFIXES else p
  try:
    if p.is_file() and p.suffix == ".npy":
      import numpy as np  # pylint: disable=g-import-not-at-top
      return np.load(p), None
    if p.is_file() and p.suffix == ".npz":
      return _read_npz(p)
    if p.is_file() and "idx3" in p.name:
      return _read_idx_images(p)
    if record.with_suffix(".hea").is_file():
      return _read_record(record, predictor)
  except errors.BpsrError:
    raise
  except (OSError, ValueError, EOFError) as e:
    raise errors.DataError(f"{p}: cannot read the input ({type(e).__name__}: {e})") from None
  if not p.exists():
    raise errors.DataError(f"{p}: no such input file")
  raise errors.DataError(f"{p}: unknown input format; expected .npy, .npz, an IDX image "
                         "file (*-idx3-ubyte[.gz]) or an MIT-BIH record")


def run() -> float | None:
  """Loads, reads, predicts and prints; returns the accuracy when there are labels."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import bpsr_jax  # pylint: disable=g-import-not-at-top
  from bpsr_jax import errors  # pylint: disable=g-import-not-at-top
  if not FLAGS.model or not FLAGS.input:
    raise errors.ConfigError("--model and --input are required")
  predictor = bpsr_jax.load(FLAGS.model, engine=FLAGS.engine, batch_size=FLAGS.batch_size)
  x, y = read_input(FLAGS.input, predictor)
  if FLAGS.limit is not None:
    x = x[:FLAGS.limit]
    y = None if y is None else y[:FLAGS.limit]
  if FLAGS.proba:
    proba = predictor.predict_proba(x)
    pred = np.argmax(proba, axis=-1)
  else:
    pred = predictor.predict(x)
  names = predictor.class_names
  lines = []
  for i, c in enumerate(pred):
    line = names[c]
    if FLAGS.proba:
      line += "\t" + " ".join(f"{v:.4f}" for v in proba[i])
    lines.append(line)
  sys.stdout.write("\n".join(lines) + "\n")
  acc = None
  summary = f"{len(pred)} samples, model {predictor.source}"
  if y is not None:
    acc = float(np.mean(pred == np.asarray(y)))
    summary += f", accuracy {acc:.4f}"
  print(summary, file=sys.stderr)
  return acc


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)  # orbax's read-only warnings stay quiet
  from bpsr_jax import errors  # pylint: disable=g-import-not-at-top
  try:
    run()
  except Exception as e:  # pylint: disable=broad-except
    if FLAGS.debug or errors.exit_code(e) == 1:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.exit_code(e))


if __name__ == "__main__":
  app.run(main)
