"""MNIST with rank-order or rate coding (the paper: rMLP r1000-fc100-fc10, 98.33 %).

    python -m experiments.mnist                       # the MNIST files the package ships
    python -m experiments.mnist --flagfile=experiments/flagfiles/mnist.flags

``--data_dir``: a folder with the four IDX files (gzipped or not), or the TFDS data
folder with ``--source=tfds``. Default: the files shipped in ``bpsr_jax/data/mnist``.
"""
from absl import app
from absl import flags

from experiments import common

flags.DEFINE_enum("source", "auto", ["auto", "idx", "tfds"],
                  "Where MNIST comes from: IDX files ('auto'/'idx') or TFDS.")
# The defaults: flagfiles/mnist.flags (the one place they live).
common.set_defaults_from_flagfile("mnist.flags")
flags.adopt_module_key_flags(common)
FLAGS = flags.FLAGS


def load():
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  return data.load_mnist(FLAGS.data_dir, source=FLAGS.source)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.run("mnist", load, extra_flags=("source",))


if __name__ == "__main__":
  app.run(main)
