#!/usr/bin/env bash
# Install (Debian's slurm-wlm and munge) and start a single-node SLURM on this machine, for the
# SLURM tests and for trying the recipes in scripts/slurm/ by hand. Idempotent: a running
# cluster is left as it is. No systemd: munged, slurmctld and slurmd are started by hand.
# One partition, `debug`, holds this node with all its CPUs; requeue is allowed, and a finished
# job stays visible to `scontrol show job` for 10 minutes.
set -euo pipefail
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2
fi
host=$(hostname -s)
node=$(slurmd -C | head -1)  # NodeName=HOST CPUs=... RealMemory=... as slurmd sees this machine
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [ ! -f /etc/slurm/slurm.conf ] || ! grep -q "^$node\$" /etc/slurm/slurm.conf; then
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobRequeue=1
MinJobAge=600
KillWait=30
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmUser=root
$node
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
fi
chown munge:munge /run/munge /etc/munge/munge.key 2>/dev/null || true
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  case "$state" in idle | mix | alloc) break ;; esac
  sleep 1
done
case "$state" in
  idle | mix | alloc) echo "slurm: node $host $state in partition debug" ;;
  *) echo "slurm: node $host did not come up (state '${state}'); see /var/log/slurm/" >&2 && exit 1 ;;
esac
