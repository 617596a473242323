"""Operations and energy per inference (Fig. 9): float SNN, PTQ SNN, ANN / BNN references.

Takes the gas-drift rMLP ``r81-fc36-fc6`` trained with rewiring by
``benchmarks/rewiring_study.py`` (its work folder; run that first), quantizes it after
training (``bpsr_jax.quantize``, 8 and 4 bits), and measures on the test set with
:func:`bpsr_jax.metrics.measure`: accuracy, synapses, SOPs, operations by type and the
paper's energy model (unit = one float add; float multiply 4, fixed-point add 0.2,
bitwise op 0), next to ANN, AdderNet, BNN and XNOR-Net references of the same structure
(:func:`bpsr_jax.metrics.reference_ops`; their accuracy is not measured).

Writes ``docs/energy.md``, ``docs/energy.json`` and ``docs/energy.png`` (x: energy per
inference, log; y: SNN accuracy; circle area: parameter storage).

Usage:
  python benchmarks/energy.py [--workdir /tmp/bpsr_rewiring_study/rewire]
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study  # noqa: E402


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--workdir", default="/tmp/bpsr_rewiring_study/rewire")
  ap.add_argument("--limit", type=int, default=2500)
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  import jax
  import jax.numpy as jnp
  from bpsr_jax import encode, metrics, quantize, train
  from bpsr_jax.models import SNN
  wd = pathlib.Path(args.workdir)
  if not (wd / "checkpoints").is_dir():
    raise SystemExit(f"no trained run in {wd}: run benchmarks/rewiring_study.py first")
  import json
  cfg = json.loads((wd / "results.json").read_text()).get("config", {}) if (
      wd / "results.json").exists() else {}
  spec = cfg.get("model", "r81-fc36-fc6")
  T = int(cfg.get("time_steps", 16))
  params = jax.tree_util.tree_map(jnp.asarray, train.final_params(wd))
  _, test_ds = _study.load("gas", args.limit, 0)
  x = encode.rank_order(jnp.asarray(test_ds.x, jnp.float32), T, sample_ndim=1)
  y = np.asarray(test_ds.y)
  model = SNN(spec)

  def evaluate(p):
    out, _ = model.apply({"params": p}, x)
    acc = float(np.mean(np.argmax(np.asarray(out).sum(0), -1) == y))
    return acc, metrics.measure(model, {"params": p}, x)

  rows = []
  acc, rep = evaluate(params)
  rows.append(dict(network="SNN float32", accuracy=acc, bits=32, report=rep,
                   ops=metrics.snn_ops(rep)))
  for bits in (8, 4):
    q, info = quantize.quantize_params(params, bits)
    pq = quantize.dequantize_params(q, info)
    acc_q, rep_q = evaluate(pq)
    rows.append(dict(network=f"SNN PTQ {bits}-bit", accuracy=acc_q, bits=bits,
                     report=rep_q, ops=metrics.snn_ops(rep_q, quantized=True)))
  # The references: the same layers, every synapse present (a freshly initialized net;
  # only its structure is used).
  dense = model.init(jax.random.PRNGKey(0), x[:, :1])["params"]
  rep_dense = metrics.measure(model, {"params": dense}, x[:, :8])
  for kind, bits in (("ann", 32), ("addernet", 32), ("bnn", 1), ("xnor", 1)):
    rows.append(dict(network=f"{kind.upper() if kind != 'addernet' else 'AdderNet'} "
                     "(same structure, dense)", accuracy=None, bits=bits,
                     report=rep_dense, ops=metrics.reference_ops(rep_dense, kind),
                     dense=True))
  dense_syn = int(sum(np.size(v) for k, d in params.items() for n, v in d.items()
                      if n in ("kernel", "recurrent_kernel")))
  table = ["| network | accuracy | synapses | SOPs | FL-ADD | FL-MUL | FI-ADD | BIT-OP | "
           "energy (FL-ADD units) | parameter KiB |", "|---|---:|" + "---:|" * 8]
  out_json = []
  for r in rows:
    o, rep = r["ops"], r["report"]
    syn = dense_syn if r.get("dense") else rep.synapses
    e = metrics.energy(o)
    kib = syn * r["bits"] / 8 / 1024
    r.update(energy=e, kib=kib, synapses=syn)
    acc_s = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    sops = "-" if r.get("dense") else f"{rep.sops:.0f}"
    table.append(f"| {r['network']} | {acc_s} | {syn} | {sops} | {o['fl_add']:.0f} | "
                 f"{o['fl_mul']:.0f} | {o['fi_add']:.0f} | {o['bit_op']:.0f} | {e:.0f} | "
                 f"{kib:.1f} |")
    out_json.append({k: r[k] for k in ("network", "accuracy", "bits", "energy", "kib",
                                       "synapses")} | {"ops": o})
  ann = next(r for r in rows if r["network"].startswith("ANN"))["energy"]
  bnn = next(r for r in rows if r["network"].startswith("BNN"))["energy"]
  lines = [f"\n- {r['network']}: {ann / r['energy']:.1f}x less energy than the ANN, "
           f"{bnn / r['energy']:.1f}x less than the BNN" for r in rows[:3]]
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  cmd = "python benchmarks/energy.py " + " ".join(sys.argv[1:] if argv is None else argv)
  (out / "energy.md").write_text(
      f"# Operations and energy per inference (gas drift, {spec}, T = {T}, rewired)\n\n"
      f"`{cmd}`. Energy model of the paper (Fig. 9): FL-ADD 1, FL-MUL 4, FI-ADD 0.2, "
      "BIT-OP 0. SNN counts are measured on the test set (event-driven: one add per "
      "spike reaching a non-zero synapse, plus the neuron updates); the references are "
      "dense networks of the same layer sizes evaluated once.\n\n" + "\n".join(table)
      + "\n" + "".join(lines) + "\n")
  _study.save_json(out_json, out / "energy.json")
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.4))
  for r in rows:
    yv = 100 * r["accuracy"] if r["accuracy"] is not None else None
    if yv is None:
      ax.axvline(r["energy"], ls=":", color="gray")
      ax.text(r["energy"], ax.get_ylim()[0] if False else 0.02, r["network"].split()[0],
              rotation=90, fontsize=7, transform=ax.get_xaxis_transform())
      continue
    ax.scatter(r["energy"], yv, s=max(20, 40 * r["kib"]), alpha=0.5)
    ax.annotate(r["network"], (r["energy"], yv), fontsize=7, xytext=(4, 4),
                textcoords="offset points")
  ax.set_xscale("log")
  ax.set_xlabel("energy per inference (FL-ADD units)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Fig. 9 style: SNN float / PTQ vs same-structure references "
               "(dotted)", fontsize=8)
  fig.tight_layout()
  fig.savefig(out / "energy.png", dpi=80)
  print((out / "energy.md").read_text())


if __name__ == "__main__":
  main()
