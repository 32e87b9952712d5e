#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurm-wlm 22.05 and munge, as root,
# without systemd): for trying `flarecast experiment run --executor slurm` and for the
# tests that drive it.
#
#   scripts/slurm-local.sh install   apt-get the packages (slurmctld slurmd slurm-client munge)
#   scripts/slurm-local.sh start     start munged, slurmctld and slurmd; wait for the node to be idle
#   scripts/slurm-local.sh status    which daemons run, and sinfo
#   scripts/slurm-local.sh stop      stop the daemons this script started, by their pids
#
#   FLARECAST_SLURM_DIR   configuration, state, logs and pid files (default /tmp/flarecast-slurm)
#
# `start` prints `export SLURM_CONF=...`: sbatch, squeue and sinfo need it to find the cluster.
set -euo pipefail

dir="${FLARECAST_SLURM_DIR:-/tmp/flarecast-slurm}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
  command -v apt-get >/dev/null || die "install needs apt-get (Debian or Ubuntu)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

# A TCP port nobody listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

write_conf() {
  local host node ctld_port slurmd_port
  host="$(hostname -s)"
  node="$(slurmd -C | head -1)"
  ctld_port="$(free_port)"
  slurmd_port="$(free_port)"
  cat >"$conf" <<EOF
ClusterName=flarecast
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root (the daemons run as root, munged as munge)"
  for b in munged slurmctld slurmd sinfo sbatch; do
    command -v "$b" >/dev/null || die "$b is missing: run '$0 install' (or apt-get install slurmctld slurmd slurm-client munge)"
  done
  if alive "$dir/slurmctld.pid" || alive "$dir/slurmd.pid"; then
    die "already running from $dir (stop it first)"
  fi
  mkdir -p "$dir"
  rm -rf "$dir/state" "$dir/spool" "$dir/munge"
  mkdir -p "$dir/state" "$dir/spool"
  # munged of its own (socket, pid, log and seed under $dir/munge), so clusters in other
  # folders and a system munged are never touched. It runs as munge, in a folder it owns.
  install -d -o munge -g munge -m 0755 "$dir/munge"
  runuser -u munge -- munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
  [ -s "$dir/munge/munged.pid" ] || die "munged did not start (see $dir/munge/munged.log)"
  cp "$dir/munge/munged.pid" "$dir/munged.pid"
  write_conf
  slurmctld -f "$conf"
  slurmd -f "$conf"
  local state=""
  for _ in $(seq 120); do
    state="$(sinfo -h -o %T 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    say "the node is not idle after 60 s (state '${state:-none}'); logs: $dir/slurmctld.log $dir/slurmd.log"
    stop
    exit 1
  fi
  say "node $(hostname -s) idle; configuration $conf"
  echo "export SLURM_CONF=$conf"
}

# Stops the daemon whose pid file is $1: TERM, then KILL after 10 s.
stop_one() {
  local pidfile="$1" name="$2" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name ($pid) did not stop on TERM: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

stop() {
  stop_one "$dir/slurmd.pid" slurmd
  stop_one "$dir/slurmctld.pid" slurmctld
  stop_one "$dir/munged.pid" munged
}

status() {
  local up=0
  for d in munged slurmctld slurmd; do
    if alive "$dir/$d.pid"; then
      echo "$d: running ($(cat "$dir/$d.pid"))"
      up=1
    else
      echo "$d: not running"
    fi
  done
  if [ "$up" = 1 ] && [ -f "$conf" ]; then
    sinfo || true
  fi
}

case "${1:-}" in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
