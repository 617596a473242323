"""Norse: ``nn.Linear -> LIFBoxCell`` twice, a loop over time."""
from __future__ import annotations

import math

from benchmarks.peers import common
from benchmarks.peers import torch_common

DT = 1e-3
TAU_MEM_INV = (1 - common.BETA) / DT  # decay v <- v + dt * tau_inv * (i - v): 0.5 v + 0.5 i


def check_import():
  import torch  # noqa: F401
  import norse.torch  # noqa: F401


def build(h, T, batch, init, lr=1e-3):
  torch = torch_common.setup()
  import norse.torch as norse
  p = norse.LIFBoxParameters(
      tau_mem_inv=torch.as_tensor(TAU_MEM_INV), v_leak=torch.as_tensor(0.0),
      v_th=torch.as_tensor(common.THRESHOLD), v_reset=torch.as_tensor(0.0),
      method="heavi_erfc", alpha=torch.as_tensor(1 / (math.sqrt(2) * common.ALPHA)))
  gain = 1.0 / (DT * TAU_MEM_INV)  # undo the input scaling of the box LIF

  class Net(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = torch_common.linears(init)
      self.lif1, self.lif2 = norse.LIFBoxCell(p, dt=DT), norse.LIFBoxCell(p, dt=DT)

    @staticmethod
    def _run(cell, currents):
      state, out = None, []
      currents = gain * currents
      for t in range(currents.shape[0]):
        z, state = cell(currents[t], state)
        out.append(z)
      return torch.stack(out)

    def forward(self, x):
      s1 = self._run(self.lif1, self.fc1(x))
      return self._run(self.lif2, self.fc2(s1))

  return torch_common.TorchRunner(Net(), T, lr)
