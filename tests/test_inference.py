"""bpsr_jax.load, Predictor, the packaged models and experiments.predict.

Truths: the accuracy a run wrote in its results.json (recomputed by the library's
training evaluation), rank-order spikes computed here by hand from the encoder's
definition, the test subset chosen here from the seed rule of ``--test_limit``, the real
MNIST and MIT-BIH files, and the binary's printed classes.
"""
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax import errors
from bpsr_jax import inference
from bpsr_jax import loading
from bpsr_jax import pretrained
from bpsr_jax.data import mitbih
from bpsr_jax.data import mnist_loader

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
# conftest's XLA optimization level, and no other XLA flag of the caller's shell.
ENV["XLA_FLAGS"] = " ".join(f for f in ENV.get("XLA_FLAGS", "").split()
                            if f.startswith("--xla_backend_optimization_level"))
MNIST_TEST_IMAGES = mnist_loader.SHIPPED_DIR / "t10k-images-idx3-ubyte.gz"
QUICK_TEST_LIMIT = 64


def run_module(name, *args):
  return subprocess.run([sys.executable, "-m", name, *args], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=300)


def mnist_test():
  _, test = bpsr_jax.data.load_mnist()
  return test.x, test.y


def limited(n, limit, seed):
  """The indices ``--test_limit`` keeps (experiments/common.py's rule, restated)."""
  return np.sort(np.random.default_rng([seed, 7]).permutation(n)[:limit])


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """A fresh finished run: the MNIST quick flagfile on 128 / 64 images."""
  workdir = tmp_path_factory.mktemp("quick") / "w"
  proc = run_module("experiments.mnist",
                    f"--flagfile={ROOT / 'experiments/flagfiles/mnist_quick.flags'}",
                    f"--workdir={workdir}", "--train_limit=128",
                    f"--test_limit={QUICK_TEST_LIMIT}", "--batch_size=32")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.fixture(scope="module")
def quick_test_set(quick_run):
  x, y = mnist_test()
  r = json.loads((quick_run / "results.json").read_text())
  idx = limited(len(y), QUICK_TEST_LIMIT, r["flags"]["seed"] + 1)
  return x[idx], y[idx]


# ----------------------------------------------------------------------------------------
# Flags -> config.


def test_config_from_flags_keeps_data_flags_apart():
  flags = dict(model="r18-fc8-fc5", time_steps=40, encoding="none", workdir="/w",
               data_dir="/d", lc_delta=0.2, classes="5", train_limit=None)
  with pytest.raises(TypeError):
    bpsr_jax.TrainConfig(**flags)  # the bug this function exists for
  cfg, data = loading.config_from_flags(flags)
  assert (cfg.model, cfg.time_steps, cfg.encoding) == ("r18-fc8-fc5", 40, "none")
  assert data == dict(workdir="/w", data_dir="/d", lc_delta=0.2, classes="5",
                      train_limit=None)
  assert inference.dataset_of(data) == "mitbih"
  assert inference.class_names_of("mitbih", data, 5) == ("N", "S", "V", "F", "Q")


# ----------------------------------------------------------------------------------------
# The sparse params format.


def test_sparse_params_round_trip_is_exact(tmp_path):
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(300, 200)).astype(np.float32)
  kernel[rng.random(kernel.shape) < 0.7] = 0.0
  params = {"r0": {"kernel": kernel, "recurrent_kernel": np.zeros((200, 200), np.float32),
                   "bias": rng.normal(size=200).astype(np.float32),
                   "tau": rng.random(200).astype(np.float32)},
            "res2": {"shortcut": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)}}}
  pretrained.save_params(params, tmp_path / "p.npz")
  back = pretrained.load_params(tmp_path / "p.npz")
  for path in ("r0/kernel", "r0/recurrent_kernel", "r0/bias", "r0/tau",
               "res2/shortcut/kernel"):
    a, b = params, back
    for k in path.split("/"):
      a, b = a[k], b[k]
    assert b.dtype == np.float32 and np.array_equal(a, b), path
  # 30 % of the kernel's 60,000 entries at 4 bytes, plus one mask bit per entry.
  assert (tmp_path / "p.npz").stat().st_size < 0.3 * 300 * 200 * 4 + 300 * 200 / 8 + 8000


def test_corrupt_params_file_names_it(tmp_path):
  bad = tmp_path / "params.npz"
  bad.write_bytes(b"PK\x03\x04 not a zip")
  with pytest.raises(errors.DataError, match="params.npz"):
    pretrained.load_params(bad)


# ----------------------------------------------------------------------------------------
# A fresh run's workdir.


def test_load_workdir_reproduces_the_runs_test_accuracy(quick_run, quick_test_set):
  x, y = quick_test_set
  p = bpsr_jax.load(quick_run)
  r = p.results
  assert p.config.model == "r128-fc10" and p.config.encoding == "rank_order"
  assert p.dataset == "mnist" and p.class_names == tuple("0123456789")
  assert p.accuracy(x, y) == r["test_accuracy"]
  # uint8 pixels are the same samples.
  raw = np.round(x * 255).astype(np.uint8)
  np.testing.assert_array_equal(p.predict(raw), p.predict(x))
  # measure(): the run's synapse count and spikes per sample on the same test set.
  report = p.measure(x)
  assert report.synapses == r["synapses"]
  assert report.spikes == pytest.approx(r["spikes_per_sample"], rel=1e-5)
  assert report.sops == pytest.approx(r["synaptic_ops_per_sample"], rel=1e-5)


def test_predict_encodes_as_training(quick_run, quick_test_set):
  """Rank order by value, restated: t = min(floor((1 - x) T), T - 1) for x > 0."""
  x, _ = quick_test_set
  x = x[:10]
  p = bpsr_jax.load(quick_run, batch_size=7)  # batches of 7 (one padded): same results
  T = p.config.time_steps
  flat = x.reshape(len(x), -1)
  step = np.minimum(np.floor((1.0 - flat) * T), T - 1)
  spikes = np.zeros((T,) + flat.shape, np.float32)
  for t in range(T):
    spikes[t] = (step == t) & (flat > 0)
  out, hidden = p.model.apply({"params": p.params}, jnp.asarray(spikes))
  counts = np.asarray(out).sum(0)
  np.testing.assert_array_equal(p.encode(x).reshape(spikes.shape), spikes)
  got_out, got_hidden = p.spikes(x)
  np.testing.assert_array_equal(got_out, np.asarray(out))
  np.testing.assert_array_equal(got_hidden[0], np.asarray(hidden[0]))
  np.testing.assert_array_equal(p.predict(x), np.argmax(counts, -1))
  k = p.config.count_scale / T
  want = np.exp(k * counts) / np.exp(k * counts).sum(-1, keepdims=True)
  np.testing.assert_allclose(p.predict_proba(x), want, rtol=1e-5)


def test_rate_coding_draws_the_evaluation_keys(quick_run, quick_test_set):
  """Batch i of a rate-coded predict draws the spikes of the run's evaluation batch i."""
  x, y = quick_test_set
  p = bpsr_jax.load(quick_run, encoding="rate")
  step, _ = bpsr_jax.train.make_eval_step(p.model, p.config)
  key = jax.random.fold_in(jax.random.PRNGKey(p.config.seed), 3)
  b = p.batch_size
  want = [np.asarray(step(p.params, x[i:i + b], y[i:i + b],
                          jax.random.fold_in(key, i // b))["pred"])
          for i in range(0, len(x), b)]
  np.testing.assert_array_equal(p.predict(x), np.concatenate(want))
  other = p.spikes(x[:8], key=jax.random.PRNGKey(1))[0]
  assert not np.array_equal(p.spikes(x[:8])[0], other)


def test_predict_binary_on_a_workdir(quick_run, quick_test_set, tmp_path):
  x, y = quick_test_set
  np.savez(tmp_path / "in.npz", x=x, y=y)
  proc = run_module("experiments.predict", f"--model={quick_run}",
                    f"--input={tmp_path / 'in.npz'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  pred = bpsr_jax.load(quick_run).predict(x)
  assert proc.stdout.split() == [str(c) for c in pred]
  r = json.loads((quick_run / "results.json").read_text())
  assert f"accuracy {r['test_accuracy']:.4f}" in proc.stderr


def test_unfinished_and_broken_workdirs(quick_run, tmp_path):
  unfinished = tmp_path / "unfinished"
  shutil.copytree(quick_run, unfinished)
  (unfinished / "results.json").unlink()
  with pytest.raises(errors.WorkdirError, match=f"{unfinished}: no finished run"):
    bpsr_jax.load(unfinished)
  proc = run_module("experiments.predict", f"--model={unfinished}",
                    f"--input={MNIST_TEST_IMAGES}")
  assert proc.returncode == errors.WorkdirError.exit_code
  assert proc.stderr.strip().splitlines() == [
      f"error: {unfinished}: no finished run (no results.json; the run stopped at step 4): "
      "re-run its command to finish it"]

  corrupt = tmp_path / "corrupt"
  shutil.copytree(quick_run, corrupt)
  (corrupt / "results.json").write_text("{ truncated")
  with pytest.raises(errors.DataError, match=str(corrupt / "results.json")):
    bpsr_jax.load(corrupt)

  no_ckpt = tmp_path / "no_ckpt"
  shutil.copytree(quick_run, no_ckpt)
  shutil.rmtree(no_ckpt / "checkpoints")
  with pytest.raises(errors.CheckpointError, match=str(no_ckpt / "checkpoints")):
    bpsr_jax.load(no_ckpt)

  truncated = tmp_path / "truncated"
  shutil.copytree(quick_run, truncated)
  for f in (truncated / "checkpoints" / "4" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(f.read_bytes()[:10])
  with pytest.raises(errors.CheckpointError,
                     match=f"{truncated / 'checkpoints'}: cannot restore step 4"):
    bpsr_jax.load(truncated)

  with pytest.raises(errors.WorkdirError, match="not a run's workdir"):
    bpsr_jax.load(tmp_path)


def test_bad_arguments_and_inputs(quick_run, tmp_path):
  with pytest.raises(errors.ConfigError, match="nowhere: no such workdir"):
    bpsr_jax.load(tmp_path / "nowhere")
  with pytest.raises(errors.ConfigError, match="engine must be one of"):
    bpsr_jax.load(quick_run, engine="analog")
  with pytest.raises(errors.ConfigError, match="unknown overrides"):
    bpsr_jax.load(quick_run, model="fc10")
  (tmp_path / "x.txt").write_text("hello")
  with pytest.raises(errors.ConfigError, match="x.txt: not a run's workdir"):
    bpsr_jax.load(tmp_path / "x.txt")
  p = bpsr_jax.load(quick_run)
  with pytest.raises(errors.DataError, match="784 input features per sample"):
    p.predict(np.zeros((2, 27, 28, 1), np.float32))
  proc = run_module("experiments.predict", f"--model={quick_run}",
                    f"--input={tmp_path / 'x.txt'}")
  assert proc.returncode == errors.DataError.exit_code
  assert proc.stderr.strip().splitlines() == [
      f"error: {tmp_path / 'x.txt'}: unknown input format; expected .npy, .npz, an IDX "
      "image file (*-idx3-ubyte[.gz]) or an MIT-BIH record"]


def test_nir_file(quick_run, quick_test_set, tmp_path):
  """A .nir export of the run: spikes in, or rank order attached with overrides."""
  pytest.importorskip("nir")
  nir_io = pytest.importorskip("bpsr_jax.nir_io")
  x, _ = quick_test_set
  run = bpsr_jax.load(quick_run)
  path = tmp_path / "quick.nir"
  nir_io.write_nir(path, run.model, run.params)
  p = bpsr_jax.load(path)
  assert (p.config.encoding, p.results, p.source) == ("none", None, str(path))
  spikes = np.swapaxes(np.asarray(run.encode(x)), 0, 1)  # sample-major [N, T, 28, 28, 1]
  np.testing.assert_array_equal(p.predict(spikes), run.predict(x))
  assert p.predict(spikes[:, :7]).shape == (len(x),)  # a .nir takes any T
  ranked = bpsr_jax.load(path, encoding="rank_order", time_steps=10)
  np.testing.assert_array_equal(ranked.predict(x), run.predict(x))
  with pytest.raises(errors.DataError, match="784 input features per step"):
    p.predict(x)  # images where spikes [N, T, 28, 28, 1] are expected


def test_nir_file_errors_name_the_file(tmp_path):
  nir = pytest.importorskip("nir")
  pytest.importorskip("bpsr_jax.nir_io")
  bad = tmp_path / "broken.nir"
  bad.write_bytes(b"\x89HDF\r\n not really")
  with pytest.raises(errors.DataError, match="broken.nir"):
    bpsr_jax.load(bad)
  cuba = tmp_path / "cuba.nir"
  n = 3
  graph = nir.NIRGraph.from_list(
      nir.Input(input_type={"input": np.array([2])}),
      nir.Affine(weight=np.ones((n, 2), np.float32), bias=np.zeros(n, np.float32)),
      nir.CubaLIF(tau_syn=np.full(n, 5.0), tau_mem=np.full(n, 2.0), r=np.full(n, 2.0),
                  v_leak=np.zeros(n), v_threshold=np.ones(n)),
      nir.Output(output_type={"output": np.array([n])}))
  nir.write(str(cuba), graph)
  with pytest.raises(errors.ConfigError, match=f"{cuba}: .*CubaLIF"):
    bpsr_jax.load(cuba)
  proc = run_module("experiments.predict", f"--model={cuba}", f"--input={bad}")
  assert proc.returncode == errors.ConfigError.exit_code
  assert len(proc.stderr.strip().splitlines()) == 1 and str(cuba) in proc.stderr


# ----------------------------------------------------------------------------------------
# The packaged models.


def test_packaged_models_are_small():
  total = sum(f.stat().st_size for f in pretrained.DIR.rglob("*") if f.is_file())
  assert total < 6e6
  for name in pretrained.NAMES:
    for f in ("params.npz", "results.json", "NOTE.md"):
      assert (pretrained.DIR / name / f).is_file(), (name, f)


def test_packaged_mnist_reproduces_its_accuracy():
  x, y = mnist_test()
  p = bpsr_jax.load("mnist")
  r = p.results
  assert (r["num_test"], r["flags"]["model"], r["flags"]["encoding"]) == (
      10000, "r1000-fc100-fc10", "rank_order")
  assert p.accuracy(x, y) == r["test_accuracy"]
  assert bpsr_jax.train.count_synapses(p.params)["total"] == r["synapses"]


def test_predict_binary_on_packaged_mnist():
  proc = run_module("experiments.predict", "--model=mnist",
                    f"--input={MNIST_TEST_IMAGES}", "--limit=300", "--proba")
  assert proc.returncode == 0, proc.stderr[-3000:]
  x, y = mnist_test()
  p = bpsr_jax.load("mnist")
  lines = proc.stdout.strip().splitlines()
  assert [l.split("\t")[0] for l in lines] == [str(c) for c in p.predict(x[:300])]
  probs = np.asarray([[float(v) for v in l.split("\t")[1].split()] for l in lines])
  np.testing.assert_allclose(probs, p.predict_proba(x[:300]), atol=6e-5)
  acc = float(np.mean(p.predict(x[:300]) == y[:300]))
  assert f"300 samples, model bpsr_jax.pretrained:mnist, accuracy {acc:.4f}" in proc.stderr


def test_packaged_mitbih_on_raw_beats_of_real_records(shared_data):
  """Raw ECG windows cut from two records give the loader's spikes and predictions."""
  p = bpsr_jax.load("mitbih")
  f = p.data_flags
  assert (p.config.model, p.class_names) == ("r128-fc64-fc5", ("N", "S", "V", "F", "Q"))
  records = ("100", "208")  # normal beats; many V and F beats
  splits = bpsr_jax.data.load_mitbih(
      shared_data / "mitdb", records=records, time_steps=p.config.time_steps,
      delta=f["lc_delta"], binary=not f["lc_counts"],
      window_s=(f["window_before"], f["window_after"]))
  x_ds = np.concatenate([s.x for s in splits])
  y_ds = np.concatenate([s.y for s in splits])
  record = np.concatenate([s.meta["record"] for s in splits])
  sample = np.concatenate([s.meta["sample"] for s in splits])
  _, sym_to_class = mitbih.class_mapping(5)
  signals, labels = [], []
  for r in records:
    b = mitbih.read_record_beats(shared_data / "mitdb", r, symbols=sym_to_class)
    signals.append(b["signal"])
    labels += [sym_to_class[s] for s in b["symbol"]]
  signals = np.concatenate(signals)
  order = np.lexsort((sample, record))  # the records' beat order
  np.testing.assert_array_equal(np.asarray(labels), y_ds[order])
  pred = p.predict(signals)
  np.testing.assert_array_equal(pred, p.predict(x_ds[order]))
  assert np.mean(pred == np.asarray(labels)) > 0.97
  assert set(pred) >= {0, 2, 3}  # N, V and F are found

  proc = run_module("experiments.predict", "--model=mitbih",
                    f"--input={shared_data / 'mitdb' / '208.hea'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  n208 = int(np.sum(record == "208"))
  assert proc.stdout.split() == [p.class_names[c] for c in pred[-n208:]]


@pytest.mark.slow
def test_packaged_mitbih_reproduces_its_accuracy(shared_data):
  p = bpsr_jax.load("mitbih")
  f, r = p.data_flags, p.results
  _, test = bpsr_jax.data.load_mitbih(
      shared_data / "mitdb", classes=int(f["classes"]), split=f["split"],
      time_steps=p.config.time_steps, delta=f["lc_delta"], binary=not f["lc_counts"],
      window_s=(f["window_before"], f["window_after"]), seed=p.config.seed)
  assert len(test) == r["num_test"]
  assert p.accuracy(test.x, test.y) == r["test_accuracy"]


# ----------------------------------------------------------------------------------------
# Engines.


def test_event_engine(quick_run, quick_test_set):
  x, _ = quick_test_set
  if importlib.util.find_spec("bpsr_jax.event") is None:
    with pytest.raises(errors.ConfigError, match="engine='event' needs bpsr_jax.event"):
      bpsr_jax.load(quick_run, engine="event")
    return
  x = x[:16]
  dense = bpsr_jax.load(quick_run, batch_size=16)
  event = bpsr_jax.load(quick_run, engine="event", batch_size=16)
  assert event.engine == "event"
  np.testing.assert_array_equal(event.spike_counts(x), dense.spike_counts(x))
