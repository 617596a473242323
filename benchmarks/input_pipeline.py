"""Input pipeline: the loop's hand batching against grain (why fit does not use grain).

    python -m benchmarks.input_pipeline [--batch_size=64] [--batches=200]

Prints a markdown table: milliseconds to produce one MNIST training batch with
``data.batch_indices`` + ``data.get_batch`` (what :func:`bpsr_jax.train.fit` does) and
with a grain ``MapDataset`` (shuffle, per-sample map, batch), best of 3 repeats.
Needs ``pip install grain`` (not a dependency of the package).
"""
import time

from absl import app
from absl import flags

flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("batches", 200, "Batches per repeat.")
FLAGS = flags.FLAGS


def _best(fn, repeats=3):
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, (time.perf_counter() - t) / FLAGS.batches)
  return best


def main(argv):
  del argv
  import grain  # pylint: disable=g-import-not-at-top
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  from bpsr_jax.data import common  # pylint: disable=g-import-not-at-top
  tr, _ = data.load_mnist()
  bs, n = FLAGS.batch_size, FLAGS.batches
  order = common.batch_indices(len(tr), bs, seed=0, epoch=0)

  def hand():
    for i in range(n):
      common.get_batch(tr, order[i])

  src = (grain.MapDataset.range(len(tr)).shuffle(seed=0)
         .map(lambda i: (tr.x[i], tr.y[i])).batch(bs))

  def with_grain():
    it = iter(src)
    for _ in range(n):
      next(it)

  print("| pipeline | ms per batch |\n|---|---:|")
  print(f"| batch_indices + get_batch (fit) | {_best(hand) * 1e3:.3f} |")
  print(f"| grain MapDataset (shuffle, map, batch) | {_best(with_grain) * 1e3:.3f} |")


if __name__ == "__main__":
  app.run(main)
