"""Orbax checkpoints of a training run: the train state plus a JSON position record.

A checkpoint at global step ``s`` lives in ``<workdir>/checkpoints/<s>/`` and holds two
items:

* ``state``: the :class:`bpsr_jax.train.TrainState` pytree (params, optimizer state with
  the rewiring masks and momenta, step, base PRNG key), saved with
  :class:`orbax.checkpoint.args.StandardSave`;
* ``meta``: a JSON dict with the data-iterator position (``epoch``, ``batch``: the next
  batch of that epoch), the running sums of the unfinished epoch, the wall time spent so
  far and the settings that must not change on resume.

Saving is asynchronous (orbax writes in a background thread and publishes the step
directory atomically once it is complete); :meth:`Checkpointer.close` waits for it.
"""
from __future__ import annotations

import pathlib
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
  """A thin wrapper of :class:`orbax.checkpoint.CheckpointManager` for one run.

  Args:
    directory: the checkpoint folder (``<workdir>/checkpoints``), created if absent.
    max_to_keep: how many of the latest checkpoints to keep.
    asynchronous: write in a background thread.
  """

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3,
               asynchronous: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=asynchronous)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> Optional[int]:
    """The step of the newest complete checkpoint, ``None`` if there is none."""
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, state: PyTree, meta: Dict[str, Any]) -> bool:
    """Saves ``state`` and ``meta`` at ``step`` (a no-op if that step exists)."""
    if step in self._manager.all_steps():
      return False
    return self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, like: PyTree, step: Optional[int] = None) -> Tuple[PyTree, Dict[str, Any]]:
    """Restores the checkpoint at ``step`` (default: the latest).

    Args:
      like: a pytree with the structure, shapes, dtypes and shardings to restore into
        (e.g. a freshly initialized train state); ``None``: the saved tree as it is
        (nested dicts of arrays).
      step: the step; default :meth:`latest_step`.

    Returns:
      ``(state, meta)``.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = (None if like is None
                else jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
    out = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      meta=ocp.args.JsonRestore()))
    return out.state, dict(out.meta)

  def wait(self):
    """Blocks until the pending asynchronous save (if any) is on disk."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def final_params(workdir: str | pathlib.Path) -> PyTree:
  """The params of the latest checkpoint of a run, as numpy arrays (no template needed).

  Args:
    workdir: the run's folder (its checkpoints are in ``<workdir>/checkpoints``).

  Raises:
    FileNotFoundError: no checkpoint there.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"no checkpoint in {directory}")
  ckpt = Checkpointer(directory, asynchronous=False)
  try:
    state, _ = ckpt.restore(None)
  finally:
    ckpt.close()
  params = state["params"] if isinstance(state, dict) else state[0]
  return jax.tree.map(np.asarray, params)
