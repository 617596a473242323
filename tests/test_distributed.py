"""Data parallelism: 4 host devices give the loss and gradient of 1 device (round-off)."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    import jax, jax.numpy as jnp, numpy as np
    assert jax.device_count() == 4, jax.devices()
    from bpsr_jax import train as T
    from bpsr_jax.data.common import Dataset

    cfg = T.TrainConfig(model="r32-fc16-fc4", time_steps=8, encoding="rate",
                        batch_size=16, epochs=1, lambda_s=1e-3, lambda_w=1e-4,
                        rewire=True, log_every=100, checkpoint_every=100)
    rng = np.random.default_rng(0)
    x = rng.random((64, 20), dtype=np.float32)
    y = rng.integers(0, 4, 64).astype(np.int32)
    model = T.make_model(cfg)
    tx = T.make_optimizer(cfg, 4)
    state0 = T.init_state(cfg, model, tx, x[:1])
    step = T.make_train_step(model, tx, cfg)

    def run(mesh, n_steps=3):
      state = T.replicate(mesh, state0)
      grad = jax.jit(jax.grad(lambda p, xb, yb, k: T.loss_fn(p, model, xb, yb, k, cfg)[0]))
      xs, ys = T.shard_batch(mesh, x[:16], y[:16])
      loss = T.loss_fn(state.params, model, xs, ys, jax.random.PRNGKey(1), cfg)[0]
      g = grad(state.params, xs, ys, jax.random.PRNGKey(1))
      for i in range(n_steps):
        xs, ys = T.shard_batch(mesh, x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
        state, m = step(state, xs, ys)
      return float(loss), jax.device_get(g), jax.device_get(state.params), xs

    m4, m1 = T.make_mesh(), T.make_mesh(jax.devices()[:1])
    l4, g4, p4, xs4 = run(m4)
    l1, g1, p1, _ = run(m1)
    assert len(xs4.sharding.device_set) == 4
    np.testing.assert_allclose(l4, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g1)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(p4), jax.tree.leaves(p1)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    ds = Dataset(x=x, y=y, num_classes=4, class_names=tuple("abcd"), kind="analog")
    res = T.fit(ds, ds, cfg, sys.argv[1])
    assert res["devices"] == 4, res
    try:
      T.fit(ds, ds, dataclasses.replace(cfg, batch_size=18), sys.argv[1] + "_bad")
    except ValueError as e:
      assert "not divisible by the 4 devices" in str(e), e
    else:
      raise AssertionError("batch 18 on 4 devices should fail")
    print("OK", l4, l1)
""")


# ~80 s (a 4-device subprocess run): the sharded step's code runs in every fit test
# with one device; this one compares 4 devices with 1.
@pytest.mark.slow
def test_four_devices_match_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], env=env,
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "OK" in proc.stdout
