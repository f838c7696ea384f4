#!/usr/bin/env bash
# Every check `make test` and `pixi run test` perform, in order.  Expects the r1lit environment on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# Notebooks are the source of truth: exporting or cleaning them must not change the tree.
snapshot() { { git diff --binary -- nbs r1lit; git ls-files --others --exclude-standard -- nbs r1lit | sort | xargs -r sha1sum; } | sha1sum; }
check_step() {
  local name=$1; shift
  local before after; before=$(snapshot)
  "$@"
  after=$(snapshot)
  if [ "$before" != "$after" ]; then
    echo "FAIL: '$name' changed the tree; notebooks and r1lit/ disagree. Changed paths:" >&2
    git status --porcelain -- nbs r1lit >&2
    exit 1
  fi
  echo "ok: $name leaves the tree unchanged"
}
check_step nbdev_export nbdev_export
check_step nbdev_clean nbdev_clean

# Two notebooks run at once on two cores: one thread each, or torch oversubscribes and tiny models crawl.
echo "== notebook tests (nbdev_test; flags slow and gpu are skipped unless R1LIT_TEST_FLAGS names them)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} nbdev_test --n_workers "${R1LIT_NB_WORKERS:-2}" --timing ${R1LIT_TEST_FLAGS:+--flags "$R1LIT_TEST_FLAGS"}

echo "== integration tests (pytest tests/)"
set +e
python -m pytest tests -ra --durations=15 "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc
