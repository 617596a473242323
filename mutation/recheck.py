"""Re-runs a session's surviving mutants against the current tests.

    python mutation/recheck.py mutation/losses.toml /tmp/bpsr_mutation_losses/losses.sqlite

For each mutant that survived in the session, applies its diff to a scratch copy of this
tree (bpsr_jax/ and tests/), runs the module's test command there and prints whether the
current tests kill it. Use it after adding tests for the survivors listed in
docs/mutation.md.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from cosmic_ray.config import load_config
from cosmic_ray.testing import run_tests
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(config_path: str, session: str) -> None:
  config = load_config(config_path)
  with use_db(session, WorkDB.Mode.open) as db:
    survivors = [(item, result) for item, result in db.completed_work_items
                 if result.worker_outcome == WorkerOutcome.NORMAL
                 and result.test_outcome == TestOutcome.SURVIVED]
  still = 0
  for item, result in survivors:
    m = item.mutations[0]
    with tempfile.TemporaryDirectory() as tmp:
      for name in ("bpsr_jax", "tests"):
        shutil.copytree(ROOT / name, pathlib.Path(tmp) / name)
      shutil.copy(ROOT / "pyproject.toml", tmp)
      diff = result.diff if result.diff.endswith("\n") else result.diff + "\n"
      subprocess.run(["patch", "-p1", "--quiet"], input=diff, text=True, cwd=tmp,
                     check=True)
      outcome, _ = _run_in(tmp, config)
    killed = outcome != TestOutcome.SURVIVED
    still += not killed
    print(f"{'killed  ' if killed else 'SURVIVES'} {m.operator_name} #{m.occurrence} "
          f"line {m.start_pos[0]}")
  print(f"{len(survivors) - still} of {len(survivors)} former survivors killed now")


def _run_in(directory, config):
  """cosmic-ray's own test runner, in ``directory`` (it runs in the working directory)."""
  here = os.getcwd()
  os.chdir(directory)
  try:
    return run_tests(config.test_command, config.timeout)
  finally:
    os.chdir(here)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
