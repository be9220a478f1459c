#!/usr/bin/env bash
# A one-node SLURM on loopback, for testing the workflow's SLURM profile (profiles/slurm-local) on one machine.
#
#   bash scripts/slurm-local.sh start    # installs Debian's slurm-wlm and munge when missing (needs root), starts
#                                        # munged, slurmctld and slurmd; prints the node once it is idle
#   bash scripts/slurm-local.sh stop     # stops the three daemons by their PID files
#   bash scripts/slurm-local.sh status
#
# The node has this machine's CPUs and memory and one fake GPU (gres on /dev/null), in two partitions, cpu and gpu,
# so GPU requests are scheduled and placed as on a cluster. No accounting daemon: profiles must poll with squeue (see profiles/slurm-local). The config is
# written to $SLURM_LOCAL_DIR (default /tmp/ccreid-slurm) and linked from /etc/slurm/slurm.conf, where every SLURM
# command, including the job step inside each job, looks for it. Written from SLURM's slurm.conf(5) and
# gres.conf(5) manuals (https://slurm.schedmd.com/slurm.conf.html).
set -euo pipefail
STATE=${SLURM_LOCAL_DIR:-/tmp/ccreid-slurm}
CMD=${1:-status}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-local.sh: $1 needs root (it installs packages and writes /etc/slurm)" >&2
        exit 2
    fi
}

install_packages() {
    if command -v slurmctld > /dev/null && command -v munged > /dev/null && command -v sbatch > /dev/null; then
        return
    fi
    need_root "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge > "$STATE/apt.log" 2>&1 || {
        apt-get update -q >> "$STATE/apt.log" 2>&1
        apt-get install -y -q slurm-wlm munge >> "$STATE/apt.log" 2>&1
    } || { echo "slurm-local.sh: apt-get install slurm-wlm munge failed; see $STATE/apt.log" >&2; exit 1; }
}

write_config() {
    local node cpus mem
    node=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
    cat > "$STATE/slurm.conf" <<EOF
# written by scripts/slurm-local.sh: one node on loopback
ClusterName=ccreid-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue is the only job status without accounting: a finished job must stay visible long enough to be seen
MinJobAge=300
ReturnToService=2
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
# two partitions on the one node, as a cluster has: CPU jobs to cpu, jobs asking for a GPU to gpu
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
    cat > "$STATE/gres.conf" <<EOF
AutoDetect=off
NodeName=$node Name=gpu File=/dev/null
EOF
    mkdir -p /etc/slurm
    for f in slurm.conf gres.conf; do
        if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then
            echo "slurm-local.sh: /etc/slurm/$f exists and is not ours; not replacing it" >&2
            exit 1
        fi
        ln -sfn "$STATE/$f" "/etc/slurm/$f"
    done
}

alive() {  # alive PIDFILE
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null
}

start() {
    need_root "start"
    mkdir -p "$STATE"
    install_packages
    write_config
    mkdir -p /run/munge
    chown munge:munge /run/munge
    if ! alive /run/munge/munged.pid; then
        su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid"
    fi
    alive "$STATE/slurmctld.pid" || /usr/sbin/slurmctld -i
    alive "$STATE/slurmd.pid" || /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -o "%t" 2> /dev/null | grep -qE "^idle"; then
            sinfo -N -o "%N %P %t %c %m %G"
            return
        fi
        sleep 1
    done
    echo "slurm-local.sh: the node did not become idle in 60 s; logs in $STATE/log" >&2
    sinfo -N >&2 || true
    exit 1
}

stop() {
    for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
        if alive "$f"; then
            kill "$(cat "$f")"
        fi
    done
    for _ in $(seq 20); do
        alive "$STATE/slurmd.pid" || alive "$STATE/slurmctld.pid" || return 0
        sleep 0.5
    done
}

case "$CMD" in
start) start ;;
stop) stop ;;
status) sinfo -N -o "%N %P %t %c %m %G" ;;
*) echo "usage: bash scripts/slurm-local.sh start|stop|status" >&2; exit 2 ;;
esac
