#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests (tests/test_slurm*.py).
#   bash scripts/slurm_cluster.sh start   # install (apt) if missing, configure, start; idempotent, quiet on success
#   bash scripts/slurm_cluster.sh stop
#   bash scripts/slurm_cluster.sh status
# Needs root on Debian/Ubuntu (CI starts from a fresh machine as root). No systemd is
# assumed: the daemons are started directly.
# Settings known to run job arrays in containers without cgroup delegation:
# proctrack/linuxproc, task/none and a /run/munge folder owned by munge.
set -euo pipefail

ACTION=${1:-start}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
MARKER="# written by optlaw scripts/slurm_cluster.sh"

say() { echo "slurm_cluster: $*" >&2; }

cluster_up() {
  command -v sinfo >/dev/null 2>&1 || return 1
  timeout 10 scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  # The node must accept work (idle, mixed or allocated), not be down/drained.
  local state
  state=$(timeout 10 sinfo -h -N -o "%T" 2>/dev/null | head -1)
  case "$state" in idle*|mix*|alloc*|comp*) return 0 ;; *) return 1 ;; esac
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then say "SLURM is not installed and we are not root; install slurmctld slurmd slurm-client munge"; return 1; fi
  command -v apt-get >/dev/null || { say "no apt-get: install slurmctld slurmd slurm-client munge by hand"; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  # Leave 1 GB to the system; memory is not a consumable resource here (CR_Core).
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2/1024 - 1024}' /proc/meminfo)
  mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
  if [ -f "$CONF" ] && ! grep -q "$MARKER" "$CONF"; then
    say "$CONF exists and was not written by this script; leaving it alone"
    return 0
  fi
  cat >"$CONF" <<EOF
$MARKER
ClusterName=optlaw
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ReturnToService=2
JobRequeue=1
# Short waits so the tests' requeue/cancel cycles take seconds, not minutes.
KillWait=10
MinJobAge=30
MessageTimeout=20
SlurmdTimeout=60
MaxArraySize=10001
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  # Debian's slurm reads cgroup.conf only for cgroup plugins; an empty one silences a warning.
  [ -f "$CONF_DIR/cgroup.conf" ] || echo "CgroupPlugin=autodetect" >"$CONF_DIR/cgroup.conf"
}

start_munge() {
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
  fi
}

start_daemons() {
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  local host
  host=$(hostname -s)
  for _ in $(seq 1 30); do
    if cluster_up; then return 0; fi
    # A node left down by an earlier run (e.g. unexpected reboot) is brought back.
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
  done
  say "SLURM did not come up; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
  return 1
}

case "$ACTION" in
  start)
    if cluster_up; then exit 0; fi
    install_packages
    write_config
    start_munge
    start_daemons
    ;;
  stop)
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    ;;
  status)
    if cluster_up; then sinfo; else say "not running"; exit 1; fi
    ;;
  *)
    say "usage: $0 start|stop|status"; exit 2 ;;
esac
