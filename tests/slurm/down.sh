#!/usr/bin/env bash
# Stop the one-node Slurm cluster of tests/slurm/up.sh: cancel its jobs, wait for them to end, stop slurmd,
# slurmctld and munged (by the pids in their pid files) and remove $SLURM_TEST_DIR. Idempotent: nothing up,
# nothing done. SLURM_KEEP_LOGS=1 keeps the folder (config and logs) for a post-mortem.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF="$SLURM_CONF_FILE"

cancel_jobs() {
    local deadline=$((SECONDS + 60))
    scancel --full --user="$(id -un)" 2>/dev/null || true
    # slurmstepd outlives slurmd: wait for the jobs to be gone before stopping the daemons
    while ((SECONDS < deadline)) && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; do
        sleep 1
    done
}

stop() {  # stop NAME: SIGTERM to the pid in its pid file, SIGKILL after 15 s
    alive "$1" || return 0
    local pid deadline=$((SECONDS + 15))
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 0  # it exited since alive() looked
    kill -TERM "$pid" 2>/dev/null || true
    while ((SECONDS < deadline)) && alive "$1"; do
        sleep 0.5
    done
    if alive "$1"; then
        say "$1 ($pid) ignored SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

main() {
    if ! [[ -d $SLURM_TEST_DIR ]]; then
        say "nothing to stop ($SLURM_TEST_DIR does not exist)"
        return 0
    fi
    if alive slurmctld; then
        cancel_jobs
    fi
    local i
    for ((i = ${#SLURM_DAEMONS[@]} - 1; i >= 0; i--)); do
        stop "${SLURM_DAEMONS[i]}"
    done
    if [[ ${SLURM_KEEP_LOGS:-0} == 1 ]]; then
        say "down; config and logs kept in $SLURM_TEST_DIR"
    else
        rm -rf "$SLURM_TEST_DIR"
        say "down"
    fi
}

main "$@"
