# Shared settings of tests/slurm/up.sh and down.sh (sourced, not run): where the one-node cluster keeps its
# config, state, spool, logs and munge socket. Override SLURM_TEST_DIR to run it elsewhere.
SLURM_TEST_DIR="${SLURM_TEST_DIR:-${TMPDIR:-/tmp}/asd-slurm}"
SLURM_CONF_FILE="$SLURM_TEST_DIR/slurm.conf"
MUNGE_DIR="$SLURM_TEST_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
# daemons in the order they start (down.sh stops them in reverse)
SLURM_DAEMONS=(munged slurmctld slurmd)

say() { echo "slurm: $*" >&2; }
die() {  # die CODE MESSAGE: 3 means this machine cannot host the cluster (no root, no package); 1 a failed start
    local code=$1
    shift
    say "ERROR: $*"
    exit "$code"
}

pid_file() { echo "$SLURM_TEST_DIR/$1.pid"; }

# alive NAME: the daemon started from this folder is running (its pid file names a live process of that name)
alive() {
    local pid
    # the daemon removes its pid file as it exits: a file gone between two reads is "not alive", not an error
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
    [[ -n $pid && -d /proc/$pid ]] && grep -qx "$1" "/proc/$pid/comm" 2>/dev/null
}
