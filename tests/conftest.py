"""Shared pytest fixtures.

The real datasets live in ``../shared/data`` beside the checkout (see that folder's
README). On a user's machine it is absent: tests that need it skip with a clear reason.
``BPSR_SHARED_DATA`` overrides the location.
"""
import os
import pathlib

import pytest

SHARED_DATA = pathlib.Path(
    os.environ.get(
        "BPSR_SHARED_DATA",
        pathlib.Path(__file__).resolve().parents[2] / "shared" / "data",
    )
)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path of the real-data folder; skips the test where it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent (set BPSR_SHARED_DATA)")
  return SHARED_DATA
