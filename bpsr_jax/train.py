"""The training loop: :func:`fit` trains, checkpoints, evaluates and writes the results.

The experiment binaries (``experiments/``) are thin shells over :func:`fit`::

    cfg = TrainConfig(model="r1000-fc100-fc10", encoding="rank_order", time_steps=25)
    train_ds, test_ds = bpsr_jax.data.load_mnist()
    results = fit(train_ds, test_ds, cfg, workdir="/tmp/mnist")

The pieces live in their own modules and are re-exported here: the configuration
(:mod:`bpsr_jax.config`), the optimizer and schedule (:mod:`bpsr_jax.optim`), the state,
loss and steps (:mod:`bpsr_jax.steps`), devices and sharding (:mod:`bpsr_jax.parallel`),
the run's identity (:mod:`bpsr_jax.workdir`), TensorBoard, progress and the divergence
rule (:mod:`bpsr_jax.monitor`).

Reproducibility: batches come from ``bpsr_jax.data.batch_indices(seed, epoch)`` and every
step's key is ``fold_in(base_key, step)``, so a run killed at any point and resumed from its
checkpoint ends with exactly the params of an uninterrupted run (on a deterministic
backend, e.g. CPU).

The loop reads nothing back from the device on a normal step: the step metrics stay on
the device until a log point (every ``log_every`` steps), a checkpoint or the epoch's end,
where they are fetched together and checked. A non-finite loss or gradient raises
:class:`NonFiniteLossError`; every checkpoint is written only after the steps before it
were checked, so the last checkpoint on disk is good.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Dict, List, Optional

from absl import logging
import jax
from jax.sharding import Mesh
import numpy as np

from bpsr_jax import checkpoint as ckpt_lib
from bpsr_jax import errors
from bpsr_jax import monitor
from bpsr_jax import workdir as workdir_lib
# Re-exported: the names users and the binaries import from bpsr_jax.train.
from bpsr_jax.checkpoint import final_params  # pylint: disable=unused-import
from bpsr_jax.config import (ENCODINGS, MAY_CHANGE_ON_RESUME, OPTIMIZERS,  # pylint: disable=unused-import
                             SCHEDULES, TrainConfig, validate_config)
from bpsr_jax.encode import random_shift  # pylint: disable=unused-import
from bpsr_jax.optim import make_optimizer, make_schedule  # pylint: disable=unused-import
from bpsr_jax.parallel import (make_mesh, maybe_initialize_distributed,  # pylint: disable=unused-import
                               replicate, shard_batch)
from bpsr_jax.rewiring import apply_mask, count_synapses  # pylint: disable=unused-import
from bpsr_jax.steps import (TrainState, balanced_accuracy, encode_input, evaluate,  # pylint: disable=unused-import
                            init_state, loss_fn, make_eval_step, make_model,
                            make_train_step)


class NonFiniteLossError(errors.DivergenceError):
  """The loss (or gradient) became NaN or infinite; the run stopped (exit code 3)."""


def _check_data(cfg: TrainConfig, train_ds, test_ds, ndev: int) -> None:
  validate_config(cfg, kind=train_ds.kind, num_classes=train_ds.num_classes,
                  data_time_steps=(train_ds.x.shape[1] if train_ds.kind == "spikes"
                                   else None),
                  num_devices=ndev, num_train=len(train_ds),
                  input_shape=train_ds.x.shape[1:])
  if test_ds.num_classes != train_ds.num_classes:
    raise errors.ConfigError("the train and test sets have different numbers of classes")
  if len(test_ds) == 0:
    raise errors.ConfigError(
        "the test set is empty (too few examples to split off a test set?)")


def _epoch_record(epoch, step, acc, test, syn, train_seconds, num_test):
  return workdir_lib.jsonable(dict(
      epoch=epoch, step=step, train_loss=acc["loss"] / max(1, acc["steps"]),
      train_accuracy=acc["correct"] / max(1, acc["count"]),
      test_accuracy=test["accuracy"], test_loss=test["loss"],
      balanced_accuracy=test["balanced_accuracy"], firing_rate=test["firing_rate"],
      firing_rate_per_layer=test["firing_rate_per_layer"],
      spikes_per_sample=test["spikes_per_sample"],
      spikes_per_sample_per_layer=test["spikes_per_sample_per_layer"],
      synapses=syn["total"], synapses_per_layer=syn,
      synaptic_ops_per_sample=test["synaptic_ops_per_sample"],
      steps_per_second=acc["steps"] / max(acc["seconds"], 1e-9),
      epoch_seconds=acc["seconds"], train_seconds=train_seconds, num_test=num_test))


_RESULT_KEYS = ("test_accuracy", "test_loss", "balanced_accuracy", "firing_rate",
                "firing_rate_per_layer", "spikes_per_sample", "spikes_per_sample_per_layer",
                "synapses", "synapses_per_layer", "synaptic_ops_per_sample")


def fit(train_ds, test_ds, cfg: TrainConfig, workdir: str | pathlib.Path, *,
        flags_used: Optional[Dict[str, Any]] = None,
        mesh: Optional[Mesh] = None,
        stop_after_steps: Optional[int] = None,
        initial_mask: Optional[Dict[str, Any]] = None,
        data_settings: Optional[Dict[str, Any]] = None,
        overwrite: bool = False) -> Dict[str, Any]:
  """Trains (or resumes) a run in ``workdir`` and writes its results.

  Re-running with the same ``workdir`` resumes from the latest checkpoint in
  ``<workdir>/checkpoints``, after comparing the run's identity with ``run.json`` (see
  :mod:`bpsr_jax.workdir`). A finished run is not trained again: its results are
  returned, computed afresh from its restored parameters when an evaluation setting or the
  test data changed. Raising ``cfg.epochs`` continues it (not with ``cosine``).

  Args:
    train_ds: a :class:`bpsr_jax.data.Dataset` (``x``, ``y``, ``num_classes``, ``kind``).
    test_ds: the evaluation dataset.
    cfg: the configuration.
    workdir: the run's folder: ``run.json``, ``checkpoints/``, ``metrics.jsonl`` (one
      line per epoch), TensorBoard event files and ``results.json`` (at the end).
    flags_used: recorded in ``results.json`` (default: ``cfg``).
    mesh: the device mesh; default all devices (:func:`make_mesh`).
    stop_after_steps: stop (with a checkpoint) once the global step reaches this (> 0);
      for tests and time-boxed sessions. The results are then not written.
    initial_mask: start a new run with these synapses only (``{"r0/kernel": bool
      array, ...}``, see :func:`apply_mask`); ignored when resuming. With
      ``rewire=True, prune_threshold=0, grow_threshold=inf`` the structure stays fixed
      for the whole run (the paper's Fig. 8E baselines).
    data_settings: the loader's settings (limits, split, windows, ...), part of the
      run's identity.
    overwrite: delete an earlier run's files in ``workdir`` first.

  Returns:
    The results dict (as written to ``results.json``); ``{}`` when stopped early.

  Raises:
    ConfigError: inconsistent settings (see :func:`validate_config`).
    WorkdirError: the workdir holds another run, or a setting that must not change did.
    DivergenceError: the loss became NaN/inf (:class:`NonFiniteLossError`) or the
      divergence rule fired; the last checkpoint is kept.
  """
  workdir = pathlib.Path(workdir)
  mesh = make_mesh() if mesh is None else mesh
  ndev = mesh.devices.size
  _check_data(cfg, train_ds, test_ds, ndev)
  if stop_after_steps is not None and stop_after_steps <= 0:
    raise errors.ConfigError(
        f"--stop_after_steps must be positive, got {stop_after_steps}")
  is_main = jax.process_index() == 0
  ident = workdir_lib.identity(cfg, train_ds, test_ds, data_settings)
  workdir.mkdir(parents=True, exist_ok=True)
  old_ident = workdir_lib.check(workdir, ident, overwrite=overwrite)  # before restoring
  if is_main:
    workdir_lib.write_identity(workdir, ident)

  from bpsr_jax.data import common as data_common  # pylint: disable=g-import-not-at-top
  steps_per_epoch = len(train_ds) // cfg.batch_size
  total_steps = steps_per_epoch * cfg.epochs
  model = make_model(cfg)
  tx = make_optimizer(cfg, steps_per_epoch)
  state = replicate(mesh, init_state(cfg, model, tx, train_ds.x[:1], initial_mask))
  train_step = make_train_step(model, tx, cfg)
  eval_step, slots = make_eval_step(model, cfg)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3)
  lr_at = make_schedule(cfg, steps_per_epoch)

  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints", max_to_keep=cfg.keep_checkpoints)
  epoch, batch, train_seconds = 0, 0, 0.0
  new_acc = lambda: dict(loss=0.0, correct=0, count=0, steps=0, seconds=0.0)
  acc = new_acc()
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    epoch, batch, train_seconds = meta["epoch"], meta["batch"], meta["train_seconds"]
    acc = meta["epoch_accum"]
    logging.info("resumed from %s at step %d (epoch %d, batch %d of %d)", ckpt.directory,
                 int(state.step), epoch, batch, steps_per_epoch)
  else:
    logging.info("new run in %s: %s", workdir, json.dumps(cfg.to_dict()))
  logging.info("%d devices (%s), mesh %s; %d train / %d test examples; %d steps per "
               "epoch; synapses %s", ndev, jax.devices()[0].platform, dict(mesh.shape),
               len(train_ds), len(test_ds), steps_per_epoch,
               count_synapses(state.params)["total"])

  metrics_path = workdir / "metrics.jsonl"
  history: List[Dict[str, Any]] = []
  if metrics_path.exists():
    history = [json.loads(l) for l in metrics_path.read_text().splitlines() if l.strip()]
    history = [h for h in history if h["epoch"] < epoch]
  if is_main:
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))
  writer = monitor.MetricWriter(workdir, enabled=is_main)
  progress = monitor.Progress(total_steps)
  step = int(state.step)
  pending: List[Dict[str, Any]] = []  # device metrics of the steps not yet checked
  window: List[Dict[str, Any]] = []  # host metrics since the last log point
  windows_after_warmup: List[Dict[str, float]] = []
  trained_now = False

  def flush():
    """Fetches the pending step metrics (one host sync), checks and accumulates them."""
    host = jax.device_get([m for m, _ in pending])
    for m, (_, s) in zip(host, pending):
      if not m["finite"]:
        raise NonFiniteLossError(
            f"non-finite loss ({m['loss']}) or gradient at step {s} (epoch {epoch}): "
            f"training stopped. The last good checkpoint (step {ckpt.latest_step()}) in "
            f"{ckpt.directory} is kept. Try a lower --learning_rate, --clip_norm or "
            "smaller --lambda_s/--lambda_w.")
      acc["loss"] += float(m["loss"])
      acc["correct"] += int(m["correct"])
      acc["count"] += int(m["count"])
      acc["steps"] += 1
      window.append(m)
    pending.clear()

  def save():
    ckpt.save(int(state.step), state, dict(
        epoch=epoch, batch=batch, step=int(state.step), train_seconds=train_seconds,
        epoch_accum=dict(acc), config=workdir_lib.jsonable(cfg.to_dict())))

  def log_point():
    w = monitor.window_means(window)
    window.clear()
    p = progress.report(step)
    logging.info("epoch %d batch %d/%d step %d | loss %.4f ce %.4f spikes/sample %.1f | "
                 "train acc %.4f | %.2f steps/s | ETA %s", epoch, batch, steps_per_epoch,
                 step, w["loss"], w["ce"], w["spikes_per_sample"], w["accuracy"],
                 p["steps_per_second"], monitor.fmt_time(p["eta_seconds"]))
    writer.write_scalars(step, {"train/" + k: v for k, v in w.items()} | {
        "train/learning_rate": float(lr_at(step)),
        "steps_per_second": p["steps_per_second"]})
    if step > steps_per_epoch:
      windows_after_warmup.append(w)
      why = monitor.divergence(windows_after_warmup, num_classes=train_ds.num_classes,
                               patience=cfg.divergence_patience)
      if why:
        raise errors.DivergenceError(
            f"training diverged at step {step} (epoch {epoch}): {why}. The last "
            f"checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is kept. Try a "
            "lower --learning_rate or --clip_norm.")

  def run_eval(params, what):
    logging.info("evaluating %s on %d test examples...", what, len(test_ds))
    t = time.time()
    out = evaluate(eval_step, slots, params, test_ds, cfg, mesh, eval_key)
    logging.info("evaluated in %.1f s", time.time() - t)
    return out

  try:
    while epoch < cfg.epochs:
      order = data_common.batch_indices(len(train_ds), cfg.batch_size, seed=cfg.seed,
                                        epoch=epoch)
      t_epoch = time.time()
      while batch < steps_per_epoch:
        x, y, _ = data_common.get_batch(train_ds, order[batch])
        xs, ys = shard_batch(mesh, x, y.astype(np.int32))
        if not progress.started:
          logging.info("compiling the train step and running step %d...", step + 1)
        state, m = train_step(state, xs, ys)
        step += 1
        batch += 1
        trained_now = True
        pending.append((dict(m, count=y.shape[0]), step))
        if not progress.started:
          jax.block_until_ready(state.step)
          logging.info("first step done (compiled) in %.1f s", time.time() - t_epoch)
          progress.first_step_done(step)
        now = time.time()
        if step % cfg.log_every == 0:
          flush()
          log_point()
        if batch < steps_per_epoch and step % cfg.checkpoint_every == 0:
          flush()
          acc["seconds"] += now - t_epoch
          train_seconds += now - t_epoch
          t_epoch = now
          save()
        if stop_after_steps is not None and step >= stop_after_steps:
          break
      flush()
      now = time.time()
      acc["seconds"] += now - t_epoch
      train_seconds += now - t_epoch
      if batch < steps_per_epoch:  # stopped early
        save()
        logging.info("stopped at step %d as asked; re-run to continue", step)
        return {}
      test = run_eval(state.params, f"epoch {epoch}")
      record = _epoch_record(epoch, step, acc, test, count_synapses(state.params),
                             train_seconds, len(test_ds))
      history.append(record)
      if is_main:
        with metrics_path.open("a") as f:
          f.write(json.dumps(record) + "\n")
      writer.write_scalars(step, {f"test/{k}": record[k] for k in (
          "test_accuracy", "test_loss", "balanced_accuracy", "firing_rate",
          "spikes_per_sample", "synaptic_ops_per_sample", "synapses")} | {
              "train/epoch_loss": record["train_loss"],
              "train/epoch_accuracy": record["train_accuracy"]})
      writer.flush()
      logging.info(
          "epoch %d done: train loss %.4f acc %.4f | test acc %.4f%s | firing rate "
          "%.4f | spikes/sample %.1f | synapses %d | synops/sample %.0f | %.2f steps/s, "
          "%s", epoch, record["train_loss"], record["train_accuracy"],
          record["test_accuracy"],
          (f" (balanced {record['balanced_accuracy']:.4f})" if cfg.balanced_accuracy
           else ""), record["firing_rate"], record["spikes_per_sample"],
          record["synapses"], record["synaptic_ops_per_sample"],
          record["steps_per_second"], monitor.fmt_time(acc["seconds"]))
      epoch, batch = epoch + 1, 0
      acc = new_acc()
      save()
    last = history[-1] if history else None
    if last is None or (not trained_now and old_ident is not None
                        and workdir_lib.eval_changed(old_ident, ident)):
      # A finished run without results, or whose evaluation settings changed: evaluate
      # its restored parameters afresh.
      test = run_eval(state.params, "the finished run")
      last = _epoch_record(epoch - 1, int(state.step), new_acc(), test,
                           count_synapses(state.params), train_seconds, len(test_ds))
  finally:
    writer.close()
    ckpt.close()

  results = {k: last[k] for k in _RESULT_KEYS}
  results.update(
      train_seconds=train_seconds, epochs=cfg.epochs, steps=int(state.step),
      num_train=len(train_ds), num_test=len(test_ds), devices=ndev,
      platform=jax.devices()[0].platform,
      flags=workdir_lib.jsonable(flags_used if flags_used is not None else cfg.to_dict()))
  if is_main:
    (workdir / "results.json").write_text(
        json.dumps(workdir_lib.jsonable(results), indent=2) + "\n")
  logging.info("finished: test accuracy %.4f, results in %s", results["test_accuracy"],
               workdir / "results.json")
  return results

