"""bpsr_jax <-> NIR: file round trips, an independent simulator, peers' graphs, errors.

The truth for the spikes is ``tests/nir_sim.py``, a numpy simulation of the NIR node
equations that shares no code with bpsr_jax.
"""
import pathlib

import jax
import jax.numpy as jnp
import nir
import numpy as np
import optax
import pytest

import bpsr_jax
from bpsr_jax import nir_io
from bpsr_jax.errors import ConfigError, DataError

import nir_sim

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "nir"

# Every layer form of the spec grammar: flat, recurrent, conv (stride 1 and 2, with an
# asymmetric SAME padding on 34x34), max and average pooling, residual blocks with
# identity and projection shortcuts (conv and dense), flattening and encoding layers.
# (Small sizes: the cost is XLA compiling each model once.)
FORMS = {
    "r20-fc10-fc5": (12,),
    "4c5/2-6c3/2-r12-fc5": (10, 10, 2),
    "e4c3-[4c3-4c3]-[6c3/2-6c3]-p2-a2-fc8-[fc8-fc8]-[fc4]-fc3": (8, 8, 3),
    "efc16-r8-fc4": (10,),
    "4c3-p2-a1-fc12-[fc12-fc12]-fc3": (6, 6, 2),
}
T = 6


# The seed of each form's init and input: one whose output layer spikes (0 < rate < 1),
# so that the spike comparison below is not vacuous.
SEEDS = {"e4c3-[4c3-4c3]-[6c3/2-6c3]-p2-a2-fc8-[fc8-fc8]-[fc4]-fc3": 2}


def _init(spec, ishape, seed=0):
  enc = spec.startswith("e")
  model = bpsr_jax.SNN(spec, time_steps=T if enc else None, bias_high=0.3,
                       weight_gain=2.0)
  key = jax.random.key(seed)
  if enc:
    x = jax.random.uniform(key, (4,) + ishape)
  else:
    x = (jax.random.uniform(key, (T, 4) + ishape) < 0.3).astype(jnp.float32)
  params = model.init(jax.random.key(seed + 1), x)["params"]
  return model, jax.tree.map(np.array, params), x


def _nir_input(model, x):
  """bpsr's model input -> the NIR graph's input ``[T, batch, (C, H, W) or F]``."""
  x = np.asarray(x)
  if model.spec.startswith("e"):
    x = np.broadcast_to(x, (model.time_steps,) + x.shape)
  if bpsr_jax.parse_spec(model.spec)[0].kind == "conv":
    return np.moveaxis(x, -1, 2)
  return x.reshape(x.shape[:2] + (-1,))


def _run(model, params, x):
  return np.asarray(model.apply({"params": params}, jnp.asarray(x))[0])


def _same_tree(a, b):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(np.asarray(u).dtype == np.asarray(v).dtype
                          and np.array_equal(u, v) for u, v in zip(la, lb))


@pytest.mark.parametrize("spec", [
    # conv + recurrent: ~15 s; the recurrent and the conv forms below stay fast.
    pytest.param(s, marks=pytest.mark.slow) if s == "4c5/2-6c3/2-r12-fc5" else s
    for s in FORMS])
def test_file_round_trip_and_simulator(spec, tmp_path):
  """bpsr_jax -> .nir -> bpsr_jax: identical params; the spikes equal those of the
  independent simulator on the exported graph."""
  model, params, x = _init(spec, FORMS[spec], seed=SEEDS.get(spec, 0))
  path = tmp_path / "model.nir"
  graph = nir_io.write_nir(path, model, params, input_shape=FORMS[spec])
  model2, params2 = nir_io.read_nir(path)
  assert model2.spec == model.spec
  assert model2.threshold == model.threshold and model2.time_steps == model.time_steps
  assert _same_tree(params, params2)  # so model2 computes exactly what model does
  out = _run(model2, params2, x)
  assert 0 < out.mean() < 1
  np.testing.assert_array_equal(nir_sim.simulate(graph, _nir_input(model, x)), out)


def test_dt_and_if_neurons():
  model, params, x = _init("r20-fc10-fc5", (12,))
  params["fc1"]["tau"][:] = 1.0  # a layer without leak: a NIR IF node
  for dt in (1.0, 1e-4, 0.37):
    graph = nir_io.to_nir(model, params, dt=dt)
    assert isinstance(graph.nodes["fc1_lif"], nir.IF)
    assert isinstance(graph.nodes["r0_lif"], nir.LIF)
    np.testing.assert_array_equal(nir_sim.simulate(graph, np.asarray(x), dt=dt),
                                  _run(model, params, x))
    model2, params2 = nir_io.from_nir(graph)
    assert _same_tree(params, params2)


def test_threshold_ties_fire_as_in_bpsr():
  """A potential exactly on U_th fires (>=); NIR's strict > on theta = nextafter."""
  model = bpsr_jax.SNN("fc1")
  params = {"fc0": dict(kernel=np.array([[0.5], [0.5]], np.float32),
                        bias=np.zeros(1, np.float32), tau=np.zeros(1, np.float32))}
  x = np.ones((3, 1, 2), np.float32)
  assert _run(model, params, x).sum() == 3
  graph = nir_io.to_nir(model, params)
  assert nir_sim.simulate(graph, x).sum() == 3


# ---------------------------------------------------------------------------------
# The four trained models.


def _packaged(name):
  p = bpsr_jax.load(name)
  return p.model, jax.tree.map(np.asarray, p.params), p


def _check_trained(model, params, x, input_shape=None):
  graph = nir_io.to_nir(model, params, input_shape=input_shape)
  out = _run(model, params, x)
  sim = nir_sim.simulate(graph, _nir_input(model, x))
  assert out.sum() > 0
  np.testing.assert_array_equal(sim, out)
  return graph


def test_mnist_main_job_model_spike_for_spike():
  from bpsr_jax.data import mnist_loader
  model, params, pred = _packaged("mnist")
  assert model.spec == "r1000-fc100-fc10"
  _, test = mnist_loader.load_mnist(limit=32)
  graph = _check_trained(model, params, pred.encode(test.x[:32]))
  # Rewired zeros stay exact zeros in the graph.
  w = graph.nodes["r0_rec"].weight
  assert np.count_nonzero(w) == np.count_nonzero(params["r0"]["recurrent_kernel"])


def test_mitbih_wide_model_spike_for_spike(shared_data):
  from bpsr_jax.data import mitbih
  model, params, pred = _packaged("mitbih")
  flags = pred.data_flags
  _, test = mitbih.load_mitbih(shared_data / "mitdb", records=["100"],
                               time_steps=model_t(pred), delta=flags["lc_delta"],
                               binary=not flags.get("lc_counts", True))
  x = np.moveaxis(test.x[:32], 1, 0).astype(np.float32)
  _check_trained(model, params, x)


def model_t(pred):
  return int(pred.config.time_steps)


def _train(model, params, x, y, steps=3):
  """A few Adam steps on the spike-count loss, clamped as in training."""
  tx = optax.adam(2e-2)

  @jax.jit
  def step(p, o):
    g = jax.grad(lambda p: bpsr_jax.spike_count_cross_entropy(
        model.apply({"params": p}, x)[0], y).mean())(p)
    u, o = tx.update(g, o, p)
    return bpsr_jax.project_params(optax.apply_updates(p, u)), o

  p, o = params, tx.init(params)
  for _ in range(steps):
    p, o = step(p, o)
  return jax.tree.map(np.asarray, p)


@pytest.mark.slow  # training compiles the gradient of a conv net (minutes on 2 busy cores)
def test_nmnist_conv_recurrent_model_spike_for_spike(shared_data):
  from bpsr_jax import encode
  from bpsr_jax.data import nmnist
  events = nmnist.read_nmnist_events(shared_data / "nmnist" / "sample_nmnist.bin")
  frames = encode.frame_events(events, time_steps=8, channels_last=True)  # [T,34,34,2]
  shifts = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (2, 2), (-2, 1), (1, -2)]
  x = np.stack([np.roll(frames, s, axis=(1, 2)) for s in shifts], 1).astype(np.float32)
  model = bpsr_jax.SNN("4c5/2-8c3/2-r32-fc10", bias_high=0.2)  # nmnist_quick.flags
  params = model.init(jax.random.key(0), x)["params"]
  params = _train(model, params, x, jnp.arange(8) % 10)
  _check_trained(model, params, x, input_shape=(34, 34, 2))


@pytest.mark.slow  # training compiles the gradient of a conv net (minutes on 2 busy cores)
def test_cifar10_residual_quick_model_spike_for_spike(shared_data):
  from bpsr_jax.data import cifar10
  images, labels = cifar10.read_cifar10_bin(
      shared_data / "cifar10-sample" / "sample_batch.bin")
  x = images[:8].astype(np.float32) / 255
  spec = ("e16c3-[16c3-16c3]-[32c3/2-32c3]-[64c3/2-64c3]-[64c3/2-64c3]-a4-fc64-fc10")
  model = bpsr_jax.SNN(spec, time_steps=4, bias_high=0.0)  # cifar10_quick.flags
  params = model.init(jax.random.key(0), x)["params"]
  params = _train(model, params, x, jnp.asarray(labels[:8]))
  _check_trained(model, params, x, input_shape=(32, 32, 3))


# ---------------------------------------------------------------------------------
# Quantized models.


@pytest.mark.parametrize("tau_terms", [1, 2])
def test_quantized_model_round_trips_to_the_same_integer_model(tau_terms, tmp_path):
  model, params, x = _init("r20-fc10-fc5", (12,))
  qparams, info = bpsr_jax.quantize_params(params, 6, tau_terms=tau_terms)
  path = tmp_path / "q.nir"
  graph = nir_io.write_nir(path, model, qparams, quant_info=info)
  meta = graph.metadata["bpsr_jax"]
  assert meta["bits"] == 6 and meta["tau_terms"] == tau_terms
  lif = graph.nodes["r0_lif"].metadata
  np.testing.assert_array_equal(lif["tau_code"], np.asarray(qparams["r0"]["tau"]))
  model2, qparams2, info2 = nir_io.from_nir(path, quantized=True)
  assert info2 == info and model2.spec == model.spec
  assert _same_tree(jax.tree.map(np.asarray, qparams), jax.tree.map(np.asarray, qparams2))
  out = np.asarray(bpsr_jax.integer_apply(qparams2, info2, model2.spec, x)[0])
  np.testing.assert_array_equal(
      out, np.asarray(bpsr_jax.integer_apply(qparams, info, model.spec, x)[0]))
  if tau_terms == 1:  # exact: integer model == dequantized float model == NIR graph
    np.testing.assert_array_equal(nir_sim.simulate(graph, np.asarray(x)), out)
  with pytest.raises(ConfigError, match="quantized"):
    nir_io.from_nir(nir_io.to_nir(model, params), quantized=True)


# ---------------------------------------------------------------------------------
# Peers.


def test_spyx_graphs_import_and_run():
  """Spyx 1.0.0's to_nir. Spyx writes r = beta, so by NIR's equation its LIF scales its
  input by r dt / tau = beta (1 - beta); bpsr_jax folds that uniform gain into the
  threshold (U_th = 1 / 0.16 here). Its recurrent layers route the layer input through
  w_rec (refused: see the next assertion)."""
  spyx = pytest.importorskip("spyx")
  from flax import nnx
  import spyx.nir as snir
  rngs = nnx.Rngs(0)
  net = spyx.nn.Sequential(
      nnx.Linear(12, 16, rngs=rngs), spyx.nn.LIF((16,), beta=0.8, rngs=rngs),
      nnx.Linear(16, 6, rngs=rngs), spyx.nn.LIF((6,), beta=0.8, rngs=rngs))
  for lin in (net.layers[0], net.layers[2]):  # excitatory, so that the output spikes
    lin.kernel[...] = jnp.abs(lin.kernel[...])
  graph = snir.to_nir(net, {"input": np.array([12])}, {"output": np.array([6])}, dt=1)
  model, params = nir_io.from_nir(graph)
  assert model.spec == "fc16-fc6"
  assert abs(model.threshold - 1 / (0.8 * 0.2)) < 1e-5
  x = (np.random.default_rng(0).random((12, 5, 12)) < 0.8).astype(np.float32)
  x = x * 4  # the gain 0.16 needs strong input to reach the threshold
  out = _run(model, params, x)
  assert out.sum() > 0
  np.testing.assert_array_equal(out, nir_sim.simulate(graph, x))
  rnet = spyx.nn.Sequential(nnx.Linear(12, 16, rngs=rngs),
                            spyx.nn.RLIF((16,), beta=0.8, rngs=rngs))
  rgraph = snir.to_nir(rnet, {"input": np.array([12])}, {"output": np.array([16])})
  with pytest.raises(ConfigError, match="cycle"):
    nir_io.from_nir(rgraph)


@pytest.mark.parametrize("name", ["snntorch_rnn"])
def test_snntorch_fixture_files_import_and_run(name):
  """Files written by snnTorch 1.0.0 (benchmarks/peers/write_nir_fixtures.py)."""
  path = FIXTURES / f"{name}.nir"
  model, params = nir_io.from_nir(path, dt=1e-4)
  data = np.load(FIXTURES / f"{name}_input.npz")
  x = data["x"]  # NIR layout [T, batch, ...]
  xb = np.moveaxis(x, 2, -1) if x.ndim == 5 else x
  out = _run(model, params, xb)
  assert out.sum() > 0
  np.testing.assert_array_equal(out, nir_sim.simulate(nir.read(path), x, dt=1e-4))


# ---------------------------------------------------------------------------------
# Errors: one per unsupported node or field.


def _graph(neuron, n=3, **meta):
  nodes = {"input": nir.Input(np.array([2])),
           "syn": nir.Affine(np.ones((n, 2), np.float32), np.zeros(n, np.float32)),
           "lif": neuron, "output": nir.Output(np.array([n]))}
  return nir.NIRGraph(nodes, [("input", "syn"), ("syn", "lif"), ("lif", "output")],
                      metadata=meta)


def _lif(n=3, **kw):
  f = dict(tau=np.full(n, 2.0), r=np.full(n, 2.0), v_leak=np.zeros(n),
           v_threshold=np.ones(n), v_reset=np.zeros(n))
  f.update(kw)
  return nir.LIF(**f)


def test_a_plain_lif_graph_imports():
  model, params = nir_io.from_nir(_graph(_lif()))
  assert model.spec == "fc3" and np.allclose(params["fc0"]["tau"], 0.5)
  assert model.threshold == float(np.nextafter(np.float32(1), np.float32(2)))


@pytest.mark.parametrize("node, field", [
    (nir.CubaLIF(tau_syn=np.full(3, 2.0), tau_mem=np.full(3, 2.0), r=np.full(3, 2.0),
                 v_leak=np.zeros(3), v_threshold=np.ones(3)), "tau_syn"),
    (nir.LI(tau=np.full(3, 2.0), r=np.full(3, 2.0), v_leak=np.zeros(3)), "tau"),
    (nir.I(r=np.ones(3)), "r"),
    (nir.Delay(delay=np.ones(3)), "delay"),
    (nir.Scale(scale=np.ones(3)), "scale"),
    (_lif(v_leak=np.full(3, 0.1)), "v_leak"),
    (_lif(v_reset=np.full(3, -0.5)), "v_reset"),
    (_lif(tau=np.full(3, 0.5), r=np.full(3, 0.5)), "tau"),            # tau < dt
    (_lif(v_threshold=np.array([1.0, 1.0, 2.0])), "v_threshold"),      # 3 thresholds
])
def test_unsupported_node_or_field_is_named(node, field):
  with pytest.raises(ConfigError, match=f"'lif'.*{field}"):
    nir_io.from_nir(_graph(node))


def test_subtractive_reset_is_refused():
  node = _lif()
  node.metadata = {"reset_mechanism": "subtract"}
  with pytest.raises(ConfigError, match="'lif'.*reset_mechanism.*subtractive"):
    nir_io.from_nir(_graph(node))


def test_dt_mismatch_is_refused():
  model, params, _ = _init("r20-fc10-fc5", (12,))
  graph = nir_io.to_nir(model, params, dt=0.5)
  with pytest.raises(ConfigError, match="dt=1.0 does not fit.*dt=0.5"):
    nir_io.from_nir(graph, dt=1.0)
  with pytest.raises(ConfigError, match="'r0_lif'.*'tau'.*dt does not fit"):
    nir_io.from_nir(_strip_meta(graph), dt=100.0)


def _strip_meta(graph):
  graph.metadata = {}
  return graph


def test_conv_errors_name_the_field():
  def conv_graph(**kw):
    f = dict(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3), np.float32), stride=1,
             padding=1, dilation=1, groups=1, bias=np.zeros(2, np.float32))
    f.update(kw)
    lif = _lif((2, 6, 6), tau=np.full((2, 6, 6), 2.0), r=np.full((2, 6, 6), 2.0),
               v_leak=np.zeros((2, 6, 6)), v_threshold=np.ones((2, 6, 6)),
               v_reset=np.zeros((2, 6, 6)))
    nodes = {"input": nir.Input(np.array([1, 6, 6])), "conv": nir.Conv2d(**f),
             "lif": lif, "flat": nir.Flatten(np.array([2, 6, 6]), start_dim=0),
             "fc": nir.Affine(np.ones((3, 72), np.float32), np.zeros(3, np.float32)),
             "lif2": _lif(), "output": nir.Output(np.array([3]))}
    names = list(nodes)
    return nir.NIRGraph(nodes, list(zip(names, names[1:])), type_check=False)

  model, _ = nir_io.from_nir(conv_graph())
  assert model.spec == "2c3-fc3"
  with pytest.raises(ConfigError, match="'conv'.*'padding'"):
    nir_io.from_nir(conv_graph(padding=0))
  with pytest.raises(ConfigError, match="'conv'.*'dilation'"):
    nir_io.from_nir(conv_graph(dilation=2))
  g = conv_graph()
  g.nodes["lif"].tau[0, 0, 0] = 3.0
  with pytest.raises(ConfigError, match="'lif'.*'tau'.*shares one tau"):
    nir_io.from_nir(g)


def test_other_cycles_and_unreadable_files():
  g = _graph(_lif())
  g.nodes["back"] = nir.Affine(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
  g.edges += [("lif", "back"), ("back", "syn")]
  with pytest.raises(ConfigError, match="cycle"):
    nir_io.from_nir(g)
  with pytest.raises(DataError, match="nope.nir"):
    nir_io.from_nir("nope.nir")


def test_export_errors():
  model, params, _ = _init("4c3-p2-fc6", (8, 8, 1))
  with pytest.raises(ConfigError, match="input_shape"):
    nir_io.to_nir(model, params)
  model = bpsr_jax.SNN("p2-4c3-fc6")
  with pytest.raises(ConfigError, match="max pooling of analog values"):
    nir_io.to_nir(model, {}, input_shape=(8, 8, 1))
