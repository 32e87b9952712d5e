#!/usr/bin/env bash
# Set up flarecast on a fresh machine for the main job: a cached Python virtualenv
# holding torch==2.13.0 (the libtorch that tch 0.26 links against), fonts for the plots,
# then a release build. What only the tests need (captum, Gloo's headers, SLURM) is
# scripts/setup-tests.sh's.
#
#   FLARECAST_VENV   where the virtualenv lives (default: ~/.cache/flarecast/venv-torch-2.13.0)
#   FLARECAST_SKIP_BUILD=1   only prepare the virtualenv
#
# Source it (`. scripts/env.sh`) or run it; it prints the environment to export.
set -euo pipefail

TORCH_VERSION=2.13.0
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

if have_torch; then
  echo "setup: torch $TORCH_VERSION already in $VENV" >&2
else
  echo "setup: installing torch==$TORCH_VERSION into $VENV (about a minute)" >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  have_torch || { echo "setup: torch $TORCH_VERSION did not install into $VENV" >&2; exit 1; }
fi

if [ "${FLARECAST_SKIP_BUILD:-0}" != 1 ]; then
  echo "setup: building flarecast (release)" >&2
  (cd "$root" && PATH="$VENV/bin:$PATH" LIBTORCH_USE_PYTORCH=1 cargo build --release --locked --bins)
fi
