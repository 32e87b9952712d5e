#!/usr/bin/env bash
# Set up what the test suite needs beyond the main job's set-up (scripts/setup.sh, run
# here without its release build): the reference packages the parity tests run beside
# torch (captum), Gloo's headers for the c10d shim the distributed tests exercise, and a
# one-node SLURM for the experiment executor's tests.
#
#   FLARECAST_VENV   the virtualenv scripts/setup.sh made (same default)
set -euo pipefail

TORCH_VERSION=2.13.0
# captum (the explanation methods' reference) and its dependencies; installed without
# dependency resolution so pip never replaces torch.
CAPTUM_VERSION=0.9.0
CAPTUM_DEPS="numpy==2.3.5 matplotlib==3.10.9 packaging==26.3 tqdm==4.70.1"
# torchvision (the reference of src/model/vision/'s architectures), the release built
# against torch 2.13; installed without its dependencies (torch, numpy and pillow, the
# last two already here for captum) so pip never replaces torch.
TORCHVISION_VERSION=0.28.0
VENV="${FLARECAST_VENV:-$HOME/.cache/flarecast/venv-torch-$TORCH_VERSION}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

FLARECAST_SKIP_BUILD=1 bash "$root/scripts/setup.sh"

have_torch() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}

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

# TensorBoard's reader (EventAccumulator), which the tests read train's event files
# with: the package and the two it needs for that (numpy and packaging come above), pinned
# and without dependency resolution so pip never replaces torch.
TENSORBOARD_VERSION=2.21.0
TENSORBOARD_DEPS="protobuf==6.33.6 absl-py==2.5.1"
have_tensorboard() {
  "$VENV/bin/python" -c "import tensorboard,sys; from tensorboard.backend.event_processing.event_accumulator import EventAccumulator; sys.exit(0 if tensorboard.__version__=='$TENSORBOARD_VERSION' else 1)" 2>/dev/null
}

if have_tensorboard; then
  echo "setup: tensorboard already in $VENV" >&2
else
  echo "setup: installing tensorboard's event reader into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps $TENSORBOARD_DEPS "tensorboard==$TENSORBOARD_VERSION"
  have_tensorboard && have_torch || { echo "setup: tensorboard did not install cleanly into $VENV" >&2; exit 1; }
fi

have_torchvision() {
  "$VENV/bin/python" -c "import torchvision,sys; sys.exit(0 if torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' else 1)" 2>/dev/null
}

if have_torchvision; then
  echo "setup: torchvision already in $VENV" >&2
else
  echo "setup: installing torchvision (the vision architectures' reference) into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "torchvision==$TORCHVISION_VERSION"
  have_torchvision && have_torch || { echo "setup: torchvision did not install cleanly into $VENV" >&2; exit 1; }
fi
