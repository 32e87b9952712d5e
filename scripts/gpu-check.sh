#!/usr/bin/env bash
# The GPU check, unattended: set up and build, run the test suite with CUDA visible, then
# the CUDA tests (the `cuda::` module of tests/it, ignored by a plain `cargo test`, run
# here with --ignored), then `bench model` and `bench train --cache device` on CUDA in
# f32 and bf16 (with two or more GPUs, a data-parallel training run across the first two
# as well), distributed training and `bench train` under torchrun with one rank per GPU,
# and write everything to one report file.
#
#   GPU_CHECK_REPORT   the report (default: gpu-check-report.txt in the repository)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
report="${GPU_CHECK_REPORT:-$root/gpu-check-report.txt}"
: >"$report"
status=0

section() { printf '\n== %s\n' "$*" | tee -a "$report"; }
# Runs a command, appending its output to the report; a failure is recorded, not fatal.
run() {
  printf '$ %s\n' "$*" >>"$report"
  "$@" >>"$report" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "FAILED (exit $rc): $*" | tee -a "$report"; status=1; }
  return 0
}

section "machine"
run date -u
run uname -a
command -v nvidia-smi >/dev/null && run nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv
run lscpu

section "set-up and release build"
run bash scripts/setup.sh
. scripts/env.sh
fc="$root/target/release/flarecast"
run "$fc" --version
ngpu=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
echo "CUDA devices seen by nvidia-smi: $ngpu" | tee -a "$report"
# The binary opens libtorch_cuda itself where the driver is (src/device/cuda_runtime.rs).
if [ "$ngpu" -ge 1 ] && ! "$fc" --version | grep -q '^cuda: available'; then
  echo "FAILED: nvidia-smi sees $ngpu GPU(s), flarecast --version does not report CUDA available" | tee -a "$report"
  status=1
fi

section "tests (CUDA visible)"
run cargo test --locked
run cargo test --locked --test it cuda:: -- --ignored --nocapture

if [ "$ngpu" -ge 1 ]; then
  section "bench model on cuda (auto, f32, bf16)"
  run "$fc" bench model --device cuda --precision auto
  run "$fc" bench model --device cuda --precision f32,bf16 --iters 10 --warmup 3 --rounds 3

  section "bench train on cuda with the device cache (f32, bf16)"
  run "$fc" bench train --device cuda --cache device --precision f32,bf16 --batches 10 \
    --jpg "$FLARECAST_REALDATA/images/derived/HMI.m2022.08.02_10.47.53.jpg"

  if [ "$ngpu" -ge 2 ]; then
    section "data-parallel training across cuda:0 and cuda:1 (synthetic archive)"
    work="$(mktemp -d)"
    run "$fc" synth --out "$work/archive" --start 2014-03-01T00:00:00 --days 20 --cadence 6h --size 256 --seed 1
    run "$fc" label --catalog "$work/archive/catalog.csv" --images "$work/archive/images" --out "$work/labels" \
      --start 2014-03-01T00:00:00 --end 2014-03-19T18:00:00
    for p in f32 bf16; do
      run "$fc" train --fold 1 --attention --epochs 1 --batch-size 32 --device cuda:0,cuda:1 --precision $p \
        --cache device --images "$work/archive/images" --labels "$work/labels" --out "$work/models-$p"
    done
    rm -rf "$work"
  fi

  section "distributed training: torchrun, one rank per GPU ($ngpu), synthetic archive"
  run "$fc" --version
  work="$(mktemp -d)"
  run "$fc" synth --out "$work/archive" --start 2014-03-01T00:00:00 --days 20 --cadence 6h --size 256 --seed 1
  run "$fc" label --catalog "$work/archive/catalog.csv" --images "$work/archive/images" --out "$work/labels" \
    --start 2014-03-01T00:00:00 --end 2014-03-19T18:00:00
  run torchrun --standalone --nproc-per-node "$ngpu" --no-python "$fc" train --fold 1 --attention --epochs 2 \
    --batch-size 32 --devices auto --precision f32 --cache device --dist-timeout 5m \
    --images "$work/archive/images" --labels "$work/labels" --out "$work/models-dist"
  run torchrun --standalone --nproc-per-node "$ngpu" --no-python "$fc" train --fold 1 --attention --epochs 3 \
    --batch-size 32 --devices auto --precision f32 --cache device --dist-timeout 5m --resume \
    --images "$work/archive/images" --labels "$work/labels" --out "$work/models-dist"
  section "bench train under torchrun: the all-reduce's time per step and share ($ngpu ranks)"
  run torchrun --standalone --nproc-per-node "$ngpu" --no-python "$fc" bench train --device cuda --cache device \
    --precision f32 --batches 10 --jpg "$FLARECAST_REALDATA/images/derived/HMI.m2022.08.02_10.47.53.jpg"
  rm -rf "$work"
else
  section "no CUDA device: the GPU benchmarks were not run"
fi

section "result"
if [ $status -eq 0 ]; then echo "gpu-check: all steps passed" | tee -a "$report"; else echo "gpu-check: some steps failed (see above)" | tee -a "$report"; fi
echo "report: $report"
exit $status
