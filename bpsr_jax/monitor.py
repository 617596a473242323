"""What a run reports while it trains: TensorBoard scalars, progress with an ETA, and the
divergence rule.

* :class:`MetricWriter`: TensorBoard event files in the workdir (``events.out.tfevents.*``,
  via ``tensorboardX``; CLU's ``metric_writers`` needs TensorFlow, which this project does
  not otherwise install), beside ``metrics.jsonl`` and ``results.json``.
* :class:`Progress`: steps/s and an ETA measured from the steps after the first (whose
  time is compilation), so the first ETA is not inflated by compile time.
* :func:`divergence`: the rule that stops a run whose loss is finite but which no longer
  learns (the clamp keeps a diverging run finite).

**Divergence rule.** At every log point the loop records the window's mean loss, cross
entropy and training accuracy. After the first epoch, over the last ``patience`` windows:
if the mean training accuracy is within 5 % of chance (``acc <= 1/C + 0.05 * (1 - 1/C)``)
and the predictions are no better than a guess (mean cross entropy at least ``ln C``, that
of uniform class probabilities) or the loss is flat (spread at most 1 % of its mean), the
run has diverged: :func:`bpsr_jax.train.fit` stops with
:class:`bpsr_jax.errors.DivergenceError` (exit code 3) and keeps its last checkpoint. A
too-high learning rate under the clamp gives exactly that: a saturated or silent network,
confidently wrong (MNIST at learning rate 1e6: accuracy 0.10-0.16, cross entropy 4-6 >
ln 10 = 2.30), while a run that learns has a cross entropy below ``ln C`` within its first
epoch.
"""
from __future__ import annotations

import math
import pathlib
import time
from typing import Dict, List, Mapping, Optional, Sequence

#: Chance band and flatness of the divergence rule (see the module docstring).
CHANCE_MARGIN = 0.05
FLAT_LOSS = 0.01


def divergence(windows: Sequence[Mapping[str, float]], *, num_classes: int,
               patience: int) -> Optional[str]:
  """The divergence rule on the log windows recorded after the first epoch.

  Args:
    windows: per log point ``{"loss", "ce", "accuracy"}`` (window means), oldest first,
      only those after the first epoch.
    num_classes: C (chance accuracy is ``1 / C``).
    patience: how many windows the rule looks at; 0 = off.

  Returns:
    ``None``, or a sentence saying why the run diverged.
  """
  if patience <= 0 or len(windows) < patience:
    return None
  last = windows[-patience:]
  chance = 1.0 / num_classes
  acc = sum(w["accuracy"] for w in last) / patience
  if not acc <= chance + CHANCE_MARGIN * (1.0 - chance):
    return None
  ce = sum(w["ce"] for w in last) / patience
  losses = [w["loss"] for w in last]
  mean = sum(losses) / patience
  guessing = ce >= math.log(num_classes)
  flat = max(losses) - min(losses) <= FLAT_LOSS * abs(mean)
  if not (guessing or flat):
    return None
  best = max(w["accuracy"] for w in windows)
  how = (f"it collapsed from a training accuracy of {best:.3f}"
         if best > 2 * chance + CHANCE_MARGIN and best > acc + 0.2 else "it does not learn")
  why = (f"cross entropy {ce:.3f} >= ln {num_classes} = {math.log(num_classes):.3f}"
         if guessing else f"a flat loss ({min(losses):.4f}..{max(losses):.4f})")
  return (f"training accuracy {acc:.3f} at chance ({chance:.3f}) with {why} over the last "
          f"{patience} log points: {how}")


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
