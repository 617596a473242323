"""Metrics on hand-computed tiny networks: synapses, connections, SOPs, FLOPs, energy."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpsr_jax import metrics
from bpsr_jax.models import SNN


def _set(params, **layers):
  """Replaces whole layers' params (numpy in, jnp out)."""
  p = jax.tree_util.tree_map(lambda a: a, params)
  for name, leaves in layers.items():
    for k, v in leaves.items():
      p[name][k] = jnp.asarray(v, jnp.float32)
  return p


def _mlp():
  """fc3-fc2 on 4 inputs, T = 2, one sample; every number below is by hand."""
  model = SNN("fc3-fc2")
  x = jnp.array([[[1, 0, 1, 0]], [[0, 1, 0, 0]]], jnp.float32)  # [T=2, B=1, 4]
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  params = _set(
      params,
      fc0=dict(kernel=[[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], bias=[0, 0, 0],
               tau=[0.5] * 3),
      fc1=dict(kernel=[[1, 0], [0, 0.5], [0, 0]], bias=[0, 0], tau=[0.5] * 2))
  return model, params, x


def test_mlp_counts_by_hand():
  model, params, x = _mlp()
  r = metrics.measure(model, {"params": params}, x)
  l0, l1 = r.layers
  # Layer 0: currents t0 = [2, 0, 0] -> spike n0; t1 = [0, 1, 0] -> spike n1.
  assert (l0.neurons, l0.synapses, l0.connections) == (3, 3, 3)
  assert l0.spikes == 2 and l0.firing_rate == pytest.approx(2 / 6)
  # SOPs: t0 inputs 0 and 2 (1 synapse each), t1 input 1 (1 synapse).
  assert l0.sops == 3 and l0.input_spikes == 3
  # Layer 1: t0 current [1, 0] -> spike; t1 [0, 0.5] -> none.
  assert (l1.synapses, l1.spikes, l1.sops) == (2, 1, 2)
  assert r.synapses == 5 and r.sops == 5 and r.spikes == 3 and r.hidden_spikes == 2
  assert r.firing_rate == pytest.approx(3 / 10)
  assert r.input_spikes == 3
  assert l0.first and not l1.first


def test_energy_by_hand():
  model, params, x = _mlp()
  r = metrics.measure(model, {"params": params}, x)
  ops = metrics.snn_ops(r)
  # 5 SOP adds; 10 neuron-steps: 1 mul + 2 adds + 1 bit op each.
  assert ops == {"fl_add": 25, "fl_mul": 10, "fi_add": 0, "bit_op": 10}
  assert metrics.energy(ops) == 25 + 4 * 10
  q = metrics.snn_ops(r, quantized=True)
  assert q == {"fl_add": 0, "fl_mul": 0, "fi_add": 25, "bit_op": 20}
  assert metrics.energy(q) == pytest.approx(5.0)
  ann = metrics.reference_ops(r, "ann")
  assert ann == {"fl_add": 10, "fl_mul": 5, "fi_add": 0, "bit_op": 5}
  assert metrics.energy(ann) == 30
  bnn = metrics.reference_ops(r, "bnn")  # first layer float MACs, then XNOR/popcount
  assert bnn == {"fl_add": 8, "fl_mul": 8, "fi_add": 0, "bit_op": 9}
  assert metrics.energy(bnn) == 40
  rows = {row["network"]: row for row in metrics.energy_table(r)}
  assert rows["snn"]["energy"] == 65 and rows["xnor"]["energy"] == 40 + 4 * 5
  with pytest.raises(KeyError, match="no energy cost"):
    metrics.energy({"fl_div": 1})
  with pytest.raises(ValueError, match="unknown reference"):
    metrics.reference_ops(r, "cnn")


def test_learning_flops_by_hand():
  model, params, x = _mlp()
  r = metrics.measure(model, {"params": params}, x)
  per_neuron = metrics.NEURON_FWD_FLOPS + metrics.NEURON_BWD_FLOPS
  # fc0 (reads the input: no dx): fwd 2*3*2, dW 12; fc1: fwd 8, dW 8, dx 8.
  want = 12 + 12 + 3 * 2 * per_neuron + 8 + 8 + 8 + 2 * 2 * per_neuron
  assert r.learning_flops == want
  assert metrics.dense_inference_flops(r) == 12 + 8 + metrics.NEURON_FWD_FLOPS * 10


def test_recurrent_sops_skip_last_step():
  model = SNN("r2-fc1")
  x = jnp.array([[[1.0]], [[0.0]], [[1.0]]])  # T=3, B=1, 1 input
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  params = _set(params,
                r0=dict(kernel=[[1.0, 0.0]], bias=[0, 0], tau=[0, 0],
                        recurrent_kernel=[[0, 0.5], [0, 0]]),
                fc1=dict(kernel=[[0.0], [0.0]], bias=[0], tau=[0]))
  r = metrics.measure(model, {"params": params}, x)
  rec = r.layers[0]
  # n0 spikes at t0 and t2; the recurrent synapse 0 -> 1 carries only the t0 spike.
  assert rec.spikes == 2
  assert rec.synapses == 2 and rec.recurrent_connections == 1
  assert rec.sops == 2 + 1
  assert r.layers[1].synapses == 0 and r.layers[1].sops == 0


def test_conv_connections_per_position_and_pooling():
  model = SNN("2c3-p2-fc2")
  x = jnp.ones((1, 1, 4, 4, 1))
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  k = np.ones((3, 3, 1, 2), np.float32)
  k[1, 1, 0, 0] = 0.0  # channel 0 loses its centre tap
  params = _set(params, conv0=dict(kernel=k))
  r = metrics.measure(model, {"params": params}, x)
  conv, pool, fc = r.layers
  # 4x4 SAME: in-bounds outputs per tap and axis 3 + 4 + 3 = 10 -> 100 per channel;
  # channel 0 misses 16 centre connections.
  assert conv.synapses == 17 and conv.connections == 200 - 16
  # All 16 inputs spike once: SOPs = connections.
  assert conv.sops == 184
  # p2: 2x2x2 outputs, 4 inputs each.
  assert pool.kind == "pool" and pool.connections == 32 and pool.sops == pool.input_spikes
  assert fc.synapses == int(np.count_nonzero(params["fc2"]["kernel"]))
  assert r.connections == 184 + 32 + fc.connections
  # Pooling has no neurons: 4 x 4 x 2 conv neurons and 2 outputs.
  assert (conv.neurons, pool.neurons, fc.neurons, r.neurons) == (32, 0, 2, 34)
  assert pool.firing_rate == 0.0
  assert [l.encoding for l in r.layers] == [False, False, False]


def test_matmul_floor_flops():
  f = metrics.mlp_step_matmul_flops((784, 100, 10), time_steps=10, batch=32)
  rows = 320
  assert f == 2 * rows * 784 * 100 * 2 + 2 * rows * 100 * 10 * 3
  with pytest.raises(ValueError):
    metrics.mlp_step_matmul_flops((784,), 10, 32)


def test_no_spikes_recorded_is_a_clear_error():
  dense = nn.Dense(3)
  x = jnp.ones((2, 4))
  v = dense.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="no spikes recorded"):
    metrics.measure(dense, v, x)
  with pytest.raises(ValueError, match="no spikes recorded"):
    metrics.firing_rates(())
  with pytest.raises(ValueError, match="no spikes recorded"):
    metrics.firing_rates(None)
  with pytest.raises(ValueError, match=r"\[T, batch"):
    metrics.firing_rates([jnp.ones((3,))])
  with pytest.raises(ValueError, match=r"layer 1: expected spikes \[T, batch"):
    metrics.firing_rates([jnp.ones((2, 1, 3)), None])
  with pytest.raises(ValueError, match=r"layer 0: expected spikes \[T, batch"):
    metrics.firing_rates([[[[0.0, 1.0]]]])   # nested lists: no ndim


def test_firing_rates_from_model_output():
  model, params, x = _mlp()
  out, hidden = model.apply({"params": params}, x)
  assert metrics.firing_rates(list(hidden) + [out]) == pytest.approx([2 / 6, 1 / 4])
  assert metrics.spikes_per_sample(list(hidden) + [out]) == [2.0, 1.0]
  report = metrics.measure(model, {"params": params}, x)
  d = report.as_dict()
  assert d["synapses"] == 5 and d["energy_float"] == 65 and len(d["layers"]) == 2
  assert "| **total** |" in report.table()


def test_missing_peer_is_a_clear_error(monkeypatch):
  import pathlib
  import sys
  root = str(pathlib.Path(__file__).resolve().parents[1])
  if root not in sys.path:
    monkeypatch.syspath_prepend(root)
  from benchmarks import peers
  monkeypatch.setitem(peers.FRAMEWORKS, "NoSuchSNN",
                      ("benchmarks.peers.no_such_module_xyz", {}))
  with pytest.raises(peers.PeerMissing, match=r"NoSuchSNN is not available.*\.\[bench\]"):
    peers.load("NoSuchSNN")
  with pytest.raises(KeyError, match="unknown framework"):
    peers.load("Brian2")


def _mixed_report():
  """A hand-made report (T = 3) with every kind of layer the counters price: an encoding
  conv, a pooling window, a recurrent layer, an identity shortcut and a dense output."""
  lm = metrics.LayerMetrics
  layers = [
      lm("conv0", "conv", 8, 3, 50, 50, 0, 9.0, 0.0, 0.0, macs=50.0, encoding=True,
         first=True),
      lm("pool1", "pool", 0, 3, 0, 16, 0, 0.0, 5.0, 5.0),
      lm("r2", "recurrent", 4, 3, 40, 40, 12, 3.0, 5.0, 20.0),
      lm("res3/identity", "identity", 0, 3, 0, 4, 0, 0.0, 6.0, 6.0),
      lm("fc4", "dense", 2, 3, 8, 8, 0, 1.0, 3.0, 7.0),
  ]
  return metrics.Report(layers, batch=4, time_steps=3, input_spikes=0.0)


def test_flops_and_ops_of_every_layer_kind_by_hand():
  r = _mixed_report()
  assert [l.firing_rate for l in r.layers] == [9 / 24, 0.0, 3 / 12, 0.0, 1 / 6]
  # Learning FLOPs (forward 2 conn T, dW the same, dx but into the input, 18 per
  # neuron-step; the encoding layer's contraction once; pool and identity 2 conn T):
  # conv 100 + 100 + 0 + 18 * 24; pool 96; r2 240 + 240 + (168 + 72) + 18 * 12;
  # identity 24; fc 48 + 48 + 48 + 18 * 6.
  assert r.learning_flops == 632 + 96 + 936 + 24 + 252
  # Clock-driven inference: 2 conn T (encoding: once) + 4 per neuron-step.
  assert metrics.dense_inference_flops(r) == 196 + 96 + 288 + 24 + 72
  # Float SNN: SOPs are adds, the pool's are bitwise; the encoding layer's MACs once;
  # per neuron-step 1 mul, 2 adds, 1 bitwise op.
  ops = metrics.snn_ops(r)
  assert ops == {"fl_add": 98 + 44 + 6 + 19, "fl_mul": 74 + 12 + 6, "fi_add": 0,
                 "bit_op": 24 + 5 + 12 + 6}
  assert r.inference_flops == 167 + 92
  assert metrics.energy(ops) == 167 + 4 * 92
  # Fixed point: SOPs and neuron adds fixed-point, leak and reset bitwise, the
  # encoding layer's MACs stay float.
  q = metrics.snn_ops(r, quantized=True)
  assert q == {"fl_add": 50, "fl_mul": 50, "fi_add": 48 + 44 + 6 + 19,
               "bit_op": 48 + 5 + 24 + 12}
  assert metrics.energy(q) == pytest.approx(50 + 4 * 50 + 0.2 * 117)
  assert metrics.energy(q, {"fl_add": 1, "fl_mul": 1, "fi_add": 1, "bit_op": 1}) == 306
  # References: one evaluation per connection; pooling 16 comparisons.
  assert metrics.reference_ops(r, "ann") == {
      "fl_add": 50 + 8 + 16 + 44 + 4 + 10, "fl_mul": 102, "fi_add": 0, "bit_op": 14}
  addernet = {"fl_add": 58 + 16 + 84 + 8 + 18, "fl_mul": 64, "fi_add": 0, "bit_op": 14}
  assert metrics.reference_ops(r, "addernet") == addernet
  name = "addernet"
  built = "".join(list(name))   # a kind read at run time (a flag), not the literal
  assert built is not name and metrics.reference_ops(r, built) == addernet
  bnn = {"fl_add": 64, "fl_mul": 64, "fi_add": 0, "bit_op": 8 + 16 + 84 + 8 + 18}
  assert metrics.reference_ops(r) == metrics.reference_ops(r, "ann")
  assert metrics.reference_ops(r, "bnn") == bnn
  assert metrics.reference_ops(r, "xnor") == dict(bnn, fl_mul=64 + 14)
  rows = metrics.energy_table(r, references=("bnn",))
  assert [row["network"] for row in rows] == ["snn", "snn_ptq", "bnn"]
  assert rows[0]["operations"] == 167 + 92 + 47 and rows[0]["energy"] == 535
  assert rows[1]["energy"] == pytest.approx(273.4) and rows[2]["operations"] == 262
  # A separately measured PTQ report replaces the float one in the snn_ptq row only.
  sparse = metrics.Report([dataclasses.replace(l, sops=0.0) for l in r.layers], 4, 3, 0.0)
  rows = metrics.energy_table(r, sparse, references=())
  assert rows[0]["energy"] == 535
  assert rows[1]["fi_add"] == 117 - 20 - 6 - 7 and rows[1]["bit_op"] == 89 - 5


def test_single_layer_network_batch_two():
  model = SNN("fc2")
  x = jnp.ones((3, 2, 4))   # T = 3, batch 2, every input spikes every step
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  params = _set(params, fc0=dict(kernel=np.ones((4, 2)), bias=[0, 0], tau=[0.5, 0.5]))
  r = metrics.measure(model, {"params": params}, x)
  assert (r.time_steps, r.batch, len(r.layers), r.input_spikes) == (3, 2, 1, 12)
  # 12 input spikes per sample, each reaching 2 synapses; currents of 4 fire every step.
  assert (r.synapses, r.sops, r.spikes) == (8, 24, 6)


def test_encoding_layer_connections_with_batch_two():
  from bpsr_jax import train  # pylint: disable=g-import-not-at-top
  cfg = train.TrainConfig(model="efc3-fc2", encoding="analog", time_steps=2)
  model = train.make_model(cfg)
  x = jnp.ones((2, 4))   # analog input, batch 2
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  params = _set(params, fc0=dict(kernel=np.ones((4, 3))))
  r = metrics.measure(model, {"params": params}, x)
  enc = r.layers[0]
  # One sample's 4 inputs reach 3 neurons each: 12 connections, 12 MACs, no SOPs.
  assert enc.encoding and (enc.connections, enc.macs, enc.sops) == (12, 12.0, 0.0)
  assert (r.batch, r.time_steps, r.input_spikes) == (2, 2, 0.0)
  # count_events' per-sample counts are [batch] for the encoding layer too.
  _, _, counts = metrics.count_events(model, {"params": params}, x)
  assert counts[0]["input_spikes"].shape == counts[0]["sops"].shape == (2,)
