#!/usr/bin/env bash
# setup_sge.sh - single-host Son of Grid Engine (Debian 12 gridengine 8.1.9) on loopback.
#
# The project's copy, for tests/test_jobs.py and .ci/run (adapted from the team's
# shared/sge/setup_sge.sh): adds a fast load report (a job that exits 99 is
# rescheduled within seconds instead of ~45 s) and a configurable ncpus capacity
# so that the job files' own HEC requests (-l ncpus=4) can be scheduled here.
#
# Installs gridengine-master/-exec/-client from Debian, configures one host as
# qmaster + exec host + submit/admin host, creates queues serial/short/gpu
# (2 slots each), PE "smp", complexes ngpus/ncpus (INT, requestable, consumable),
# lets root submit jobs, makes scheduling fast, starts sge_qmaster and sge_execd
# (directly, not via init scripts / systemd) and optionally runs a smoke test.
#
# Idempotent: safe to re-run; skips what is already installed/configured/running.
#
# Usage (as root):
#   setup_sge.sh            install + configure + start (+ smoke test)
#   setup_sge.sh start      same, no smoke test
#   setup_sge.sh test       smoke test only (daemons must be up)
#   setup_sge.sh stop       stop sge_execd and sge_qmaster by the PIDs in their pid files
#   setup_sge.sh status     print daemon PIDs and qstat -f
#
# Env knobs:
#   SGE_QUEUES="serial short gpu"   queues to create
#   SGE_SLOTS=2                     slots per queue
#   SGE_NGPUS=2                     fake ngpus capacity of the host (consumable)
#   SGE_NCPUS=8                     ncpus capacity of the host (consumable; bookkeeping only)
#   SGE_HVMEM_CONSUMABLE=no         yes: h_vmem consumable (host cap = MemTotal) with
#   SGE_HVMEM_DEFAULT=2G                 this default for jobs that do not request it
#   SGE_SMOKE_TEST=yes              run the smoke test at the end of a default run
set -euo pipefail

MODE=${1:-all}
SGE_QUEUES=${SGE_QUEUES:-"serial short gpu"}
SGE_SLOTS=${SGE_SLOTS:-2}
SGE_NGPUS=${SGE_NGPUS:-2}
SGE_NCPUS=${SGE_NCPUS:-8}
SGE_HVMEM_CONSUMABLE=${SGE_HVMEM_CONSUMABLE:-no}
SGE_HVMEM_DEFAULT=${SGE_HVMEM_DEFAULT:-2G}
SGE_SMOKE_TEST=${SGE_SMOKE_TEST:-yes}

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
QMASTER_PIDFILE=/var/spool/gridengine/qmaster/qmaster.pid
EXECD_SPOOL=/var/spool/gridengine/execd
WORK=${SGE_SETUP_WORK:-${TMPDIR:-/tmp}/sge_setup_work}
export DEBIAN_FRONTEND=noninteractive

T0=$(date +%s%N)
log() { printf '[%7.2fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$WORK"

H=$(hostname)

# ---------------------------------------------------------------- helpers
pid_alive() {  # pid name
  [ -n "${1:-}" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}
qmaster_pid() { local p; p=$(cat "$QMASTER_PIDFILE" 2>/dev/null || true); pid_alive "$p" sge_qmaster && echo "$p" || true; }
execd_pid() {
  local f p
  for f in "$EXECD_SPOOL"/*/execd.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f" 2>/dev/null || true)
    if pid_alive "$p" sge_execd; then echo "$p"; return; fi
  done
}
wait_gone() {  # pid name timeout
  local i
  for i in $(seq 1 $(( $3 * 5 ))); do pid_alive "$1" "$2" || return 0; sleep 0.2; done
  return 1
}
stop_daemons() {
  local p
  p=$(execd_pid)
  if [ -n "$p" ]; then log "stopping sge_execd pid $p"; kill "$p"; wait_gone "$p" sge_execd 30 || die "execd $p did not stop"; fi
  p=$(qmaster_pid)
  if [ -n "$p" ]; then log "stopping sge_qmaster pid $p (takes ~10 s)"; kill "$p"; wait_gone "$p" sge_qmaster 60 || die "qmaster $p did not stop"; fi
  log "daemons stopped"
}
# Replace "key value" lines of an SGE config text file (key padded with spaces).
set_kv() {  # file key value
  sed -i -E "s|^($2[[:space:]]+).*|\\1$3|" "$1"
}

if [ "$MODE" = stop ]; then stop_daemons; exit 0; fi
if [ "$MODE" = status ]; then
  echo "qmaster pid: $(qmaster_pid)  execd pid: $(execd_pid)"; qstat -f 2>&1 || true; exit 0
fi

# ---------------------------------------------------------------- smoke test
smoke_test() {
  local d=$WORK/smoke.$$ j1 j2 t0 t1 i
  mkdir -p "$d"; cd "$d"
  cat > job1.sh <<'EOF'
#$ -S /bin/bash
#$ -q serial
#$ -l h_vmem=4G
#$ -N download-model-data
echo hello from $JOB_ID on $(hostname); sleep 2
EOF
  cat > job2.sh <<'EOF'
#$ -S /bin/bash
#$ -q short
#$ -l h_rt=00:10:00
#$ -N after-download
echo second job $JOB_ID ran after download-model-data on $(hostname)
EOF
  t0=$(date +%s%N)
  j1=$(qsub -terse -cwd -w e job1.sh)
  j2=$(qsub -terse -cwd -w e -hold_jid download-model-data job2.sh)
  log "smoke: submitted $j1 and $j2 (hold_jid) as $(id -un) in $d"
  for i in $(seq 1 600); do
    qstat -j "$j1" >/dev/null 2>&1 || qstat -j "$j2" >/dev/null 2>&1 || break
    sleep 0.2
  done
  t1=$(date +%s%N)
  log "smoke: both jobs finished, turnaround $(( (t1 - t0) / 1000000 )) ms (job 1 sleeps 2 s)"
  grep -q "hello from $j1" "download-model-data.o$j1" || die "smoke: job 1 output missing"
  grep -q "second job $j2" "after-download.o$j2" || die "smoke: job 2 output missing"
  cat "download-model-data.o$j1" "after-download.o$j2"
  for i in $(seq 1 100); do qacct -j "$j1" >/dev/null 2>&1 && qacct -j "$j2" >/dev/null 2>&1 && break; sleep 0.2; done
  qacct -j "$j1" | grep -E '^(jobname|start_time|end_time|failed|maxvmem)'
  local s1 e1 s2
  e1=$(date -d "$(qacct -j "$j1" | sed -n 's/^end_time *//p')" +%s)
  s2=$(date -d "$(qacct -j "$j2" | sed -n 's/^start_time *//p')" +%s)
  [ "$s2" -ge "$e1" ] || die "smoke: job 2 started before job 1 ended"
  # resource requests must be accepted (-w e rejects unsatisfiable ones at submit)
  qsub -terse -cwd -w e -sync y -q gpu -l ngpus=1,ncpus=1,h_rt=00:10:00,h_vmem=4G -b y -N resreq true >/dev/null
  log "smoke: OK (-l ngpus=1,ncpus=1,h_rt,h_vmem accepted)"
  cd / ; rm -rf "$d"
}
if [ "$MODE" = test ]; then smoke_test; exit 0; fi

# ---------------------------------------------------------------- 1. hostname
if ! getent hosts "$H" >/dev/null; then
  log "hostname $H does not resolve: adding it to /etc/hosts"
  echo "127.0.0.1 $H" >> /etc/hosts
fi
HIP=$(getent hosts "$H" | awk '{print $1; exit}')
HREV=$(getent hosts "$HIP" | awk '{print $2; exit}')
log "hostname $H -> $HIP -> ${HREV:-?}"

# ---------------------------------------------------------------- 2. install
PKGS="gridengine-master gridengine-exec gridengine-client"
if dpkg-query -W -f='${Status}\n' $PKGS 2>/dev/null | grep -c '^install ok installed' | grep -qx 3; then
  log "packages already installed"
else
  log "installing $PKGS"
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $H
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string $SGE_CELL
gridengine-master shared/gridenginemaster string $H
gridengine-exec shared/gridenginemaster string $H
gridengine-client shared/gridenginemaster string $H
EOF
  # Keep the package scripts from starting daemons themselves (we start them below).
  ADDED_POLICY=no
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; ADDED_POLICY=yes
  fi
  trap '[ "$ADDED_POLICY" = yes ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -q >"$WORK/apt-update.log" 2>&1 || { tail "$WORK/apt-update.log"; die "apt-get update failed"; }
  apt-get install -y -q $PKGS >"$WORK/apt-install.log" 2>&1 || { tail -30 "$WORK/apt-install.log"; die "apt-get install failed"; }
  [ "$ADDED_POLICY" = yes ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
  log "packages installed"
fi

# Cell not initialised (packages installed earlier without the debconf answers)?
if [ ! -e /var/spool/gridengine/spooldb/sge ]; then
  log "initialising cluster spool"
  for d in /var/spool/gridengine/qmaster /var/spool/gridengine/qmaster/job_scripts /var/spool/gridengine/spooldb "$EXECD_SPOOL" "$COMMON"; do
    mkdir -p "$d"; chown sgeadmin:sgeadmin "$d"
  done
  [ -e "$COMMON/bootstrap" ] || install -m0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
  su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL /var/spool/gridengine/spooldb sgeadmin" sgeadmin
fi

# ---------------------------------------------------------------- 3. host names for SGE
# The hostname resolves to a loopback address whose reverse lookup is "localhost";
# SGE then refuses every client with "access denied (client IP resolved to host
# name "localhost". This is not identical to clients host name ...)". SGE's own
# host_aliases file maps those names onto the real hostname.
ALIASES=$(printf '%s\n' localhost "$HREV" | awk -v h="$H" 'NF && $1!=h && !s[$1]++' | tr '\n' ' ')
echo "$H ${ALIASES% }" > "$COMMON/host_aliases.new"
if ! cmp -s "$COMMON/host_aliases.new" "$COMMON/host_aliases"; then
  mv "$COMMON/host_aliases.new" "$COMMON/host_aliases"
  log "wrote host_aliases: $(cat "$COMMON/host_aliases")"
  [ -z "$(qmaster_pid)" ] || { log "host_aliases changed: restarting daemons"; stop_daemons; }
else
  rm -f "$COMMON/host_aliases.new"
fi
chown sgeadmin:sgeadmin "$COMMON/host_aliases"
[ -n "$(qmaster_pid)" ] || echo "$H" > "$COMMON/act_qmaster"
chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
mkdir -p /var/run/gridengine && chown sgeadmin:sgeadmin /var/run/gridengine

# ---------------------------------------------------------------- 4. qmaster
if [ -n "$(qmaster_pid)" ]; then
  log "sge_qmaster already running (pid $(qmaster_pid))"
else
  log "starting sge_qmaster"
  /usr/sbin/sge_qmaster
fi
for i in $(seq 1 150); do qconf -sh >/dev/null 2>&1 && break; sleep 0.2; done
qconf -sh >/dev/null 2>&1 || { tail /var/spool/gridengine/qmaster/messages; die "qmaster not reachable"; }
log "sge_qmaster up (pid $(qmaster_pid))"

# ---------------------------------------------------------------- 5. configuration
CONF_CHANGED=no
# global config: allow root (uid/gid 0) jobs, flush accounting every second
qconf -sconf global > "$WORK/global"
cp "$WORK/global" "$WORK/global.orig"
set_kv "$WORK/global" min_uid 0
set_kv "$WORK/global" min_gid 0
sed -i -E 's/flush_time=[0-9:]+/flush_time=00:00:01/' "$WORK/global"
# A job that exits 99 is rescheduled only after the exec host's next load report
# ("cannot run on host until clean up of a previous run has finished"): 40 s by default.
set_kv "$WORK/global" load_report_time 00:00:02
if ! cmp -s "$WORK/global" "$WORK/global.orig"; then
  qconf -Mconf "$WORK/global" >/dev/null; CONF_CHANGED=yes; log "global config updated (min_uid/min_gid 0, accounting flush 1 s, load report 2 s)"
fi

# scheduler: run every second instead of every 15 s
qconf -ssconf > "$WORK/sched"; cp "$WORK/sched" "$WORK/sched.orig"
set_kv "$WORK/sched" schedule_interval 0:0:1
set_kv "$WORK/sched" flush_submit_sec 1
set_kv "$WORK/sched" flush_finish_sec 1
cmp -s "$WORK/sched" "$WORK/sched.orig" || { qconf -Msconf "$WORK/sched" >/dev/null; log "scheduler config updated"; }

# complexes
qconf -sc > "$WORK/complex"; cp "$WORK/complex" "$WORK/complex.orig"
if [ "$SGE_HVMEM_CONSUMABLE" = yes ]; then HV="YES        $SGE_HVMEM_DEFAULT"; else HV="NO         0"; fi
sed -i -E "s/^h_vmem .*/h_vmem              h_vmem     MEMORY    <=    YES         $HV        0/" "$WORK/complex"
for c in ngpus ncpus; do
  grep -q "^$c " "$WORK/complex" || sed -i "/^# >#< starts a comment/i $(printf '%-19s %-10s INT       <=    YES         YES        0        0' $c $c)" "$WORK/complex"
done
cmp -s "$WORK/complex" "$WORK/complex.orig" || { qconf -Mc "$WORK/complex" >"$WORK/qconf.log" 2>&1 || { cat "$WORK/qconf.log"; die "qconf -Mc failed"; }; log "complexes updated (h_vmem, ngpus, ncpus)"; }

# hosts
qconf -sh 2>/dev/null | grep -qx "$H" || qconf -ah "$H" >/dev/null
qconf -ss 2>/dev/null | grep -qx "$H" || qconf -as "$H" >/dev/null
MEMK=$(awk '/MemTotal/{print $2}' /proc/meminfo)
CV="ngpus=$SGE_NGPUS,ncpus=$SGE_NCPUS"
[ "$SGE_HVMEM_CONSUMABLE" = yes ] && CV="h_vmem=${MEMK}K,$CV"
cat > "$WORK/exechost" <<EOF
hostname              $H
load_scaling          NONE
complex_values        $CV
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
if qconf -sel 2>/dev/null | grep -qx "$H"; then qconf -Me "$WORK/exechost" >/dev/null 2>&1 || true
else qconf -Ae "$WORK/exechost" >/dev/null; fi

# parallel environment smp (qsub -pe smp N)
cat > "$WORK/pe_smp" <<'EOF'
pe_name            smp
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
qconf -spl 2>/dev/null | grep -qx smp || qconf -Ap "$WORK/pe_smp" >/dev/null

# queues
for q in $SGE_QUEUES; do
  hrt=INFINITY; [ "$q" = short ] && hrt=01:00:00
  cat > "$WORK/queue_$q" <<EOF
qname                 $q
hostlist              $H
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SGE_SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  $hrt
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
  if qconf -sql 2>/dev/null | grep -qx "$q"; then qconf -Mq "$WORK/queue_$q" >/dev/null 2>&1 || true
  else qconf -Aq "$WORK/queue_$q" >/dev/null; fi
done
log "configured: queues $(qconf -sql | tr '\n' ' '), PE smp, complexes ngpus/ncpus, exec host $H"

# ---------------------------------------------------------------- 6. execd
# execd caches the global config; a min_uid change reaches a running execd only
# later ("gid of user root (0) less than minimum allowed"), so restart it then.
if [ -n "$(execd_pid)" ] && [ "$CONF_CHANGED" = yes ]; then
  p=$(execd_pid); log "global config changed: restarting sge_execd (pid $p)"; kill "$p"; wait_gone "$p" sge_execd 30
fi
if [ -n "$(execd_pid)" ]; then
  log "sge_execd already running (pid $(execd_pid))"
else
  log "starting sge_execd"
  /usr/sbin/sge_execd
fi
for i in $(seq 1 300); do
  # queue instance line has 5 fields when it has no state flags (no "au")
  n=$(qstat -f -q "serial@$H" 2>/dev/null | awk -v q="serial@$H" '$1==q{print NF}')
  [ "$n" = 5 ] && break; sleep 0.2
done
[ "${n:-}" = 5 ] || { qstat -f; die "exec host did not come up"; }
# clear a leftover error state (E) from earlier failed jobs
qmod -cq '*' >/dev/null 2>&1 || true
log "sge_execd up (pid $(execd_pid)); qmaster pid $(qmaster_pid)"
qstat -f

if [ "$MODE" = all ] && [ "$SGE_SMOKE_TEST" = yes ]; then smoke_test; fi
log "done"
