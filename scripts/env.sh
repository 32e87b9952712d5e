# Source this (`. scripts/env.sh`) to build flarecast by hand with the cached libtorch
# that scripts/setup.sh installed.
FLARECAST_VENV="${FLARECAST_VENV:-$HOME/.cache/flarecast/venv-torch-2.13.0}"
export FLARECAST_VENV
export LIBTORCH_USE_PYTORCH=1
case ":$PATH:" in
  *":$FLARECAST_VENV/bin:"*) ;;
  *) export PATH="$FLARECAST_VENV/bin:$PATH" ;;
esac
# Tests and benchmarks read the shared real data and golden outputs from beside the repo.
_flarecast_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export FLARECAST_REALDATA="${FLARECAST_REALDATA:-$_flarecast_root/../shared/realdata}"
export FLARECAST_GOLDEN="${FLARECAST_GOLDEN:-$_flarecast_root/../shared/golden}"
unset _flarecast_root
