"""Gas sensor arrays: rMLP on rank-order coded features (the paper: r81-fc36-fc10, 98.30 %).

    python -m experiments.gas --flagfile=experiments/flagfiles/gas.flags \
        --data_dir=/path/to/open-sampling          # the paper's dataset, 72 channels
    python -m experiments.gas --flagfile=experiments/flagfiles/gas_drift.flags \
        --data_dir=/path/to/gas-drift              # UCI drift set, 128 features, 6 gases

``--gas_dataset=open_sampling``: UCI "Gas sensor arrays in open sampling settings"
(recording files searched recursively under ``--data_dir``; 10 gases). ``drift``: UCI
"Gas Sensor Array Drift" (``batchK.dat`` files); ``--test_batches=6,7,8,9,10`` selects the
drift protocol (train on the other batches), empty = a stratified random 80/20 split.
"""
from absl import app
from absl import flags

from bpsr_jax import errors
from experiments import common

flags.DEFINE_enum("gas_dataset", "open_sampling", ["open_sampling", "drift"],
                  "Which UCI gas dataset --data_dir holds.")
flags.DEFINE_list("test_batches", [], "Drift set only: batch numbers held out for the "
                  "test set (empty: random stratified split).")
# The defaults: flagfiles/gas.flags (the one place they live).
common.set_defaults_from_flagfile("gas.flags")
flags.adopt_module_key_flags(common)
FLAGS = flags.FLAGS


def _batch_numbers(name):
  try:
    return [int(b) for b in FLAGS[name].value]
  except ValueError:
    raise errors.ConfigError(f"--{name} must be batch numbers like 6,7,8, got "
                             f"{','.join(FLAGS[name].value)!r}") from None


def load():
  from bpsr_jax import data  # pylint: disable=g-import-not-at-top
  if FLAGS.data_dir is None:
    raise FileNotFoundError(f"no --data_dir given: the folder with the {FLAGS.gas_dataset} "
                            "files")
  if FLAGS.gas_dataset == "drift":
    tb = _batch_numbers("test_batches") or None
    return data.load_gas_drift(FLAGS.data_dir, test_batches=tb, seed=FLAGS.seed)
  if FLAGS.test_batches:
    raise app.UsageError("--test_batches applies to --gas_dataset=drift only")
  return data.load_gas_open_sampling(FLAGS.data_dir, seed=FLAGS.seed)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  common.run("gas_" + FLAGS.gas_dataset, load,
             extra_flags=("gas_dataset", "test_batches"))


if __name__ == "__main__":
  app.run(main)
