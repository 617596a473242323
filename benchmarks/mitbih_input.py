"""How much of MIT-BIH is in the level-crossing input? A ReLU-MLP probe per encoding.

The paper's `r18-fc8-fc5` SNN underfits (train accuracy = test accuracy), so its accuracy
says little about the input. This probe trains the same non-spiking classifier (a ReLU
MLP `160-256-5` on the flattened `[T = 40, 4]` spike counts, standardized, Adam 1e-3,
batch 128, 15 epochs, seed 0) on each encoding and reports test and balanced accuracy: an
upper-end estimate of what any network can read from that input. It is what picked the
defaults of `experiments/mitbih.py` (window 0.7 s / 0.5 s, crossing counts per step).

Writes `docs/mitbih_input.md` / `.json`.

Usage:
  python benchmarks/mitbih_input.py [--epochs 15]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _study

# (label, load_mitbih keyword arguments)
ENCODINGS = (
    ("window 0.25/0.45 s, <= 1 spike per step (earlier default)",
     dict(window_s=(0.25, 0.45), binary=True)),
    ("window 0.25/0.45 s, counts", dict(window_s=(0.25, 0.45), binary=False)),
    ("window 0.7/0.5 s, <= 1 spike per step", dict(window_s=(0.7, 0.5), binary=True)),
    ("window 0.7/0.5 s, counts (the default)", dict(window_s=(0.7, 0.5), binary=False)),
    ("window 0.7/0.5 s, counts, delta 0.05 mV",
     dict(window_s=(0.7, 0.5), binary=False, delta=0.05)),
    ("window 0.9/0.6 s, counts", dict(window_s=(0.9, 0.6), binary=False)),
)


def mlp_probe(train, test, epochs: int, seed: int = 0, hidden: int = 256):
  """Test and balanced accuracy of a ReLU MLP on the flattened spike counts."""
  import jax
  import jax.numpy as jnp
  import optax
  xtr = train.x.reshape(len(train.x), -1).astype(np.float32)
  xte = test.x.reshape(len(test.x), -1).astype(np.float32)
  mean, std = xtr.mean(0), xtr.std(0) + 1e-3
  xtr, xte = (xtr - mean) / std, (xte - mean) / std
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  d, c = xtr.shape[1], train.num_classes
  params = {"w1": jax.random.normal(k1, (d, hidden)) / np.sqrt(d), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, c)) / np.sqrt(hidden), "b2": jnp.zeros(c)}

  def logits(p, x):
    return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

  tx = optax.adam(1e-3)
  opt = tx.init(params)

  @jax.jit
  def step(p, o, x, y):
    g = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        logits(p, x), y).mean())(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    order = rng.permutation(len(xtr))
    for i in range(0, len(order) - 127, 128):
      idx = order[i:i + 128]
      params, opt = step(params, opt, xtr[idx], train.y[idx])
  pred = np.asarray(jnp.argmax(logits(params, xte), -1))
  acc = float(np.mean(pred == test.y))
  recalls = [np.mean(pred[test.y == k] == k) for k in range(c) if np.any(test.y == k)]
  return acc, float(np.mean(recalls))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--epochs", type=int, default=15)
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  from bpsr_jax import data
  rows = []
  for label, kwargs in ENCODINGS:
    t0 = time.time()
    train, test = data.load_mitbih(_study.data_dir("mitdb"), time_steps=40, **kwargs)
    acc, bal = mlp_probe(train, test, args.epochs)
    spikes = float(train.x.reshape(len(train.x), -1).sum(1).mean())
    rows.append(dict(encoding=label, test_accuracy=acc, balanced_accuracy=bal,
                     input_spikes_per_beat=spikes, train_beats=len(train),
                     test_beats=len(test)))
    print(f"{label}: {100 * acc:.2f} % (balanced {100 * bal:.1f} %), {spikes:.0f} input "
          f"spikes/beat [{time.time() - t0:.0f} s]", flush=True)
  command = "python benchmarks/mitbih_input.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  out = _study.pathlib.Path(args.out)
  _study.save_json({"command": command, "epochs": args.epochs, "rows": rows},
                   out / "mitbih_input.json")
  lines = ["# MIT-BIH: what a ReLU MLP reads from each level-crossing input", "",
           f"`{command.strip()}` (5 AAMI classes, random 80/20 beat split, T = 40, "
           f"levels 0.1 mV unless noted; MLP 160-256-5, {args.epochs} epochs)", "",
           "| input | beats train / test | input spikes / beat | MLP test accuracy | "
           "balanced |", "|---|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['encoding']} | {r['train_beats']:,} / {r['test_beats']:,} | "
                 f"{r['input_spikes_per_beat']:.0f} | {100 * r['test_accuracy']:.2f} % | "
                 f"{100 * r['balanced_accuracy']:.1f} % |")
  (out / "mitbih_input.md").write_text("\n".join(lines) + "\n")
  print(f"wrote {out / 'mitbih_input.md'}")


if __name__ == "__main__":
  main()
