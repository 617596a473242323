"""Writes the snnTorch NIR fixtures of tests/test_nir_io.py (run once; bench extra).

    pip install -e ".[bench]" && python benchmarks/peers/write_nir_fixtures.py

snnTorch 1.0.0 (torch 2.13.0, nirtorch 2.6) exports with dt = 1e-4 (tau = dt / (1 -
beta), r = tau / dt). Each file comes with a small random input in NIR's layout
(``<name>_input.npz``, ``x`` of shape ``[T, batch, ...]``).
"""
import pathlib

import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
import nir

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "nir"


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  rnn = torch.nn.Sequential(
      torch.nn.Linear(12, 16),
      snn.RLeaky(beta=0.8, linear_features=16, init_hidden=True, reset_mechanism="zero"),
      torch.nn.Linear(16, 5),
      snn.Leaky(beta=torch.full((5,), 0.7), threshold=torch.ones(5), init_hidden=True,
                output=True, reset_mechanism="zero"))
  with torch.no_grad():  # bpsr_jax has no recurrent bias (a bias on a cycle only
    rnn[1].recurrent.bias.zero_()  # enters from the second step: refused on import)
  # A conv net did not export: nirtorch 2.6 fails on snnTorch's Flatten/Leaky shapes.
  for name, net, shape in (("snntorch_rnn", rnn, (12,)),):
    with torch.no_grad():
      for m in net.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
          m.weight.abs_()  # excitatory, so that the small nets spike
    graph = export_to_nir(net, torch.rand(shape))
    nir.write(OUT / f"{name}.nir", graph)
    x = (rng.random((8, 3) + shape) < 0.5).astype(np.float32) * 2
    np.savez_compressed(OUT / f"{name}_input.npz", x=x)
    print(name, {k: type(v).__name__ for k, v in graph.nodes.items()}, graph.edges)


if __name__ == "__main__":
  main()
