"""snnTorch: ``nn.Linear -> snn.Leaky(reset_mechanism="zero")`` twice, a loop over time."""
from __future__ import annotations

from benchmarks.peers import common
from benchmarks.peers import torch_common


def check_import():
  import torch  # noqa: F401
  import snntorch  # noqa: F401


def build(h, T, batch, init, lr=1e-3):
  torch = torch_common.setup()
  import snntorch as snn
  from snntorch import surrogate

  def gaussian_grad(input_, grad_input, spikes):
    return grad_input * common.gaussian(input_, torch.exp)

  spike_grad = surrogate.custom_surrogate(gaussian_grad)

  class Net(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = torch_common.linears(init)
      kw = dict(beta=common.BETA, threshold=common.THRESHOLD, reset_mechanism="zero",
                spike_grad=spike_grad)
      self.lif1, self.lif2 = snn.Leaky(**kw), snn.Leaky(**kw)

    @staticmethod
    def _run(lif, currents):
      mem = lif.reset_mem() if hasattr(lif, "reset_mem") else lif.init_leaky()
      out = []
      for t in range(currents.shape[0]):
        spk, mem = lif(currents[t], mem)
        out.append(spk)
      return torch.stack(out)

    def forward(self, x):
      s1 = self._run(self.lif1, self.fc1(x))
      return self._run(self.lif2, self.fc2(s1))

  return torch_common.TorchRunner(Net(), T, lr)
