"""SpikingJelly: ``layer.Linear -> neuron.LIFNode`` twice in multi-step mode (torch backend)."""
from __future__ import annotations

import math

from benchmarks.peers import common
from benchmarks.peers import torch_common


def check_import():
  import torch  # noqa: F401
  from spikingjelly.activation_based import neuron  # noqa: F401


def build(h, T, batch, init, lr=1e-3):
  torch = torch_common.setup()
  from spikingjelly.activation_based import functional, neuron, surrogate
  sg = surrogate.Erf(alpha=1 / (math.sqrt(2) * common.ALPHA))  # = Gaussian of width 0.5

  def lif():
    return neuron.LIFNode(tau=1 / (1 - common.BETA), decay_input=False,
                          v_threshold=common.THRESHOLD, v_reset=0.0,
                          surrogate_function=sg, detach_reset=True, step_mode="m")

  class Net(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = torch_common.linears(init)
      self.lif1, self.lif2 = lif(), lif()

    def forward(self, x):  # [T, B, 784]; Linear acts on the last axis of all steps
      return self.lif2(self.fc2(self.lif1(self.fc1(x))))

  net = Net()
  return torch_common.TorchRunner(net, T, lr, reset=lambda: functional.reset_net(net))
