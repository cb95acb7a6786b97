#!/usr/bin/env bash
# Stop the cluster started by .ci/slurm-up.sh: kill exactly the daemons whose pids it recorded
# in ${SLURM_TMP:-/tmp/nfield-slurm}/pids (a munged it merely reused is not in there).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
T="$(realpath -m "${SLURM_TMP:-/tmp/nfield-slurm}")"   # slurm.conf needs absolute paths
[ -f "$T/pids" ] || { echo "slurm-down: nothing recorded in $T/pids" >&2; exit 0; }
# Same test as slurm-up.sh: never signal a reused pid; a zombie has already exited.
alive() {
  grep -qxE 'slurmctld|slurmd|munged' "/proc/$1/comm" 2>/dev/null &&
    ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}
live() { left=(); for p in "$@"; do if alive "$p"; then left+=("$p"); fi; done; }
mapfile -t pids <"$T/pids"
live "${pids[@]}"
[ ${#left[@]} -eq 0 ] || kill "${left[@]}" 2>/dev/null || true
# Give them 10 s to exit cleanly (slurmctld saves state), then force.
for _ in $(seq 20); do
  live "${left[@]}"; [ ${#left[@]} -eq 0 ] && break
  sleep 0.5
done
[ ${#left[@]} -eq 0 ] || kill -9 "${left[@]}" 2>/dev/null || true
# They are not our children, so PID 1 reaps them; wait (briefly) so that a `pgrep` right after
# this script does not see <defunct> entries.
gone() { for p in "$@"; do [ ! -e "/proc/$p" ] || return 1; done; }
for _ in $(seq 20); do gone "${pids[@]}" && break; sleep 0.25; done
rm -f "$T/pids" "$T/env"
echo "slurm-down: stopped ${pids[*]}" >&2
