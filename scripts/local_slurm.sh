#!/usr/bin/env bash
# A real one-machine Slurm (with slurmdbd + MariaDB accounting, so `sacct` works) for tests and demos.
#
#   bash scripts/local_slurm.sh install   # apt-get install the packages (only what is missing)
#   bash scripts/local_slurm.sh start     # install if needed, write configs, start every daemon, wait until usable
#   bash scripts/local_slurm.sh stop      # cancel jobs, stop every daemon (safe when nothing runs)
#   bash scripts/local_slurm.sh status    # what runs
#
# Needs root and Debian/Ubuntu (apt). Does not use systemd: the daemons are started directly. The configuration
# is written by this script (one node "localhost", partition "debug", CPUs=8 declared with
# SlurmdParameters=config_overrides so that several test jobs run at once even on a 2-core machine). An existing
# /etc/slurm/slurm.conf or slurmdbd.conf that this script did not write is never overwritten: it stops with an
# error instead (set LOCAL_SLURM_FORCE=1 to move the old file aside to *.bak-<time> and go on).
set -euo pipefail

MARKER="# written by comprobust scripts/local_slurm.sh"
CONF_DIR=/etc/slurm
SLURM_CONF_FILE=$CONF_DIR/slurm.conf
DBD_CONF_FILE=$CONF_DIR/slurmdbd.conf
LOG_DIR=/var/log/slurm
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
DBD_PID=/run/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MYSQL_RUN=/run/mysqld
MYSQL_PID=$MYSQL_RUN/mysqld.pid
MYSQL_SOCK=$MYSQL_RUN/mysqld.sock
MYSQL_LOG=$LOG_DIR/mariadb.log
DB_USER=slurm
DB_PASS=slurmpw
DB_NAME=slurm_acct_db
NODE_CPUS=${LOCAL_SLURM_CPUS:-8}
MAX_TIME=${LOCAL_SLURM_MAXTIME:-1-00:00:00}
CRED_EXPIRE=${LOCAL_SLURM_CRED_EXPIRE:-10}
PACKAGES=(slurm-wlm munge slurmdbd slurm-client mariadb-server)

say() { echo "local_slurm: $*"; }
die() { echo "local_slurm: ERROR: $*" >&2; exit 1; }

tail_logs() {  # print the end of the given log files to stderr
    local f
    for f in "$@"; do
        if [[ -f $f ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

# wait_for SECONDS "what" command...: poll the command every 0.25 s; on timeout, fail naming what and tail logs
wait_for() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "local_slurm: ERROR: timed out after ${seconds}s waiting for $what" >&2
            tail_logs "${WAIT_LOGS[@]}"
            exit 1
        fi
        sleep 0.25
    done
}
WAIT_LOGS=()

pid_alive() {  # pid_alive PIDFILE: true when the file names a live process
    [[ -f $1 ]] || return 1
    local pid
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)"; }

binaries_present() {
    local b
    for b in slurmctld slurmd slurmdbd sbatch sacct scontrol munged mariadbd mysqladmin; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || return 1
    done
}

cmd_install() {
    require_root
    if binaries_present; then
        say "packages already installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
    say "installing ${PACKAGES[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    # Without systemd the packages' attempts to start their services are refused; that is expected and harmless.
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/tmp/local_slurm_apt.log 2>&1 \
        || { tail -n 30 /tmp/local_slurm_apt.log >&2; die "apt-get install ${PACKAGES[*]} failed (log above)"; }
    binaries_present || die "packages installed but some daemons are still missing from PATH/sbin"
}

# write_conf PATH MODE CONTENT: write our config, refusing to replace a file we did not write
CONF_CHANGED=0
write_conf() {
    local path=$1 mode=$2 content=$3
    if [[ -f $path ]] && [[ $(cat "$path") == "$content" ]]; then
        return 0
    fi
    CONF_CHANGED=1
    if [[ -f $path ]] && ! head -n 1 "$path" | grep -qF "$MARKER"; then
        if [[ ${LOCAL_SLURM_FORCE:-0} == 1 ]]; then
            local backup
            backup="$path.bak-$(date +%Y%m%d-%H%M%S)"
            mv "$path" "$backup"
            say "moved the existing $path to $backup"
        else
            die "$path exists and was not written by this script; move it away or set LOCAL_SLURM_FORCE=1"
        fi
    fi
    local tmp
    tmp=$(mktemp "$path.tmp-XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$path"
}

write_configs() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$SPOOL_CTLD" "$SPOOL_D"
    local mem_mb real_mem
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    real_mem=$((mem_mb * 3 / 4))            # leave a quarter to the OS, the daemons and the test runner
    ((real_mem >= 1024)) || real_mem=1024
    write_conf "$SLURM_CONF_FILE" 644 "$MARKER
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=$CRED_EXPIRE
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# schedule every 2 s (defaults: 60 s main loop, 30 s backfill) so that requeued and dependent jobs start quickly
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobRequeue=1
ReturnToService=2
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=$MAX_TIME State=UP"
    write_conf "$DBD_CONF_FILE" 600 "$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME"
}

start_munge() {
    if pid_alive "$MUNGE_PID"; then return 0; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged </dev/null >>/var/log/munge/start.log 2>&1 \
        || { tail_logs /var/log/munge/munged.log /var/log/munge/start.log; die "munged did not start"; }
    WAIT_LOGS=(/var/log/munge/munged.log)
    wait_for 10 "munge to answer (munge -n | unmunge)" bash -c 'munge -n | unmunge'
}

start_mariadb() {
    mkdir -p "$MYSQL_RUN" && chown mysql:mysql "$MYSQL_RUN"
    if ! mysqladmin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; then
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            say "initialising the MariaDB data directory"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$MYSQL_LOG" 2>&1 \
                || { tail_logs "$MYSQL_LOG"; die "mariadb-install-db failed"; }
        fi
        setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --datadir=/var/lib/mysql \
            --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PID" --log-error="$MYSQL_LOG" \
            </dev/null >>"$MYSQL_LOG" 2>&1 &
        WAIT_LOGS=("$MYSQL_LOG")
        wait_for 60 "MariaDB to answer (mysqladmin ping)" mysqladmin --socket="$MYSQL_SOCK" ping
    fi
    mysql --socket="$MYSQL_SOCK" -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost'; FLUSH PRIVILEGES;" \
        || die "could not create the MariaDB user/database for slurmdbd"
}

start_slurm_daemons() {
    if ! pid_alive "$DBD_PID"; then
        /usr/sbin/slurmdbd </dev/null >>"$LOG_DIR/slurmdbd.start.log" 2>&1 \
            || { tail_logs "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmdbd.start.log"; die "slurmdbd did not start"; }
    fi
    WAIT_LOGS=("$LOG_DIR/slurmdbd.log")
    # the first start creates the accounting schema (about 20 s)
    wait_for 120 "slurmdbd to listen on port 6819" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
    if ! pid_alive "$CTLD_PID"; then
        /usr/sbin/slurmctld </dev/null >>"$LOG_DIR/slurmctld.start.log" 2>&1 \
            || { tail_logs "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmctld.start.log"; die "slurmctld did not start"; }
    fi
    WAIT_LOGS=("$LOG_DIR/slurmctld.log")
    wait_for 60 "slurmctld to answer (scontrol ping)" bash -c 'scontrol ping | grep -q "is UP"'
    if ! pid_alive "$SLURMD_PID"; then
        # -N: the node name does not depend on `hostname`
        /usr/sbin/slurmd -N localhost </dev/null >>"$LOG_DIR/slurmd.start.log" 2>&1 \
            || { tail_logs "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmd.start.log"; die "slurmd did not start"; }
    fi
    WAIT_LOGS=("$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log")
    wait_for 60 "node localhost to become available (sinfo)" \
        bash -c 'sinfo -h -n localhost -o %T | grep -qE "^(idle|mixed|allocated|completing)"'
    WAIT_LOGS=("$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log")
    wait_for 60 "sacct to work (accounting through slurmdbd)" sacct -n -X -j 1
}

cmd_start() {
    require_root
    local t0=$SECONDS
    cmd_install
    write_configs
    if ((CONF_CHANGED)) && { pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID" || pid_alive "$DBD_PID"; }; then
        say "the configuration changed while Slurm runs: restarting it"
        cmd_stop
    fi
    start_munge
    start_mariadb
    start_slurm_daemons
    say "up in $((SECONDS - t0)) s: $(scontrol ping | head -n 1)"
    sinfo
}

# stop_pidfile NAME PIDFILE: TERM the process, wait up to 15 s, then KILL
stop_pidfile() {
    local name=$1 file=$2 pid i
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid=$(tr -dc '0-9' <"$file")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
        sleep 0.25
    done
    say "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

cmd_stop() {
    local i
    if pid_alive "$CTLD_PID" && command -v scancel >/dev/null; then
        # cancel what is left so that no job step outlives the daemons
        if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
            say "cancelling the remaining jobs"
            scancel --full --signal=KILL $(squeue -h -o %i) 2>/dev/null || true
            scancel $(squeue -h -o %i) 2>/dev/null || true
            for ((i = 0; i < 60; i++)); do
                [[ -z $(squeue -h -t R,CG -o %i 2>/dev/null) ]] && break
                sleep 0.25
            done
        fi
        timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile slurmdbd "$DBD_PID"
    if [[ -S $MYSQL_SOCK ]] && mysqladmin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; then
        timeout 30 mysqladmin --socket="$MYSQL_SOCK" shutdown >/dev/null 2>&1 || true
    fi
    stop_pidfile mariadb "$MYSQL_PID"
    stop_pidfile munged "$MUNGE_PID"
    say "stopped"
}

cmd_status() {
    local name file state rc=0
    for name in munged:$MUNGE_PID mariadb:$MYSQL_PID slurmdbd:$DBD_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
        file=${name#*:}
        if pid_alive "$file"; then
            state="running (pid $(tr -dc '0-9' <"$file"))"
        else
            state="stopped"; rc=3
        fi
        printf '%-10s %s\n' "${name%%:*}" "$state"
    done
    if command -v scontrol >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; then
        sinfo 2>/dev/null || true
        if sacct -n -X -j 1 >/dev/null 2>&1; then echo "sacct: works"; else echo "sacct: FAILS"; rc=3; fi
    else
        echo "no Slurm controller answers"
    fi
    return $rc
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
