"""Process set-up of the experiment binaries: glibc malloc thresholds for training.

glibc serves a request of 128 KiB or more (its default mmap threshold) with a fresh
``mmap`` and returns it to the kernel on ``free``; XLA's CPU buffers of a training step
(``[T * batch, N]`` currents, potentials, deltas: megabytes each) are then mapped,
page-faulted and zeroed anew in every step. Raising the mmap and trim thresholds makes
malloc keep such buffers in its heap and reuse them, which is what
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` achieved for the README's benchmarks, without an
environment variable.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: Largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
TOP_PAD = 64 << 20


def tune_malloc() -> bool:
  """Raises glibc's mmap/trim thresholds and top pad so that freed step buffers are reused.

  Call it once at start-up, before the large allocations. A no-op (returning False) where
  the C library is not glibc.

  Returns:
    True when all three settings were accepted.
  """
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
  ok &= mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
  ok &= mallopt(_M_TOP_PAD, TOP_PAD)
  return bool(ok)
