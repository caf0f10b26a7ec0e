#!/usr/bin/env bash
# The test command: build (or reuse) the real control plane and S3 binaries, run the
# static checks, then the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
bash scripts/build-binaries.sh
bash scripts/build-promtool.sh
echo "== binaries ready after $(( $(date +%s) - t0 ))s"

echo "== static checks"
ruff check operator services tests bench
ruff format --check operator services tests bench
lint-imports
hanlin crds check
mypy

echo "== tests"
# pytest exits 5 when it collected nothing: that is a failure here, as is any other non-zero.
set +e
python3 -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
echo "== total $(( $(date +%s) - t0 ))s"
exit "$rc"
