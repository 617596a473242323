"""The PyTorch side: threads, the shared training step and the weight copy."""
from __future__ import annotations

import os

import numpy as np

from benchmarks.peers import common

#: Intra-op threads for torch: ``BENCH_THREADS`` (set by ``benchmarks/efficiency.py`` to
#: the same number XLA's CPU client gets).
TORCH_THREADS = int(os.environ.get("BENCH_THREADS", "1"))


def setup():
  import torch
  torch.set_num_threads(TORCH_THREADS)
  try:
    torch.set_num_interop_threads(1)
  except RuntimeError:
    pass
  torch.manual_seed(0)
  return torch


def linears(init):
  """Two ``nn.Linear`` holding the shared initial weights."""
  import torch
  fc1 = torch.nn.Linear(common.INPUTS, init["w1"].shape[1])
  fc2 = torch.nn.Linear(init["w1"].shape[1], common.CLASSES)
  with torch.no_grad():
    fc1.weight.copy_(torch.from_numpy(init["w1"].T.copy()))
    fc1.bias.copy_(torch.from_numpy(init["b1"]))
    fc2.weight.copy_(torch.from_numpy(init["w2"].T.copy()))
    fc2.bias.copy_(torch.from_numpy(init["b2"]))
  return fc1, fc2


class TorchRunner:
  """Adam on the spike-count cross entropy for a module ``net(x [T,B,784]) -> [T,B,10]``."""

  def __init__(self, net, T, lr, reset=None):
    import torch
    self.torch, self.net = torch, net
    self.opt = torch.optim.Adam(net.parameters(), lr=lr)
    self.k = common.COUNT_SCALE / T
    self.reset = reset or (lambda: None)
    # Create Adam's state now (a zero-gradient step leaves the weights unchanged), so
    # that, as in JAX, the optimizer state exists before the first measured step.
    for prm in net.parameters():
      prm.grad = torch.zeros_like(prm)
    self.opt.step()
    self.opt.zero_grad(set_to_none=True)

  def prepare(self, x, y):
    torch = self.torch
    return (torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.asarray(y, np.int64)))

  def saved_bytes(self, x, y):
    """Bytes autograd saves for the backward pass (activations only: the parameters and
    the input are excluded), one storage counted once."""
    torch = self.torch
    skip = {q.untyped_storage().data_ptr() for q in self.net.parameters()}
    skip.add(x.untyped_storage().data_ptr())
    seen = {}

    def pack(t):
      st = t.untyped_storage()
      if st.data_ptr() not in skip:
        seen[st.data_ptr()] = st.nbytes()
      return t

    self.reset()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
      out = self.net(x)
      torch.nn.functional.cross_entropy(self.k * out.sum(0), y)
    return int(sum(seen.values()))

  def train_step(self, x, y):
    torch = self.torch
    self.reset()
    self.opt.zero_grad(set_to_none=True)
    out = self.net(x)
    loss = torch.nn.functional.cross_entropy(self.k * out.sum(0), y)
    loss.backward()
    self.opt.step()
    return float(loss.detach())

  def predict(self, x):
    torch = self.torch
    with torch.no_grad():
      self.reset()
      out = self.net(torch.from_numpy(np.ascontiguousarray(x)))
      return out.sum(0).numpy()

  def memory_analysis(self):
    return None
