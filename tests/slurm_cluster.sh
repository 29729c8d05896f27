#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the cluster tests (tests/course/test_cluster.py).
#
#   tests/slurm_cluster.sh start [STATE_DIR]   install (Debian: slurm-wlm, munge, slurmdbd, mariadb-server) if
#                                              missing, then start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   tests/slurm_cluster.sh stop  [STATE_DIR]   stop the daemons this script started (their pids are in STATE_DIR)
#
# Everything the cluster writes stays in STATE_DIR (default /tmp/mtl-lab-slurm); the clients find it through
# SLURM_CONF=STATE_DIR/slurm.conf (printed at the end), so nothing in /etc/slurm changes. The node is this host
# with all its CPUs; accounting goes through slurmdbd into a private MariaDB, so jobs show in sacct.
# Needs root (the daemons run as root, munged as the munge user).
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"  # the daemons live there
action=${1:-start}
STATE=${2:-/tmp/mtl-lab-slurm}
CLUSTER=mtllab
DB_PORT=3307

stop() {
  if [ -f "$STATE/pids/slurmctld.pid" ] && [ -f "$STATE/slurm.conf" ]; then
    # the cluster's jobs first: a job step outlives slurmd
    ids=$(SLURM_CONF="$STATE/slurm.conf" squeue -h -o %i 2>/dev/null || true)
    if [ -n "$ids" ]; then
      SLURM_CONF="$STATE/slurm.conf" scancel $ids || true
      for _ in $(seq 60); do [ -z "$(SLURM_CONF="$STATE/slurm.conf" squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
  fi
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    if [ -f "$STATE/pids/$name.pid" ]; then
      pid=$(cat "$STATE/pids/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      rm -f "$STATE/pids/$name.pid"
    fi
  done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi
[ "$action" = start ] || { echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root: the Slurm daemons and munged are started as root / the munge user" >&2; exit 3; }

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null \
  || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "Slurm is not installed and there is no apt-get to install it" >&2; exit 3; }
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge slurmdbd \
    mariadb-server >/dev/null; } || { echo "apt-get could not install slurm-wlm munge slurmdbd mariadb-server" >&2; exit 3; }
fi

stop  # a cluster left over from an earlier start of this state folder
mkdir -p "$STATE"/{pids,log,ctld,spool,munge}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# munge: the key Debian's package made (or a new one), the daemon as the munge user
[ -s /etc/munge/munge.key ] || /usr/sbin/mungekey --create --keyfile /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key "$STATE/munge"
chmod 700 "$STATE/munge"
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log"
  for _ in $(seq 50); do [ -s "$STATE/munge/munged.pid" ] && break; sleep 0.1; done
  cp "$STATE/munge/munged.pid" "$STATE/pids/munged.pid"
fi
munge -n | unmunge >/dev/null

# MariaDB for slurmdbd: a private data folder on its own port
if [ ! -d "$STATE/mysql/mysql" ]; then
  mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
    >"$STATE/log/mariadb-install.log" 2>&1
fi
mkdir -p "$STATE/mysqld"
chown -R mysql:mysql "$STATE/mysql" "$STATE/mysqld"
mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$STATE/mysqld/mysql.sock" --port=$DB_PORT \
  --bind-address=127.0.0.1 --log-error="$STATE/mysqld/mariadb.log" >>"$STATE/log/mariadbd.out" 2>&1 &
echo $! >"$STATE/pids/mariadbd.pid"
for _ in $(seq 100); do mariadb --no-defaults --socket="$STATE/mysqld/mysql.sock" -e "select 1" >/dev/null 2>&1 && break; sleep 0.2; done
mariadb --no-defaults --socket="$STATE/mysqld/mysql.sock" -e "
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

cat >"$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/pids/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE/slurmdbd.conf"

cat >"$STATE/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again cred_expire seconds later (Slurm's default 120 s; the tests requeue a job)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups here: processes tracked by their parents, no CPU binding (a job sees the node's cores)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# a short test cluster: look at the queue every few seconds (defaults 60 s / 30 s)
SchedulerParameters=sched_interval=3,bf_interval=3
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
# a job scancel'led or preempted is signalled, then killed after KillWait seconds
KillWait=10
MinJobAge=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SlurmctldParameters=enable_configless
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$STATE/slurm.conf"

/usr/sbin/slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
sacctmgr -i -Q add cluster $CLUSTER >/dev/null 2>&1 || true
# -c: a fresh queue (jobs of an earlier start that was not stopped cleanly would hold the node)
/usr/sbin/slurmctld -c -f "$STATE/slurm.conf"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
/usr/sbin/slurmd -f "$STATE/slurm.conf"
for _ in $(seq 150); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || { echo "node $HOST is '$state', not idle; see $STATE/log" >&2; exit 1; }
echo "SLURM_CONF=$SLURM_CONF"
