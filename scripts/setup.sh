#!/usr/bin/env bash
# Set up flarecast on a fresh machine: a cached Python virtualenv holding
# torch==2.13.0 (the libtorch that tch 0.26 links against), then a release build.
#
#   FLARECAST_VENV   where the virtualenv lives (default: ~/.cache/flarecast/venv-torch-2.13.0)
#   FLARECAST_SKIP_BUILD=1   only prepare the virtualenv
#
# Source it (`. scripts/env.sh`) or run it; it prints the environment to export.
set -euo pipefail

TORCH_VERSION=2.13.0
# captum (the explanation methods' reference) and its dependencies; installed without
# dependency resolution so pip never replaces torch.
CAPTUM_VERSION=0.9.0
CAPTUM_DEPS="numpy==2.3.5 matplotlib==3.10.9 packaging==26.3 tqdm==4.70.1"
VENV="${FLARECAST_VENV:-$HOME/.cache/flarecast/venv-torch-$TORCH_VERSION}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

have_torch() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}

# Plots (plotters' ttf backend) need fontconfig and a font; the Rust image has them, a
# bare Debian may not.
if ! { command -v fc-list >/dev/null && [ -n "$(fc-list 2>/dev/null | head -1)" ] && pkg-config --exists fontconfig 2>/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing fontconfig and DejaVu fonts (for plots)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fontconfig libfontconfig1-dev fonts-dejavu-core >/dev/null
  else
    echo "setup: warning: fontconfig/fonts missing; install fontconfig, libfontconfig1-dev and fonts-dejavu-core" >&2
  fi
fi

# Distributed training (src/distributed/) compiles a small c10d shim against Gloo's
# headers, which the torch wheel does not ship; without them flarecast still builds, but
# `train` cannot join a process group (torchrun, srun).
if ! { [ -e /usr/include/gloo/config.h ] || [ -e /usr/local/include/gloo/config.h ] || [ -e "${GLOO_INCLUDE_DIR:-/nonexistent}/gloo/config.h" ]; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing libgloo-dev (distributed training)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgloo-dev >/dev/null
  else
    echo "setup: warning: Gloo headers missing (install libgloo-dev): distributed training will be unavailable" >&2
  fi
fi

# The SLURM executor's tests start a one-node cluster with scripts/slurm-local.sh, which
# needs Debian's SLURM daemons and munge.
if ! { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing slurmctld, slurmd, slurm-client and munge (the SLURM executor's tests)" >&2
    bash "$root/scripts/slurm-local.sh" install
  else
    echo "setup: warning: SLURM missing; as root, scripts/slurm-local.sh install (the SLURM executor's tests need it)" >&2
  fi
fi

if have_torch; then
  echo "setup: torch $TORCH_VERSION already in $VENV" >&2
else
  echo "setup: installing torch==$TORCH_VERSION into $VENV (about a minute)" >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  have_torch || { echo "setup: torch $TORCH_VERSION did not install into $VENV" >&2; exit 1; }
fi

have_captum() {
  "$VENV/bin/python" -c "import captum,sys; sys.exit(0 if captum.__version__=='$CAPTUM_VERSION' else 1)" 2>/dev/null
}

if have_captum; then
  echo "setup: captum already in $VENV" >&2
else
  echo "setup: installing captum (explanation references) into $VENV" >&2
  # matplotlib brings its own dependencies (none of them torch); captum itself comes
  # without its dependency list so torch stays the one pinned above.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $CAPTUM_DEPS
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "captum==$CAPTUM_VERSION"
  have_captum && have_torch || { echo "setup: captum did not install cleanly into $VENV" >&2; exit 1; }
fi

if [ "${FLARECAST_SKIP_BUILD:-0}" != 1 ]; then
  echo "setup: building flarecast (release)" >&2
  (cd "$root" && PATH="$VENV/bin:$PATH" LIBTORCH_USE_PYTORCH=1 cargo build --release --locked --bins)
fi
