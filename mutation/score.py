"""Mutation score of a cosmic-ray session, skipped (filtered or unsampled) mutants excluded.

    python mutation/score.py losses.sqlite

Prints ``killed / run`` and the diff of every surviving mutant.
"""
import collections
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome


def main(path: str) -> None:
  with use_db(path, WorkDB.Mode.open) as db:
    counts = collections.Counter()
    survivors = []
    for item, result in db.completed_work_items:
      if result.worker_outcome == WorkerOutcome.SKIPPED:
        counts["skipped"] += 1
        continue
      if result.worker_outcome != WorkerOutcome.NORMAL:
        counts["incompetent"] += 1  # the mutant could not even be imported/run: killed
        continue
      if result.test_outcome == TestOutcome.SURVIVED:
        counts["survived"] += 1
        survivors.append((item, result))
      else:
        counts["killed"] += 1
    pending = sum(1 for _ in db.pending_work_items)
  run = counts["killed"] + counts["incompetent"] + counts["survived"]
  score = (counts["killed"] + counts["incompetent"]) / run if run else float("nan")
  print(f"{path}: score {score:.1%} ({run - counts['survived']} killed of {run} run; "
        f"{counts['skipped']} skipped, {pending} pending)")
  for item, result in survivors:
    m = item.mutations[0]
    print(f"\n--- survived: {m.operator_name} #{m.occurrence} at line {m.start_pos[0]}")
    print(result.diff)


if __name__ == "__main__":
  main(sys.argv[1])
