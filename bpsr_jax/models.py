"""Spiking networks from the paper's spec strings (Table 2 notation).

Grammar (tokens joined by ``-``)::

    fcN        flat spiking layer of N neurons
    rN         recurrent spiking layer of N neurons (flat + intra-layer synapses)
    CcK        conv layer, C output channels, K x K kernel, stride 1, SAME padding
    CcK/S      the same with stride S
    pK / aK    max / average pooling, window = stride = K (no neurons)
    [a-b-...]  residual block: the block input is added to the current of its last layer
    e<layer>   prefix of the first layer only: an encoding layer that receives the analog
               input (an image ``[batch, H, W, C]`` or a vector ``[batch, F]``, no time
               axis) at every one of the model's ``time_steps`` steps

Examples: ``"r1000-fc100-fc10"`` (MNIST rMLP), ``"8c5/2-16c5/2-fc10"`` (N-MNIST),
``"r18-fc8-fc5"`` (MIT-BIH) and the 11-layer residual CIFAR10 net
:data:`CIFAR10_RESNET11`.

The last layer must be ``fc`` or ``r``: its spike counts over the time window are the
class scores (eq. 5). Conv feature maps are flattened before the first dense layer.
"""
from __future__ import annotations

import dataclasses
import re
from typing import List, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from bpsr_jax import layers as L
from bpsr_jax import neuron
from bpsr_jax.errors import ConfigError

Array = jax.Array

#: The paper's 11-layer residual SNN for CIFAR10: an encoding conv, 4 residual blocks of
#: two conv layers each, and two dense layers (1 + 8 + 2 = 11 spiking layers).
CIFAR10_RESNET11 = (
    "e64c3-[64c3-64c3]-[128c3/2-128c3]-[256c3/2-256c3]-[256c3/2-256c3]-a4-fc256-fc10")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One parsed token of a spec string.

  Attributes:
    kind: ``"fc"``, ``"r"``, ``"conv"``, ``"maxpool"``, ``"avgpool"`` or ``"residual"``.
    size: neurons (fc, r), output channels (conv) or pooling window.
    kernel_size: conv kernel size.
    strides: conv stride.
    encoding: the layer receives the analog input at every step.
    inner: the layers of a residual block.
  """

  kind: str
  size: int = 0
  kernel_size: int = 0
  strides: int = 1
  encoding: bool = False
  inner: Tuple["LayerSpec", ...] = ()

  @property
  def has_neurons(self) -> bool:
    return self.kind in ("fc", "r", "conv", "residual")


_LAYER_RE = re.compile(
    r"^(?P<enc>e)?(?:"
    r"fc(?P<fc>\d+)|r(?P<r>\d+)|(?P<cout>\d+)c(?P<k>\d+)(?:/(?P<s>\d+))?|"
    r"p(?P<p>\d+)|a(?P<a>\d+))$")

_GRAMMAR = ("expected tokens like 'fc100', 'r1000', '8c5/2', 'p2', 'a2', a residual "
            "block '[16c3-16c3]' and an optional 'e' prefix on the first layer, joined "
            "by '-', ending with an 'fc' or 'r' layer (e.g. 'r1000-fc100-fc10')")


def _split_top(spec: str) -> List[str]:
  """Splits on '-' outside brackets; checks bracket balance."""
  tokens, depth, cur = [], 0, ""
  for ch in spec:
    if ch == "[":
      depth += 1
      if depth > 1:
        raise ConfigError(f"malformed model spec {spec!r}: nested residual blocks; "
                         + _GRAMMAR)
    elif ch == "]":
      depth -= 1
      if depth < 0:
        raise ConfigError(f"malformed model spec {spec!r}: unbalanced ']'; " + _GRAMMAR)
    if ch == "-" and depth == 0:
      tokens.append(cur)
      cur = ""
    else:
      cur += ch
  if depth != 0:
    raise ConfigError(f"malformed model spec {spec!r}: unbalanced '['; " + _GRAMMAR)
  tokens.append(cur)
  return tokens


def _parse_layer(token: str, spec: str) -> LayerSpec:
  m = _LAYER_RE.match(token)
  if not m:
    raise ConfigError(f"malformed model spec {spec!r}: bad token {token!r}; " + _GRAMMAR)
  enc = m.group("enc") is not None
  if m.group("fc"):
    ls = LayerSpec("fc", int(m.group("fc")), encoding=enc)
  elif m.group("r"):
    ls = LayerSpec("r", int(m.group("r")), encoding=enc)
  elif m.group("cout"):
    ls = LayerSpec("conv", int(m.group("cout")), int(m.group("k")),
                   int(m.group("s") or 1), encoding=enc)
  elif m.group("p"):
    ls = LayerSpec("maxpool", int(m.group("p")))
  else:
    ls = LayerSpec("avgpool", int(m.group("a")))
  if enc and ls.kind not in ("fc", "r", "conv"):
    raise ConfigError(f"malformed model spec {spec!r}: {token!r}: only fc, r and conv "
                     "layers can be encoding layers")
  if ls.size <= 0 or (ls.kind == "conv" and (ls.kernel_size <= 0 or ls.strides <= 0)):
    raise ConfigError(f"malformed model spec {spec!r}: {token!r} has a zero size")
  return ls


def parse_spec(spec: str) -> Tuple[LayerSpec, ...]:
  """Parses a model spec string into layer specs.

  Args:
    spec: e.g. ``"r1000-fc100-fc10"`` (see the module docstring for the grammar).

  Returns:
    The layers in order.

  Raises:
    ConfigError: (a ValueError) a spec that is not a string, or a malformed one, naming
      the bad token and the expected grammar.
  """
  if not isinstance(spec, str):
    raise ConfigError(f"model spec must be a string like \"r1000-fc100-fc10\", got "
                      f"{type(spec).__name__} {spec!r}")
  if not spec.strip():
    raise ConfigError(f"malformed model spec {spec!r}: empty; " + _GRAMMAR)
  spec = spec.strip().replace(" ", "")
  out = []
  for i, token in enumerate(_split_top(spec)):
    if not token:
      raise ConfigError(f"malformed model spec {spec!r}: empty token (a stray '-'); "
                       + _GRAMMAR)
    if token.startswith("["):
      if not token.endswith("]") or len(token) < 3:
        raise ConfigError(f"malformed model spec {spec!r}: bad residual block {token!r}; "
                         + _GRAMMAR)
      inner = tuple(_parse_layer(t, spec) for t in token[1:-1].split("-"))
      if any(not t.has_neurons or t.encoding for t in inner):
        raise ConfigError(f"malformed model spec {spec!r}: a residual block holds only "
                         f"fc, r or conv layers, got {token!r}")
      kinds = {t.kind == "conv" for t in inner}
      if len(kinds) != 1:
        raise ConfigError(f"malformed model spec {spec!r}: a residual block is all conv "
                         f"or all dense, got {token!r}")
      out.append(LayerSpec("residual", inner=inner))
    else:
      ls = _parse_layer(token, spec)
      if ls.encoding and i != 0:
        raise ConfigError(f"malformed model spec {spec!r}: the encoding layer "
                         f"{token!r} must come first")
      out.append(ls)
  if out[-1].kind not in ("fc", "r"):
    raise ConfigError(f"malformed model spec {spec!r}: the output layer must be 'fc' or "
                     f"'r' (its spike counts are the class scores), got {out[-1].kind!r}")
  seen_dense = False
  for ls in out:
    is_conv = ls.kind in ("conv", "maxpool", "avgpool") or (
        ls.kind == "residual" and ls.inner[0].kind == "conv")
    if is_conv and seen_dense:
      raise ConfigError(f"malformed model spec {spec!r}: conv/pool layers must come "
                       "before the dense layers")
    seen_dense = seen_dense or not is_conv
  return tuple(out)


class SNN(nn.Module):
  """A spiking network built from a spec string.

  Attributes:
    spec: the model spec, e.g. ``"r1000-fc100-fc10"``.
    threshold: firing threshold of every neuron.
    alpha: surrogate width.
    gradient: ``"bpsr"``, ``"band"`` or ``"autodiff"`` (see :func:`bpsr_jax.lif`).
    band_width: the band of ``gradient="band"`` (see :func:`bpsr_jax.lif`).
    time_steps: T, required when the first layer is an encoding layer.
    tau_init: initial leak factor (the paper: 0.5).
    bias_high: biases are initialized from ``U(0, bias_high)`` (the paper: 1.0).
    weight_gain: dense kernels are ``N(0, weight_gain / sqrt(fan_in))``.
    binary_input: the input ``[T, batch, ...]`` is known to be spikes in {0, 1} (rate
      or rank-order coded); the first layer then uses the spike-input products
      (booleans kept for the backward, sparse products where they pay).
  """

  spec: str
  threshold: float = 1.0
  alpha: float = neuron.DEFAULT_ALPHA
  gradient: str = "bpsr"
  band_width: float = neuron.DEFAULT_BAND_WIDTH
  time_steps: Optional[int] = None
  tau_init: float = 0.5
  bias_high: float = 1.0
  weight_gain: float = 1.0
  binary_input: bool = False

  def _make(self, ls: LayerSpec, name: Optional[str] = None, *, binary_input: bool = False,
            **extra):
    common = dict(**extra, threshold=self.threshold, alpha=self.alpha, gradient=self.gradient,
                  band_width=self.band_width, tau_init=self.tau_init,
                  bias_init=L.uniform(0.0, self.bias_high),
                  spike_input=binary_input and self.gradient in ("bpsr", "band"))
    if ls.kind == "conv":
      return L.Conv(features=ls.size, kernel_size=ls.kernel_size, strides=ls.strides,
                    encoding=ls.encoding, time_steps=self.time_steps, name=name, **common)
    return L.Dense(features=ls.size, recurrent=ls.kind == "r", encoding=ls.encoding,
                   time_steps=self.time_steps if ls.encoding else None,
                   kernel_init=L.normal_fan_in(self.weight_gain), name=name, **common)

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Tuple[Array, ...]]:
    """Runs the network.

    Args:
      x: time-major input spikes ``[T, batch, ...]`` (``[T, batch, H, W, C]`` for conv
        nets, ``[T, batch, F]`` for dense ones; extra feature dims are flattened); or, for
        a net whose first layer is an encoding layer, the analog input ``[batch, ...]``.

    Returns:
      ``(output_spikes, hidden_spikes)``: the output layer's spikes ``[T, batch,
      classes]`` and a tuple with the spikes of every hidden spiking layer (residual
      blocks contribute each inner layer), in order, excluding the input and output.
    """
    specs = parse_spec(self.spec)
    hidden = []
    h = x
    first_dense = True
    binary = self.binary_input  # is h known to be 0/1 spikes
    for i, ls in enumerate(specs):
      if ls.kind in ("fc", "r"):
        if first_dense:
          lead = 1 if ls.encoding else 2
          if h.ndim < lead + 1:
            raise ValueError(
                f"input of shape {tuple(h.shape)} is too small for {self.spec!r}: "
                + ("expected [batch, features] analog input for the encoding layer"
                   if ls.encoding else "expected [T, batch, features] spikes"))
          h = h.reshape(h.shape[:lead] + (-1,))
          first_dense = False
        h = self._make(ls, name=f"{ls.kind}{i}", binary_input=binary)(h)
        binary = True
      elif ls.kind == "conv":
        want = 4 if ls.encoding else 5
        if h.ndim != want:
          raise ValueError(
              f"conv layer {i} of {self.spec!r} expects "
              + ("an analog image [batch, H, W, C]" if ls.encoding
                 else "spikes [T, batch, H, W, C]")
              + f", got shape {tuple(h.shape)}")
        h = self._make(ls, name=f"conv{i}", binary_input=binary)(h)
        binary = True
      elif ls.kind in ("maxpool", "avgpool"):
        h = L.Pool(ls.size, "max" if ls.kind == "maxpool" else "avg",
                   name=f"pool{i}")(h)
        binary = binary and ls.kind == "maxpool"
        continue
      else:  # residual
        # parent=None: the inner layers are adopted by (and named inside) the block.
        block = L.Residual(
            [self._make(t, name=f"{t.kind}{j}", parent=None,
                        binary_input=binary if j == 0 else True)
             for j, t in enumerate(ls.inner)], name=f"res{i}")
        h, inner = block(h)
        binary = True
        hidden.extend(inner)
        continue
      hidden.append(h)
    return h, tuple(hidden[:-1])
