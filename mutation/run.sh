#!/usr/bin/env bash
# Mutation testing of one core module with cosmic-ray (see docs/mutation.md).
#
#   pip install -e ".[mutation]"
#   bash mutation/run.sh losses            # every mutant of bpsr_jax/losses.py
#   bash mutation/run.sh neuron 40         # a seeded random sample of 40 mutants
#
# cosmic-ray rewrites the module in place while it runs, so the run happens in a scratch
# copy of the tree ($MUTATION_DIR, default /tmp/bpsr_mutation_<module>); the session
# (<module>.sqlite) and the report stay there. Prints the survival rate and the
# surviving mutants' diffs.
set -euo pipefail
module="$1"; sample="${2:-}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTATION_DIR:-/tmp/bpsr_mutation_$module}"
rm -rf "$work"; mkdir -p "$work"
cp -r "$root/bpsr_jax" "$root/tests" "$root/mutation" "$root/pyproject.toml" "$work/"
# The real data beside the checkout, for the tests that use it.
export BPSR_SHARED_DATA="${BPSR_SHARED_DATA:-$(dirname "$root")/shared/data}"
cd "$work"
cosmic-ray init "mutation/$module.toml" "$module.sqlite"
cr-filter-operators "$module.sqlite" "mutation/$module.toml"
if [ -n "$sample" ]; then python mutation/sample.py "$module.sqlite" "$sample"; fi
cosmic-ray exec "mutation/$module.toml" "$module.sqlite"
python mutation/score.py "$module.sqlite"
