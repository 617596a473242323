"""Tests of bpsr_jax.models: spec parsing, shapes, parameter names, errors."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax.models import LayerSpec, parse_spec


def test_parse_paper_specs():
  assert parse_spec("r1000-fc100-fc10") == (
      LayerSpec("r", 1000), LayerSpec("fc", 100), LayerSpec("fc", 10))
  assert parse_spec("8c5/2-16c5/2-fc10") == (
      LayerSpec("conv", 8, 5, 2), LayerSpec("conv", 16, 5, 2), LayerSpec("fc", 10))
  res = parse_spec(bpsr_jax.CIFAR10_RESNET11)
  assert res[0] == LayerSpec("conv", 64, 3, 1, encoding=True)
  blocks = [l for l in res if l.kind == "residual"]
  assert len(blocks) == 4
  assert blocks[1].inner == (LayerSpec("conv", 128, 3, 2), LayerSpec("conv", 128, 3, 1))
  # 11 spiking layers: the encoding conv, 4 blocks x 2 convs, 2 dense layers.
  n_spiking = sum(len(l.inner) if l.kind == "residual" else l.kind in ("fc", "r", "conv")
                  for l in res)
  assert n_spiking == 11
  assert parse_spec(" 4c3-p2-a2-fc5 ")[1:3] == (LayerSpec("maxpool", 2),
                                               LayerSpec("avgpool", 2))


@pytest.mark.parametrize("spec", [
    "", "fc", "r1000--fc10", "r1000-fc100-", "x100-fc10", "8c5/-fc10", "r10-fc0",
    "[8c3-8c3-fc10", "8c3]-fc10", "[[8c3]]-fc10", "8c3-p2", "fc10-8c3-fc2",
    "fc10-efc10", "ep2-fc10", "[8c3-fc4]-fc10", "8c3-[8c3-p2]-fc10", "fc10.5",
])
def test_malformed_spec_errors(spec):
  with pytest.raises(ValueError, match="malformed model spec"):
    parse_spec(spec)


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)


def test_rmlp_shapes_and_param_names():
  model = bpsr_jax.SNN("r20-fc8-fc3")
  x = jnp.zeros((6, 4, 2, 5))  # [T, batch, ...] feature dims are flattened
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  assert _shapes(params) == {
      "r0": {"kernel": (10, 20), "recurrent_kernel": (20, 20), "bias": (20,),
             "tau": (20,)},
      "fc1": {"kernel": (20, 8), "bias": (8,), "tau": (8,)},
      "fc2": {"kernel": (8, 3), "bias": (3,), "tau": (3,)},
  }
  np.testing.assert_array_equal(params["r0"]["tau"], 0.5)  # Algorithm 1
  b = np.asarray(params["fc1"]["bias"])
  assert (b >= 0).all() and (b <= 1).all()  # U(0, 1)
  out, hidden = model.apply({"params": params}, x)
  assert out.shape == (6, 4, 3)
  assert [h.shape for h in hidden] == [(6, 4, 20), (6, 4, 8)]


def test_forward_matches_functional_core():
  """The model is a thin shell: one layer equals x @ W + b through lif by hand."""
  model = bpsr_jax.SNN("r6-fc3")
  x = (jax.random.uniform(jax.random.PRNGKey(1), (9, 2, 4)) < 0.5).astype(jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  out, (h,) = model.apply({"params": params}, x)
  p0, p1 = params["r0"], params["fc1"]
  h_ref = bpsr_jax.lif(x @ p0["kernel"] + p0["bias"], p0["tau"],
                       recurrent_kernel=p0["recurrent_kernel"])
  out_ref = bpsr_jax.lif(h_ref @ p1["kernel"] + p1["bias"], p1["tau"])
  np.testing.assert_array_equal(h, h_ref)
  np.testing.assert_array_equal(out, out_ref)


def test_conv_net_shapes_shared_tau():
  model = bpsr_jax.SNN("8c5/2-16c5/2-fc10")
  x = jnp.zeros((3, 2, 34, 34, 2))
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  assert params["conv0"]["kernel"].shape == (5, 5, 2, 8)
  assert params["conv0"]["tau"].shape == ()
  assert params["fc2"]["kernel"].shape == (9 * 9 * 16, 10)
  out, hidden = model.apply({"params": params}, x)
  assert out.shape == (3, 2, 10)
  assert [h.shape for h in hidden] == [(3, 2, 17, 17, 8), (3, 2, 9, 9, 16)]
  # Kaiming normal: std ~ sqrt(2 / fan_in) with fan_in = 5 * 5 * 2.
  std = float(jnp.std(params["conv1"]["kernel"]))
  assert 0.6 * np.sqrt(2 / 200) < std < 1.4 * np.sqrt(2 / 200)


def test_cifar_resnet_encoding_and_residual_names():
  spec = "e8c3-[8c3-8c3]-[16c3/2-16c3]-a2-fc10"
  model = bpsr_jax.SNN(spec, time_steps=3, bias_high=0.5)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))  # analog, no time axis
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  # Inner layers keep their own names inside the block.
  assert set(params["res1"]) == {"conv0", "conv1"}  # identity shortcut
  assert set(params["res2"]) == {"conv0", "conv1", "shortcut"}
  assert params["res2"]["shortcut"]["kernel"].shape == (1, 1, 8, 16)
  out, hidden = model.apply({"params": params}, x)
  assert out.shape == (3, 2, 10)
  assert len(hidden) == 5
  # The encoding layer sees the same image at every step: its current is the conv of the
  # image plus the bias, constant over time; a loop LIF on it gives its spikes.
  p = params["conv0"]
  current = np.asarray(jax.lax.conv_general_dilated(
      x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))) + p["bias"]
  u, s, want = np.zeros_like(current), np.zeros_like(current), []
  for _ in range(3):
    u = float(p["tau"]) * u * (1 - s) + current
    s = (u >= 1.0).astype(np.float32)
    want.append(s)
  np.testing.assert_array_equal(np.asarray(hidden[0]), np.stack(want))
  assert 0 < np.stack(want).mean() < 1
  full = bpsr_jax.SNN(bpsr_jax.CIFAR10_RESNET11, time_steps=2)
  p = jax.eval_shape(lambda: full.init(jax.random.PRNGKey(0), jnp.ones((1, 32, 32, 3))))
  n = sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(p))
  assert n > 1_000_000


def test_residual_identity_adds_input_current():
  """[fc4-fc4] block: last layer current = h @ W + b + x (identity shortcut)."""
  model = bpsr_jax.SNN("[fc4-fc4]-fc2")
  x = (jax.random.uniform(jax.random.PRNGKey(2), (5, 3, 4)) < 0.6).astype(jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  out, hidden = model.apply({"params": params}, x)
  p = params["res0"]
  h1 = bpsr_jax.lif(x @ p["fc0"]["kernel"] + p["fc0"]["bias"],
                    p["fc0"]["tau"])
  h2 = bpsr_jax.lif(h1 @ p["fc1"]["kernel"] + p["fc1"]["bias"] + x,
                    p["fc1"]["tau"])
  np.testing.assert_array_equal(hidden[0], h1)
  np.testing.assert_array_equal(hidden[1], h2)


def test_input_shape_errors():
  with pytest.raises(ValueError, match=r"expects spikes \[T, batch, H, W, C\]"):
    bpsr_jax.SNN("8c3-fc2").init(jax.random.PRNGKey(0), jnp.ones((2, 8, 8, 1)))
  with pytest.raises(ValueError, match="time_steps"):
    bpsr_jax.SNN("efc8-fc2").init(jax.random.PRNGKey(0), jnp.ones((2, 8)))


# --------------------------------------------------------------------------------------
# Typed errors for bad specs and layers that do not fit their input (issue 14).

from bpsr_jax.errors import ConfigError  # noqa: E402  (kept with its section)


@pytest.mark.parametrize("spec, kind", [(123, "int 123"), (None, "NoneType None"),
                                        (12.5, "float 12.5")])
def test_spec_that_is_not_a_string(spec, kind):
  with pytest.raises(ConfigError, match=f'model spec must be a string like "r1000-fc100-fc10", '
                                        f"got {re.escape(kind)}"):
    bpsr_jax.SNN(spec).init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 4)))


def test_pooling_larger_than_the_image_names_layer_and_size():
  """a30 on MNIST: was a ZeroDivisionError in the next layer's initializer."""
  with pytest.raises(ConfigError, match=r"pooling layer pool0 \(avg 30x30\) does not fit its "
                                        r"28x28 input"):
    bpsr_jax.SNN("a30-fc10").init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 28, 28, 1)))
  with pytest.raises(ConfigError, match=r"pooling layer pool1 \(max 16x16\) does not fit its "
                                        r"14x14 input"):
    bpsr_jax.SNN("4c3/2-p16-fc10").init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 28, 28, 1)))
  params = bpsr_jax.SNN("a28-fc10").init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 28, 28, 1)))
  assert params["params"]["fc1"]["kernel"].shape == (1, 10)  # a window equal to the image


def test_tau_init_outside_0_1_fails_at_init():
  with pytest.raises(ConfigError, match=r"layer fc0: tau_init=2.0 must lie in \[0, 1\]"):
    bpsr_jax.SNN("fc4-fc2", tau_init=2.0).init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 3)))
