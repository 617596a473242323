"""N-MNIST: events framed into T steps, a conv + recurrent SNN (the paper: 99.21 %).

    python -m experiments.nmnist --flagfile=experiments/flagfiles/nmnist.flags \
        --data_dir=/path/to/NMNIST

``--data_dir``: the folder with ``Train/<digit>/<id>.bin`` and ``Test/<digit>/<id>.bin``
(or its parent holding ``NMNIST/``, tonic's download location). Frames are
``[T, 34, 34, 2]`` (polarities as channels), 1 where a pixel had an event in the bin.
"""
from absl import app
from absl import flags

from experiments import common

flags.DEFINE_float("duration_us", None, "Frame a fixed span [0, duration_us) instead of "
                   "each recording's own span.")
flags.DEFINE_bool("first_saccade_only", False, "Keep only the first of the 3 saccades.")
# The defaults: flagfiles/nmnist.flags (the one place they live).
common.set_defaults_from_flagfile("nmnist.flags")
flags.adopt_module_key_flags(common)
FLAGS = flags.FLAGS


def load():
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  if FLAGS.data_dir is None:
    raise FileNotFoundError("no --data_dir given: the folder with Train/ and Test/")
  # Read only what the limits ask for (one file per recording).
  limit = max([v for v in (FLAGS.train_limit, FLAGS.test_limit) if v] or [0]) or None
  return data.load_nmnist(FLAGS.data_dir, time_steps=FLAGS.time_steps,
                          duration_us=FLAGS.duration_us,
                          first_saccade_only=FLAGS.first_saccade_only, limit=limit,
                          seed=FLAGS.seed)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.run("nmnist", load, extra_flags=("duration_us", "first_saccade_only"))


if __name__ == "__main__":
  app.run(main)
