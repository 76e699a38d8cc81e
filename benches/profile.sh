#!/usr/bin/env bash
# Where the time goes on the point-select path: one playground cluster, one
# HAProxy (TCP mode) in front of its primary, sysbench oltp_point_select
# through each proxy, and for each proxy process:
#   - CPU per query (utime+stime from /proc/PID/stat over the run),
#   - system calls per query (perf stat on syscall tracepoints, attached to
#     the proxy process for the whole run),
#   - for Causeway, a perf profile (perf record, DWARF call graphs) of
#     RECORD seconds in the middle of a second run, summarised by shared
#     object, by symbol (self time) and by Causeway function (with callees).
#
# Usage: benches/profile.sh
#        POLICY=policies/primary-only.toml benches/profile.sh
# Env:   DURATION (s per run, default 10), RECORD (s of perf record, 5),
#        THREADS (16), POLICY (policy file for Causeway; default the built-in
#        session-level read split), CAUSEWAY_BIN (prebuilt binary; default
#        build target/release/causeway), KEEP (directory to keep perf.data
#        and the full reports in; default: a temporary one, removed).
# Needs: perf (with syscall tracepoints), sysbench, haproxy, mariadb client,
#        MariaDB server (for the playground).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=profile
# shellcheck source=benches/lib.sh
source benches/lib.sh

DURATION=${DURATION:-10}
RECORD=${RECORD:-5}
THREADS=${THREADS:-16}
POLICY=${POLICY:-}
CAUSEWAY_BIN=${CAUSEWAY_BIN:-}
KEEP=${KEEP:-}
TABLES=4
TABLE_SIZE=10000
READY_TIMEOUT=60
WORKLOAD=oltp_point_select

for tool in perf sysbench haproxy mariadb python3 getconf; do
    command -v "$tool" >/dev/null || { echo "profile: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d -t causeway-profile.XXXXXX)
PG_PID=""
HA_PID=""
DB_PIDS=""
PERF_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PERF_PID" INT 40
    stop_pid "$HA_PID" TERM 20
    stop_playground "$PG_PID" "$DB_PIDS"
    if ((rc != 0)); then
        log "failed (exit $rc); logs kept in $TMP"
        tail -n 20 "$TMP"/playground.err "$TMP"/haproxy.log 2>/dev/null >&2 || true
    elif [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        mv "$TMP"/* "$KEEP"/ 2>/dev/null || true
        rm -rf "$TMP"
        log "perf data and full reports kept in $KEEP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- start

causeway_bin
POLICY_ARGS=()
if [[ -n $POLICY ]]; then
    [[ -f $POLICY ]] || { log "no policy file $POLICY"; exit 1; }
    POLICY_ARGS=(--policy "$(realpath "$POLICY")")
fi
start_playground "$CAUSEWAY_BIN" "$TMP/pg" --replicas 2 "${POLICY_ARGS[@]}"
CW_PID=$PG_PID
start_haproxy "$PRIMARY_PORT"
sysbench_prepare "$TABLES" "$TABLE_SIZE"

# ---------------------------------------------------------------- runs

CLK_TCK=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the runs: $LOAD_BEFORE"

# The system calls a proxy makes to move bytes and to wait for them.
SYSCALLS=(read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait
    epoll_ctl futex sched_yield)
EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations
for s in "${SYSCALLS[@]}"; do EVENTS="$EVENTS,syscalls:sys_enter_$s"; done

# sysbench through PORT for DURATION s; prints the query count.
sysbench_run() { # port log
    sysbench "$WORKLOAD" --mysql-host=127.0.0.1 --mysql-port="$1" "${SB_COMMON[@]}" \
        --threads="$THREADS" --time="$DURATION" --report-interval=0 --db-ps-mode=auto \
        run >"$2" 2>&1 || { tail -n 5 "$2" >&2; exit 1; }
    awk '$1 == "queries:" { print $2 }' "$2"
}

declare -A QUERIES QPS CPU_US
measure_syscalls() { # path port pid
    local path=$1 port=$2 pid=$3 t0 t1 q
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$TMP/stat.$path.csv" &
    PERF_PID=$!
    sleep 0.5 # perf attaches; nothing to poll for
    t0=$(cpu_ticks "$pid")
    q=$(sysbench_run "$port" "$TMP/sysbench.stat.$path.log")
    t1=$(cpu_ticks "$pid")
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    PERF_PID=""
    QUERIES[$path]=$q
    QPS[$path]=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); printf "%.0f", $3 }' "$TMP/sysbench.stat.$path.log")
    CPU_US[$path]=$(per_query_us $((t1 - t0)) "$q")
    log "$path: ${QPS[$path]} q/s, ${CPU_US[$path]} µs CPU/query"
}

log "syscall counts: haproxy"
measure_syscalls haproxy "$HA_PORT" "$HA_PID"
log "syscall counts: causeway"
measure_syscalls causeway "$PROXY_PORT" "$CW_PID"

log "perf record of causeway: ${RECORD}s within a ${DURATION}s run"
sysbench_run "$PROXY_PORT" "$TMP/sysbench.record.log" >/dev/null &
SB_PID=$!
sleep 1 # let the run reach its steady state
perf record -F 499 --call-graph dwarf,16384 -p "$CW_PID" -o "$TMP/perf.data" -- sleep "$RECORD" \
    >"$TMP/record.log" 2>&1
wait "$SB_PID"

# ---------------------------------------------------------------- report

per_query() { # path event
    local n
    n=$(awk -F, -v e="$2" '$3 == e { print $1 }' "$TMP/stat.$1.csv")
    awk -v n="${n:-0}" -v q="${QUERIES[$1]}" 'BEGIN { if (n ~ /^[0-9]+$/ && q > 0) printf "%.2f", n / q; else print "-" }'
}

echo
echo "## $WORKLOAD, $THREADS threads, ${DURATION}s per run; load average before: $LOAD_BEFORE"
echo "causeway: $CAUSEWAY_BIN $(git rev-parse --short HEAD 2>/dev/null || true); policy: ${POLICY:-built-in default (session level, read split)}"
echo
printf '%-24s %12s %12s %10s\n' "per query" haproxy causeway ratio
row() { # label haproxy causeway
    local r
    r=$(awk -v h="$2" -v c="$3" 'BEGIN { if (h + 0 > 0) printf "%.2f", c / h; else print "-" }')
    printf '%-24s %12s %12s %10s\n' "$1" "$2" "$3" "$r"
}
row "queries/s" "${QPS[haproxy]}" "${QPS[causeway]}"
row "CPU µs" "${CPU_US[haproxy]}" "${CPU_US[causeway]}"
row "all syscalls" "$(per_query haproxy raw_syscalls:sys_enter)" "$(per_query causeway raw_syscalls:sys_enter)"
row "context switches" "$(per_query haproxy context-switches)" "$(per_query causeway context-switches)"
row "CPU migrations" "$(per_query haproxy cpu-migrations)" "$(per_query causeway cpu-migrations)"
for s in "${SYSCALLS[@]}"; do
    h=$(per_query haproxy "syscalls:sys_enter_$s")
    c=$(per_query causeway "syscalls:sys_enter_$s")
    [[ $h == 0.00 && $c == 0.00 ]] && continue
    row "$s" "$h" "$c"
done

REPORT=(perf report -i "$TMP/perf.data" --stdio --no-header)
"${REPORT[@]}" --no-children --sort dso -g none --percent-limit 0.5 >"$TMP/report.dso.txt" 2>/dev/null
"${REPORT[@]}" --no-children --sort dso,symbol -g none --percent-limit 0.4 >"$TMP/report.self.txt" 2>/dev/null
"${REPORT[@]}" --children --sort symbol -g none --percent-limit 2 >"$TMP/report.children.txt" 2>/dev/null
"${REPORT[@]}" --no-children --sort symbol -g caller,0.5,callee --percent-limit 1 >"$TMP/report.callers.txt" 2>/dev/null

# perf appends empty srcline columns ("-  -") to every row; drop them.
tidy() { grep -v '^#' | sed -e '/^$/d' -e 's/ *-  *- *$//' -e 's/ *$//'; }
NSAMPLES=$(awk '/^# Samples:/ { sub(/^# /, ""); print; exit }' "$TMP/report.dso.txt")
echo
echo "### causeway: samples by shared object (self time)${NSAMPLES:+ ($NSAMPLES)}"
tidy <"$TMP/report.dso.txt" | head -n 12
echo
echo "### causeway: top symbols (self time, --no-children)"
tidy <"$TMP/report.self.txt" | head -n 40
echo
echo "### causeway: Causeway functions with their callees (--children, >= 2 %)"
tidy <"$TMP/report.children.txt" | grep -E 'causeway::|mio::' | head -n 40
echo
log "full reports: $TMP/report.*.txt (set KEEP=DIR to keep them and perf.data)"
