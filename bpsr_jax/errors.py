"""Typed errors of bpsr_jax and the exit codes the experiment binaries map them to.

Every error the library raises for bad input, corrupt files or a run that cannot go on is
one of these, so that a binary can print one line (``str(error)``, which names the flag,
file, record or node) and exit with the code below; a traceback only with ``--debug``.

| exit code | error | meaning |
|---:|---|---|
| 0 | - | success |
| 1 | any other exception | a bug: report it (the traceback is printed) |
| 2 | `ConfigError` | a bad flag, setting or argument |
| 3 | `DivergenceError` | training diverged (non-finite loss, or the divergence rule); the last good checkpoint is kept |
| 4 | `DataError` | a missing, corrupt or inconsistent data file |
| 5 | `CheckpointError` | no valid checkpoint could be restored |
| 6 | `WorkdirError` | the workdir holds another run's files, or a resume would change a setting that must not change |
| 7 | `OSError` | the file system refused (read-only, full disk, permissions) |
"""


class BpsrError(Exception):
  """Base class of the errors bpsr_jax raises on purpose."""
  exit_code = 1


class ConfigError(BpsrError, ValueError):
  """A setting, flag or argument outside what is supported; the message names it."""
  exit_code = 2


class DivergenceError(BpsrError, FloatingPointError):
  """Training diverged; the run stopped and kept its last good checkpoint."""
  exit_code = 3


class DataError(BpsrError, ValueError):
  """A data file is missing, corrupt or inconsistent; the message names the file/record."""
  exit_code = 4


class CheckpointError(BpsrError):
  """No checkpoint in the directory could be restored and verified."""
  exit_code = 5


class WorkdirError(BpsrError):
  """The workdir holds another run, or a resume would change a fixed setting."""
  exit_code = 6


#: Exit code of an OSError (read-only workdir, full disk) in the binaries.
OS_ERROR_EXIT_CODE = 7


def exit_code(error: BaseException) -> int:
  """The documented exit code for ``error`` (see the module docstring)."""
  if isinstance(error, BpsrError):
    return error.exit_code
  if isinstance(error, OSError):
    return OS_ERROR_EXIT_CODE
  return 1
