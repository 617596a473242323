"""Keeps a seeded random sample of a cosmic-ray session's pending mutants.

    python mutation/sample.py mutation/neuron.sqlite 40

marks every other pending mutant SKIPPED ("not sampled"), so that ``cosmic-ray exec``
runs only the sample; the score of the sample estimates the module's score (see
docs/mutation.md). Run it after ``cr-filter-operators``.
"""
import random
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkResult, WorkerOutcome


def main(path: str, size: int, seed: int = 0) -> None:
  with use_db(path, WorkDB.Mode.open) as db:
    pending = sorted(item.job_id for item in db.pending_work_items)
    keep = set(random.Random(seed).sample(pending, min(size, len(pending))))
    for job_id in pending:
      if job_id not in keep:
        db.set_result(job_id, WorkResult(output="not sampled",
                                          worker_outcome=WorkerOutcome.SKIPPED))
  print(f"{path}: kept {len(keep)} of {len(pending)} pending mutants")


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
