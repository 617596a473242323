"""The experiment binaries: smoke runs, resume after SIGKILL, flagfiles, usage errors, notebook.

Every run is a subprocess with tiny data in a temp workdir: ``python -m
experiments.<name>``, or for the flagfile and usage-error cases one process per binary
that parses or runs each argument list in turn. Data other than the MNIST the package
ships come from ``../shared/data`` (skipped where absent).
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGFILES = ROOT / "experiments" / "flagfiles"
ENV = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
# conftest's XLA optimization level, and no other XLA flag of the caller's shell.
ENV["XLA_FLAGS"] = " ".join(f for f in ENV.get("XLA_FLAGS", "").split()
                            if f.startswith("--xla_backend_optimization_level"))


def run_exp(name, *args, timeout=300):
  return subprocess.run([sys.executable, "-m", f"experiments.{name}", *args], cwd=ROOT,
                        env=ENV, capture_output=True, text=True, timeout=timeout)


def check_results(workdir, epochs=1):
  """results.json is the last epoch's evaluation, internally consistent, with the run's
  identity, metrics and TensorBoard events beside it."""
  r = json.loads((workdir / "results.json").read_text())
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["epoch"] for l in lines] == list(range(epochs))
  for k in ("test_accuracy", "spikes_per_sample", "synapses", "synaptic_ops_per_sample",
            "firing_rate", "balanced_accuracy"):
    assert r[k] == lines[-1][k], k
  # The accuracy is a count of right answers over the test set.
  right = r["test_accuracy"] * r["num_test"]
  assert abs(right - round(right)) < 1e-6 and 0 <= right <= r["num_test"]
  assert r["synapses"] == r["synapses_per_layer"]["total"] > 0
  assert sum(v for k, v in r["synapses_per_layer"].items() if k != "total") == r["synapses"]
  assert r["spikes_per_sample"] == pytest.approx(sum(r["spikes_per_sample_per_layer"].values()))
  assert set(r["firing_rate_per_layer"]) == set(r["spikes_per_sample_per_layer"])
  assert 0.0 < r["firing_rate"] < 1.0 and r["synaptic_ops_per_sample"] > 0
  batch = r["flags"]["batch_size"]
  assert r["epochs"] == epochs and r["steps"] == epochs * (r["num_train"] // batch)
  assert r["flags"]["model"] and "workdir" in r["flags"] and r["train_seconds"] > 0
  ident = json.loads((workdir / "run.json").read_text())
  assert ident["config"]["model"] == r["flags"]["model"]
  assert ident["train_data"]["n"] == r["num_train"]
  assert list(workdir.glob("events.out.tfevents.*"))
  return r


def _ok(proc):
  assert proc.returncode == 0, proc.stderr[-5000:]


# ----------------------------------------------------------------------------------------
# Smoke runs: each experiment's quick flagfile on tiny data.


def test_mnist_smoke(tmp_path):
  proc = run_exp("mnist", f"--flagfile={FLAGFILES / 'mnist_quick.flags'}",
                 f"--workdir={tmp_path / 'w'}", "--train_limit=256", "--test_limit=64",
                 "--batch_size=32")
  _ok(proc)
  r = check_results(tmp_path / "w")
  assert r["flags"]["encoding"] == "rank_order" and r["num_train"] == 256
  assert "mnist: test accuracy" in proc.stdout


# ~45 s (reads all 48 records); the loader and the packaged model's raw-beat path
# stay in the fast set (test_data_mitbih.py, test_inference.py).
@pytest.mark.slow
def test_mitbih_smoke(tmp_path, shared_data):
  proc = run_exp("mitbih", f"--flagfile={FLAGFILES / 'mitbih_quick.flags'}",
                 f"--data_dir={shared_data / 'mitdb'}", f"--workdir={tmp_path / 'w'}",
                 "--train_limit=512", "--test_limit=256", "--epochs=1")
  _ok(proc)
  r = check_results(tmp_path / "w")
  assert r["flags"]["classes"] == "5"


# ~50 s on 2 busy cores; the gas loader stays fast (test_data_gas.py).
@pytest.mark.slow
def test_gas_drift_smoke(tmp_path, shared_data):
  proc = run_exp("gas", f"--flagfile={FLAGFILES / 'gas_drift_quick.flags'}",
                 f"--data_dir={shared_data / 'gas-drift'}", f"--workdir={tmp_path / 'w'}",
                 "--train_limit=256", "--test_limit=128", "--epochs=1")
  _ok(proc)
  check_results(tmp_path / "w")


def _fake_nmnist_tree(src, dst, per_digit=2):
  """Train/Test folders of copies of the one real recording (labels are arbitrary)."""
  for split in ("Train", "Test"):
    for d in range(10):
      folder = dst / split / str(d)
      folder.mkdir(parents=True)
      for i in range(per_digit):
        shutil.copy(src, folder / f"{i:05d}.bin")
  return dst


# ~60 s on 2 busy cores; the N-MNIST loader stays fast (test_data_nmnist.py).
@pytest.mark.slow
def test_nmnist_smoke(tmp_path, shared_data):
  data_dir = _fake_nmnist_tree(shared_data / "nmnist" / "sample_nmnist.bin",
                               tmp_path / "nmnist")
  proc = run_exp("nmnist", f"--flagfile={FLAGFILES / 'nmnist_quick.flags'}",
                 f"--data_dir={data_dir}", f"--workdir={tmp_path / 'w'}",
                 "--train_limit=16", "--test_limit=16", "--batch_size=8")
  _ok(proc)
  check_results(tmp_path / "w")


# ~35 s (compiles the residual conv net's gradient); the CIFAR10 loader stays fast.
@pytest.mark.slow
def test_cifar10_smoke(tmp_path, shared_data):
  proc = run_exp("cifar10", f"--flagfile={FLAGFILES / 'cifar10_quick.flags'}",
                 f"--data_dir={shared_data / 'cifar10-sample'}",
                 f"--workdir={tmp_path / 'w'}", "--train_limit=32", "--test_limit=16",
                 "--batch_size=16", "--time_steps=2")
  _ok(proc)
  check_results(tmp_path / "w")


# ----------------------------------------------------------------------------------------
# Resume after SIGKILL.


def _final_params(workdir):
  code = ("import sys, pickle, jax, numpy as np; from bpsr_jax import train; "
          "p = train.final_params(sys.argv[1]); "
          "sys.stdout.buffer.write(pickle.dumps(jax.tree_util.tree_flatten_with_path(p)[0]))")
  out = subprocess.run([sys.executable, "-c", code, str(workdir)], cwd=ROOT, env=ENV,
                       capture_output=True, timeout=120, check=True)
  import pickle  # pylint: disable=g-import-not-at-top
  return pickle.loads(out.stdout)


# ~60 s: a real SIGKILL mid-run; resume exactness stays in the fast set
# (test_train.py::test_stop_and_resume_is_exact, test_checkpoint.py's corrupt-checkpoint resume).
@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tmp_path):
  args = [f"--flagfile={FLAGFILES / 'mnist_quick.flags'}", "--model=r256-fc10",
          "--time_steps=8", "--train_limit=1536", "--test_limit=64", "--batch_size=16",
          "--epochs=2", "--checkpoint_every=8", "--log_every=8", "--encoding=rate"]
  ref, killed = tmp_path / "ref", tmp_path / "killed"
  _ok(run_exp("mnist", *args, f"--workdir={ref}"))

  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.mnist", *args, f"--workdir={killed}"], cwd=ROOT,
      env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckdir = killed / "checkpoints"
  deadline = time.time() + 240
  try:
    while time.time() < deadline and proc.poll() is None:
      steps = [p for p in ckdir.glob("*") if p.name.isdigit()] if ckdir.exists() else []
      if steps:
        break
      time.sleep(0.02)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  assert not (killed / "results.json").exists()
  done = sorted(int(p.name) for p in ckdir.glob("*") if p.name.isdigit())
  assert done and done[-1] < 192, done  # killed mid-run (192 steps in all)

  _ok(run_exp("mnist", *args, f"--workdir={killed}"))
  pa, pb = _final_params(ref), _final_params(killed)
  assert [k for k, _ in pa] == [k for k, _ in pb]
  for (k, a), (_, b) in zip(pa, pb):
    assert np.array_equal(a, b), k
  ra = json.loads((ref / "results.json").read_text())
  rb = json.loads((killed / "results.json").read_text())
  assert ra["test_accuracy"] == rb["test_accuracy"] and rb["steps"] == 192
  la = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
  lb = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
  assert [l["train_loss"] for l in la] == [l["train_loss"] for l in lb]


# ----------------------------------------------------------------------------------------
# Flagfiles and usage errors.

_BINARY = {"mnist": "mnist", "nmnist": "nmnist", "cifar10": "cifar10", "mitbih": "mitbih",
           "gas": "gas"}

# Parses each argv of argv[2] (JSON) in turn with one binary's absl flags, as the binary
# would (unparsed back to the binary's defaults between them): one process per binary,
# not per flagfile (each process pays ~6 s of imports).
_PARSE = """
import json, sys
from absl import flags
import importlib
mod = importlib.import_module("experiments." + sys.argv[1])
from experiments import common
from bpsr_jax import train
FLAGS = flags.FLAGS
names = [f.name for f in FLAGS.get_flags_for_module(common)]
names += [f.name for f in FLAGS.get_flags_for_module(mod)]
missing = [n for n in names if not (FLAGS[n].help or "").strip()]
assert not missing, missing
out = []
for argv in json.loads(sys.argv[2]):
  FLAGS.unparse_flags()
  FLAGS(["prog", *argv])
  train.validate_config(common.make_config())
  out.append([{n: FLAGS[n].value for n in names}, common.flag_values()])
print(json.dumps(out))
"""


def _binary_of(flagfile):
  stem = flagfile[:-len(".flags")]
  return next((b for b in ("mitbih", "gas") if stem.startswith(b)), stem.split("_")[0])


@pytest.fixture(scope="module")
def parsed_flags():
  """``(binary, argv tuple) -> (the binary's flag values, common.flag_values())`` for
  every flagfile, by its binary, and for no flags at all."""
  cache = {}

  def parse(binary, argv):
    if binary not in cache:
      argvs = [[]] + [[f"--flagfile={FLAGFILES / p.name}"]
                      for p in sorted(FLAGFILES.glob("*.flags"))
                      if _binary_of(p.name) == binary]
      out = subprocess.run([sys.executable, "-c", _PARSE, binary, json.dumps(argvs)],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
      assert out.returncode == 0, out.stderr[-3000:]
      values = json.loads(out.stdout.strip().splitlines()[-1])
      cache[binary] = {tuple(a): v for a, v in zip(argvs, values)}
    return cache[binary][tuple(argv)]

  return parse


@pytest.mark.parametrize("flagfile", sorted(p.name for p in FLAGFILES.glob("*.flags")))
def test_flagfile_parses(flagfile, parsed_flags):
  binary = _binary_of(flagfile)
  assert binary in _BINARY, flagfile
  values, _ = parsed_flags(binary, [f"--flagfile={FLAGFILES / flagfile}"])
  assert values["model"] and values["epochs"] >= 1


def test_every_experiment_has_a_quick_and_a_paper_flagfile():
  names = {p.stem for p in FLAGFILES.glob("*.flags")}
  for exp in ("mnist", "nmnist", "cifar10", "mitbih", "gas_drift"):
    assert exp in names and f"{exp}_quick" in names
  assert {"gas", "gas_drift", "gas_drift_quick", "mnist_rate", "mitbih18"} <= names


# Runs the binary's main on each argv of argv[2] (JSON) in turn, as `python -m` would
# (absl's app.run, flags restored between runs, stdout and stderr captured, an uncaught
# error printed as the interpreter prints it): one process for all of the usage-error
# cases, not one each (each pays ~6 s of imports). The exit codes of a real process are
# checked by test_mnist_smoke (0), test_help_lists_the_shared_flags (1) and
# test_file_system_error_is_one_line_exit_7 (7).
_DRIVER = """
import contextlib, importlib, io, json, sys, traceback
from absl import app
from absl.testing import flagsaver
mod = importlib.import_module("experiments." + sys.argv[1])
results = []
for argv in json.loads(sys.argv[2]):
  out, err, code = io.StringIO(), io.StringIO(), 0
  with flagsaver.flagsaver(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      app.run(mod.main, argv=["prog", *argv])
    except SystemExit as e:
      code = 0 if e.code is None else e.code
    except Exception:  # what the interpreter does with an uncaught error
      traceback.print_exc()
      code = 1
  results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""

# id -> (arguments, exit code (None: any non-zero), message on stderr)
_MNIST_ERRORS = {
    "missing data": (("--data_dir=/nonexistent/mnist",), None, "does not exist"),
    "bad spec": (("--model=r100-zz10",), None, "malformed model spec"),
    "encoding layer": (("--model=efc100-fc10", "--encoding=rate"), None,
                       "--encoding=analog"),
    "prune threshold": (("--rewire", "--prune_threshold=-0.1"), None, "prune_threshold"),
    "analog data as spikes": (("--encoding=none", "--train_limit=64", "--test_limit=32"),
                              None, "needs a spike dataset"),
    "stop_after_steps": (("--stop_after_steps=0",), 2, "--stop_after_steps must be positive"),
    "tau_init": (("--tau_init=2",), 2, "--tau_init must lie in [0, 1]"),
    "count_scale": (("--count_scale=0",), 2, "--count_scale must be"),
    "pool on a vector": (("--model=a30-fc10", "--encoding=rate", "--train_limit=64",
                          "--test_limit=32"), 2, "'a30' needs a feature map"),
    "another run": (("--train_limit=64", "--test_limit=32"), 6, "no run.json"),
    "another run, debug": (("--train_limit=64", "--test_limit=32", "--debug"), 1,
                           "Traceback"),
}


@pytest.fixture(scope="module")
def mnist_errors(tmp_path_factory):
  """id -> (exit code, stdout, stderr, workdir) of each _MNIST_ERRORS case, run in one
  process; the "another run" workdirs hold another run's metrics.jsonl and no run.json."""
  root = tmp_path_factory.mktemp("mnist_errors")
  workdirs, argvs = {}, []
  for i, (case, (args, _, _)) in enumerate(_MNIST_ERRORS.items()):
    workdirs[case] = root / str(i)
    if case.startswith("another run"):
      workdirs[case].mkdir()
      (workdirs[case] / "metrics.jsonl").write_text("{}\n")
    argvs.append([f"--workdir={workdirs[case]}", *args])
  proc = subprocess.run([sys.executable, "-c", _DRIVER, "mnist", json.dumps(argvs)],
                        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
  _ok(proc)
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  return {case: (*r, workdirs[case]) for case, r in zip(_MNIST_ERRORS, results)}


@pytest.mark.parametrize("case", list(_MNIST_ERRORS))
def test_mnist_errors_are_one_line_with_exit_codes(case, mnist_errors):
  _, expected, message = _MNIST_ERRORS[case]
  code, _, err, workdir = mnist_errors[case]
  assert code != 0 if expected is None else code == expected, (code, err[-3000:])
  assert message in err, err[-3000:]
  if "debug" not in case:
    assert "Traceback" not in err, err[-3000:]
  if case.startswith("another run"):
    assert (workdir / "metrics.jsonl").read_text() == "{}\n"  # nothing overwritten


def test_missing_data_dir_is_a_usage_error(tmp_path):
  proc = run_exp("mitbih", f"--workdir={tmp_path / 'w'}", timeout=120)
  assert proc.returncode != 0
  assert "--data_dir" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ~30 s (reads the records before the check); other usage errors stay fast.
@pytest.mark.slow
def test_spike_data_with_rate_coding_is_a_usage_error(tmp_path, shared_data):
  proc = run_exp("mitbih", f"--data_dir={shared_data / 'mitdb'}", "--encoding=rate",
                 f"--workdir={tmp_path / 'w'}", "--train_limit=64", "--test_limit=32",
                 timeout=300)  # it reads the records first: 126 s seen on a loaded machine
  assert proc.returncode != 0
  assert "already encoded as spikes" in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------
# The Colab notebook.


# ~35 s (a kernel process running the notebook's cells).
@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nb = nbformat.read(ROOT / "experiments" / "colab.ipynb", as_version=4)
  nbformat.validate(nb)
  tags = lambda c: c.get("metadata", {}).get("tags", [])
  install = [c for c in nb.cells if "skip-in-tests" in tags(c)]
  assert install and "pip install" in install[0].source and "REPO" in install[0].source
  params = [c for c in nb.cells if "parameters" in tags(c)]
  assert len(params) == 1
  params[0].source += ("\nOVERRIDES = {'model': 'r16-fc10', 'time_steps': '4', "
                       "'train_limit': '128', 'test_limit': '64', 'batch_size': '32'}\n"
                       f"WORKDIR = {str(tmp_path / 'nb')!r}\n")
  nb.cells = [c for c in nb.cells if "skip-in-tests" not in tags(c)]
  code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "test_accuracy" in proc.stdout
  assert (tmp_path / "nb" / "results.json").exists()
  # The same run from the binary gives the same numbers.
  proc = run_exp("mnist", f"--flagfile={FLAGFILES / 'mnist_quick.flags'}",
                 "--model=r16-fc10", "--time_steps=4", "--train_limit=128",
                 "--test_limit=64", "--batch_size=32", f"--workdir={tmp_path / 'cli'}")
  _ok(proc)
  nb_r = json.loads((tmp_path / "nb" / "results.json").read_text())
  cli_r = json.loads((tmp_path / "cli" / "results.json").read_text())
  for k in ("test_accuracy", "spikes_per_sample", "synapses", "synaptic_ops_per_sample"):
    assert nb_r[k] == cli_r[k], k


def test_mnist_defaults_are_the_paper_flagfile(parsed_flags):
  """`python -m experiments.mnist` with no flags runs exactly flagfiles/mnist.flags."""
  _, defaults = parsed_flags("mnist", [])
  _, paper = parsed_flags("mnist", [f"--flagfile={FLAGFILES / 'mnist.flags'}"])
  assert defaults == paper


# ----------------------------------------------------------------------------------------
# One configuration source.

_MAIN = {"mnist": "mnist.flags", "nmnist": "nmnist.flags", "cifar10": "cifar10.flags",
         "mitbih": "mitbih.flags", "gas_drift": "gas.flags"}


@pytest.mark.parametrize("quick", sorted(p.name for p in FLAGFILES.glob("*_quick.flags")))
def test_quick_flagfiles_pin_every_setting_that_matters(quick):
  """A quick run is the same whatever the binary's defaults: its flagfile alone (on the
  TrainConfig defaults, as the notebook reads it) gives the binary's configuration."""
  from bpsr_jax import config  # pylint: disable=g-import-not-at-top
  exp = quick[:-len("_quick.flags")]
  main = config.read_flagfile(FLAGFILES / _MAIN[exp])
  flags = config.read_flagfile(FLAGFILES / quick)
  assert (config.TrainConfig.from_dict({**main, **flags})
          == config.TrainConfig.from_dict(flags))


def test_cifar10_flagfile_is_the_resnet11():
  from bpsr_jax import config, models  # pylint: disable=g-import-not-at-top
  assert config.read_flagfile(FLAGFILES / "cifar10.flags")["model"] == models.CIFAR10_RESNET11


def test_flags_are_generated_from_the_config():
  code = (
      "import dataclasses, json\n"
      "from absl import flags\n"
      "import experiments.gas\n"
      "from experiments import common\n"
      "from bpsr_jax import config\n"
      "F = flags.FLAGS\n"
      "F(['prog'])\n"
      "out = {}\n"
      "for f in dataclasses.fields(config.TrainConfig):\n"
      "  fl = F[f.name]\n"
      "  # absl prefixes an enum flag's help with '<a|b>: '.\n"
      "  out[f.name] = [fl.help.split('>: ', 1)[-1] == f.metadata['help'],\n"
      "                 type(fl.value).__name__,\n"
      "                 sorted(getattr(fl.parser, 'enum_values', None) or []) ==\n"
      "                 sorted(f.metadata['choices'] or [])]\n"
      "mine = {f.name for f in F.get_flags_for_module(common)}\n"
      "print(json.dumps([out, sorted(mine)]))\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=120)
  _ok(proc)
  out, mine = json.loads(proc.stdout.strip().splitlines()[-1])
  from bpsr_jax import config  # pylint: disable=g-import-not-at-top
  types = {f: config.field_type(f).__name__ for f in out}
  for name, (same_help, type_name, same_choices) in out.items():
    assert same_help and same_choices and type_name == types[name], name
  run_flags = {"workdir", "overwrite", "data_dir", "train_limit", "test_limit",
               "distributed", "stop_after_steps", "debug"}
  assert set(mine) == set(out) | run_flags


def test_help_lists_the_shared_flags():
  proc = run_exp("nmnist", "--help", timeout=120)
  assert proc.returncode == 1, proc.stderr[-5000:]  # absl's --help exits with 1
  for flag in ("--lambda_s", "--model", "--workdir", "--train_limit", "--overwrite",
               "--debug", "--duration_us"):
    assert flag in proc.stdout.replace("--[no]", "--"), flag  # booleans: --[no]name


def test_file_system_error_is_one_line_exit_7(tmp_path):
  # A workdir the file system refuses (here: under a regular file, an OSError like a
  # read-only or full disk; root ignores permission bits, so chmod cannot stand in).
  blocker = tmp_path / "file"
  blocker.write_text("x")
  proc = run_exp("mnist", f"--workdir={blocker / 'w'}", "--train_limit=64",
                 "--test_limit=32", timeout=120)
  assert proc.returncode == 7, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and str(blocker) in proc.stderr, proc.stderr[-3000:]
