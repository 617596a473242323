"""Tests of bpsr_jax.checkpoint: the train state (rewiring state included) round-trips."""

import jax
import numpy as np

from bpsr_jax import checkpoint as ckpt_lib
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
