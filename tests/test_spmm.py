"""Tests of bpsr_jax.spmm: the spike-sparse products equal dense float64 products, and
the LIF / dense layers give the Python-loop reference's gradients on the sparse path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpsr_jax
from bpsr_jax import layers
from bpsr_jax import spmm

from test_neuron import _inputs, _rel_err, reference_band_lif, reference_lif

jax.config.update("jax_default_matmul_precision", "highest")

pytestmark = pytest.mark.skipif(not spmm.available(), reason="numba not installed")


@pytest.fixture
def always_sparse(monkeypatch):
  """Every product takes the sparse kernel on a CPU (any density, any width)."""
  monkeypatch.setattr(spmm, "CPU_CROSSOVER", 1.0)
  monkeypatch.setattr(spmm, "MIN_COLUMNS", 1)
  monkeypatch.setattr(spmm, "MIN_ROWS", 1)
  monkeypatch.setattr(spmm, "MIN_SPARSE_WEIGHTS", 0)


def _bits(seed, shape, p):
  return np.random.default_rng(seed).random(shape) < p


@pytest.mark.parametrize("p", [0.0, 0.02, 0.5])
@pytest.mark.parametrize("crossover", [0.0, 1.0])  # dense branch / sparse branch
def test_products_equal_float64_dense(always_sparse, p, crossover):
  bits = _bits(0, (37, 70), p)
  w = np.random.default_rng(1).normal(size=(70, 65)).astype(np.float32)
  d = np.random.default_rng(2).normal(size=(37, 65)).astype(np.float32)
  want_y = bits.astype(np.float64) @ w.astype(np.float64)
  want_g = bits.astype(np.float64).T @ d.astype(np.float64)
  for x in (bits, bits.astype(np.float32)):  # booleans or 0/1 floats
    y = jax.jit(lambda x, w: spmm.spike_matmul(x, w, crossover=crossover))(x, w)
    g = jax.jit(lambda x, d: spmm.spike_outer(x, d, crossover=crossover))(x, d)
    assert y.shape == (37, 65) and y.dtype == jnp.float32
    assert g.shape == (70, 65) and g.dtype == jnp.float32
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t,shape", [
    pytest.param(40, (3, 16), marks=pytest.mark.slow),  # ~30 s; T = 9 covers the path
    (9, (2, 3, 7))])
def test_recurrent_lif_on_the_sparse_path_matches_reference(always_sparse, t, shape):
  currents, tau, rec, w = _inputs(t, t, shape, True)

  def loss(fn):
    return lambda c, tau, rec: jnp.sum(fn(c, tau, rec) * w)

  lib = loss(lambda c, tau, rec: bpsr_jax.lif(c, tau, recurrent_kernel=rec))
  np.testing.assert_array_equal(bpsr_jax.lif(currents, tau, recurrent_kernel=rec),
                                reference_lif(currents, tau, rec))
  g_lib = jax.jit(jax.grad(lib, argnums=(0, 1, 2)))(currents, tau, rec)
  g_ref = jax.grad(loss(reference_lif), argnums=(0, 1, 2))(currents, tau, rec)
  for name, a, b in zip(["currents", "tau", "recurrent_kernel"], g_lib, g_ref):
    assert _rel_err(a, b) < 1e-5, (name, _rel_err(a, b))
    assert np.max(np.abs(np.asarray(b))) > 0, name


def test_spike_dense_gradients_equal_the_plain_matmul(always_sparse):
  x = jnp.asarray(_bits(3, (10, 6, 90), 0.05), jnp.float32)
  kernel = jax.random.normal(jax.random.PRNGKey(4), (90, 70))
  g = jax.random.normal(jax.random.PRNGKey(5), (10, 6, 70))
  f_sparse = lambda x, k: jnp.sum(layers.spike_dense(x, k) * g)
  f_dense = lambda x, k: jnp.sum(jnp.einsum("tbi,io->tbo", x, k) * g)
  y_s, (dx_s, dk_s) = jax.jit(jax.value_and_grad(f_sparse, (0, 1)))(x, kernel)
  y_d, (dx_d, dk_d) = jax.value_and_grad(f_dense, (0, 1))(x, kernel)
  assert _rel_err(y_s, y_d) < 1e-5
  assert _rel_err(dx_s, dx_d) < 1e-5
  assert _rel_err(dk_s, dk_d) < 1e-5


@pytest.mark.parametrize("crossover", [0.0, 1.0])  # every spiking step over the limit / none
def test_recurrent_loop_kernel_and_its_dense_fallback(always_sparse, monkeypatch, crossover):
  # A recurrent layer's forward loop is one kernel call; a row with more spikes than
  # crossover * N in a step hands the whole loop over to the XLA loop. Both give the
  # reference's spikes.
  monkeypatch.setattr(spmm, "CPU_CROSSOVER", crossover)
  calls = []
  real = spmm._host_recurrent  # pylint: disable=protected-access

  def spy(*args):
    u, over = real(*args)
    calls.append(bool(over))
    return u, over

  monkeypatch.setattr(spmm, "_host_recurrent", spy)
  currents, tau, rec, _ = _inputs(20, 20, (3, 16), True)
  got = jax.jit(lambda c, t, r: bpsr_jax.lif(c, t, recurrent_kernel=r))(currents, tau, rec)
  want = reference_lif(currents, tau, rec)
  assert np.asarray(want).sum() > 0
  np.testing.assert_array_equal(got, want)
  assert calls == [crossover == 0.0]


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("crossover", [0.0, 1.0])  # dense branch / sparse branch
def test_sparse_matmul_equals_float64_dense(always_sparse, p, crossover):
  rng = np.random.default_rng(6)
  d = (rng.normal(size=(37, 70)) * (rng.random((37, 70)) < p)).astype(np.float32)
  w = rng.normal(size=(70, 65)).astype(np.float32)
  y = jax.jit(lambda d, w: spmm.sparse_matmul(d, w, crossover=crossover))(d, w)
  assert y.shape == (37, 65) and y.dtype == jnp.float32
  np.testing.assert_allclose(y, d.astype(np.float64) @ w.astype(np.float64), rtol=1e-5,
                             atol=1e-5)


def test_band_lif_on_the_sparse_path_matches_band_reference(always_sparse):
  # gradient="band" of a recurrent layer, its delta @ R^T by the weighted sparse kernel.
  currents, tau, rec, w = _inputs(43, 30, (4, 16), True)

  def loss(fn):
    return lambda c, tau, rec: jnp.sum(fn(c, tau, rec) * w)

  lib = loss(lambda c, tau, rec: bpsr_jax.lif(c, tau, recurrent_kernel=rec,
                                              gradient="band", band_width=0.4))
  ref = loss(lambda c, tau, rec: reference_band_lif(c, tau, rec, band_width=0.4)[0])
  g_lib = jax.jit(jax.grad(lib, argnums=(0, 1, 2)))(currents, tau, rec)
  g_ref = jax.grad(ref, argnums=(0, 1, 2))(currents, tau, rec)
  for name, a, b in zip(["currents", "tau", "recurrent_kernel"], g_lib, g_ref):
    assert _rel_err(a, b) < 1e-5, (name, _rel_err(a, b))
    assert np.max(np.abs(np.asarray(b))) > 0, name
