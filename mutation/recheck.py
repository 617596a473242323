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

import cosmic_ray.plugins
from cosmic_ray.config import load_config
from cosmic_ray.mutating import apply_mutation
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
      _mutate(tmp, m, result.diff)
      outcome, _ = _run_in(tmp, config)
    killed = outcome != TestOutcome.SURVIVED
    still += not killed
    print(f"{'killed  ' if killed else 'SURVIVES'} {m.operator_name} #{m.occurrence} "
          f"line {m.start_pos[0]}")
  print(f"{len(survivors) - still} of {len(survivors)} former survivors killed now")


def _mutate(directory, mutation, diff):
  """Applies the mutant's diff; if it does not apply (cosmic-ray's diffs of a file's last
  line can carry a spurious blank line), applies the mutation itself with cosmic-ray's
  operator and occurrence, which hold while the module's source is unchanged."""
  diff = diff if diff.endswith("\n") else diff + "\n"
  done = subprocess.run(["patch", "-p1", "--quiet", "--dry-run"], input=diff, text=True,
                        cwd=directory, capture_output=True)
  if done.returncode == 0:
    subprocess.run(["patch", "-p1", "--quiet"], input=diff, text=True, cwd=directory,
                   check=True)
    return
  operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(
      **(mutation.operator_args or {}))
  path = pathlib.Path(directory) / mutation.module_path
  original, mutated = apply_mutation(path, operator, mutation.occurrence)
  if mutated is None or mutated == original:
    raise RuntimeError(f"could not apply {mutation.operator_name} #{mutation.occurrence}")


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
