"""gradient="band" (approximate sparse backward) against "bpsr" on the MNIST main-job model.

Prints markdown tables:

1. how sparse the band's deltas are: the fraction of ``dL/du`` entries that are non-zero
   in each layer of the trained main-job model (the packaged ``"mnist"`` params,
   r1000-fc100-fc10, rank order, T = 10, batch 64 training images, the eq. 4 loss of the
   main job), for ``gradient="bpsr"`` and ``"band"`` at several band widths, and the
   cosine similarity of the band's parameter gradient with bpsr's;
2. the band's recurrent backward product ``delta @ R^T`` (one per step) for the main job's
   ``[64, 1000] @ [1000, 1000]`` and MIT-BIH wide's ``[64, 128] @ [128, 128]``, dense vs
   the weighted sparse kernel (:func:`bpsr_jax.spmm.sparse_matmul` forced) at delta
   densities 0.01-0.3;
3. the main job's training step (AdamW, rewiring, at the trained params) with
   ``gradient="bpsr"``, ``"band"`` and ``"band"`` with its ``delta @ R^T`` kept dense:
   best of ``--repeats`` rounds of 5 steps, the three alternating (robust on a shared
   machine).

Usage:
  python benchmarks/band.py [--repeats 10] [--widths 0.25,0.5,1.0]
      [--tables density,products,step]
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import bpsr_jax
from bpsr_jax import data, losses, pretrained, spmm, train

CFG = train.TrainConfig(
    model="r1000-fc100-fc10", encoding="rank_order", time_steps=10, epochs=20,
    batch_size=64, optimizer="adamw", weight_decay=1e-2, schedule="cosine",
    bias_high=0.0, lambda_s=1e-3, lambda_w=1e-5, rewire=True)
LAYERS = ("r0", "fc1", "fc2")


def _deltas_and_grads(params, x, y, gradient, width):
  """``dL/du`` of every layer ``[T, B, N]`` and the parameter gradient, through a
  layer-by-layer forward with a zero current added to each layer (its gradient is the
  layer's delta)."""

  def loss(params, extra):
    h, hidden = x, []
    for name, e in zip(LAYERS, extra):
      p = params[name]
      currents = h.reshape(h.shape[:2] + (-1,)) @ p["kernel"] + e
      h = bpsr_jax.lif(currents, p["tau"], recurrent_kernel=p.get("recurrent_kernel"),
                       bias=p["bias"], gradient=gradient, band_width=width)
      hidden.append(h)
    ce = jnp.mean(losses.spike_count_cross_entropy(h, y, CFG.count_scale / h.shape[0]))
    return ce + CFG.lambda_s * losses.spike_l2(hidden[:-1])

  t, b = x.shape[:2]
  extra = [jnp.zeros((t, b, params[n]["bias"].shape[0])) for n in LAYERS]
  return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, extra)


def _cosine(a, b):
  a = np.concatenate([np.ravel(v) for v in jax.tree.leaves(a)])
  b = np.concatenate([np.ravel(v) for v in jax.tree.leaves(b)])
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def density_table(params, x, y, widths):
  print("| gradient | band_width | " + " | ".join(f"{n} delta density" for n in LAYERS)
        + " | cos(grad, bpsr grad) |")
  print("|---|---|" + "---|" * len(LAYERS) + "---|")
  exact_grads, exact_deltas = _deltas_and_grads(params, x, y, "bpsr", 0.5)
  rows = [("bpsr", "-", exact_grads, exact_deltas)]
  for w in widths:
    g, d = _deltas_and_grads(params, x, y, "band", w)
    rows.append(("band", w, g, d))
  for name, w, g, d in rows:
    dens = " | ".join(f"{float(jnp.mean(di != 0)):.3f}" for di in d)
    print(f"| {name} | {w} | {dens} | {_cosine(g, exact_grads):.3f} |", flush=True)


def products_table(repeats):
  saved = spmm.MIN_ROWS, spmm.MIN_SPARSE_WEIGHTS
  spmm.MIN_ROWS, spmm.MIN_SPARSE_WEIGHTS = 1, 0
  rng = np.random.default_rng(0)
  fns = [jax.jit(lambda d, w: spmm.sparse_matmul(d, w, crossover=-1.0)),
         jax.jit(lambda d, w: spmm.sparse_matmul(d, w, crossover=1.0))]
  print("| delta @ R^T, one step | density | dense ms | sparse ms | dense / sparse |")
  print("|---|---|---|---|---|")
  for n in (1000, 128):  # MNIST main job's r1000, MIT-BIH wide's r128
    w = jnp.asarray(rng.normal(size=(n, n)), jnp.float32)
    for p in (0.01, 0.04, 0.1, 0.2, 0.3):
      d = jnp.asarray(rng.normal(size=(64, n)) * (rng.random((64, n)) < p), jnp.float32)
      for f in fns:
        jax.block_until_ready(f(d, w))
      best = [float("inf")] * 2
      for _ in range(repeats * 10):
        for i, f in enumerate(fns):
          t0 = time.perf_counter()
          jax.block_until_ready(f(d, w))
          best[i] = min(best[i], time.perf_counter() - t0)
      print(f"| [64, {n}] @ [{n}, {n}] | {p} | {best[0] * 1e3:.3f} | {best[1] * 1e3:.3f} | "
            f"{best[0] / best[1]:.2f}x |", flush=True)
  spmm.MIN_ROWS, spmm.MIN_SPARSE_WEIGHTS = saved


def step_table(params, batches, repeats, width):
  model = train.make_model(CFG)
  steps_per_epoch = 60000 // CFG.batch_size
  fns, states = {}, {}
  sparse_matmul = spmm.sparse_matmul
  for g in ("bpsr", "band", "band, dense delta @ R^T"):
    if g.endswith("R^T"):  # read at trace time
      spmm.sparse_matmul = lambda d, w, **_: d @ w
    cfg = dataclasses.replace(CFG, gradient=g[:4], band_width=width)
    tx = train.make_optimizer(cfg, steps_per_epoch)
    state = train.init_state(cfg, model, tx, np.asarray(batches[0][0][:1]))
    states[g] = state._replace(params=params, opt_state=tx.init(params))
    fns[g] = train.make_train_step(train.make_model(cfg), tx, cfg)
    jax.block_until_ready(fns[g](states[g], *batches[0]))
  spmm.sparse_matmul = sparse_matmul
  best = {g: float("inf") for g in fns}
  for r in range(repeats):
    for g, fn in fns.items():
      s = states[g]
      t0 = time.perf_counter()
      for i in range(5):
        s, _ = fn(s, *batches[(r * 5 + i) % len(batches)])
      jax.block_until_ready(s)
      best[g] = min(best[g], (time.perf_counter() - t0) / 5)
  print(f"| gradient | step ms (best of {repeats} x 5) | steps/s | bpsr / this |")
  print("|---|---|---|---|")
  for g in fns:
    label = g if g == "bpsr" else g.replace("band", f"band ({width})")
    print(f"| {label} | {best[g] * 1e3:.1f} | {1 / best[g]:.1f} | "
          f"{best['bpsr'] / best[g]:.2f}x |")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--widths", default="0.1,0.25,0.5,1.0")
  ap.add_argument("--step_width", type=float, default=bpsr_jax.neuron.DEFAULT_BAND_WIDTH)
  ap.add_argument("--tables", default="density,products,step")
  args = ap.parse_args()
  print(f"# gradient='band' vs 'bpsr', {jax.devices()[0].platform} "
        f"({platform.processor() or platform.machine()}), jax {jax.__version__}; "
        "shared machine")
  print()
  params = jax.tree.map(jnp.asarray, pretrained.load("mnist")[0])
  tr, _ = data.load_mnist(None)
  batches = [(jnp.asarray(tr.x[i * 64:(i + 1) * 64]), jnp.asarray(tr.y[i * 64:(i + 1) * 64]))
             for i in range(16)]
  tables = args.tables.split(",")
  if "density" in tables:
    x = train.encode_input(batches[0][0], jax.random.PRNGKey(0), CFG)
    density_table(params, x, batches[0][1], [float(w) for w in args.widths.split(",")])
    print()
  if "products" in tables:
    products_table(args.repeats)
    print()
  if "step" in tables:
    step_table(params, batches, args.repeats, args.step_width)


if __name__ == "__main__":
  main()
