"""CIFAR10: the 11-layer residual SNN with an encoding layer (the paper: 90.74 %).

    python -m experiments.cifar10 --flagfile=experiments/flagfiles/cifar10.flags \
        --data_dir=/path/to/cifar-10-batches-bin       # or --source=tfds

``--data_dir``: CIFAR-10's binary batches (``data_batch_1..5.bin``, ``test_batch.bin``)
or, with ``--source=tfds``, the TFDS data folder. A folder holding only a
``sample_batch.bin`` (a few hundred records in the same binary format) is split 80/20
for smoke runs. A full run needs an accelerator.
"""
from absl import app
from absl import flags
from absl import logging

from bpsr_jax import errors
from experiments import common

flags.DEFINE_enum("source", "auto", ["auto", "bin", "tfds"],
                  "Binary batches ('bin'; 'auto' when --data_dir is given) or TFDS.")
flags.DEFINE_list("train_batches", ["1", "2", "3", "4", "5"],
                  "Which data_batch_<k>.bin form the training set.")
# The defaults: flagfiles/cifar10.flags (the one place they live).
common.set_defaults_from_flagfile("cifar10.flags")
flags.adopt_module_key_flags(common)
FLAGS = flags.FLAGS


def _sample_split(path):
  """An 80/20 stratified split of a lone sample batch file (smoke runs only)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  from bpsr_jax.data import cifar10  # pylint: disable=g-import-not-at-top
  images, labels = data.read_cifar10_bin(path)
  full = data.Dataset(x=images.astype(np.float32) / 255.0, y=labels, num_classes=10,
                      class_names=cifar10.CLASS_NAMES, kind="analog")
  tr, te = data.stratified_split(labels, 0.2, seed=FLAGS.seed)
  logging.warning("CIFAR10: %s holds only %s (%d images): using an 80/20 split of it",
                  path.parent, path.name, len(labels))
  return full.take(tr), full.take(te)


def load():
  import pathlib  # pylint: disable=g-import-not-at-top
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  if FLAGS.data_dir is not None and FLAGS.source != "tfds":
    d = pathlib.Path(FLAGS.data_dir)
    if (d / "sample_batch.bin").is_file() and not (d / "test_batch.bin").is_file():
      return _sample_split(d / "sample_batch.bin")
  try:
    batches = [int(b) for b in FLAGS.train_batches]
  except ValueError:
    raise errors.ConfigError("--train_batches must be batch numbers like 1,2,3, got "
                             f"{','.join(FLAGS.train_batches)!r}") from None
  return data.load_cifar10(FLAGS.data_dir, source=FLAGS.source, train_batches=batches)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.run("cifar10", load, extra_flags=("source", "train_batches"))


if __name__ == "__main__":
  app.run(main)
