"""What a run reports while it trains: TensorBoard scalars, progress with an ETA, and the
divergence rule.

* :class:`MetricWriter`: TensorBoard event files in the workdir (``events.out.tfevents.*``,
  via ``tensorboardX``; CLU's ``metric_writers`` needs TensorFlow, which this project does
  not otherwise install), beside ``metrics.jsonl`` and ``results.json``.
* :class:`Progress`: steps/s and an ETA measured from the steps after the first (whose
  time is compilation), so the first ETA is not inflated by compile time.
* :func:`divergence`: the rule that stops a run whose loss is finite but which no longer
  learns (the clamp keeps a diverging run finite).

**Divergence rule.** At every log point the loop records the window's mean loss and
training accuracy. After the first epoch, if the last ``patience`` windows all have a
training accuracy within 2 % of chance (``acc <= 1/C + 0.02 * (1 - 1/C)``) and a flat loss
(max - min at most 1 % of the mean), the run has diverged: :func:`bpsr_jax.train.fit`
stops with :class:`bpsr_jax.errors.DivergenceError` (exit code 3) and keeps its last
checkpoint. A saturated or silent network (what a too-high learning rate under the clamp
gives) outputs the same spike counts for every input, hence that exact picture; a run
that learns has a loss that moves from batch to batch.
"""
from __future__ import annotations

import math
import pathlib
import time
from typing import Dict, List, Mapping, Optional, Sequence

#: Chance band and flatness of the divergence rule (see the module docstring).
CHANCE_MARGIN = 0.02
FLAT_LOSS = 0.01


def divergence(windows: Sequence[Mapping[str, float]], *, num_classes: int,
               patience: int) -> Optional[str]:
  """The divergence rule on the log windows recorded after the first epoch.

  Args:
    windows: per log point ``{"loss": mean loss, "accuracy": train accuracy}``, oldest
      first, only those after the first epoch.
    num_classes: C (chance accuracy is ``1 / C``).
    patience: how many windows in a row must look diverged; 0 = off.

  Returns:
    ``None``, or a sentence saying why the run diverged.
  """
  if patience <= 0 or len(windows) < patience:
    return None
  last = windows[-patience:]
  chance = 1.0 / num_classes
  band = chance + CHANCE_MARGIN * (1.0 - chance)
  if any(not w["accuracy"] <= band for w in last):
    return None
  losses = [w["loss"] for w in last]
  mean = sum(losses) / len(losses)
  if not max(losses) - min(losses) <= FLAT_LOSS * abs(mean):
    return None
  best = max(w["accuracy"] for w in windows)
  how = (f"it collapsed to chance from a training accuracy of {best:.3f}"
         if best > band else "it is stuck at chance")
  accs = ", ".join(f"{w['accuracy']:.3f}" for w in last)
  return (f"training accuracy at chance ({accs}; chance {chance:.3f}) with a flat loss ({min(losses):.4f}..{max(losses):.4f}) "
          f"for {patience} log points: {how}")


class Progress:
  """Steps/s and ETA from the steps after the first (which includes compilation)."""

  def __init__(self, total_steps: int):
    self.total = total_steps
    self._t0: Optional[float] = None
    self._s0 = 0
    self._t_log: Optional[float] = None
    self._s_log = 0

  @property
  def started(self) -> bool:
    """Whether :meth:`first_step_done` was called."""
    return self._t0 is not None

  def first_step_done(self, step: int) -> None:
    """Call after the first step of this process (compiled) has finished."""
    self._t0 = self._t_log = time.time()
    self._s0 = self._s_log = step

  def report(self, step: int) -> Dict[str, float]:
    """``{"steps_per_second" (since the last report), "eta_seconds"}``."""
    now = time.time()
    if self._t0 is None or step <= self._s0:
      return dict(steps_per_second=float("nan"), eta_seconds=float("nan"))
    rate = (step - self._s_log) / max(now - self._t_log, 1e-9)
    overall = (step - self._s0) / max(now - self._t0, 1e-9)
    self._t_log, self._s_log = now, step
    return dict(steps_per_second=rate, eta_seconds=(self.total - step) / overall)


def fmt_time(seconds: float) -> str:
  """``h:mm:ss``, ``?`` when unknown."""
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class MetricWriter:
  """TensorBoard scalars in ``workdir`` (a no-op writer where ``enabled`` is False).

  Args:
    workdir: the run folder; the event file is ``workdir/events.out.tfevents.*``.
    enabled: write (the main process only).
  """

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(logdir=str(workdir), flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    for k, v in scalars.items():
      if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
        self._writer.add_scalar(k, float(v), global_step=int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def window_means(window: List[Mapping[str, float]]) -> Dict[str, float]:
  """Means of a log window's per-step metrics (``correct`` / ``count`` -> accuracy)."""
  n = max(1, len(window))
  count = sum(m["count"] for m in window)
  return dict(loss=sum(float(m["loss"]) for m in window) / n,
              ce=sum(float(m["ce"]) for m in window) / n,
              spikes_per_sample=sum(float(m["spike_l2"]) for m in window) / n,
              accuracy=sum(int(m["correct"]) for m in window) / max(1, count))
