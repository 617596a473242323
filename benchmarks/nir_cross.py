"""Cross-simulation of the exported MNIST main-job model by Spyx through NIR.

    pip install -e ".[bench]" && python benchmarks/nir_cross.py [--limit=10000]

Exports the packaged model (``bpsr_jax.load("mnist")``) with ``bpsr_jax.to_nir``, runs
the graph through ``spyx.nir.from_nir`` on the same encoded test inputs, and prints a
markdown table: test accuracy of each simulator and the fraction of test samples whose
predicted class (argmax of output spike counts, first index on ties) agrees with
bpsr_jax's. Spyx 1.0.0's dynamics differ from NIR's (and bpsr_jax's) equations: a
layer's spike at step t is computed from the potential of step t-1 (one step of delay
per layer, so a 3-layer net loses the last 3 of T steps), the reset subtracts the
threshold instead of zeroing, the comparison is v > theta, and r is ignored.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import bpsr_jax
from bpsr_jax.data import mnist_loader


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--limit", type=int, default=10000)
  ap.add_argument("--batch", type=int, default=500)
  args = ap.parse_args()
  import spyx.nir as snir  # pylint: disable=g-import-not-at-top
  pred = bpsr_jax.load("mnist")
  graph = bpsr_jax.to_nir(pred.model, pred.params)
  _, test = mnist_loader.load_mnist(limit=args.limit)
  n = len(test.y)
  counts = {"bpsr_jax": [], "spyx": []}
  t0 = time.time()
  for i in range(0, n, args.batch):
    x = np.asarray(pred.encode(test.x[i:i + args.batch]))
    x = x.reshape(x.shape[:2] + (-1,))
    counts["bpsr_jax"].append(np.asarray(
        pred.model.apply({"params": pred.params}, jnp.asarray(x))[0]).sum(0))
    _, out = snir.from_nir(graph, jnp.asarray(x), dt=1.0)
    counts["spyx"].append(np.asarray(out).sum(0))
  y = np.asarray(test.y)
  preds = {k: np.concatenate(v).argmax(-1) for k, v in counts.items()}
  print(f"MNIST main-job model ({pred.model.spec}, T={pred.config.time_steps}), "
        f"{n} test samples, {time.time() - t0:.0f} s\n")
  print("| simulator | test accuracy | prediction agreement with bpsr_jax |")
  print("|---|---:|---:|")
  for k, p in preds.items():
    print(f"| {k} | {100 * np.mean(p == y):.2f} % | "
          f"{100 * np.mean(p == preds['bpsr_jax']):.2f} % |")


if __name__ == "__main__":
  main()
