"""Significance profiles (Fig. 8F): C. elegans (Cook et al. 2019) and the learned network.

Computes :func:`bpsr_jax.analysis.significance_profile` (13 connected three-node motifs
against degree-preserving random networks, Milo et al. 2004) of

* the hermaphrodite and the male C. elegans chemical-synapse connectomes (neurons only),
  read with the optional package ``cect`` (``pip install cect openpyxl``);
* the gas-drift SNN's input and recurrent layer (``r0``: 128 input nodes and 81 recurrent
  neurons, edges = its ``kernel`` and ``recurrent_kernel`` synapses) after BPSR
  (rewiring + ``lambda_w``) and, as "before BPSR", the same network trained with plain
  backprop and pruned by magnitude to the same number of synapses, both from
  ``docs/rewiring_structure.npz`` (written by ``benchmarks/rewiring_study.py``).

Writes ``docs/motifs.png``, ``docs/motifs.md`` (the profiles and their correlation with
the connectomes) and ``docs/motifs.json``.

Usage:
  python benchmarks/motifs.py [--num-random 20] [--structure docs/rewiring_structure.npz]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study  # noqa: E402

from bpsr_jax import analysis  # noqa: E402


def layer_graph(kernel_mask: np.ndarray, recurrent_mask: np.ndarray) -> np.ndarray:
  """Adjacency of ``inputs + neurons`` nodes: input -> neuron and neuron -> neuron edges."""
  n_in, n = kernel_mask.shape
  a = np.zeros((n_in + n, n_in + n), bool)
  a[:n_in, n_in:] = kernel_mask
  a[n_in:, n_in:] = recurrent_mask
  return a


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--num-random", type=int, default=20)
  ap.add_argument("--swaps-per-edge", type=int, default=5)
  ap.add_argument("--structure", default=str(_study.DOCS / "rewiring_structure.npz"))
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  t0 = time.time()
  profiles, notes = {}, []
  kw = dict(num_random=args.num_random, swaps_per_edge=args.swaps_per_edge, seed=0,
            return_details=True)
  for sex in ("hermaphrodite", "male"):
    try:
      adj, names = analysis.celegans_adjacency(sex, "chemical")
    except ImportError as e:
      notes.append(f"C. elegans {sex}: not available ({e})")
      print(notes[-1], flush=True)
      continue
    d = analysis.significance_profile(adj, **kw)
    profiles[f"C. elegans {sex}"] = dict(d, nodes=len(names), edges=int((adj > 0).sum()))
    print(f"[{time.time() - t0:5.0f}s] C. elegans {sex}: {len(names)} neurons, "
          f"{int((adj > 0).sum())} edges", flush=True)
  path = pathlib.Path(args.structure)
  if path.exists():
    m = np.load(path)
    for key, label in (("plain", "SNN before BPSR (plain BP, pruned)"),
                       ("rewired", "SNN after BPSR (rewiring)")):
      adj = layer_graph(m[f"{key}_kernel"], m[f"{key}_recurrent"])
      d = analysis.significance_profile(adj, **kw)
      profiles[label] = dict(d, nodes=adj.shape[0], edges=int(adj.sum()))
      print(f"[{time.time() - t0:5.0f}s] {label}: {adj.shape[0]} nodes, {int(adj.sum())} "
            "edges", flush=True)
  else:
    notes.append(f"{path} not found: run benchmarks/rewiring_study.py first")
    print(notes[-1])
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  refs = [k for k in profiles if k.startswith("C. elegans")]
  rows = ["| network | nodes | edges | " + " | ".join(analysis.MOTIFS) + " | "
          + " | ".join(f"corr. {r.split()[-1]}" for r in refs) + " |",
          "|---|---:|---:|" + "---:|" * (len(analysis.MOTIFS) + len(refs))]
  for name, d in profiles.items():
    corr = [analysis.profile_similarity(d["sp"], profiles[r]["sp"]) for r in refs]
    rows.append(f"| {name} | {d['nodes']} | {d['edges']} | "
                + " | ".join(f"{v:.2f}" for v in d["sp"]) + " | "
                + " | ".join(f"{c:.2f}" for c in corr) + " |")
  cmd = "python benchmarks/motifs.py " + " ".join(sys.argv[1:] if argv is None else argv)
  (out / "motifs.md").write_text(
      "# Significance profiles (13 connected triads, Milo et al. 2004)\n\n"
      f"`{cmd}`; {args.num_random} degree-preserving random networks each "
      f"({args.swaps_per_edge} three-edge swaps per edge). Last columns: Pearson "
      "correlation with the connectomes' profiles.\n\n" + "\n".join(rows) + "\n"
      + "".join(f"\n- {n}" for n in notes) + "\n")
  _study.save_json({name: {"sp": d["sp"].tolist(), "z": d["z"].tolist(),
                           "real": d["real"].tolist(), "nodes": d["nodes"],
                           "edges": d["edges"]} for name, d in profiles.items()},
                   out / "motifs.json")
  plot(profiles, out / "motifs.png")
  print(f"wrote {out / 'motifs.png'}, motifs.md, motifs.json")


def plot(profiles, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8, 3.4))
  xs = np.arange(1, len(analysis.MOTIFS) + 1)
  styles = {"C. elegans hermaphrodite": ("k-o", 2), "C. elegans male": ("k--s", 1.5),
            "SNN before BPSR (plain BP, pruned)": ("tab:gray", 1.5),
            "SNN after BPSR (rewiring)": ("tab:red", 2)}
  for name, d in profiles.items():
    style, lw = styles.get(name, ("-", 1))
    if style.startswith("tab:"):
      ax.plot(xs, d["sp"], "-^", color=style, lw=lw, label=name)
    else:
      ax.plot(xs, d["sp"], style, lw=lw, ms=4, label=name)
  ax.axhline(0, color="k", lw=0.5)
  ax.set_xticks(xs, [f"{i}\n{m}" for i, m in zip(xs, analysis.MOTIFS)], fontsize=7)
  ax.set_ylabel("significance profile")
  ax.set_title("(F) three-node motifs vs degree-preserving random networks", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
