"""Spiking sparsity (Fig. 8A-B): accuracy and firing rate vs lambda_s, and during learning.

Trains the rMLP ``r81-fc36-fc6`` on the UCI gas-drift data (rank-order coded, T = 16) with
``bpsr_jax.train.fit`` once per spiking-regularization coefficient ``lambda_s`` and
records the test accuracy and firing rate (all spiking layers, input excluded) after
every epoch.

Writes ``docs/sparsity_lambda.png`` (A: final accuracy and firing rate vs lambda_s;
B: accuracy vs firing rate over the epochs of each run), ``docs/sparsity_lambda.md``
(table) and ``docs/sparsity_lambda.json``.

Usage:
  python benchmarks/sparsity_lambda_sweep.py [--lambdas 0,1e-4,...] [--epochs 10]
      [--dataset gas|mitbih] [--workdir /tmp/bpsr_lambda]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study  # noqa: E402

PRESETS = {
    "gas": dict(model="r81-fc36-fc6", encoding="rank_order", time_steps=16,
                batch_size=32, learning_rate=2e-3),
    "mitbih": dict(model="r18-fc8-fc5", encoding="none", time_steps=40, batch_size=64,
                   learning_rate=3e-3),
}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--dataset", default="gas", choices=sorted(PRESETS))
  ap.add_argument("--lambdas", default="0,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,0.3")
  ap.add_argument("--epochs", type=int, default=10)
  ap.add_argument("--limit", type=int, default=2500, help="samples per split")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--workdir", default="/tmp/bpsr_lambda_sweep")
  ap.add_argument("--out", default=str(_study.DOCS))
  args = ap.parse_args(argv)
  lambdas = [float(v) for v in args.lambdas.split(",")]
  train_ds, test_ds = _study.load(args.dataset, args.limit, args.seed)
  runs = []
  t0 = time.time()
  for lam in lambdas:
    hist, _ = _study.fit(train_ds, test_ds, pathlib.Path(args.workdir) / f"ls{lam:g}",
                         epochs=args.epochs, lambda_s=lam, seed=args.seed,
                         log_every=10**9, checkpoint_every=10**9,
                         **PRESETS[args.dataset])
    runs.append({"lambda_s": lam, "history": [
        {k: h[k] for k in ("epoch", "test_accuracy", "firing_rate", "spikes_per_sample",
                           "train_loss", "synaptic_ops_per_sample")} for h in hist]})
    last = hist[-1]
    print(f"[{time.time() - t0:5.0f}s] lambda_s={lam:g}: test acc "
          f"{last['test_accuracy']:.4f}, firing rate {last['firing_rate']:.4f}, "
          f"spikes/sample {last['spikes_per_sample']:.1f}", flush=True)
  out = pathlib.Path(args.out)
  meta = dict(dataset=args.dataset, epochs=args.epochs, limit=args.limit,
              command="python benchmarks/sparsity_lambda_sweep.py " + " ".join(
                  sys.argv[1:] if argv is None else argv), **PRESETS[args.dataset])
  _study.save_json({"meta": meta, "runs": runs}, out / "sparsity_lambda.json")
  rows = ["| lambda_s | test accuracy | firing rate | spikes / sample | SOPs / sample |",
          "|---:|---:|---:|---:|---:|"]
  for r in runs:
    h = r["history"][-1]
    rows.append(f"| {r['lambda_s']:g} | {100 * h['test_accuracy']:.2f} % | "
                f"{h['firing_rate']:.4f} | {h['spikes_per_sample']:.1f} | "
                f"{h['synaptic_ops_per_sample']:.0f} |")
  (out / "sparsity_lambda.md").write_text(
      f"# Spiking regularization sweep ({args.dataset}, {meta['model']}, T = "
      f"{meta['time_steps']}, {args.epochs} epochs, {args.limit} samples per split)\n\n"
      f"`{meta['command']}`\n\n" + "\n".join(rows) + "\n")
  plot(runs, meta, out / "sparsity_lambda.png")
  print(f"wrote {out / 'sparsity_lambda.png'}, sparsity_lambda.md, sparsity_lambda.json")


def plot(runs, meta, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
  xs = list(range(len(runs)))
  acc = [100 * r["history"][-1]["test_accuracy"] for r in runs]
  fr = [r["history"][-1]["firing_rate"] for r in runs]
  a.plot(xs, acc, "o-", color="tab:blue")
  a.set_ylabel("test accuracy (%)", color="tab:blue")
  a.set_xticks(xs, [f"{r['lambda_s']:g}" for r in runs], rotation=30)
  a.set_xlabel("spiking regularization lambda_s")
  a2 = a.twinx()
  a2.plot(xs, fr, "s--", color="tab:red")
  a2.set_ylabel("firing rate", color="tab:red")
  a.set_title(f"(A) {meta['dataset']} {meta['model']}", fontsize=9)
  cmap = plt.get_cmap("viridis")
  for i, r in enumerate(runs):
    h = r["history"]
    b.plot([e["firing_rate"] for e in h], [100 * e["test_accuracy"] for e in h], "o-",
           ms=3, color=cmap(i / max(1, len(runs) - 1)), label=f"{r['lambda_s']:g}")
    b.plot(h[-1]["firing_rate"], 100 * h[-1]["test_accuracy"], "k*", ms=6)
  b.set_xlabel("firing rate")
  b.set_ylabel("test accuracy (%)")
  b.set_title("(B) during learning (one point per epoch, * = last)", fontsize=9)
  b.legend(title="lambda_s", fontsize=7, title_fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
