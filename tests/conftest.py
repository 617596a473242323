"""Shared pytest fixtures, the real-data summary line and the suite's XLA level.

The real datasets live in ``../shared/data`` beside the checkout (see that folder's
README). On a user's machine it is absent: tests that need it skip with a clear reason.
``BPSR_SHARED_DATA`` overrides the location.

Every run ends with one line counting the tests that use the real data (the
``shared_data`` fixture, directly or through another fixture): how many ran and how many
skipped. Under CI (``CI=true``) a missing data folder that made such tests skip fails the
run, unless ``BPSR_REQUIRE_SHARED_DATA=0`` (a CI without the data, e.g. a fork's).
"""
import collections
import os
import pathlib

import numpy as np
import pytest

# The suite is compile-bound: most tests build a small model, compile it and run it for a
# few steps. XLA's CPU backend at optimization level 0 compiles about twice as fast and
# computes the same values (its numerics are XLA's at every level; every test passes at
# both): the fast suite's test time fell from 2300 to 1544 s (2 workers, 2026-12-02).
# Set before JAX is imported (conftest runs first; workers inherit it). To run the suite
# at XLA's default level: XLA_FLAGS=--xla_backend_optimization_level=3 pytest ...
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

SHARED_DATA = pathlib.Path(
    os.environ.get(
        "BPSR_SHARED_DATA",
        pathlib.Path(__file__).resolve().parents[2] / "shared" / "data",
    )
)

_REAL_DATA_TESTS = set()  # node ids of the collected tests that use shared_data
_OUTCOMES = {}  # node id -> "passed" / "failed" / "skipped"


def _under_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _data_required() -> bool:
  return _under_ci() and os.environ.get("BPSR_REQUIRE_SHARED_DATA", "1") != "0"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path of the real-data folder; skips the test where it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent (set BPSR_SHARED_DATA)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def packaged_mnist():
  """The packaged MNIST main job (r1000-fc100-fc10) with inputs for it.

  Returns:
    `(params, x)`: the shipped parameters and the first 48 shipped test digits, rank-order
    coded by value over 10 steps, numpy float32 `[10, 48, 784]`.
  """
  import bpsr_jax  # pylint: disable=g-import-not-at-top
  from bpsr_jax import encode, pretrained  # pylint: disable=g-import-not-at-top
  params, _ = pretrained.load("mnist")
  _, test = bpsr_jax.data.load_mnist(limit=48)
  x = encode.rank_order(test.x.reshape(48, -1), 10, by="value", sample_ndim=1)
  return params, np.asarray(x)


@pytest.fixture(scope="session")
def packaged_mitbih():
  """The packaged MIT-BIH wide model (r128-fc64-fc5) with count inputs for it.

  Returns:
    `(params, x)`: the shipped parameters and seeded level-crossing counts like the
    MIT-BIH loader's (0..3 crossings a step), numpy float32 `[40, 24, 4]`.
  """
  from bpsr_jax import pretrained  # pylint: disable=g-import-not-at-top
  params, _ = pretrained.load("mitbih")
  rng = np.random.default_rng(0)
  x = rng.choice(4, size=(40, 24, 4), p=[0.8, 0.12, 0.05, 0.03]).astype(np.float32)
  return params, x


_MARK = ("real_data", True)  # carried by the test's reports (also from xdist workers)


def pytest_collection_finish(session):
  for item in session.items:  # after -k / -m deselection
    if "shared_data" in getattr(item, "fixturenames", ()):
      _REAL_DATA_TESTS.add(item.nodeid)
      item.user_properties.append(_MARK)


def pytest_runtest_logreport(report):
  # Under pytest-xdist the controller collects nothing: the workers' reports say which
  # tests use the real data.
  if _MARK in getattr(report, "user_properties", ()):
    _REAL_DATA_TESTS.add(report.nodeid)
  if report.nodeid not in _REAL_DATA_TESTS:
    return
  if report.failed:
    _OUTCOMES[report.nodeid] = "failed"
  elif report.skipped and _OUTCOMES.get(report.nodeid) != "failed":
    _OUTCOMES[report.nodeid] = "skipped"
  elif report.when == "call" and report.passed:
    _OUTCOMES.setdefault(report.nodeid, "passed")


def _summary() -> str:
  counts = collections.Counter(_OUTCOMES.values())
  ran = counts["passed"] + counts["failed"]
  where = SHARED_DATA if SHARED_DATA.is_dir() else f"{SHARED_DATA} (ABSENT)"
  return (f"real-data tests ({where}): {ran} ran ({counts['passed']} passed, "
          f"{counts['failed']} failed), {counts['skipped']} skipped, "
          f"of {len(_REAL_DATA_TESTS)} collected")


def pytest_terminal_summary(terminalreporter):
  missing = not SHARED_DATA.is_dir() and _REAL_DATA_TESTS
  terminalreporter.write_sep("=" if not missing else "!", _summary(),
                             red=bool(missing), bold=True)
  if missing and _data_required():
    terminalreporter.write_line(
        f"CI=true but the real data folder {SHARED_DATA} is absent: the real-data tests "
        "did not run; failing the run (set BPSR_SHARED_DATA, or BPSR_REQUIRE_SHARED_DATA=0 "
        "for a CI without the data).", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
  skipped = any(v == "skipped" for v in _OUTCOMES.values())
  if (not SHARED_DATA.is_dir() and skipped and _data_required()
      and exitstatus == pytest.ExitCode.OK):
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
