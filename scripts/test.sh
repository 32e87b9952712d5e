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
cargo test --locked "$@"
