"""Fig. 7 of the paper, extended: bpsr_jax (bpsr, autodiff) against snnTorch, Spyx, Norse
and SpikingJelly on the spiking MLP ``784-h-10`` with rate-coded MNIST.

For every batch size, hidden size h and time window T, every framework trains the same
network from the same initial weights on the same spike batches (Adam, lr 1e-3, mean
spike-count cross entropy with ``k = 10 / T``; see ``benchmarks/peers``), each framework
and configuration in its own subprocess, all in one run on one machine:

* **step time**: median wall time of ``--repeats`` training steps (forward, backward and
  the Adam update, synchronized: the loss is read back) after ``max(3, --warmup)``
  warm-up steps (the first three are the memory phase); the input encoding is done
  before the clock starts.
* **memory**, three ways: (a) ``peak MB``, the peak resident memory of training steps 2
  and 3 on top of the process (every framework; step 1 pays one-time costs): glibc's mmap threshold is fixed
  at 64 KiB (``mallopt``) so that every buffer of 64 KiB or more is mapped when allocated
  and unmapped when freed, the kernel's high-water mark is reset
  (``/proc/self/clear_refs``) once the model, the optimizer state (torch: created by a
  zero-gradient step), the input batches and (JAX) the compiled step exist, and the peak
  is ``VmHWM - VmRSS``; the timing phase then switches to large thresholds; (b) ``saved
  MB``, the activations the forward pass keeps for the backward pass (the residuals of
  ``jax.vjp`` / the tensors packed by torch's ``saved_tensors_hooks``; parameters and
  input excluded, each buffer once); (c) for the JAX implementations XLA's compiled
  ``temp_size_in_bytes`` (everything the step allocates besides arguments and outputs).
* **accuracy** after ``--acc-steps`` training steps (batches of rate-coded MNIST), on the
  first ``--n-test`` test images (rate coded, argmax of the output spike counts).
* **dense-matmul floor** (in the ``bpsr_jax (bpsr)`` worker): the step's matmul FLOPs
  (:func:`bpsr_jax.metrics.mlp_step_matmul_flops`: ``x @ W`` per layer forward, ``dW`` per
  layer, ``dx`` into the hidden layer) divided by this machine's best measured float32
  matmul throughput on the step's shapes: the best of ``[T * batch, 784] @ [784, h]`` as
  one jitted matmul, the same in row blocks, and the weight-gradient contraction
  ``[T * batch, 784]^T @ [T * batch, h]`` (:func:`_matmul_throughput`).

Threads: every framework computes on ``--threads`` cores (default 1: each worker process is
pinned to one CPU with ``os.sched_setaffinity``, and torch runs ``set_num_threads(1)``.
XLA's CPU client ignores ``--xla_cpu_multi_thread_eigen=false`` for its matmuls (measured:
CPU time / wall time 1.93 for a jitted matmul with that flag on this 2-core machine), so
only the affinity makes the JAX frameworks' numbers single-core like torch's). One thread is the default because the reference machine
(2 cores) is shared: with 2 threads and other load, torch's OpenMP workers stall at their
barriers and a step's time varies 30x from one step to the next.

Memory allocator: glibc serves every buffer of 32 MiB or more (its largest mmap
threshold) with a fresh ``mmap``, so a training step whose buffers are that large
faults in every page of them, 4 KiB at a time, in every step (measured for the JAX step
at batch 128, h 800, T 80: 24,400 page faults per step, 95 MB, 16 % of bpsr_jax's step
time; autodiff's and Spyx's larger buffers fault 190-220 MB per step; torch's tensors
none). The workers therefore run with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
(``--malloc-hugetlb 0`` turns it off), which gives such buffers transparent huge
pages: what is measured is the step's computation, as in a long-running process whose
allocator keeps its buffers. Users get the same with that variable (or tcmalloc /
jemalloc). A peer that cannot be imported is reported as
``missing`` with the install hint; a crash or a timeout as ``error`` / ``timeout``.

Usage:
  python -m benchmarks.efficiency --quick            # h {100, 800}, T {10, 40}
  python -m benchmarks.efficiency                     # full grid, batch 32 (+128 subset)
  python -m benchmarks.efficiency --hs 100,800 --Ts 40 --frameworks "bpsr_jax (bpsr),snnTorch"

Writes ``docs/efficiency.md`` (tables), ``docs/efficiency.json`` (every number) and
``docs/efficiency_{time,memory,saved,accuracy}.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from benchmarks import peers  # noqa: E402

RESULT_TAG = "RESULT "


# ---------------------------------------------------------------------------------------
# Worker: one framework, one configuration, in its own process.


def _status_kb(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  return -1


def _reset_peak() -> bool:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _malloc_tuning(timing: bool) -> None:
  """glibc malloc: a fixed 64 KiB mmap/trim threshold (memory phase) or large ones
  (timing phase: freed buffers are reused, as in a long-running training process)."""
  import ctypes
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return
  m_trim_threshold, m_mmap_threshold = -1, -3
  size = (32 << 20) if timing else (64 << 10)
  libc.mallopt(m_mmap_threshold, size)
  libc.mallopt(m_trim_threshold, (256 << 20) if timing else (64 << 10))


def _matmul_throughput(h: int, rows: int, repeats: int = 20) -> dict:
  """This machine's float32 matmul throughput (FLOP/s) on the step's big matmul shapes.

  Three jitted products with the FLOPs of one ``[rows, 784] @ [784, h]``: that product
  as one matmul, the same in row blocks of ``CPU_CHUNK_ROWS`` (what
  :func:`bpsr_jax.layers.rows_matmul` does on a CPU; faster for many rows), and the
  weight-gradient contraction ``[rows, 784]^T @ [rows, h]``. The floor uses the best
  of the three, so that no way of computing the step's matmuls beats it.
  """
  import jax
  import jax.numpy as jnp
  from bpsr_jax import layers
  a = jax.random.normal(jax.random.PRNGKey(0), (rows, 784), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (784, h), jnp.float32)
  d = jax.random.normal(jax.random.PRNGKey(2), (rows, h), jnp.float32)
  variants = {
      "matmul": (jax.jit(lambda a, b: a @ b), (a, b)),
      "row_blocks": (jax.jit(layers._chunked_matmul), (a, b)),
      "weight_grad": (jax.jit(lambda a, d: a.T @ d), (a, d)),
  }
  out = {}
  for name, (f, args) in variants.items():
    f(*args).block_until_ready()
    f(*args).block_until_ready()
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      f(*args).block_until_ready()
      times.append(time.perf_counter() - t)
    out[name] = 2.0 * rows * 784 * h / statistics.median(times)
  return out


def run_worker(args) -> dict:
  import numpy as np
  from benchmarks.peers import common
  res = {"framework": args.framework, "h": args.h, "T": args.T, "batch": args.batch}
  _malloc_tuning(timing=False)
  try:
    build = peers.load(args.framework)
  except peers.PeerMissing as e:
    return dict(res, status="missing", error=str(e))
  from bpsr_jax.data import load_mnist
  n_train = max(args.batch * (args.acc_steps + args.warmup + args.repeats), args.batch)
  train, test = load_mnist(limit=max(n_train, args.n_test))
  xtr = np.asarray(train.x, np.float32).reshape(len(train.x), -1)[:n_train]
  ytr = np.asarray(train.y, np.int32)[:n_train]
  xte = np.asarray(test.x, np.float32).reshape(len(test.x), -1)[:args.n_test]
  yte = np.asarray(test.y, np.int32)[:args.n_test]
  rng = np.random.default_rng(args.seed)
  order = rng.permutation(len(xtr))
  cursor = [0]

  def next_batch():
    if cursor[0] + args.batch > len(order):
      cursor[0] = 0
    idx = order[cursor[0]:cursor[0] + args.batch]
    cursor[0] += args.batch
    spikes = (rng.random((args.T, args.batch, xtr.shape[1]), dtype=np.float32)
              < xtr[idx][None]).astype(np.float32)
    return spikes, ytr[idx]

  init = common.init_params(args.h, seed=args.seed)
  t0 = time.perf_counter()
  runner = build(args.h, args.T, args.batch, init, lr=args.lr)
  res["build_s"] = time.perf_counter() - t0
  # Memory phase: with a fixed small mmap threshold every buffer of 64 KiB or more is
  # mapped on allocation and unmapped on free, so resident memory follows the live
  # buffers; the high-water mark over the first two steps is the step's peak.
  batches = [runner.prepare(*next_batch()) for _ in range(max(3, args.warmup))]
  runner.train_step(*batches[0])  # one-time costs (thread pools, lazy init) go first
  rss0 = _status_kb("VmRSS")
  res["peak_reset"] = _reset_peak()
  for xb, yb in batches[1:3]:
    runner.train_step(xb, yb)
  res["peak_mb"] = (_status_kb("VmHWM") - rss0) / 1024.0
  steps = 3
  _malloc_tuning(timing=True)
  for xb, yb in batches[3:]:
    runner.train_step(xb, yb)
    steps += 1
  batches = [runner.prepare(*next_batch()) for _ in range(args.repeats)]
  times, losses = [], []
  for xb, yb in batches:
    t = time.perf_counter()
    losses.append(runner.train_step(xb, yb))
    times.append(time.perf_counter() - t)
    steps += 1
  res["step_ms"] = 1e3 * statistics.median(times)
  res["step_ms_all"] = [1e3 * t for t in times]
  res["loss"] = losses[-1]
  res["saved_mb"] = runner.saved_bytes(*batches[-1]) / 2**20
  del batches
  ma = runner.memory_analysis()
  if ma:
    res["xla"] = ma
    res["xla_temp_mb"] = ma.get("temp_size_in_bytes", 0) / 2**20
  if args.acc_steps:
    while steps < args.acc_steps:
      runner.train_step(*runner.prepare(*next_batch()))
      steps += 1
    correct = 0
    eb = args.eval_batch
    for i in range(0, len(xte) - len(xte) % eb, eb):
      spikes = (rng.random((args.T, eb, xte.shape[1]), dtype=np.float32)
                < xte[i:i + eb][None]).astype(np.float32)
      counts = runner.predict(spikes)
      correct += int(np.sum(np.argmax(counts, axis=1) == yte[i:i + eb]))
    res["accuracy"] = correct / (len(xte) - len(xte) % eb)
    res["acc_steps"] = steps
  if args.framework == "bpsr_jax (bpsr)":
    from bpsr_jax import metrics
    thr_by_shape = _matmul_throughput(args.h, args.T * args.batch)
    thr = max(thr_by_shape.values())
    flops = metrics.mlp_step_matmul_flops((784, args.h, 10), args.T, args.batch)
    res.update(matmul_gflops=thr / 1e9, step_matmul_gflop=flops / 1e9,
               floor_ms=1e3 * flops / thr,
               matmul_gflops_by_shape={k: v / 1e9 for k, v in thr_by_shape.items()})
  res["status"] = "ok"
  return res


# ---------------------------------------------------------------------------------------
# Orchestrator.


def pin_to_cores(n: int) -> None:
  """Restricts this process (before JAX / torch start their thread pools) to ``n`` of the
  CPUs it may run on (the lowest-numbered); ``n <= 0`` or more than available: no change."""
  if n <= 0 or not hasattr(os, "sched_setaffinity"):
    return
  cpus = sorted(os.sched_getaffinity(0))
  if n < len(cpus):
    os.sched_setaffinity(0, set(cpus[:n]))


def thread_env(threads: int) -> dict:
  """Environment giving torch and XLA the same number of compute threads."""
  env = {"BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
         "MKL_NUM_THREADS": str(threads)}
  if threads == 1:
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                        " --xla_cpu_multi_thread_eigen=false"
                        " intra_op_parallelism_threads=1").strip()
  return env


def malloc_env(hugetlb: bool) -> dict:
  """glibc malloc tunables for the workers: with ``hugetlb``, buffers that malloc maps
  (all of 32 MiB and more, whatever the mmap threshold) get transparent huge pages."""
  if not hugetlb:
    return {}
  tun = os.environ.get("GLIBC_TUNABLES", "")
  return {"GLIBC_TUNABLES": (tun + ":" if tun else "") + "glibc.malloc.hugetlb=1"}


def _spawn(fw: str, h: int, T: int, batch: int, args, acc_steps: int) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.efficiency", "--worker", "--framework", fw,
         "--h", str(h), "--T", str(T), "--batch", str(batch), "--repeats",
         str(args.repeats), "--warmup", str(args.warmup), "--acc-steps", str(acc_steps),
         "--n-test", str(args.n_test), "--eval-batch", str(args.eval_batch), "--lr",
         str(args.lr), "--seed", str(args.seed)]
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             TF_CPP_MIN_LOG_LEVEL="3", **thread_env(args.threads),
             **malloc_env(args.malloc_hugetlb))
  base = {"framework": fw, "h": h, "T": T, "batch": batch}
  t0 = time.perf_counter()
  try:
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return dict(base, status="timeout", error=f"no result within {args.timeout} s")
  for line in reversed(p.stdout.splitlines()):
    if line.startswith(RESULT_TAG):
      r = json.loads(line[len(RESULT_TAG):])
      r["wall_s"] = time.perf_counter() - t0
      return r
  tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
  return dict(base, status="error", error=f"exit {p.returncode}: " + " | ".join(tail))


def _fmt(v, spec="{:.1f}"):
  return "-" if v is None else spec.format(v)


def _get(results, fw, b, h, T, key):
  for r in results:
    if (r["framework"], r["batch"], r["h"], r["T"]) == (fw, b, h, T) and r.get(
        "status") == "ok":
      return r.get(key)
  return None


def _status(results, fw, b, h, T):
  for r in results:
    if (r["framework"], r["batch"], r["h"], r["T"]) == (fw, b, h, T):
      return r.get("status")
  return None


def write_markdown(results, meta, path: pathlib.Path):
  fws = meta["frameworks"]
  configs = sorted({(r["batch"], r["h"], r["T"]) for r in results})
  short = {f: f.replace("bpsr_jax ", "") for f in fws}
  out = [f"# Efficiency: the spiking MLP 784-h-10 on rate-coded MNIST\n",
         f"Measured in one run: `{meta['command']}` on {meta['machine']} "
         f"({meta['date']}, {meta['wall_min']:.1f} min). Versions: {meta['versions']}.\n",
         f"Threads per framework: {meta['threads']}. "
         + ("glibc malloc with transparent huge pages for mapped buffers "
            "(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, every framework). "
            if meta.get("malloc_hugetlb") else "")
         +
         "Time per training step (forward + backward + Adam), median of "
         f"{meta['repeats']} steps after {max(3, meta['warmup'])} warm-up steps (those "
         "of the memory phase), in ms; "
         "`floor` = the step's matmul FLOPs / this machine's measured f32 matmul "
         "throughput; `x` columns = peer step time / bpsr step time.\n"]

  def status_cell(fw, b, h, T):
    s = _status(results, fw, b, h, T)
    return s if s and s != "ok" else "-"

  head = "| batch | h | T | " + " | ".join(short[f] for f in fws) + " | floor | bpsr/floor |"
  out += [head, "|" + "---:|" * (len(fws) + 5)]
  for b, h, T in configs:
    cells = []
    for f in fws:
      v = _get(results, f, b, h, T, "step_ms")
      cells.append(_fmt(v) if v is not None else status_cell(f, b, h, T))
    fl = _get(results, "bpsr_jax (bpsr)", b, h, T, "floor_ms")
    bp = _get(results, "bpsr_jax (bpsr)", b, h, T, "step_ms")
    out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + f" | {_fmt(fl, '{:.2f}')} | "
               + (_fmt(bp / fl, "{:.2f}") if fl and bp else "-") + " |")
  out.append("\nStep time relative to `bpsr_jax (bpsr)` (>1: bpsr is faster):\n")
  out += ["| batch | h | T | " + " | ".join(short[f] for f in fws[1:]) + " |",
          "|" + "---:|" * (len(fws) + 2)]
  for b, h, T in configs:
    bp = _get(results, "bpsr_jax (bpsr)", b, h, T, "step_ms")
    cells = []
    for f in fws[1:]:
      v = _get(results, f, b, h, T, "step_ms")
      cells.append(_fmt(v / bp, "{:.2f}x") if v and bp else status_cell(f, b, h, T))
    out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + " |")
  out.append("\nFastest of the timed steps, ms (less sensitive to other load on a "
             "shared machine than the median):\n")
  out += ["| batch | h | T | " + " | ".join(short[f] for f in fws) + " | floor |",
          "|" + "---:|" * (len(fws) + 4)]
  for b, h, T in configs:
    cells = []
    for f in fws:
      v = _get(results, f, b, h, T, "step_ms_all")
      cells.append(_fmt(min(v)) if v else status_cell(f, b, h, T))
    fl = _get(results, "bpsr_jax (bpsr)", b, h, T, "floor_ms")
    out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + f" | {_fmt(fl, '{:.2f}')} |")
  out.append("\nMemory of the training step, MB: peak resident memory steps 2-3 add to "
             "the process (all frameworks, VmHWM - VmRSS; for JAX a lower bound: XLA's "
             "CPU client keeps buffers between executions) / XLA's compiled temp (JAX "
             "only):\n")
  out += ["| batch | h | T | " + " | ".join(short[f] for f in fws) + " |",
          "|" + "---:|" * (len(fws) + 3)]
  for b, h, T in configs:
    cells = []
    for f in fws:
      pk = _get(results, f, b, h, T, "peak_mb")
      xt = _get(results, f, b, h, T, "xla_temp_mb")
      if pk is None:
        cells.append(status_cell(f, b, h, T))
      else:
        cells.append(_fmt(pk) + (" / " + _fmt(xt) if xt is not None else ""))
    out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + " |")
  out.append("\nSaved for the backward pass, MB (activations the forward pass keeps: "
             "`jax.vjp` residuals / torch `saved_tensors_hooks`; parameters and input "
             "excluded); last column: autodiff / bpsr:\n")
  out += ["| batch | h | T | " + " | ".join(short[f] for f in fws) + " | autodiff/bpsr |",
          "|" + "---:|" * (len(fws) + 4)]
  for b, h, T in configs:
    cells = [_fmt(_get(results, f, b, h, T, "saved_mb"), "{:.2f}")
             if _get(results, f, b, h, T, "saved_mb") is not None
             else status_cell(f, b, h, T) for f in fws]
    a = _get(results, f"bpsr_jax (autodiff)", b, h, T, "saved_mb")
    bp = _get(results, "bpsr_jax (bpsr)", b, h, T, "saved_mb")
    out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + " | "
               + (_fmt(a / bp, "{:.2f}x") if a and bp else "-") + " |")
  if any(r.get("accuracy") is not None for r in results):
    out.append(f"\nTest accuracy (%) after {meta['acc_steps']} training steps, first "
               f"{meta['n_test']} test images:\n")
    out += ["| batch | h | T | " + " | ".join(short[f] for f in fws) + " |",
            "|" + "---:|" * (len(fws) + 3)]
    for b, h, T in configs:
      if all(_get(results, f, b, h, T, "accuracy") is None for f in fws):
        continue
      cells = [_fmt(100 * a if (a := _get(results, f, b, h, T, "accuracy")) is not None
                    else None) for f in fws]
      out.append(f"| {b} | {h} | {T} | " + " | ".join(cells) + " |")
  out.append("\nNeuron model of each implementation:\n")
  out += ["| framework | neuron, reset, surrogate |", "|---|---|"]
  for f in fws:
    out.append(f"| {f} | {peers.NEURON_NOTES[f]} |")
  missing = [r for r in results if r.get("status") != "ok"]
  if missing:
    out.append("\nNot measured:\n")
    seen = set()
    for r in missing:
      key = (r["framework"], r.get("status"), r.get("error"))
      if key in seen:
        continue
      seen.add(key)
      out.append(f"- {r['framework']} ({r.get('status')}): {r.get('error')}")
  path.write_text("\n".join(out) + "\n")


def plot(results, meta, outdir: pathlib.Path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fws = meta["frameworks"]
  b = meta["batches"][0]
  hs, Ts = meta["hs"], meta["Ts"]
  t_fix = Ts[len(Ts) // 2] if len(Ts) > 1 else Ts[0]
  h_fix = hs[len(hs) // 2] if len(hs) > 1 else hs[0]
  panels = [("step_ms", "time per training step (ms)", "time", True),
            ("peak_mb", "peak step memory (MB, RSS)", "memory", True),
            ("saved_mb", "saved for backward (MB)", "saved", True),
            ("accuracy", "test accuracy", "accuracy", False)]
  for key, label, name, logy in panels:
    if not any(r.get(key) is not None for r in results):
      continue
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (xs, xlabel, fixed) in zip(axes, [
        (hs, "hidden neurons h", f"T = {t_fix}"), (Ts, "time window T", f"h = {h_fix}")]):
      for f in fws:
        ys = [(_get(results, f, b, x, t_fix, key) if xlabel.startswith("hidden")
               else _get(results, f, b, h_fix, x, key)) for x in xs]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
          ax.plot(*zip(*pts), marker="o", label=f, lw=2 if f.startswith("bpsr") else 1)
      if key == "step_ms":
        ys = [(_get(results, "bpsr_jax (bpsr)", b, x, t_fix, "floor_ms")
               if xlabel.startswith("hidden")
               else _get(results, "bpsr_jax (bpsr)", b, h_fix, x, "floor_ms")) for x in xs]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
          ax.plot(*zip(*pts), "k--", label="dense-matmul floor")
      ax.set_xscale("log", base=2)
      ax.set_xticks(xs, [str(x) for x in xs])
      if logy:
        ax.set_yscale("log")
      ax.set_xlabel(xlabel)
      ax.set_ylabel(label)
      ax.set_title(f"{fixed}, batch {b}", fontsize=9)
      ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(outdir / f"efficiency_{name}.png", dpi=80)
    plt.close(fig)


def _versions() -> str:
  from importlib import metadata
  out = []
  for pkg in ("jax", "flax", "optax", "torch", "snntorch", "spyx", "norse", "spikingjelly"):
    try:
      out.append(f"{pkg} {metadata.version(pkg)}")
    except metadata.PackageNotFoundError:
      out.append(f"{pkg} missing")
  return ", ".join(out)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--framework", default="bpsr_jax (bpsr)")
  ap.add_argument("--h", type=int, default=100)
  ap.add_argument("--T", type=int, default=10)
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--quick", action="store_true", help="h {100, 800}, T {10, 40}, batch 32")
  ap.add_argument("--hs", default="100,200,400,800")
  ap.add_argument("--Ts", default="10,20,40,80")
  ap.add_argument("--batches", default="32")
  ap.add_argument("--extra-batch", type=int, default=128,
                  help="also time this batch size at the smallest and largest h and T "
                       "(0: off)")
  ap.add_argument("--frameworks", default=",".join(peers.FRAMEWORKS))
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--acc-steps", type=int, default=100,
                  help="training steps before the accuracy test (0: no accuracy)")
  ap.add_argument("--acc-configs", default="sweep", choices=("sweep", "all"),
                  help="measure accuracy on every configuration, or only on the two "
                       "sweeps the plots show (h at the middle T, T at the middle h)")
  ap.add_argument("--n-test", type=int, default=1000)
  ap.add_argument("--eval-batch", type=int, default=250)
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--timeout", type=int, default=600, help="seconds per worker")
  ap.add_argument("--threads", type=int, default=1,
                  help="compute threads of every framework: 1 (default) sets "
                       "torch.set_num_threads(1) and XLA's single-threaded CPU client; "
                       "another value sets torch's threads and leaves XLA's default "
                       "(all cores)")
  ap.add_argument("--malloc-hugetlb", type=int, default=1, choices=(0, 1),
                  help="run the workers with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
                       "(default 1; see the module docstring)")
  ap.add_argument("--out", default=str(ROOT / "docs"))
  ap.add_argument("--from-json", default="",
                  help="re-render the tables and plots of an earlier run's "
                       "efficiency.json (no measurement)")
  args = ap.parse_args(argv)

  if args.from_json:
    data = json.loads(pathlib.Path(args.from_json).read_text())
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    write_markdown(data["results"], data["meta"], outdir / "efficiency.md")
    plot(data["results"], data["meta"], outdir)
    print(f"wrote {outdir / 'efficiency.md'} and the plots from {args.from_json}")
    return 0

  if args.worker:
    pin_to_cores(int(os.environ.get("BENCH_THREADS", "0")))
    try:
      res = run_worker(args)
    except Exception as e:  # reported, not raised: the orchestrator keeps going
      import traceback
      traceback.print_exc()
      res = {"framework": args.framework, "h": args.h, "T": args.T, "batch": args.batch,
             "status": "error", "error": f"{type(e).__name__}: {e}"}
    print(RESULT_TAG + json.dumps(res), flush=True)
    return 0

  if args.quick:
    args.hs, args.Ts, args.batches, args.extra_batch = "100,800", "10,40", "32", 0
  hs = [int(v) for v in args.hs.split(",")]
  Ts = [int(v) for v in args.Ts.split(",")]
  batches = [int(v) for v in args.batches.split(",")]
  fws = [f.strip() for f in args.frameworks.split(",") if f.strip()]
  for f in fws:
    if f not in peers.FRAMEWORKS:
      ap.error(f"unknown framework {f!r}; known: {', '.join(peers.FRAMEWORKS)}")
  t_fix, h_fix = Ts[len(Ts) // 2], hs[len(hs) // 2]  # the plots' sweeps

  def acc_for(h, T):
    if args.acc_configs == "all" or (h == h_fix or T == t_fix):
      return args.acc_steps
    return 0

  jobs = [(b, h, T, acc_for(h, T) if b == batches[0] else 0)
          for b in batches for h in hs for T in Ts]
  if args.extra_batch and args.extra_batch not in batches:
    for h in sorted({hs[0], hs[-1]}):
      for T in sorted({Ts[0], Ts[-1]}):
        jobs.append((args.extra_batch, h, T, 0))
  outdir = pathlib.Path(args.out)
  outdir.mkdir(parents=True, exist_ok=True)
  t_start = time.time()
  results = []
  for b, h, T, acc in jobs:
    for f in fws:
      r = _spawn(f, h, T, b, args, acc)
      results.append(r)
      msg = (f"{r['step_ms']:8.1f} ms  peak {r['peak_mb']:7.1f} MB"
             f"  saved {r['saved_mb']:7.2f} MB"
             + (f"  xla {r['xla_temp_mb']:7.1f} MB" if "xla_temp_mb" in r else "")
             + (f"  acc {100 * r['accuracy']:.1f}%" if "accuracy" in r else "")
             + (f"  floor {r['floor_ms']:.2f} ms" if "floor_ms" in r else "")
             if r.get("status") == "ok" else f"{r.get('status')}: {r.get('error')}")
      print(f"[{time.time() - t_start:6.0f}s] b={b} h={h} T={T} {f:22s} {msg}", flush=True)
  meta = {
      "command": "python -m benchmarks.efficiency " + " ".join(
          sys.argv[1:] if argv is None else argv),
      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
                 f"cores, {platform.system()}",
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "wall_min": (time.time() - t_start) / 60, "versions": _versions(),
      "frameworks": fws, "hs": hs, "Ts": Ts, "batches": batches,
      "repeats": args.repeats, "warmup": args.warmup, "acc_steps": args.acc_steps,
      "n_test": args.n_test, "lr": args.lr, "threads": args.threads,
      "malloc_hugetlb": args.malloc_hugetlb,
  }
  (outdir / "efficiency.json").write_text(json.dumps({"meta": meta, "results": results},
                                                     indent=1))
  write_markdown(results, meta, outdir / "efficiency.md")
  plot(results, meta, outdir)
  print(f"wrote {outdir / 'efficiency.md'}, efficiency.json, efficiency_*.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
