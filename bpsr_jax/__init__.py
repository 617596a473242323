"""bpsr_jax: sparse spiking neural networks in JAX with BPSR.

Backpropagation with sparsity regularization (Yan et al., Frontiers in Neuroscience
2022): heterogeneous LIF neurons trained with an iterative reverse-scan gradient, spike
and weight sparsity terms, and synaptic rewiring as an optax transformation.

All spike tensors are time-major: ``[T, batch, ...features]``.
"""
from bpsr_jax import analysis
from bpsr_jax import checkpoint
from bpsr_jax import config
from bpsr_jax import constraints
from bpsr_jax import data
from bpsr_jax import encode
from bpsr_jax import errors
from bpsr_jax import event
from bpsr_jax import flops
from bpsr_jax import inference
from bpsr_jax import layers
from bpsr_jax import loading
from bpsr_jax import losses
from bpsr_jax import metrics
from bpsr_jax import models
from bpsr_jax import monitor
from bpsr_jax import neuron
from bpsr_jax import nir_io
from bpsr_jax import optim
from bpsr_jax import parallel
from bpsr_jax import pretrained
from bpsr_jax import quantize
from bpsr_jax import rewiring
from bpsr_jax import spmm
from bpsr_jax import steps
from bpsr_jax import stream
from bpsr_jax import train
from bpsr_jax import visualize
from bpsr_jax import workdir
from bpsr_jax.analysis import significance_profile
from bpsr_jax.constraints import clamp, project_params, validate_params
from bpsr_jax.event import EventNet
from bpsr_jax.inference import Predictor
from bpsr_jax.layers import Conv, Dense, Pool, Residual
from bpsr_jax.loading import load
from bpsr_jax.losses import (spike_count_cross_entropy, spike_count_logits, spike_l2,
                             weight_l1)
from bpsr_jax.metrics import measure
from bpsr_jax.models import CIFAR10_RESNET11, SNN, parse_spec
from bpsr_jax.neuron import DEFAULT_ALPHA, DEFAULT_BAND_WIDTH, lif, spike, surrogate
from bpsr_jax.nir_io import from_nir, read_nir, to_nir, write_nir
from bpsr_jax.integer import integer_apply, integer_leak
from bpsr_jax.quantize import (DEFAULT_TAU_TERMS, QuantInfo, dequantize_params,
                               quantize_params, round_tau, storage_report)
from bpsr_jax.rewiring import (RewireState, SynapseCoordinates, apply_mask, count_synapses,
                               find_rewire_states, init_coordinates, rewire, rewire_masks,
                               synapse_counts)
from bpsr_jax.checkpoint import final_params
from bpsr_jax.config import TrainConfig
from bpsr_jax.optim import make_optimizer
from bpsr_jax.parallel import make_mesh
from bpsr_jax.steps import TrainState
from bpsr_jax.stream import Stream
from bpsr_jax.train import NonFiniteLossError, fit

__version__ = "0.1.0"
