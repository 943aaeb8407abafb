#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on this machine, without systemd: munged, slurmctld and slurmd, with
# config, state, spool and logs under $SLURM_TEST_DIR (default: $TMPDIR/asd-slurm). Installs Debian's
# slurm-wlm and munge when they are missing (needs root). Waits until sinfo shows the node idle.
# Idempotent: a cluster already up is left as it is. Prints `export SLURM_CONF=...` on stdout, which every
# Slurm client (sbatch, squeue, scontrol, and so submitit) needs to find this cluster.
# Exit status: 0 up; 3 this machine cannot host it (not root, no package); 1 a daemon failed to start.
#   tests/slurm/up.sh && export SLURM_CONF=$(tests/slurm/up.sh | sed 's/^export SLURM_CONF=//')
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PATH="$PATH:/usr/sbin:/sbin"
WAIT_S="${SLURM_UP_TIMEOUT_S:-60}"

install_packages() {
    local missing=0 tool
    for tool in munged mungekey slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$tool" >/dev/null || missing=1
    done
    ((missing)) || return 0
    [[ $(id -u) -eq 0 ]] || die 3 "slurm-wlm and munge are not installed and installing them needs root (sudo $0)"
    command -v apt-get >/dev/null || die 3 "slurm-wlm and munge are not installed and there is no apt-get here"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
        apt-get update -qq || die 3 "apt-get update failed: no package index for slurm-wlm and munge"
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
            die 3 "apt-get install slurm-wlm munge failed"
    fi
}

write_config() {
    local node
    node=$(slurmd -C | head -n 1)  # NodeName=<hostname -s> CPUs=... RealMemory=... as slurmd will see them
    [[ $node == NodeName=* ]] || die 1 "slurmd -C did not describe this node: $node"
    cat >"$SLURM_CONF_FILE" <<EOF
# One-node test cluster written by tests/slurm/up.sh
ClusterName=asd
SlurmctldHost=$(hostname -s)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$SLURM_TEST_DIR/state
SlurmdSpoolDir=$SLURM_TEST_DIR/spool
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$SLURM_TEST_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_TEST_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
KillWait=30
MinJobAge=60
$node State=UNKNOWN
PartitionName=debug Nodes=$(hostname -s) Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    alive munged && return 0
    mkdir -p "$MUNGE_DIR"
    chmod 0700 "$MUNGE_DIR"
    [[ -s $MUNGE_DIR/munge.key ]] || mungekey --create --keyfile="$MUNGE_DIR/munge.key" ||
        die 1 "mungekey could not create $MUNGE_DIR/munge.key"
    chmod 0600 "$MUNGE_DIR/munge.key"
    munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$(pid_file munged)" \
        --log-file="$SLURM_TEST_DIR/log/munged.log" --seed-file="$MUNGE_DIR/munged.seed" ||
        die 1 "munged did not start: $(tail -n 5 "$SLURM_TEST_DIR/log/munged.log" 2>/dev/null)"
}

start_slurm_daemon() {  # start_slurm_daemon NAME: slurmctld or slurmd, daemonised, config from SLURM_CONF
    alive "$1" && return 0
    "$1" -f "$SLURM_CONF_FILE" || die 1 "$1 did not start: $(tail -n 5 "$SLURM_TEST_DIR/log/$1.log" 2>/dev/null)"
}

wait_idle() {
    local state="" deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
        [[ $state == idle || $state == mixed || $state == allocated ]] && return 0
        [[ $state == drain* || $state == down* ]] && scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null
        sleep 1
    done
    say "$(sinfo -R 2>&1 || true)"
    tail -n 20 "$SLURM_TEST_DIR/log/slurmctld.log" "$SLURM_TEST_DIR/log/slurmd.log" >&2 || true
    die 1 "the node is not idle after ${WAIT_S} s (state: ${state:-none}); logs in $SLURM_TEST_DIR/log"
}

main() {
    install_packages
    export SLURM_CONF="$SLURM_CONF_FILE"
    if alive munged && alive slurmctld && alive slurmd; then
        say "already up ($SLURM_TEST_DIR)"
    else
        [[ $(id -u) -eq 0 ]] || die 3 "starting slurmctld and slurmd as this test cluster does needs root"
        mkdir -p "$SLURM_TEST_DIR"/{state,spool,log}
        alive slurmctld || write_config
        start_munged
        start_slurm_daemon slurmctld
        start_slurm_daemon slurmd
    fi
    wait_idle
    say "up: node $(hostname -s) $(sinfo -h -N -o '%T, %c CPUs, %m MB')"
    echo "export SLURM_CONF=$SLURM_CONF_FILE"
}

main "$@"
