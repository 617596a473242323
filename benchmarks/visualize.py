"""A trained SNN from the inside (the paper's Fig. 6): MIT-BIH with ``r18-fc8-fc5``.

Trains the rMLP ``r18-fc8-fc5`` on MIT-BIH heartbeats (5 AAMI classes, level-crossing
spikes: MLII up/down and the second lead up/down, T = 40) with ``bpsr_jax.train.fit``,
then draws, for a correctly classified normal beat (:func:`bpsr_jax.visualize.plot_model`):
the input spikes, the spike rasters of the recurrent and hidden layers coloured by each
neuron's effect on the prediction (green: supports it, red: works against it), the
predicted class probabilities, and each recurrent neuron's firing-rate response curve to
each input channel.

Writes ``docs/visualize.png``.

Usage:
  python benchmarks/visualize.py [--epochs 3] [--limit 8000]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study  # noqa: E402


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--limit", type=int, default=8000, help="beats per split")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--workdir", default="/tmp/bpsr_visualize")
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  import jax.numpy as jnp
  import matplotlib
  matplotlib.use("Agg")
  from bpsr_jax import visualize
  from bpsr_jax.models import SNN
  t0 = time.time()
  train_ds, test_ds = _study.load("mitbih", args.limit, args.seed)
  spec = "r18-fc8-fc5"
  hist, params = _study.fit(train_ds, test_ds, pathlib.Path(args.workdir), model=spec,
                            encoding="none", time_steps=40, epochs=args.epochs,
                            batch_size=64, learning_rate=3e-3, lambda_s=1e-4,
                            lambda_w=1e-5, seed=args.seed, log_every=10**9,
                            checkpoint_every=10**9)
  print(f"[{time.time() - t0:5.0f}s] trained: test accuracy "
        f"{hist[-1]['test_accuracy']:.4f}", flush=True)
  model = SNN(spec)
  params = {k: {n: jnp.asarray(v) for n, v in d.items()} for k, d in params.items()}
  names = list(getattr(test_ds, "class_names", None) or [])
  normal = 0
  chosen = None
  for i in range(min(len(test_ds.y), 500)):
    if int(test_ds.y[i]) != normal:
      continue
    x = jnp.asarray(np.asarray(test_ds.x[i:i + 1], np.float32).transpose(1, 0, 2))
    out, _ = model.apply({"params": params}, x)
    if int(np.argmax(np.asarray(out).sum(0)[0])) == normal and float(x.sum()) > 10:
      chosen = (i, x)
      break
  if chosen is None:
    chosen = (0, jnp.asarray(np.asarray(test_ds.x[:1], np.float32).transpose(1, 0, 2)))
  i, x = chosen
  fig = visualize.plot_model(
      model, params, x, label=int(test_ds.y[i]), class_names=names or None,
      channel_names=["MLII up", "MLII down", "lead 2 up", "lead 2 down"],
      title=f"MIT-BIH test beat {i} ({spec}, test accuracy "
            f"{100 * hist[-1]['test_accuracy']:.1f} % after {args.epochs} epochs)")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  fig.savefig(out / "visualize.png", dpi=70)
  print(f"[{time.time() - t0:5.0f}s] wrote {out / 'visualize.png'}")


if __name__ == "__main__":
  main()
