"""Dense vs rewired (rewiring + l1) training, then post-training quantization, on gas drift.

Trains the rMLP ``r81-fc36-fc6`` on the UCI gas sensor array drift data (128 features,
6 gases, stratified random 80/20 split, rank-order coding) twice with the same seed:
dense (Adam) and sparse (``bpsr_jax.rewire`` around Adam, plus the l1 term), both with
the BPSR clamp. Then quantizes the sparse model to 8 and 4 bits with both leak schemes
of ``bpsr_jax.quantize`` (``tau_terms=1``: tau = 2^-k, one right shift, the paper's;
``tau_terms=2``: tau = +-2^-a +- 2^-b, two shift-adds), straight (PTQ of the trained
model) and after fine-tuning the other parameters with tau frozen on each scheme's grid,
and runs every quantized model with ``bpsr_jax.integer.integer_apply``. Prints one
table: test accuracy, synapse count and storage of each variant.

Usage (about 1.5 minutes on 2 CPU cores)::

    python benchmarks/quantize_study.py --data_dir ../shared/data/gas-drift

Standalone on purpose: it uses the core modules only (models, losses, encode, rewire,
constraints, quantize, data), not ``bpsr_jax.train``.
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpsr_jax import constraints
from bpsr_jax import encode
from bpsr_jax import integer
from bpsr_jax import losses
from bpsr_jax import models
from bpsr_jax import quantize
from bpsr_jax.data import load_gas_drift
from bpsr_jax.rewiring import leaf_name, rewire, synapse_counts

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-drift"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data_dir", default=str(DEFAULT_DATA))
  p.add_argument("--spec", default="r81-fc36-fc6")
  p.add_argument("--time_steps", type=int, default=16)
  p.add_argument("--epochs", type=int, default=60)
  p.add_argument("--tau_epochs", type=int, default=10,
                 help="fine-tuning epochs of the sparse model with tau frozen on the "
                 "quantizer's grid (once per tau scheme)")
  p.add_argument("--tau_terms", type=int, nargs="+", default=[1, 2],
                 help="leak schemes to compare (quantize_params(tau_terms=...))")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--learning_rate", type=float, default=3e-3,
                 help="peak of a cosine decay to 5 percent")
  p.add_argument("--lambda_s", type=float, default=1e-3)
  p.add_argument("--lambda_w", type=float, default=5e-4, help="l1 of the sparse run")
  p.add_argument("--bias_high", type=float, default=0.1, help="biases ~ U(0, bias_high)")
  p.add_argument("--prune_threshold", type=float, default=1e-2)
  p.add_argument("--grow_threshold", type=float, default=2e-2)
  p.add_argument("--distance_scale", type=float, default=0.0)
  p.add_argument("--rewire_momentum", type=float, default=0.9)
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def encode_all(x: np.ndarray, time_steps: int) -> np.ndarray:
  """Rank-order (by value) spikes ``[T, N, F]`` as uint8."""
  return np.asarray(encode.rank_order(jnp.asarray(x), time_steps, dtype=jnp.uint8))


def make_train_step(model, tx, lambda_s, lambda_w):
  def loss_fn(params, x, y):
    out, hidden = model.apply({"params": params}, x)
    ce = jnp.mean(losses.spike_count_cross_entropy(out, y))
    loss = ce + lambda_s * losses.spike_l2(hidden)
    if lambda_w:
      loss = loss + lambda_w * losses.weight_l1(params)
    return loss, ce

  @jax.jit
  def step(params, opt_state, x, y):
    (_, ce), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, ce

  return step


def accuracy(predict, x_spikes: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
  correct = 0
  for i in range(0, len(y), batch):
    out = predict(jnp.asarray(x_spikes[:, i:i + batch], jnp.float32))
    correct += int(jnp.sum(jnp.argmax(jnp.sum(out, axis=0), -1) == y[i:i + batch]))
  return 100.0 * correct / len(y)


def train(args, model, tx, lambda_w, data, label, epochs, params=None):
  x_train, y_train = data
  if params is None:
    key = jax.random.key(args.seed)
    params = model.init(key, jnp.zeros((args.time_steps, 1, x_train.shape[-1])))["params"]
    params = constraints.project_params(params, model.threshold)
  opt_state = tx.init(params)
  step = make_train_step(model, tx, args.lambda_s, lambda_w)
  rng = np.random.default_rng(args.seed)
  n = len(y_train)
  t0 = time.time()
  for epoch in range(epochs):
    order = rng.permutation(n)
    ces = []
    for i in range(0, n - args.batch_size + 1, args.batch_size):
      idx = order[i:i + args.batch_size]
      params, opt_state, ce = step(params, opt_state,
                                   jnp.asarray(x_train[:, idx], jnp.float32),
                                   jnp.asarray(y_train[idx]))
      ces.append(ce)
    if epoch % 10 == 9 or epoch == epochs - 1:
      synapses = int(synapse_counts(params)["total"])
      print(f"[{label}] epoch {epoch + 1}: ce {float(jnp.mean(jnp.stack(ces))):.4f} "
            f"synapses {synapses} ({time.time() - t0:.0f} s)", flush=True)
  return params, opt_state


def main(argv=None):
  args = parse_args(argv)
  train_set, test_set = load_gas_drift(args.data_dir, seed=args.seed)
  x_train = encode_all(train_set.x, args.time_steps)
  x_test = encode_all(test_set.x, args.time_steps)
  y_train, y_test = train_set.y, test_set.y
  print(f"gas drift: {len(y_train)} train / {len(y_test)} test samples, "
        f"{x_train.shape[-1]} features, T = {args.time_steps}, model {args.spec}")
  model = models.SNN(spec=args.spec, bias_high=args.bias_high)
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x)[0])
  test_acc = lambda params: accuracy(functools.partial(apply, params), x_test, y_test)
  data = (x_train, y_train)
  steps_per_epoch = len(y_train) // args.batch_size

  def rewired_adam(lr):
    return rewire(
        optax.adam(lr), prune_threshold=args.prune_threshold,
        grow_threshold=args.grow_threshold, distance_scale=args.distance_scale,
        momentum=args.rewire_momentum, seed=args.seed)

  lr = optax.cosine_decay_schedule(args.learning_rate, args.epochs * steps_per_epoch,
                                   alpha=0.05)
  dense_tx = optax.chain(optax.adam(lr), constraints.clamp(model.threshold))
  dense, _ = train(args, model, dense_tx, 0.0, data, "dense", args.epochs)

  sparse_tx = optax.chain(rewired_adam(lr), constraints.clamp(model.threshold))
  sparse, _ = train(args, model, sparse_tx, args.lambda_w, data, "rewire+l1", args.epochs)

  # Tau on each scheme's grid, frozen; the rest fine-tuned (rewiring on).
  frozen_tau = lambda p: jax.tree_util.tree_map_with_path(
      lambda path, _: leaf_name(path) == "tau", p)
  tune_lr = optax.cosine_decay_schedule(args.learning_rate / 3,
                                        max(args.tau_epochs, 1) * steps_per_epoch,
                                        alpha=0.05)
  tune_tx = optax.chain(optax.masked(optax.set_to_zero(), frozen_tau),
                        rewired_adam(tune_lr), constraints.clamp(model.threshold))
  scheme = {1: "tau 2^-k", 2: "tau +-2^-a +-2^-b"}
  scheme.update({n: f"tau {n} signed terms" for n in args.tau_terms if n not in scheme})
  snapped_acc, tuned = {}, {}
  for terms in args.tau_terms:
    snapped = quantize.round_tau(sparse, tau_terms=terms)
    snapped_acc[terms] = test_acc(snapped)
    tuned[terms], tuned_state = train(args, model, tune_tx, args.lambda_w, data,
                                      f"fine-tune, {scheme[terms]}", args.tau_epochs,
                                      params=snapped)
    assert (int(synapse_counts(tuned_state)["total"])
            == int(synapse_counts(tuned[terms])["total"])), "masks != nonzero weights"

  rows = []   # (label, accuracy, synapses, dense bytes, sparse bytes, base row or None)
  dense_synapses = int(synapse_counts(dense)["total"])

  def float_row(label, params):
    report = quantize.storage_report(params)
    rows.append((label, test_acc(params), int(synapse_counts(params)["total"]),
                 report["dense_bytes"], report["sparse_bytes"], None))
    return len(rows) - 1

  dense_row = float_row("dense, float32", dense)
  sparse_row = float_row("rewire+l1, float32", sparse)
  tuned_rows = {terms: float_row(f"rewire+l1, {scheme[terms]} + fine-tune, float32",
                                 tuned[terms]) for terms in args.tau_terms}
  xs = jnp.asarray(x_test[:, :512], jnp.float32)
  agreement = {}
  ptq = [("rewire+l1", sparse, terms, sparse_row) for terms in args.tau_terms]
  ptq += [(f"fine-tuned ({scheme[terms]})", tuned[terms], terms, tuned_rows[terms])
          for terms in args.tau_terms]
  for source, base, terms, base_row in ptq:
    for bits in (8, 4):
      q, info = quantize.quantize_params(base, bits, tau_terms=terms,
                                         threshold=model.threshold)
      predict = lambda x, q=q, info=info: integer.integer_apply(q, info, args.spec, x)[0]
      deq = quantize.dequantize_params(q, info)
      report = quantize.storage_report(q, info)
      rows.append((f"PTQ of {source}: int{bits}, {scheme[terms]}, integer path",
                   accuracy(predict, x_test, y_test), report["nonzero_weights"],
                   report["dense_bytes"], report["sparse_bytes"], base_row))
      agreement[len(rows) - 1] = float(jnp.mean(
          (apply(deq, xs).astype(jnp.int32) == predict(xs)).astype(jnp.float32)))

  print()
  print(f"| model ({args.spec}, gas drift, T={args.time_steps}) | test acc. % | "
        "vs. float base (points) | synapses | dense storage (bytes) | "
        "nonzero-only storage (bytes) |")
  print("| --- | --- | --- | --- | --- | --- |")
  for label, acc, syn, dense_b, sparse_b, base_row in rows:
    delta = "" if base_row is None else f"{acc - rows[base_row][1]:+.2f}"
    print(f"| {label} | {acc:.2f} | {delta} | {syn} | {dense_b} | {sparse_b} |")
  print()
  sparse_syn, sparse_acc = rows[sparse_row][2], rows[sparse_row][1]
  print(f"synapses: {dense_synapses} dense -> {sparse_syn} rewired "
        f"({dense_synapses / max(sparse_syn, 1):.1f}x fewer), accuracy "
        f"{sparse_acc - rows[dense_row][1]:+.2f} points")
  for terms in args.tau_terms:
    label, acc, syn = rows[tuned_rows[terms]][:3]
    print(f"{scheme[terms]}: tau rounded without fine-tuning "
          f"{snapped_acc[terms] - sparse_acc:+.2f} points vs rewire+l1; after the "
          f"fine-tune {syn} synapses, {acc - rows[dense_row][1]:+.2f} points vs dense")
  for i, agree in agreement.items():
    label, acc, _, _, _, base_row = rows[i]
    print(f"{label}: {acc - rows[base_row][1]:+.2f} points vs its float base; output "
          f"spikes equal to the float32 model with the dequantized params: "
          f"{100 * agree:.3f} %")
  print("(PTQ rows: vs. float base = against the float32 model they were quantized from; "
        "nonzero-only storage: values of the nonzero weights, biases and taus; index "
        "overhead excluded)")


if __name__ == "__main__":
  main()
