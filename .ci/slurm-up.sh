#!/usr/bin/env bash
# Bring up a throwaway one-node Slurm cluster (Debian's slurm-wlm + munge, no systemd) so CI and
# tests can submit real job arrays with sbatch.
#
# Usage (run it, do not source it; it prints the one line a caller must eval):
#     slurm_env="$(.ci/slurm-up.sh)"; eval "$slurm_env"   # exports SLURM_CONF=...
# (Two steps on purpose: a bare `eval "$(...)"` hides the script's failure from `set -e`.)
#     ...sbatch / squeue / scontrol / sinfo...
#     .ci/slurm-down.sh             # kills the daemons by the pids recorded in $SLURM_TMP/pids
# Everything (config, state, spool, logs, pids, env) lives in ${SLURM_TMP:-/tmp/nfield-slurm};
# $SLURM_TMP/env holds the same export line for processes that cannot eval.
# Idempotent: if the recorded daemons are still alive it only prints the export line again.
# Only the export line goes to stdout; progress and errors go to stderr.
set -euo pipefail

# The daemons must run as root (SlurmUser=root); re-run the whole script under sudo otherwise.
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi

T="$(realpath -m "${SLURM_TMP:-/tmp/nfield-slurm}")"   # slurm.conf needs absolute paths
CONF="$T/slurm.conf"
log() { echo "slurm-up: $*" >&2; }
# A recorded pid counts only if it is still one of our daemons and not a zombie (PID 1 here may
# reap late, and pids get reused).
alive() {
  [ -n "${1:-}" ] && grep -qxE 'slurmctld|slurmd|munged' "/proc/$1/comm" 2>/dev/null &&
    ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

if [ -f "$T/pids" ]; then
  # shellcheck disable=SC2046  # the file holds one pid per line
  set -- $(cat "$T/pids")
  if [ $# -ge 2 ] && alive "$1" && alive "$2" && { [ $# -lt 3 ] || alive "$3"; }; then
    log "already running (pids $*)"; cat "$T/env"; exit 0
  fi
  log "stale pid file, restarting"; "$(dirname "$0")/slurm-down.sh" >&2 || true
fi

if [ "$(command -v sbatch slurmctld slurmd munged | wc -l)" -ne 4 ]; then
  log "installing slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# Fresh state each start: a recovered job table from an earlier run would only confuse tests.
rm -rf "$T/state" "$T/spool" "$T/log"; mkdir -p "$T/state" "$T/spool" "$T/log"
chmod 755 "$T"   # non-root submitters must read slurm.conf

# --- munge: Slurm's authentication. Reuse a munged that already answers (e.g. the system's).
munge_pid=""
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge
  rm -f /run/munge/munged.pid
  install -o munge -g munge -m 0600 /dev/null "$T/log/munged.log"
  runuser -u munge -- munged --force --log-file="$T/log/munged.log" </dev/null >&2
  munge_pid="$(cat /run/munge/munged.pid)"
fi

# --- slurm.conf. Ports: first free pair at/after the defaults (a bash connect succeeds = taken).
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=6817; while in_use "$port" || in_use $((port + 1)); do port=$((port + 2)); done
host="$(hostname -s)"
# slurmd -C reports what slurmd will measure; ask for 2% less memory so the node is never
# drained for "Low RealMemory" when free memory wobbles.
node="$(slurmd -C | awk 'NR == 1 {
  for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) { split($i, a, "="); $i = "RealMemory=" int(a[2] * 0.98) }
  print }')"
# Addresses are pinned to 127.0.0.1: the short hostname need not resolve on a CI runner.
cat >"$CONF" <<EOF
ClusterName=nfield
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
# No cgroups: works in containers/gVisor and needs no cgroup.conf.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
# Per-core allocation so one-CPU array tasks share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 "$CONF"
echo "export SLURM_CONF=$CONF" >"$T/env"
export SLURM_CONF="$CONF"

# setsid + redirected fds: the daemons must outlive this script and must not hold the
# caller's $(...) pipe open.
setsid slurmctld -D -f "$CONF" </dev/null >>"$T/log/slurmctld.out" 2>&1 &
ctld_pid=$!
setsid slurmd -D -f "$CONF" </dev/null >>"$T/log/slurmd.out" 2>&1 &
d_pid=$!
printf '%s\n' "$ctld_pid" "$d_pid" ${munge_pid:+"$munge_pid"} >"$T/pids"

timeout="${SLURM_UP_TIMEOUT:-60}"
for _ in $(seq "$timeout"); do
  state="$(sinfo -h -o %T 2>/dev/null || true)"
  [ "$state" = idle ] && break
  if ! alive "$ctld_pid" || ! alive "$d_pid"; then break; fi
  sleep 1
done
if [ "${state:-}" != idle ]; then
  log "node did not become idle within $timeout s (state: '${state:-}'); logs:"
  tail -n 20 "$T"/log/munged.log "$T"/log/*.out >&2 || true   # *.out = stderr, incl. fatal errors
  "$(dirname "$0")/slurm-down.sh" >&2 || true
  exit 1
fi
log "up: $(sinfo -h -o '%N %c CPUs %m MB %T') (slurm $(slurmd -V | awk '{print $2}'), port $port)"
cat "$T/env"
