"""Tests of bpsr_jax.checkpoint: the train state (rewiring state included) round-trips."""

import logging
import re
import threading

import jax
import numpy as np
import pytest

from bpsr_jax import checkpoint as ckpt_lib
from bpsr_jax.data.common import Dataset
from bpsr_jax.errors import CheckpointError
from bpsr_jax import rewiring as rewire
from bpsr_jax import train as T


def _state(seed=0):
  cfg = T.TrainConfig(model="r8-fc2", time_steps=4, encoding="rate", rewire=True,
                      seed=seed)
  model = T.make_model(cfg)
  return T.init_state(cfg, model, T.make_optimizer(cfg), np.zeros((1, 5), np.float32))


def test_round_trip_with_rewire_state(tmp_path):
  state = _state()
  # Make the rewiring state non-trivial: prune some synapses.
  rs = rewire.find_rewire_states(state.opt_state)[0]
  assert rs.mask["r0"]["kernel"].all()
  masks = jax.tree.map(lambda m: m.at[0].set(False), rs.mask)
  new_rs = rs._replace(mask=masks)
  opt_state = jax.tree.map(lambda x: new_rs if isinstance(x, rewire.RewireState) else x,
                           state.opt_state,
                           is_leaf=lambda x: isinstance(x, rewire.RewireState))
  state = state._replace(opt_state=opt_state, step=state.step + 7)
  ck = ckpt_lib.Checkpointer(tmp_path / "ck", max_to_keep=2)
  assert ck.latest_step() is None
  ck.save(7, state, {"epoch": 1, "batch": 3})
  assert not ck.save(7, state, {"epoch": 1, "batch": 3})  # the step exists: no-op
  ck.save(9, state, {"epoch": 1, "batch": 5})
  ck.save(11, state, {"epoch": 1, "batch": 7})
  ck.wait()
  assert ck.all_steps() == [9, 11]  # keeps 2
  like = _state(seed=1)
  restored, meta = ck.restore(like)
  ck.close()
  assert meta == {"epoch": 1, "batch": 7}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  got = rewire.find_rewire_states(restored.opt_state)[0]
  assert not bool(got.mask["r0"]["kernel"][0].any())
  assert int(restored.step) == 7


def test_final_params_reads_without_template(tmp_path):
  state = _state()
  ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
  ck.save(3, state, {"epoch": 0})
  ck.close()
  params = T.final_params(tmp_path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
    assert np.array_equal(a, np.asarray(b))


# --------------------------------------------------------------------------------------
# Integrity: digests verified on restore, fallback to the newest valid step (issue 14).


def _flip_bits(path, nbits=3, seed=0):
  data = bytearray(path.read_bytes())
  for i in np.random.default_rng(seed).choice(len(data) * 8, nbits, replace=False):
    data[i // 8] ^= 1 << (i % 8)
  path.write_bytes(bytes(data))


def _largest_file(step_dir):
  """The file holding the arrays' bytes (where flipped bits go unnoticed by orbax)."""
  return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _big_state(value):
  """A state whose array bytes dominate the checkpoint (1 MB of float32)."""
  w = np.random.default_rng(value).random((512, 512)).astype(np.float32)
  return {"params": {"w": w}, "step": np.asarray(value, np.int32)}


def _saved(directory, steps=(1, 2, 3)):
  ck = ckpt_lib.Checkpointer(directory, max_to_keep=5)
  for s in steps:
    ck.save(s, _big_state(s), {"step": s})
  ck.close()


def _assert_state(got, value):
  np.testing.assert_array_equal(np.asarray(got["params"]["w"]), _big_state(value)["params"]["w"])
  assert int(got["step"]) == value


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "meta"])
def test_restore_skips_a_damaged_latest_step(tmp_path, caplog, damage):
  _saved(tmp_path)
  step3 = tmp_path / "3"
  target = _largest_file(step3)
  if damage == "flip":  # three flipped bits in the array bytes: orbax reads them silently
    _flip_bits(target)
  elif damage == "truncate":
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
  elif damage == "remove":
    target.unlink()
  else:  # a changed digit in the JSON position record
    meta = step3 / "meta" / "metadata"
    meta.write_text(meta.read_text().replace('"step": 3', '"step": 4'))
  ck = ckpt_lib.Checkpointer(tmp_path)
  assert ck.latest_step() == 3
  with caplog.at_level(logging.WARNING):
    state, meta = ck.restore(_big_state(0))
  assert ck.restored_step == 2 and meta == {"step": 2}
  _assert_state(state, 2)
  assert re.search(r"checkpoint step 3 in .* is invalid", caplog.text), caplog.text
  # The template-free params reader applies the same check and fallback.
  np.testing.assert_array_equal(ckpt_lib.restore_params(tmp_path)["w"],
                                _big_state(2)["params"]["w"])
  # Saving step 3 again moves the damaged one aside (kept) and writes a valid one.
  ck.save(3, _big_state(3), {"step": 3})
  ck.wait()
  state, _ = ck.restore(_big_state(0))
  ck.close()
  assert ck.restored_step == 3
  _assert_state(state, 3)
  assert (tmp_path / "3.corrupt").is_dir()


def test_flipped_array_bits_pass_orbax_but_not_the_digest(tmp_path):
  """Without the digest this restore would succeed with different values."""
  _saved(tmp_path, steps=(1,))
  _flip_bits(_largest_file(tmp_path / "1"), seed=1)
  ck = ckpt_lib.Checkpointer(tmp_path)
  with pytest.raises(CheckpointError, match=r"step 1: its arrays do not match their digest"):
    ck.restore(_big_state(0))
  ck.close()


def test_every_step_corrupt_is_a_checkpoint_error(tmp_path):
  _saved(tmp_path, steps=(1, 2))
  _flip_bits(_largest_file(tmp_path / "1"))
  _largest_file(tmp_path / "2").unlink()
  ck = ckpt_lib.Checkpointer(tmp_path)
  with pytest.raises(CheckpointError, match=r"no valid checkpoint in .*step 2: .*step 1: "):
    ck.restore(_big_state(0))
  ck.close()
  with pytest.raises(CheckpointError, match="no valid checkpoint"):
    ckpt_lib.restore_params(tmp_path)
  empty = ckpt_lib.Checkpointer(tmp_path / "empty")
  with pytest.raises(CheckpointError, match="no checkpoint in"):
    empty.restore(_big_state(0))
  empty.close()


def test_unreadable_orbax_step_metadata_hides_only_that_step(tmp_path, caplog):
  """orbax reads every step's _CHECKPOINT_METADATA when it opens the folder."""
  _saved(tmp_path)
  path = tmp_path / "3" / "_CHECKPOINT_METADATA"  # two flipped bits: two unknown keys
  text = path.read_text().replace("performance_metrics", "performa.ce_metrics")
  path.write_text(text.replace("commit_timestamp_nsecs", "commit_timest!mp_nsecs"))
  with caplog.at_level(logging.WARNING):
    ck = ckpt_lib.Checkpointer(tmp_path)
    assert ck.all_steps() == [1, 2] and ck.all_steps() == [1, 2]
    state, _ = ck.restore(_big_state(0))
  ck.close()
  assert ck.restored_step == 2
  _assert_state(state, 2)
  # One warning names the step, however often orbax lists the folder.
  warned = re.findall(r"checkpoint step 3 in .* is invalid \(unreadable orbax step "
                      r"metadata \(\w+: ", caplog.text)
  assert len(warned) == 1, caplog.text


# ~60 s (two fits); resume exactness stays fast in test_train.py::test_stop_and_resume_is_exact,
# the corrupt-step handling in this file's restore tests.
@pytest.mark.slow
def test_fit_resumes_past_a_corrupt_checkpoint_to_the_uninterrupted_result(tmp_path, caplog):
  """Fault injection: flipped bits in the newest checkpoint of a stopped run."""
  rng = np.random.default_rng(0)
  x = rng.random((64, 12), dtype=np.float32)
  train_ds = Dataset(x=x, y=(x[:, 0] > 0.5).astype(np.int32), num_classes=2,
                     class_names=("a", "b"), kind="analog")
  test_ds = train_ds.take(np.arange(16))
  cfg = T.TrainConfig(model="r8-fc2", epochs=2, batch_size=16, time_steps=6,
                      encoding="rate", rewire=True, log_every=100, checkpoint_every=2)
  T.fit(train_ds, test_ds, cfg, tmp_path / "ref")
  T.fit(train_ds, test_ds, cfg, tmp_path / "run", stop_after_steps=5)
  ckdir = tmp_path / "run" / "checkpoints"
  assert ckpt_lib.Checkpointer(ckdir, read_only=True).all_steps() == [2, 4, 5]
  _flip_bits(_largest_file(ckdir / "5"))
  with caplog.at_level(logging.WARNING):
    T.fit(train_ds, test_ds, cfg, tmp_path / "run")
  assert re.search(r"checkpoint step 5 in .* is invalid", caplog.text), caplog.text
  assert "restored checkpoint step 4" in caplog.text
  ref = ckpt_lib.restore_params(tmp_path / "ref")
  got = ckpt_lib.restore_params(tmp_path / "run")
  assert jax.tree.structure(ref) == jax.tree.structure(got)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b)


def test_restore_at_or_before_a_given_step(tmp_path):
  _saved(tmp_path)   # steps 1, 2, 3
  ck = ckpt_lib.Checkpointer(tmp_path, read_only=True)
  for step, want in ((2, 2), (1, 1), (3, 3), (7, 3)):
    state, meta = ck.restore(_big_state(0), step=step)
    assert ck.restored_step == want and meta == {"step": want}
    _assert_state(state, want)
  with pytest.raises(CheckpointError, match="no checkpoint at or before step 0 in"):
    ck.restore(_big_state(0), step=0)
  ck.close()
  np.testing.assert_array_equal(ckpt_lib.restore_params(tmp_path, step=2)["w"],
                                _big_state(2)["params"]["w"])


def test_a_step_set_aside_again_gets_the_next_free_name(tmp_path):
  _saved(tmp_path)
  (tmp_path / "3.corrupt").mkdir()     # set aside twice before
  (tmp_path / "3.corrupt.1").mkdir()
  _largest_file(tmp_path / "3").unlink()
  ck = ckpt_lib.Checkpointer(tmp_path)
  ck.restore(_big_state(0))
  assert ck.restored_step == 2
  # In a thread with a deadline: a name search that never ends must fail, not hang.
  saver = threading.Thread(target=ck.save, args=(3, _big_state(3), {"step": 3}),
                           daemon=True)
  saver.start()
  saver.join(timeout=120)
  assert not saver.is_alive(), "save(3) is still looking for a free .corrupt name"
  ck.wait()
  assert (tmp_path / "3.corrupt.2").is_dir()
  state, _ = ck.restore(_big_state(0))
  ck.close()
  assert ck.restored_step == 3
  _assert_state(state, 3)


def test_a_synchronous_save_is_complete_when_it_returns(tmp_path):
  ck = ckpt_lib.Checkpointer(tmp_path, asynchronous=False)
  big = {"params": {"w": np.ones((2048, 2048), np.float32)}, "step": np.asarray(1)}
  ck.save(1, big, {"step": 1})
  # No wait(): another reader already finds the committed step.
  reader = ckpt_lib.Checkpointer(tmp_path, read_only=True)
  assert reader.all_steps() == [1]
  reader.close()
  ck.close()


def test_error_reasons_are_the_first_line_of_the_error():
  error = ValueError("  first line\nsecond line\n")
  assert ckpt_lib._one_line(error) == "ValueError: first line"  # pylint: disable=protected-access
  assert ckpt_lib._one_line(KeyError()) == "KeyError: "  # pylint: disable=protected-access
  assert ckpt_lib._one_line(OSError("x" * 300)) == "OSError: " + "x" * 240  # pylint: disable=protected-access


def test_reading_params_leaves_another_writers_unfinished_step_alone(tmp_path):
  _saved(tmp_path, steps=(1, 2))
  # A save in progress elsewhere (e.g. the training process): orbax's temporary folder.
  pending = tmp_path / "3.orbax-checkpoint-tmp-1234"
  pending.mkdir()
  (pending / "data").write_text("being written")
  np.testing.assert_array_equal(ckpt_lib.restore_params(tmp_path)["w"],
                                _big_state(2)["params"]["w"])
  np.testing.assert_array_equal(ckpt_lib.restore_params(tmp_path, step=1)["w"],
                                _big_state(1)["params"]["w"])
  assert (pending / "data").read_text() == "being written"


def test_params_of_an_unverified_sequence_state_are_its_first_item(tmp_path, caplog):
  """A checkpoint written by orbax alone (no digests): a state saved as a tuple comes
  back as a list; its params are the first item."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager = ocp.CheckpointManager(
      tmp_path, options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
      item_names=("state", "meta"))
  params = {"w": np.arange(4.0, dtype=np.float32)}
  manager.save(1, args=ocp.args.Composite(
      state=ocp.args.StandardSave((params, {"o": np.zeros(2)}, np.asarray(5))),
      meta=ocp.args.JsonSave({"step": 1})))
  manager.close()
  with caplog.at_level(logging.WARNING):
    got = ckpt_lib.restore_params(tmp_path)
  assert "has no digests" in caplog.text
  assert jax.tree.structure(got) == jax.tree.structure(params)
  np.testing.assert_array_equal(got["w"], params["w"])
