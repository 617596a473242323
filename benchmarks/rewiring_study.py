"""Rewiring (Fig. 8D-E): synapse count over training, recurrent structure, learning curves.

Trains the rMLP ``r81-fc36-fc6`` on the UCI gas-drift data (rank-order coded, T = 16) with
``bpsr_jax.train.fit`` twice:

* **BPSR**: rewiring (eq. 14-15) with the synaptic regularization ``lambda_w`` (default
  1e-3; the paper's 0.01 collapses this net, see ``--lambda_w``), prune threshold
  ``theta_w`` and grow threshold ``theta_m``;
* **plain**: the same network and schedule without rewiring and without ``lambda_w``.

Writes ``docs/rewiring.png``: (D) existing synapses of the input (``r0/kernel``) and the
recurrent (``r0/recurrent_kernel``) connections per epoch, and the recurrent layer's
connection matrix after training (BPSR, and the plain network pruned to the same number
of synapses by magnitude); (E) test error per epoch with and without rewiring. Also
``docs/rewiring.md`` / ``.json`` and ``docs/rewiring_structure.npz`` (the learned masks,
read by ``benchmarks/motifs.py``).

and two fixed-structure baselines of Fig. 8E (``train.fit(initial_mask=...)`` with
rewiring frozen: ``prune_threshold=0``, ``grow_threshold=inf``, no ``lambda_w``):

* **BPSR structure, re-initialized**: the synapses BPSR ended with, fresh weights;
* **random structure**: as many synapses per layer, at random places.

Usage:
  python benchmarks/rewiring_study.py [--epochs 40] [--lambda_w 1e-3]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study  # noqa: E402

PRESET = dict(model="r81-fc36-fc6", encoding="rank_order", time_steps=16, batch_size=32,
              learning_rate=2e-3)


def magnitude_mask(w: np.ndarray, keep: int) -> np.ndarray:
  """The ``keep`` largest-magnitude entries of ``w`` (self-connections included)."""
  flat = np.abs(w).ravel()
  mask = np.zeros(flat.shape, bool)
  if keep > 0:
    mask[np.argsort(-flat, kind="stable")[:keep]] = True
  return mask.reshape(w.shape)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--epochs", type=int, default=40)
  ap.add_argument("--limit", type=int, default=2500, help="samples per split")
  ap.add_argument("--lambda_w", type=float, default=1e-3,
                  help="the paper uses 0.01 with its own normalization; with bpsr_jax's "
                       "loss (mean CE + lambda_w * sum |W|) 0.01 prunes the net to ~300 "
                       "synapses and 20 %% accuracy")
  ap.add_argument("--lambda_s", type=float, default=1e-4)
  ap.add_argument("--prune_threshold", type=float, default=1e-2)
  ap.add_argument("--grow_threshold", type=float, default=1e-2)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--workdir", default="/tmp/bpsr_rewiring_study")
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  train_ds, test_ds = _study.load("gas", args.limit, args.seed)
  wd = pathlib.Path(args.workdir)
  common = dict(epochs=args.epochs, seed=args.seed, log_every=10**9,
                checkpoint_every=10**9, lambda_s=args.lambda_s, **PRESET)
  t0 = time.time()
  hist_r, params_r = _study.fit(
      train_ds, test_ds, wd / "rewire", rewire=True, lambda_w=args.lambda_w,
      prune_threshold=args.prune_threshold, grow_threshold=args.grow_threshold, **common)
  print(f"[{time.time() - t0:5.0f}s] BPSR (rewiring): test acc "
        f"{hist_r[-1]['test_accuracy']:.4f}, synapses {hist_r[-1]['synapses']}", flush=True)
  hist_p, params_p = _study.fit(train_ds, test_ds, wd / "plain", rewire=False,
                                lambda_w=0.0, **common)
  print(f"[{time.time() - t0:5.0f}s] plain: test acc {hist_p[-1]['test_accuracy']:.4f}, "
        f"synapses {hist_p[-1]['synapses']}", flush=True)

  mask_r = synapse_masks(params_r)
  rng = np.random.default_rng(args.seed + 11)
  mask_rand = {}
  for k, m in mask_r.items():
    flat = np.zeros(m.size, bool)
    flat[rng.permutation(m.size)[:int(m.sum())]] = True
    mask_rand[k] = flat.reshape(m.shape)
  frozen = dict(rewire=True, prune_threshold=0.0, grow_threshold=float("inf"),
                lambda_w=0.0)
  hist_f, _ = _study.fit(train_ds, test_ds, wd / "fixed_bpsr", initial_mask=mask_r,
                         **frozen, **common)
  print(f"[{time.time() - t0:5.0f}s] BPSR structure re-initialized: test acc "
        f"{hist_f[-1]['test_accuracy']:.4f}, synapses {hist_f[-1]['synapses']}", flush=True)
  hist_x, _ = _study.fit(train_ds, test_ds, wd / "fixed_random", initial_mask=mask_rand,
                         **frozen, **common)
  print(f"[{time.time() - t0:5.0f}s] random structure: test acc "
        f"{hist_x[-1]['test_accuracy']:.4f}, synapses {hist_x[-1]['synapses']}", flush=True)

  rec_r = np.asarray(params_r["r0"]["recurrent_kernel"])
  ker_r = np.asarray(params_r["r0"]["kernel"])
  rec_p = np.asarray(params_p["r0"]["recurrent_kernel"])
  ker_p = np.asarray(params_p["r0"]["kernel"])
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  masks = dict(
      rewired_kernel=ker_r != 0, rewired_recurrent=rec_r != 0,
      plain_kernel=magnitude_mask(ker_p, int(np.count_nonzero(ker_r))),
      plain_recurrent=magnitude_mask(rec_p, int(np.count_nonzero(rec_r))))
  np.savez_compressed(out / "rewiring_structure.npz", **masks)
  meta = dict(command="python benchmarks/rewiring_study.py " + " ".join(
      sys.argv[1:] if argv is None else argv), limit=args.limit, epochs=args.epochs,
      lambda_w=args.lambda_w, lambda_s=args.lambda_s,
      prune_threshold=args.prune_threshold, grow_threshold=args.grow_threshold, **PRESET)
  keep = ("epoch", "test_accuracy", "train_loss", "synapses", "synapses_per_layer",
          "firing_rate")
  _study.save_json({"meta": meta,
                    "rewire": [{k: h[k] for k in keep} for h in hist_r],
                    "plain": [{k: h[k] for k in keep} for h in hist_p],
                    "fixed_bpsr_structure": [{k: h[k] for k in keep} for h in hist_f],
                    "fixed_random_structure": [{k: h[k] for k in keep} for h in hist_x]},
                   out / "rewiring.json")
  n0 = hist_p[0]["synapses_per_layer"]
  n1 = hist_r[-1]["synapses_per_layer"]
  rows = ["| connections | dense | after BPSR | reduction |", "|---|---:|---:|---:|"]
  for k in sorted(n0):
    rows.append(f"| {k} | {n0[k]} | {n1.get(k, 0)} | "
                f"{n0[k] / max(1, n1.get(k, 0)):.1f}x |")
  (out / "rewiring.md").write_text(
      f"# Rewiring on gas drift ({PRESET['model']}, lambda_w = {args.lambda_w}, "
      f"{args.epochs} epochs)\n\n`{meta['command']}`\n\n" + "\n".join(rows)
      + "\n\n| run (Fig. 8E) | synapses | test accuracy |\n|---|---:|---:|\n"
      + "".join(f"| {name} | {h[-1]['synapses']} | {100 * h[-1]['test_accuracy']:.2f} % |\n"
                for name, h in (("BPSR (rewiring + l1)", hist_r),
                                ("plain BP, dense", hist_p),
                                ("BPSR's final structure, re-initialized, fixed", hist_f),
                                ("random structure, same synapses per layer, fixed",
                                 hist_x))))
  plot(hist_r, hist_p, masks, meta, out / "rewiring.png",
       fixed={"BPSR structure, re-init.": hist_f, "random structure": hist_x})
  print(f"wrote {out / 'rewiring.png'}, rewiring.md, rewiring.json, rewiring_structure.npz")


def synapse_masks(params) -> dict:
  """``{"r0/kernel": w != 0, ...}`` for every ``kernel`` / ``recurrent_kernel``."""
  import jax
  from bpsr_jax import rewiring
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return {rewiring.path_str(p): np.asarray(w) != 0 for p, w in flat
          if rewiring.leaf_name(p) in ("kernel", "recurrent_kernel")}


def plot(hist_r, hist_p, masks, meta, path, fixed=None):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(1, 4, figsize=(14, 3.4))
  ep = [0] + [h["epoch"] + 1 for h in hist_r]
  for key, style in (("r0/kernel", "o-"), ("r0/recurrent_kernel", "s-")):
    ax[0].plot(ep, [hist_p[0]["synapses_per_layer"].get(key, 0)]  # dense start
               + [h["synapses_per_layer"].get(key, 0) for h in hist_r], style,
               ms=3, label=key)
  ax[0].set_xlabel("epoch")
  ax[0].set_ylabel("existing synapses")
  ax[0].set_yscale("log")
  ax[0].legend(fontsize=7)
  ax[0].set_title(f"(D) synapses, lambda_w = {meta['lambda_w']}", fontsize=9)
  for a, key, title in ((ax[1], "plain_recurrent", "plain BP, magnitude-pruned"),
                        (ax[2], "rewired_recurrent", "BPSR (rewiring)")):
    m = masks[key]
    ks, is_ = np.nonzero(m)
    a.scatter(is_, ks, s=2, c="k")
    a.set_xlim(-1, m.shape[1])
    a.set_ylim(m.shape[0], -1)
    a.set_xlabel("to neuron i")
    a.set_ylabel("from neuron k")
    a.set_title(f"recurrent r0: {title} ({int(m.sum())})", fontsize=9)
  ax[3].plot([h["epoch"] + 1 for h in hist_r],
             [100 * (1 - h["test_accuracy"]) for h in hist_r], "o-", ms=3,
             label="with rewiring")
  ax[3].plot([h["epoch"] + 1 for h in hist_p],
             [100 * (1 - h["test_accuracy"]) for h in hist_p], "s-", ms=3,
             label="without rewiring")
  for (name, h), style in zip((fixed or {}).items(), ("^--", "v:")):
    ax[3].plot([e["epoch"] + 1 for e in h], [100 * (1 - e["test_accuracy"]) for e in h],
               style, ms=3, label=f"fixed: {name}")
  ax[3].set_xlabel("epoch")
  ax[3].set_ylabel("test error (%)")
  ax[3].legend(fontsize=7)
  ax[3].set_title("(E) learning curves", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
