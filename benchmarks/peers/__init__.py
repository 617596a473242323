"""The same spiking MLP ``784-h-10`` in bpsr_jax and in peer SNN libraries.

Every implementation exposes ``build(h, T, batch, init, lr) -> runner`` with

* ``runner.train_step(x, y) -> float``: one Adam step on the mean spike-count cross
  entropy (``softmax(k * sum_t s_out)``, ``k = 10 / T``); ``x`` ``[T, batch, 784]`` float32
  spikes (numpy), ``y`` ``[batch]`` int labels; returns the loss after synchronizing,
* ``runner.predict(x) -> np.ndarray``: the output spike counts ``[batch, 10]``,
* ``runner.memory_analysis() -> dict | None``: the compiled step's memory (JAX only).

``init`` holds numpy float32 ``w1 [784, h]``, ``b1 [h]``, ``w2 [h, 10]``, ``b2 [10]``: all
implementations start from the same weights. Layers run one after the other over the whole
window (the affine part of a layer as one matmul over ``T * batch``, then the neuron scan),
in every framework.

The peers are optional (``pip install .[bench]``); :func:`load` turns a failed import into
:class:`PeerMissing` with the install command.
"""
from __future__ import annotations

import importlib

#: name -> (module, builder kwargs)
FRAMEWORKS = {
    "bpsr_jax (bpsr)": ("benchmarks.peers.bpsr_jax_peer", {"gradient": "bpsr"}),
    "bpsr_jax (autodiff)": ("benchmarks.peers.bpsr_jax_peer", {"gradient": "autodiff"}),
    "snnTorch": ("benchmarks.peers.snntorch_peer", {}),
    "Spyx": ("benchmarks.peers.spyx_peer", {}),
    "Norse": ("benchmarks.peers.norse_peer", {}),
    "SpikingJelly": ("benchmarks.peers.spikingjelly_peer", {}),
}

#: How each implementation's neuron differs from bpsr_jax's (eq. 1-2: u = tau u (1 - s) + I,
#: s = H(u - 1), hard reset to 0, Gaussian surrogate of width 0.5).
NEURON_NOTES = {
    "bpsr_jax (bpsr)": "eq. 1-2 exactly; Gaussian surrogate (alpha 0.5); per-neuron tau "
                       "learned (init 0.5); reverse-scan custom VJP (BPSR) keeping the "
                       "potentials, and the hidden spikes for the output layer's weight "
                       "gradient as booleans",
    "bpsr_jax (autodiff)": "same neuron; JAX autodiff through the scan (STBP / BPTT)",
    "snnTorch": "`Leaky(beta=0.5, threshold=1, reset_mechanism='zero')`: same equations; "
                "Gaussian via `surrogate.custom_surrogate`; beta fixed",
    "Spyx": "`spyx.nn.LIF(beta=0.5)`: subtractive reset (V - s), spike read from the "
            "previous step's V (one-step delay); Gaussian via `spyx.axn.custom`; one "
            "scalar beta learned",
    "Norse": "`LIFBoxCell` (tau_mem_inv 500, dt 1 ms: decay 0.5, but the input is scaled "
             "by 0.5, so currents are doubled before it); reset to 0 with gradient "
             "through the reset; `heavi_erfc` surrogate (Gaussian, sqrt(2) x taller)",
    "SpikingJelly": "`LIFNode(tau=2, decay_input=False, v_reset=0, detach_reset=True, "
                    "step_mode='m', backend='torch')`: same equations; `surrogate.Erf("
                    "sqrt(2))` = the same Gaussian; tau fixed",
}

PIP_HINT = {
    "snnTorch": "snntorch", "Spyx": "spyx", "Norse": "norse nirtorch",
    "SpikingJelly": "spikingjelly loguru",
}


class PeerMissing(ImportError):
  """A peer library is not installed (or fails to import)."""


def load(name: str):
  """The builder of framework ``name``.

  Returns:
    ``build(h, T, batch, init, lr)`` with the framework's fixed options bound.

  Raises:
    KeyError: an unknown framework name.
    PeerMissing: the framework (or torch) cannot be imported; the message says what to
      install.
  """
  import functools
  if name not in FRAMEWORKS:
    raise KeyError(f"unknown framework {name!r}: expected one of {list(FRAMEWORKS)}")
  module, kwargs = FRAMEWORKS[name]
  try:
    mod = importlib.import_module(module)
    mod.check_import()
  except ImportError as e:
    hint = PIP_HINT.get(name, "")
    raise PeerMissing(
        f"{name} is not available ({type(e).__name__}: {e}); install the benchmark "
        f"extra: pip install .[bench]  (or: pip install torch {hint})") from e
  return functools.partial(mod.build, **kwargs)
