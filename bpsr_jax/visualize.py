"""Looking inside a trained spiking MLP (the paper's Fig. 6).

* :func:`layer_spikes`: the spikes of every layer for one input;
* :func:`neuron_impact`: each hidden neuron's effect on the prediction (the drop of the
  predicted class's probability when the neuron is silenced: positive = it supports the
  prediction, the paper's green; negative = red);
* :func:`response_curves`: each neuron's output firing rate against the firing rate of
  one input channel (Bernoulli spikes on that channel, the others silent): low-pass,
  high-pass, band-pass or composite filters;
* :func:`class_probabilities`: ``softmax(k * spike counts)`` (eq. 5);
* :func:`plot_model`: all of it in one matplotlib figure.

Works on dense specs (``fc`` / ``r`` layers, e.g. ``"r18-fc8-fc5"``) fed with spikes
``[T, batch, F]``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bpsr_jax import losses
from bpsr_jax import models

Array = jax.Array

#: Bias that keeps a neuron below threshold whatever its input (silencing).
_SILENT_BIAS = -1e4


def layer_names(model: models.SNN) -> List[str]:
  """Parameter names of the spiking layers of a dense spec, in order (``["r0", "fc1",
  ...]``).

  Raises:
    ValueError: a spec with conv, pooling or residual layers.
  """
  specs = models.parse_spec(model.spec)
  if any(ls.kind not in ("fc", "r") for ls in specs):
    raise ValueError(f"visualize handles dense specs (fc / r layers) only, got "
                     f"{model.spec!r}")
  return [f"{ls.kind}{i}" for i, ls in enumerate(specs)]


def layer_spikes(model: models.SNN, params: Any, x: Array) -> List[np.ndarray]:
  """Spikes of every spiking layer, hidden ones then the output, ``[T, batch, N]`` each."""
  out, hidden = model.apply({"params": params}, jnp.asarray(x))
  return [np.asarray(s) for s in (*hidden, out)]


def class_probabilities(output_spikes: Array, k: Optional[float] = None) -> np.ndarray:
  """``softmax(k * sum_t s)``: ``[batch, classes]`` (eq. 5; default ``k = 10 / T``)."""
  return np.asarray(jax.nn.softmax(losses.spike_count_logits(jnp.asarray(output_spikes),
                                                             k), axis=-1))


def silence(params: Any, layer: str, neuron: int) -> Any:
  """A copy of ``params`` in which ``neuron`` of ``layer`` never fires."""
  p = jax.tree_util.tree_map(lambda a: a, params)
  p = {k: dict(v) for k, v in p.items()}
  p[layer]["bias"] = jnp.asarray(p[layer]["bias"]).at[neuron].set(_SILENT_BIAS)
  return p


def neuron_impact(model: models.SNN, params: Any, x: Array,
                  target: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Effect of each hidden neuron on the prediction for one input.

  Args:
    model: a dense-spec :class:`bpsr_jax.SNN`.
    params: its parameters.
    x: one input ``[T, 1, F]``.
    target: the class whose probability is watched (default: the predicted class).

  Returns:
    ``{layer name: [N]}``: ``p_target(all neurons) - p_target(neuron silenced)`` for
    every hidden layer.
  """
  x = jnp.asarray(x)
  if x.ndim != 3 or x.shape[1] != 1:
    raise ValueError(f"neuron_impact expects one input [T, 1, F], got {x.shape}")
  names = layer_names(model)
  base = class_probabilities(model.apply({"params": params}, x)[0])[0]
  target = int(np.argmax(base)) if target is None else int(target)
  out = {}
  for name in names[:-1]:
    n = np.shape(params[name]["bias"])[0]
    vals = []
    for i in range(n):
      p = class_probabilities(model.apply({"params": silence(params, name, i)}, x)[0])[0]
      vals.append(base[target] - p[target])
    out[name] = np.asarray(vals)
  return out


def response_curves(model: models.SNN, params: Any, num_inputs: int, time_steps: int,
                    rates: Sequence[float] = tuple(np.linspace(0, 1, 11)),
                    layer: int = 0, trials: int = 32, seed: int = 0) -> np.ndarray:
  """Output firing rate of each neuron of a layer against each input channel's rate.

  Channel ``c`` fires Bernoulli spikes with probability ``r`` per step, the others are
  silent.

  Args:
    model: a dense-spec :class:`bpsr_jax.SNN`.
    params: its parameters.
    num_inputs: input channels F.
    time_steps: T.
    rates: the input firing rates.
    layer: index of the spiking layer (0 = the first).
    trials: samples averaged per point.
    seed: seed of the input spikes.

  Returns:
    ``[num_inputs, len(rates), N]`` output firing rates.
  """
  key = jax.random.PRNGKey(seed)
  rates = np.asarray(rates, np.float32)
  c, r = np.meshgrid(np.arange(num_inputs), np.arange(len(rates)), indexing="ij")
  c, r = c.ravel(), r.ravel()
  prob = np.zeros((len(c), num_inputs), np.float32)
  prob[np.arange(len(c)), c] = rates[r]
  prob = np.repeat(prob, trials, axis=0)  # [C * R * trials, F]
  x = jax.random.bernoulli(key, jnp.asarray(prob),
                           (time_steps,) + prob.shape).astype(jnp.float32)
  s = layer_spikes(model, params, x)[layer]  # [T, C*R*trials, N]
  fr = s.mean(axis=0).reshape(num_inputs, len(rates), trials, -1).mean(axis=2)
  return fr


def plot_model(model: models.SNN, params: Any, x: Array, *, label: Optional[int] = None,
               class_names: Optional[Sequence[str]] = None,
               channel_names: Optional[Sequence[str]] = None, trials: int = 32,
               title: str = ""):
  """Fig. 6 for one input: input spikes, rasters coloured by impact, response curves of
  the first layer, class probabilities.

  Args:
    model: a dense-spec :class:`bpsr_jax.SNN`.
    params: its parameters.
    x: one input ``[T, 1, F]``.
    label: the true class, marked on the probabilities.
    class_names: names of the classes.
    channel_names: names of the input channels (legend of the response curves).
    trials: samples per point of the response curves.
    title: figure title.

  Returns:
    The matplotlib figure.
  """
  import matplotlib.pyplot as plt
  from matplotlib import gridspec
  x = jnp.asarray(x)
  T, _, F = x.shape
  names = layer_names(model)
  spikes = layer_spikes(model, params, x)
  impact = neuron_impact(model, params, x)
  probs = class_probabilities(spikes[-1])[0]
  curves = response_curves(model, params, F, T, trials=trials)
  n0 = curves.shape[-1]
  ncols = min(n0, 9)
  nrows = -(-n0 // ncols)
  fig = plt.figure(figsize=(13, 3.4 + 1.3 * nrows))
  gs = gridspec.GridSpec(2, 1, height_ratios=[3.2, 1.3 * nrows], figure=fig, hspace=0.35)
  top = gridspec.GridSpecFromSubplotSpec(1, len(spikes) + 2, subplot_spec=gs[0],
                                         wspace=0.35)

  def raster(ax, s, colors=None, name=""):
    t, i = np.nonzero(s[:, 0, :])
    c = "k" if colors is None else [colors[j] for j in i]
    ax.scatter(t, i, s=8, c=c, marker="|")
    ax.set_xlim(-0.5, s.shape[0] - 0.5)
    ax.set_ylim(-0.5, s.shape[2] - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron" if name else "channel")
    ax.set_title(name, fontsize=9)

  raster(fig.add_subplot(top[0]), np.asarray(x))
  fig.axes[-1].set_title("input spikes", fontsize=9)
  for j, (name, s) in enumerate(zip(names, spikes)):
    ax = fig.add_subplot(top[j + 1])
    cols = None
    if name in impact:
      cols = ["tab:green" if v >= 0 else "tab:red" for v in impact[name]]
    raster(ax, s, cols, f"{name} ({'output' if j == len(names) - 1 else 'green: + / red: -'})")
  ax = fig.add_subplot(top[-1])
  k = len(probs)
  ax.bar(range(k), probs, color=["tab:blue" if i != label else "tab:orange"
                                 for i in range(k)])
  ax.set_xticks(range(k), class_names if class_names else [str(i) for i in range(k)],
                fontsize=7, rotation=30)
  ax.set_ylabel("probability")
  ax.set_title("prediction" + (" (orange: true class)" if label is not None else ""),
               fontsize=9)
  bottom = gridspec.GridSpecFromSubplotSpec(nrows, ncols, subplot_spec=gs[1], wspace=0.1,
                                            hspace=0.4)
  rates = np.linspace(0, 1, curves.shape[1])
  for i in range(n0):
    ax = fig.add_subplot(bottom[i // ncols, i % ncols])
    for c in range(F):
      ax.plot(rates, curves[c, :, i], lw=1,
              label=channel_names[c] if channel_names else f"in {c}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{names[0]}[{i}]", fontsize=7, color="tab:green"
                 if impact.get(names[0], np.zeros(n0))[i] >= 0 else "tab:red")
    if i == 0:
      ax.legend(fontsize=5, loc="upper left")
  fig.text(0.5, 0.02, f"response curves of {names[0]}: output firing rate (0..1) vs "
           "input firing rate (0..1) of each channel", ha="center", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig
