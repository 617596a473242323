"""Dense vs event-driven (spike-sparse) inference, side by side (issue 12).

Tables (markdown, printed and written to ``docs/sparse.md``):

1. Crossover: one ``[B, 1000] @ [1000, 1000]`` spike product, dense (``h @ w``) vs
   :func:`bpsr_jax.event.product`, at firing rates 0.005 to 0.3, batch 1 and 256.
2. Conv: one spike convolution (3x3, 64 -> 64 channels, 16x16 "same"), XLA's dense conv
   vs an event scatter (each input spike adds its 3x3x64 weight patch to the outputs
   around it; a numba kernel written here for the measurement, not a library path), at
   the same firing rates, batch 1 and 32: where event-driven conv would pay.
3. Trained models (the packaged MNIST main job and MIT-BIH wide): per sample, streaming
   at batch 1 (one call per time step, the state carried between calls: the jitted
   :func:`bpsr_jax.event.step` and the host engine :func:`bpsr_jax.stream.step`; the
   dense baseline is the jitted step with dense products) and batched (batch 256, the whole ``T`` loop in one jitted ``lax.scan``;
   the dense baselines are the jitted :class:`bpsr_jax.SNN` and
   :func:`bpsr_jax.integer_apply`), float and 8-bit integer, with the number of spikes
   that differ from the dense path.
4. Training step of the main job, dense vs spike-sparse products, and one LIF layer's
   XLA temporary memory (``benchmarks/sparse_train.py``'s tables, run here too).

Times are the best of ``--repeats`` (the calls of both engines alternate, so that both
see the same machine load).

Usage:
  python -m benchmarks.sparse [--repeats 5] [--out docs/sparse.md]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import bpsr_jax
from bpsr_jax import encode
from bpsr_jax import event
from bpsr_jax import pretrained
from bpsr_jax import stream
from benchmarks import sparse_train

RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def _best(fns, repeats):
  """Best wall time (s) of each of ``fns`` (zero-arg callables), calls alternating."""
  for f in fns:
    jax.block_until_ready(f())
  best = [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, f in enumerate(fns):
      t = time.perf_counter()
      jax.block_until_ready(f())
      best[i] = min(best[i], time.perf_counter() - t)
  return best


def crossover(repeats):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(0, 0.03, (1000, 1000)).astype(np.float32))
  dense = jax.jit(lambda h, w: h @ w)
  ev = jax.jit(lambda h, w: event.product(h, w, capacity=1000, order="sequential"))
  rows = ["| batch | firing rate | dense us | event us | speed-up |", "|---:|---:|---:|---:|---:|"]
  for batch in (1, 256):
    for rate in RATES:
      h = jnp.asarray((rng.random((batch, 1000)) < rate).astype(np.float32))
      inner = 50 if batch == 1 else 1

      def loop(f):
        def g():
          for _ in range(inner):
            y = f(h, w)
          return y
        return g

      td, te = _best([loop(dense), loop(ev)], repeats)
      td, te = td / inner * 1e6, te / inner * 1e6
      rows.append(f"| {batch} | {rate} | {td:.0f} | {te:.0f} | {td / te:.2f}x |")
  return rows


def _conv_scatter_kernel():
  import numba  # pylint: disable=g-import-not-at-top

  @numba.njit(cache=True)
  def scatter(x, w):  # x [B, H, W, C] 0/1, w [3, 3, C, O] -> "same" conv [B, H, W, O]
    b_, h_, w_, c_ = x.shape
    o_ = w.shape[3]
    out = np.zeros((b_, h_, w_, o_), np.float32)
    for b in range(b_):
      for i in range(h_):
        for j in range(w_):
          for c in range(c_):
            if x[b, i, j, c] != 0:
              for di in range(3):
                oi = i - di + 1
                if 0 <= oi < h_:
                  for dj in range(3):
                    oj = j - dj + 1
                    if 0 <= oj < w_:
                      for o in range(o_):
                        out[b, oi, oj, o] += w[di, dj, c, o]
    return out
  return scatter


def conv_crossover(repeats):
  """Dense XLA conv vs an event scatter of the same spike conv (see module docstring)."""
  rng = np.random.default_rng(0)
  w = rng.normal(0, 0.05, (3, 3, 64, 64)).astype(np.float32)
  dense = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  scatter = _conv_scatter_kernel()
  rows = ["| batch | firing rate | dense us | event us | speed-up | max abs difference |",
          "|---:|---:|---:|---:|---:|---:|"]
  wj = jnp.asarray(w)
  for batch in (1, 32):
    for rate in RATES:
      x = (rng.random((batch, 16, 16, 64)) < rate).astype(np.float32)
      xj = jnp.asarray(x)
      diff = float(np.max(np.abs(np.asarray(dense(xj, wj)) - scatter(x, w))))
      inner = 20 if batch == 1 else 2
      td, te = _best([lambda: [dense(xj, wj) for _ in range(inner)][-1],
                      lambda: [scatter(x, w) for _ in range(inner)][-1]], repeats)
      td, te = td / inner * 1e6, te / inner * 1e6
      rows.append(f"| {batch} | {rate} | {td:.0f} | {te:.0f} | {td / te:.2f}x | "
                  f"{diff:.1e} |")
  return rows


def _mnist(n):
  _, test = bpsr_jax.data.load_mnist(limit=n)
  x = encode.rank_order(jnp.asarray(test.x.reshape(n, -1)), 10, by="value", sample_ndim=1)
  return x, True


def _mitbih(n):
  try:
    root = pathlib.Path(os.environ.get("BPSR_DATA", "../shared/data"))
    _, test = bpsr_jax.data.load_mitbih(root / "mitdb", time_steps=40, delta=0.1,
                                        limit=n)
    x = jnp.swapaxes(jnp.asarray(test.x, jnp.float32), 0, 1)
    return x, False
  except (OSError, ValueError):
    rng = np.random.default_rng(0)  # level-crossing-like counts when the data is absent
    x = rng.choice(4, size=(40, n, 4), p=[0.8, 0.12, 0.05, 0.03]).astype(np.float32)
    return jnp.asarray(x), False


def _stream(net, host, x, engine, samples):
  """A callable that streams ``samples`` samples at batch 1, step by step (the input
  arrives as numpy arrays, as from a sensor) and returns every layer's spikes
  ``[T, samples, N]``. ``engine``: ``"dense"`` / ``"event"`` (the jitted
  :func:`bpsr_jax.event.step`) or ``"host"`` (:func:`bpsr_jax.stream.step`)."""
  x = np.asarray(x)

  def go():
    per_sample = []
    for b in range(samples):
      steps = []
      if engine == "host":
        state = stream.init_state(host)
        for t in range(x.shape[0]):
          state, spikes = stream.step(host, state, x[t, b])
          steps.append(spikes)
      else:
        state = event.init_state(net, 1)
        for t in range(x.shape[0]):
          state, spikes = event.step_jit(net, state, x[t, b:b + 1], engine=engine)
          steps.append(spikes)
      per_sample.append(steps)
    return [np.stack([np.stack([np.asarray(st[l]).reshape(-1) for st in steps])
                      for steps in per_sample], axis=1)
            for l in range(len(per_sample[0][0]))]
  return go


def _differ(a, b):
  return int(sum(np.sum(np.asarray(x) != np.asarray(y)) for x, y in zip(a, b)))


def models_table(repeats, stream_samples, batch):
  rows = ["| model | arithmetic | mode | event engine | dense ms/sample | event ms/sample | "
          "speed-up | spikes/sample | spikes differing |",
          "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for name, loader in (("mnist", _mnist), ("mitbih", _mitbih)):
    params, results = pretrained.load(name)
    spec = results["flags"]["model"] if "flags" in results else results["model"]
    x, binary = loader(batch)
    for arith in ("float", "int8"):
      if arith == "float":
        net = event.prepare(params, spec, binary_input=binary)
        out, hidden = jax.jit(bpsr_jax.SNN(spec).apply)({"params": params}, x)
        dense_batched = jax.jit(lambda x: bpsr_jax.SNN(spec).apply({"params": params}, x))
      else:
        qparams, info = bpsr_jax.quantize_params(params, bits=8)
        net = event.prepare(qparams, spec, quant=info, binary_input=binary)
        out, hidden = bpsr_jax.integer_apply(qparams, info, spec, x)
        dense_batched = lambda x, q=qparams, i=info: bpsr_jax.integer_apply(q, i, spec, x)
      ref = hidden + (out,)
      spikes = sum(float(np.sum(np.asarray(r))) for r in ref) / x.shape[1]
      # Streaming, batch 1: the jitted dense step against both event engines.
      n = stream_samples
      host = stream.prepare(net)
      fns = [_stream(net, host, x, e, n) for e in ("dense", "event", "host")]
      got_d, got_e, got_h = [f() for f in fns]
      td, te, th = _best(fns, repeats)
      for label, t, got in (("jitted step (`event.step_jit`)", te, got_e),
                            ("host (`stream.step`)", th, got_h)):
        rows.append(f"| {name} `{spec}` | {arith} | streaming, batch 1 | {label} | "
                    f"{td / n * 1e3:.3f} | {t / n * 1e3:.3f} | {td / t:.1f}x | "
                    f"{spikes:.0f} | {_differ(got, got_d)} of {sum(g.size for g in got)} "
                    f"(vs dense batch 1) |")
      # Batched.
      got = event.run_jit(net, x)
      diff = _differ(got[1] + (got[0],), ref)
      td, te = _best([lambda: dense_batched(x), lambda: event.run_jit(net, x)], repeats)
      b = x.shape[1]
      rows.append(f"| {name} `{spec}` | {arith} | batched, batch {b} | jitted scan "
                  f"(`event.run_jit`) | {td / b * 1e3:.3f} | "
                  f"{te / b * 1e3:.3f} | {td / te:.2f}x | {spikes:.0f} | {diff} of "
                  f"{sum(r.size for r in ref)} |")
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--stream_samples", type=int, default=20)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--warmup", type=int, default=30,
                  help="training steps before the step is timed (the spike counts settle)")
  ap.add_argument("--out", default="docs/sparse.md")
  args = ap.parse_args()
  head = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
          f"({jax.default_backend()}); best of {args.repeats}. Command: "
          f"`python -m benchmarks.sparse --repeats {args.repeats}`.")
  parts = [head, "", "### Crossover: one [B, 1000] @ [1000, 1000] spike product", "",
           *crossover(args.repeats), "",
           "### Conv: one 3x3 64->64 spike convolution on 16x16, dense vs event scatter",
           "", *conv_crossover(args.repeats), "", "### Trained models, per sample", "",
           *models_table(args.repeats, args.stream_samples, args.batch), "",
           "### Training step of the main job (`r1000-fc100-fc10`, batch 64)", "",
           *sparse_train.step_table(args.repeats, args.warmup, sparse_train.spmm.MIN_ROWS),
           "", "### One LIF layer's XLA temporary memory", "",
           *sparse_train.lif_memory_table(), ""]
  text = "\n".join(parts)
  print(text)
  if args.out:
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Spike-sparse execution: measured\n\n" + text)


if __name__ == "__main__":
  main()
