"""Datasets of the BPSR paper: MNIST, N-MNIST, CIFAR10, MIT-BIH and gas sensor arrays.

Every loader returns `(train, test)` `Dataset`s, sample-major (`x [N, ...]`, int32
`y [N]`): `kind="analog"` data (images, gas features in `[0, 1]`) are encoded to
spikes in the train step (`bpsr_jax.encode`); `kind="spikes"` data (N-MNIST frames,
MIT-BIH level crossings) are stored as uint8 `[N, T, ...]` spike trains and go
time-major with `to_time_major`. Batches: `batch_indices` (deterministic from
`(seed, epoch)`), `get_batch` or `iterate_batches`.

Each loader reads the dataset's original files from a directory (no network); the
online routes are TFDS (`source="tfds"`), tonic's download and `wfdb.dl_database`
(`download=True`). The optional libraries (tensorflow-datasets, tonic, wfdb) are
imported only when used.
"""

from bpsr_jax.data.cifar10 import load_cifar10
from bpsr_jax.data.cifar10 import read_cifar10_bin
from bpsr_jax.data.common import batch_indices
from bpsr_jax.data.common import Dataset
from bpsr_jax.data.common import fit_normalizer
from bpsr_jax.data.common import get_batch
from bpsr_jax.data.common import iterate_batches
from bpsr_jax.data.common import stratified_split
from bpsr_jax.data.common import to_time_major
from bpsr_jax.data.gas import load_gas_drift
from bpsr_jax.data.gas import load_gas_open_sampling
from bpsr_jax.data.mitbih import load_mitbih
from bpsr_jax.data.mnist_loader import load_mnist
from bpsr_jax.data.mnist_loader import read_idx
from bpsr_jax.data.nmnist import load_nmnist

__all__ = [
    "Dataset",
    "batch_indices",
    "fit_normalizer",
    "get_batch",
    "iterate_batches",
    "load_cifar10",
    "load_gas_drift",
    "load_gas_open_sampling",
    "load_mitbih",
    "load_mnist",
    "load_nmnist",
    "read_cifar10_bin",
    "read_idx",
    "stratified_split",
    "to_time_major",
]
