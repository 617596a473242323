"""Dense vs event-driven (spike-sparse) inference, side by side (issue 12).

Tables (markdown, printed and written to ``docs/sparse.md``):

1. Crossover: one ``[B, 1000] @ [1000, 1000]`` spike product, dense (``h @ w``) vs
   :func:`bpsr_jax.event.product`, at firing rates 0.005 to 0.3, batch 1 and 256.
2. Trained models (the packaged MNIST main job and MIT-BIH wide): per sample, streaming
   at batch 1 (one jitted :func:`bpsr_jax.event.step` call per time step, the state
   carried between calls; the dense baseline is the same step with jitted dense
   products) and batched (batch 256, the whole ``T`` loop in one jitted ``lax.scan``;
   the dense baselines are the jitted :class:`bpsr_jax.SNN` and
   :func:`bpsr_jax.integer_apply`), float and 8-bit integer, with the number of spikes
   that differ from the dense path.
3. Training step: rows from ``benchmarks/sparse_train.py`` (merged by hand, see the marked
   section of the output).

Times are the best of ``--repeats`` (the calls of both engines alternate, so that both
see the same machine load).

Usage:
  python benchmarks/sparse.py [--repeats 5] [--out docs/sparse.md]
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


def _stream(net, x, engine, samples):
  """A callable that streams ``samples`` samples at batch 1, step by step (the input
  arrives as numpy arrays, as from a sensor)."""
  x = np.asarray(x)

  def go():
    out = []
    for b in range(samples):
      state = event.init_state(net, 1)
      for t in range(x.shape[0]):
        state, spikes = event.step_jit(net, state, x[t, b:b + 1], engine=engine)
      out.append(spikes)
    return out
  return go


def _stream_spikes(net, x, engine, samples):
  x = np.asarray(x)
  layers = []
  for b in range(samples):
    state, steps = event.init_state(net, 1), []
    for t in range(x.shape[0]):
      state, spikes = event.step_jit(net, state, x[t, b:b + 1], engine=engine)
      steps.append(spikes)
    layers.append([np.stack([np.asarray(s[l]) for s in steps]) for l in range(len(steps[0]))])
  return [np.concatenate([p[l] for p in layers], axis=1) for l in range(len(layers[0]))]


def _differ(a, b):
  return int(sum(np.sum(np.asarray(x) != np.asarray(y)) for x, y in zip(a, b)))


def models_table(repeats, stream_samples, batch):
  rows = ["| model | arithmetic | mode | dense ms/sample | event ms/sample | speed-up | "
          "spikes/sample | spikes differing |",
          "|---|---|---|---:|---:|---:|---:|---:|"]
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
      # Streaming, batch 1.
      n = stream_samples
      got_d = _stream_spikes(net, x[:, :n], "dense", n)
      got_e = _stream_spikes(net, x[:, :n], "event", n)
      td, te = _best([_stream(net, x, "dense", n), _stream(net, x, "event", n)], repeats)
      diff = _differ(got_e, got_d)
      rows.append(f"| {name} `{spec}` | {arith} | streaming, batch 1 | {td / n * 1e3:.3f} | "
                  f"{te / n * 1e3:.3f} | {td / te:.1f}x | {spikes:.0f} | {diff} of "
                  f"{sum(g.size for g in got_e)} (vs dense batch 1) |")
      # Batched.
      got = event.run_jit(net, x)
      diff = _differ(got[1] + (got[0],), ref)
      td, te = _best([lambda: dense_batched(x), lambda: event.run_jit(net, x)], repeats)
      b = x.shape[1]
      rows.append(f"| {name} `{spec}` | {arith} | batched, batch {b} | {td / b * 1e3:.3f} | "
                  f"{te / b * 1e3:.3f} | {td / te:.2f}x | {spikes:.0f} | {diff} of "
                  f"{sum(r.size for r in ref)} |")
  return rows


TRAIN_HOOK = """\
### Training step (from `benchmarks/sparse_train.py`)

<!-- LEAD: merge the training-step rows of benchmarks/sparse_train.py here. -->
"""


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--stream_samples", type=int, default=20)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--out", default="docs/sparse.md")
  args = ap.parse_args()
  head = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
          f"({jax.default_backend()}); best of {args.repeats}. Command: "
          f"`python benchmarks/sparse.py --repeats {args.repeats}`.")
  parts = [head, "", "### Crossover: one [B, 1000] @ [1000, 1000] spike product", "",
           *crossover(args.repeats), "", "### Trained models, per sample", "",
           *models_table(args.repeats, args.stream_samples, args.batch), "", TRAIN_HOOK]
  text = "\n".join(parts)
  print(text)
  if args.out:
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Spike-sparse execution: measured\n\n" + text)


if __name__ == "__main__":
  main()
