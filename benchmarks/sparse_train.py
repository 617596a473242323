"""Spike-sparse training products (bpsr_jax.spmm) against dense, on this machine.

Prints markdown tables:

1. one product, dense (XLA matmul) vs sparse (the spmm kernel forced), at input densities
   0.005-0.3, for the MNIST main job's shapes: the input layer's forward ``x @ W``
   ``[640, 784] @ [784, 1000]`` and gradient ``x^T d``, and the recurrent layer's
   per-step ``s @ R`` ``[64, 1000] @ [1000, 1000]`` and ``dR = S^T D`` over 576 rows;
   the crossover is where the ratio falls below 1 (``spmm.CPU_CROSSOVER``);
2. the main job's training step (r1000-fc100-fc10, T = 10, batch 64, rank-order MNIST,
   AdamW, rewiring; after ``--warmup`` steps) with the automatic choice vs all-dense, and
   the largest relative difference of their gradients;
3. one LIF layer's value-and-grad at T = 300, batch 32, N = 1024: XLA temporary memory,
   bpsr vs autodiff.

Times are the best of ``--repeats`` alternating calls (robust on a shared machine).

Usage:
  python benchmarks/sparse_train.py [--repeats 10] [--warmup 50]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import bpsr_jax
from bpsr_jax import spmm


def _best(fns, args, repeats):
  """Best time (ms) of each jitted fn, calls alternating."""
  fns = [jax.jit(f) for f in fns]
  for f in fns:
    jax.block_until_ready(f(*args))
  best = [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, f in enumerate(fns):
      t0 = time.perf_counter()
      jax.block_until_ready(f(*args))
      best[i] = min(best[i], time.perf_counter() - t0)
  return [b * 1e3 for b in best]


def products_table(repeats):
  spmm.MIN_ROWS = 1  # also the per-step recurrent row, which the automatic choice skips
  print("| product | shape | density | dense ms | sparse ms | dense / sparse |")
  print("|---|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  cases = [("x @ W (input fwd)", (640, 784), 1000, "matmul"),
           ("x^T d (input dW)", (640, 784), 1000, "outer"),
           ("s @ R (recurrent, per step)", (64, 1000), 1000, "matmul"),
           ("S^T D (dR)", (576, 1000), 1000, "outer")]
  for name, (m, k), n, kind in cases:
    other = jnp.asarray(rng.normal(size=(k, n) if kind == "matmul" else (m, n)),
                        jnp.float32)
    fn = spmm.spike_matmul if kind == "matmul" else spmm.spike_outer
    for p in (0.005, 0.02, 0.05, 0.1, 0.2, 0.3):
      bits = jnp.asarray(rng.random((m, k)) < p)
      dense, sparse = _best([lambda b, o: fn(b, o, crossover=-1.0),
                             lambda b, o: fn(b, o, crossover=1.0)], (bits, other), repeats)
      shape = f"[{m}, {k}] x [{other.shape[0]}, {n}]"
      print(f"| {name} | {shape} | {p} | {dense:.2f} | {sparse:.2f} | "
            f"{dense / sparse:.2f}x |", flush=True)


def step_table(repeats, warmup, min_rows):
  spmm.MIN_ROWS = min_rows
  from bpsr_jax import data, train  # pylint: disable=g-import-not-at-top
  cfg = train.TrainConfig(
      model="r1000-fc100-fc10", encoding="rank_order", time_steps=10, epochs=20,
      batch_size=64, optimizer="adamw", weight_decay=1e-2, schedule="cosine",
      bias_high=0.0, lambda_s=1e-3, lambda_w=1e-5, rewire=True, augment_shift=2)
  tr, _ = data.load_mnist(None)
  model = train.make_model(cfg)
  tx = train.make_optimizer(cfg, len(tr) // cfg.batch_size)
  state = train.init_state(cfg, model, tx, tr.x[:1])
  batches = [(jnp.asarray(tr.x[i * 64:(i + 1) * 64]), jnp.asarray(tr.y[i * 64:(i + 1) * 64]))
             for i in range(16)]
  auto_crossover = spmm.CPU_CROSSOVER
  steps = {}
  for name, crossover in (("sparse (auto)", auto_crossover), ("dense", -1.0)):
    spmm.CPU_CROSSOVER = crossover  # read at trace time
    steps[name] = train.make_train_step(model, tx, cfg)
    jax.block_until_ready(steps[name](state, *batches[0]))
  spmm.CPU_CROSSOVER = auto_crossover
  auto = steps["sparse (auto)"]
  for i in range(warmup):
    state, metrics = auto(state, *batches[i % 16])
  jax.block_until_ready(state)
  # Gradients of both paths at the same params and batch.
  grads = {}
  for name, crossover in (("sparse (auto)", auto_crossover), ("dense", -1.0)):
    spmm.CPU_CROSSOVER = crossover
    grads[name] = jax.jit(jax.grad(lambda p, x, y: train.loss_fn(
        p, model, x, y, jax.random.PRNGKey(0), cfg)[0]))(state.params, *batches[1])
  spmm.CPU_CROSSOVER = auto_crossover
  rel = max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-12))
            for a, b in zip(jax.tree.leaves(grads["sparse (auto)"]),
                            jax.tree.leaves(grads["dense"])))
  best = {n: float("inf") for n in steps}
  for r in range(repeats):
    for name, fn in steps.items():
      t0 = time.perf_counter()
      s = state
      for i in range(5):
        s, _ = fn(s, *batches[(r * 5 + i) % 16])
      jax.block_until_ready(s)
      best[name] = min(best[name], (time.perf_counter() - t0) / 5)
  rows = [f"Main job step after {warmup} steps: {float(metrics['spike_l2']):.0f} hidden "
          f"spikes/sample; largest relative gradient difference sparse vs dense {rel:.1e}.",
          "", "| path | step ms | steps/s | speed-up |", "|---|---|---|---|"]
  for name in steps:
    rows.append(f"| {name} | {best[name] * 1e3:.1f} | {1 / best[name]:.1f} | "
                f"{best['dense'] / best[name]:.2f}x |")
  return rows


def lif_memory_table():
  t, b, n = 300, 32, 1024
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  cur = 0.3 + 0.8 * jax.random.normal(keys[0], (t, b, n))
  readout = jax.random.normal(keys[1], (t, b, n))
  tau = jnp.full((n,), 0.5)
  temp = {}
  for g in ("bpsr", "autodiff"):
    f = jax.value_and_grad(lambda c, tau: jnp.sum(bpsr_jax.lif(c, tau, gradient=g) * readout),
                           (0, 1))
    temp[g] = jax.jit(f).lower(cur, tau).compile().memory_analysis().temp_size_in_bytes
  mb = t * b * n * 4 / 2**20
  return ["| LIF value-and-grad T=300 B=32 N=1024 | bpsr temp MB | autodiff temp MB | "
          "ratio | one [T, B, N] buffer MB |", "|---|---|---|---|---|",
          f"| flat | {temp['bpsr'] / 2**20:.1f} | {temp['autodiff'] / 2**20:.1f} | "
          f"{temp['autodiff'] / temp['bpsr']:.1f}x | {mb:.1f} |"]


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--warmup", type=int, default=50)
  ap.add_argument("--min_rows", type=int, default=spmm.MIN_ROWS,
                  help="spmm.MIN_ROWS for the step (1: the per-step recurrent current too)")
  ap.add_argument("--tables", default="products,step,memory")
  args = ap.parse_args()
  print(f"# Sparse training products, {jax.devices()[0].platform} "
        f"({platform.processor() or platform.machine()}), jax {jax.__version__}, numba "
        f"{'yes' if spmm.available() else 'no'}, CPU_CROSSOVER {spmm.CPU_CROSSOVER}")
  print()
  tables = args.tables.split(",")
  if "products" in tables:
    products_table(args.repeats)
    print()
  if "step" in tables:
    print("\n".join(step_table(args.repeats, args.warmup, args.min_rows)))
    print()
  if "memory" in tables:
    print("\n".join(lif_memory_table()))


if __name__ == "__main__":
  main()
