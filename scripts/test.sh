#!/usr/bin/env bash
# Set up (cached libtorch) and run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-tests.sh
. scripts/env.sh
for d in "$FLARECAST_REALDATA" "$FLARECAST_GOLDEN"; do
  [ -d "$d" ] || { echo "test: $d is missing (the shared real data and golden outputs)" >&2; exit 1; }
done
# The tests run side by side, one per core, each libtorch with an OpenMP thread per core:
# threads spinning at a barrier (OpenMP's default way to wait) take the cores another test
# computes on. Waiting asleep cut two groups of tests' wall time by a quarter on a 2-core
# AMD EPYC (Zen 3): 75 -> 53 s and 57 -> 43 s, user time 116 -> 69 s and 90 -> 62 s.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cargo test --locked "$@"
