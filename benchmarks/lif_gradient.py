"""Time and temporary memory of one LIF gradient step: gradient="bpsr" vs "autodiff".

For each T in {25, 100, 300} and N in {256, 1024} (batch 32), a jitted value-and-grad of
``sum(lif(currents, tau, ...) * readout)`` with respect to the currents, tau (and the
recurrent kernel for the recurrent layer) is timed (median of repeated calls after a
warm-up, the two gradients' calls alternating so that both see the same machine load)
and its compiled temporary memory is read from XLA
(``jax.jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``: everything
the step allocates besides its arguments and outputs, including the spikes themselves and
the loss's own intermediates). ``saved MB`` is what the forward pass keeps for the
backward pass (the residuals held by ``jax.vjp``'s closure). The physical floor of that is
one float per neuron per step (``T * batch * N * 4`` bytes), printed as ``floor MB``.

Usage:
  python benchmarks/lif_gradient.py [--repeats 20] [--layers flat,recurrent]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import bpsr_jax


def make_step(gradient: str, recurrent: bool):
  def loss(currents, tau, rec, readout):
    s = bpsr_jax.lif(currents, tau, recurrent_kernel=rec if recurrent else None,
                     gradient=gradient)
    return jnp.sum(s * readout)

  argnums = (0, 1, 2) if recurrent else (0, 1)
  return jax.jit(jax.value_and_grad(loss, argnums=argnums))


def _setup(gradient, recurrent, t, n, batch):
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  args = (0.3 + 0.8 * jax.random.normal(keys[0], (t, batch, n)),   # currents
          jnp.full((n,), 0.5),                                      # tau
          0.05 * jax.random.normal(keys[1], (n, n)),                # recurrent kernel
          jax.random.normal(keys[2], (t, batch, n)))                # readout
  compiled = make_step(gradient, recurrent).lower(*args).compile()
  temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", float("nan"))
  # Bytes the forward pass saves for the backward pass (the VJP closure's residuals).
  fn = lambda c, tau, r: bpsr_jax.lif(c, tau, recurrent_kernel=r if recurrent else None,
                                      gradient=gradient)
  _, vjp_fn = jax.vjp(fn, *args[:3])
  saved = sum(x.nbytes for x in jax.tree_util.tree_leaves(vjp_fn)
              if hasattr(x, "nbytes") and x.ndim >= 3)
  jax.block_until_ready(compiled(*args))  # warm-up
  return compiled, args, temp / 2**20, saved / 2**20


def measure(recurrent, t, n, batch, repeats):
  """Times both gradients, alternating calls so both see the same machine load."""
  setups = {g: _setup(g, recurrent, t, n, batch) for g in ("bpsr", "autodiff")}
  times = {g: [] for g in setups}
  for _ in range(repeats):
    for g, (compiled, args, _, _) in setups.items():
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times[g].append(time.perf_counter() - t0)
  return {g: (statistics.median(times[g]) * 1e3, setups[g][2], setups[g][3])
          for g in setups}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--time_steps", default="25,100,300")
  parser.add_argument("--neurons", default="256,1024")
  parser.add_argument("--layers", default="flat,recurrent")
  args = parser.parse_args()
  print(f"# LIF value-and-grad, batch {args.batch}, {jax.devices()[0].platform} "
        f"({platform.processor() or platform.machine()}, {jax.device_count()} device), "
        f"jax {jax.__version__}, median of {args.repeats}")
  print()
  print("| layer | T | N | bpsr ms | autodiff ms | speed-up | bpsr temp MB | "
        "autodiff temp MB | temp ratio | bpsr saved MB | autodiff saved MB | "
        "saved ratio | floor MB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for layer in args.layers.split(","):
    for t in map(int, args.time_steps.split(",")):
      for n in map(int, args.neurons.split(",")):
        rec = layer == "recurrent"
        m = measure(rec, t, n, args.batch, args.repeats)
        (tb, mb, rb), (ta, ma, ra) = m["bpsr"], m["autodiff"]
        floor = t * args.batch * n * 4 / 2**20
        print(f"| {layer} | {t} | {n} | {tb:.2f} | {ta:.2f} | {ta / tb:.2f}x | "
              f"{mb:.1f} | {ma:.1f} | {ma / mb:.1f}x | {rb:.1f} | {ra:.1f} | "
              f"{ra / rb:.1f}x | {floor:.1f} |", flush=True)


if __name__ == "__main__":
  main()
