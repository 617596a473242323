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
# The defaults are those of flagfiles/mnist.flags (the paper's run).
common.set_defaults(model="r1000-fc100-fc10", encoding="rank_order", time_steps=10,
                    epochs=20, batch_size=64, optimizer="adamw", weight_decay=1e-2,
                    schedule="cosine", bias_high=0.0, lambda_s=1e-3, lambda_w=1e-5,
                    rewire=True, augment_shift=2, log_every=100, checkpoint_every=500)
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
