#!/usr/bin/env bash
# End-to-end benchmark: sysbench against one playground cluster over three
# paths, in one run:
#   direct    sysbench -> primary mariadbd
#   haproxy   sysbench -> HAProxy 2.6, TCP mode (parses nothing) -> primary
#   causeway  sysbench -> Causeway (inside the playground process) -> cluster
#
# For each run it reports queries/s, errors, and CPU per query from
# /proc/PID/stat (utime+stime) sampled before and after the run: the proxy's
# for haproxy and causeway, the primary mariadbd's for direct. The mariadbd
# columns show where the database work landed (HAProxy sends everything to
# the primary; Causeway's router decides per statement).
#
# Usage: benches/e2e.sh                       (3 workloads x 3 paths x 10 s)
#        DURATION=3 WORKLOADS=oltp_point_select PATHS="haproxy causeway" benches/e2e.sh
#        PATHS="causeway causeway_z" benches/e2e.sh   (_z: the compressed protocol)
# Env:   DURATION (s, default 10), THREADS (16), WORKLOADS, PATHS,
#        OUT (Markdown table, default target/e2e-results.md),
#        POLICY (a policy file for Causeway, e.g. policies/primary-only.toml;
#        default: the built-in session-level read split),
#        CAUSEWAY_BIN (a prebuilt causeway binary, e.g. an older build to
#        compare against; default: build and use target/release/causeway)
# Needs: sysbench, haproxy, mariadb client, MariaDB server (for the playground).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=e2e
# shellcheck source=benches/lib.sh
source benches/lib.sh
ROOT=$(pwd)

DURATION=${DURATION:-10}
THREADS=${THREADS:-16}
WORKLOADS=${WORKLOADS:-oltp_point_select oltp_read_only oltp_read_write}
PATHS=${PATHS:-direct haproxy causeway}
OUT=${OUT:-target/e2e-results.md}
POLICY=${POLICY:-}
CAUSEWAY_BIN=${CAUSEWAY_BIN:-}
TABLES=4
TABLE_SIZE=10000
READY_TIMEOUT=60

COMMAND="DURATION=$DURATION THREADS=$THREADS WORKLOADS=\"$WORKLOADS\" PATHS=\"$PATHS\"${POLICY:+ POLICY=$POLICY}${CAUSEWAY_BIN:+ CAUSEWAY_BIN=$CAUSEWAY_BIN} OUT=$OUT benches/e2e.sh"

for tool in sysbench haproxy mariadb python3 getconf; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d -t causeway-e2e.XXXXXX)
PG_PID=""
HA_PID=""
DB_PIDS=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$HA_PID" TERM 20
    stop_playground "$PG_PID" "$DB_PIDS"
    if ((rc != 0)); then
        log "failed (exit $rc); logs kept in $TMP"
        tail -n 20 "$TMP"/playground.err "$TMP"/haproxy.log 2>/dev/null >&2 || true
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
# Reads through Causeway may go to a replica: sysbench_prepare lets both
# catch up first.
sysbench_prepare "$TABLES" "$TABLE_SIZE"

# ---------------------------------------------------------------- runs

CLK_TCK=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the runs: $LOAD_BEFORE (figures are only comparable on a quiet machine)"
ROWS=() # "workload path qps cpu_us errors primary_us replicas_us"


run_one() { # workload path
    local workload=$1 path=$2 port watch
    # A path ending in _z runs the same path with the compressed protocol
    # between sysbench and whatever it connects to.
    local base=${path%_z} compress=()
    [[ $base != "$path" ]] && compress=(--mysql-compression=on)
    case $base in
        direct) port=$PRIMARY_PORT; watch=$PRIMARY_PID ;;
        haproxy) port=$HA_PORT; watch=$HA_PID ;;
        causeway) port=$PROXY_PORT; watch=$CW_PID ;;
        *) log "unknown path $path"; exit 1 ;;
    esac
    local logf="$TMP/$workload.$path.log" rc=0
    local t0 p0 r0 t1 p1 r1 pid
    t0=$(cpu_ticks "$watch"); p0=$(cpu_ticks "$PRIMARY_PID"); r0=$(sum_ticks $REPLICA_PIDS)
    sysbench "$workload" --mysql-host=127.0.0.1 --mysql-port="$port" "${SB_COMMON[@]}" \
        --threads="$THREADS" --time="$DURATION" --report-interval=0 --db-ps-mode=auto \
        "${compress[@]}" run >"$logf" 2>&1 || rc=$?
    for pid in "$watch" "$PRIMARY_PID" $REPLICA_PIDS; do
        kill -0 "$pid" 2>/dev/null && continue
        log "pid $pid ($path path) died during $workload; sysbench said:"
        tail -n 5 "$logf" >&2
        exit 1
    done
    t1=$(cpu_ticks "$watch"); p1=$(cpu_ticks "$PRIMARY_PID"); r1=$(sum_ticks $REPLICA_PIDS)

    local total qps ignored errors
    total=$(awk '$1 == "queries:" { print $2 }' "$logf")
    qps=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); printf "%.0f", $3 }' "$logf")
    ignored=$(awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$logf")
    errors=${ignored:-?}
    if ((rc != 0)) || grep -q 'FATAL' "$logf"; then
        errors="$errors+FATAL(rc=$rc)"
        log "$workload via $path failed; first errors:"
        grep -m 5 -E 'FATAL|error' "$logf" >&2 || tail -n 5 "$logf" >&2
    fi
    total=${total:-0}
    qps=${qps:-0}
    local cpu prim repl
    cpu=$(per_query_us $((t1 - t0)) "$total")
    prim=$(per_query_us $((p1 - p0)) "$total")
    repl=$(per_query_us $((r1 - r0)) "$total")
    [[ $base == direct ]] && cpu="$cpu (mariadbd)"
    ROWS+=("$workload|$path|$qps|$cpu|$errors|$prim|$repl")
    log "$workload via $path: $qps q/s, $cpu µs/query, errors $errors"
}

for workload in $WORKLOADS; do
    for path in $PATHS; do
        log "running $workload via $path for ${DURATION}s"
        run_one "$workload" "$path"
    done
done

# ---------------------------------------------------------------- report

HEADER="workload|path|queries/s|proxy CPU µs/query|errors|primary mariadbd µs/q|replicas mariadbd µs/q"

# Prints "workload|throughput ratio|CPU ratio" (causeway/haproxy) for each
# workload that ran on both paths.
ratios() {
    local workload row hq hc cq cc
    local -a f
    for workload in $WORKLOADS; do
        hq=""; hc=""; cq=""; cc=""
        for row in "${ROWS[@]}"; do
            IFS='|' read -r -a f <<<"$row"
            [[ ${f[0]} == "$workload" ]] || continue
            case ${f[1]} in
                haproxy) hq=${f[2]}; hc=${f[3]} ;;
                causeway) cq=${f[2]}; cc=${f[3]} ;;
            esac
        done
        [[ -n $hq && -n $cq ]] || continue
        awk -v w="$workload" -v hq="$hq" -v cq="$cq" -v hc="$hc" -v cc="$cc" 'BEGIN {
            tq = (hq + 0 > 0) ? sprintf("%.2f", cq / hq) : "n/a"
            tc = (hc + 0 > 0 && cc != "n/a") ? sprintf("%.2f", cc / hc) : "n/a"
            printf "%s|%s|%s\n", w, tq, tc
        }'
    done
}

print_text() {
    local fmt='%-18s %-9s %10s %19s %8s %22s %23s\n' row
    local -a f
    for row in "$HEADER" "${ROWS[@]}"; do
        IFS='|' read -r -a f <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "${f[@]}"
    done
    local r w tq tc
    r=$(ratios)
    [[ -n $r ]] || return 0
    echo
    printf '%-18s %18s %21s\n' "causeway/haproxy" "throughput ratio" "CPU/query ratio"
    while IFS='|' read -r w tq tc; do
        printf '%-18s %18s %21s\n' "$w" "$tq" "$tc"
    done <<<"$r"
}


print_markdown() {
    local model row r w tq tc
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "# Causeway end-to-end benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}; $(uname -sr); load average before the runs: $LOAD_BEFORE"
    echo "- versions: $(sysbench --version), $(haproxy -v | head -n 1 | awk '{ print $1, $3 }'), MariaDB $(mariadbd --version 2>/dev/null | awk '{ print $3 }')"
    if [[ $CAUSEWAY_BIN == target/release/causeway ]]; then
        echo "- causeway: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
    else
        echo "- causeway: prebuilt binary $CAUSEWAY_BIN"
    fi
    echo "- policy: ${POLICY:-built-in default (session level, read split)}"
    echo "- command: \`$COMMAND\`"
    echo "- sysbench: $THREADS threads, ${DURATION}s per run, --db-ps-mode=auto, $TABLES tables x $TABLE_SIZE rows;"
    echo "  sysbench, the proxy and three mariadbd servers share the machine's cores"
    echo "- CPU columns: utime+stime from /proc/PID/stat over the run, divided by the queries sysbench counted."
    echo "  \"proxy CPU\" is HAProxy's or Causeway's process; for \`direct\` it is the primary mariadbd's."
    echo
    md_row "$HEADER"
    echo "|---|---|--:|--:|--:|--:|--:|"
    for row in "${ROWS[@]}"; do md_row "$row"; done
    r=$(ratios)
    [[ -n $r ]] || return 0
    echo
    echo "| causeway/haproxy | throughput ratio | CPU per query ratio |"
    echo "|---|--:|--:|"
    while IFS='|' read -r w tq tc; do echo "| $w | $tq | $tc |"; done <<<"$r"
}

echo
print_text
mkdir -p "$(dirname "$OUT")"
print_markdown >"$OUT"
echo
log "Markdown written to $(realpath "$OUT")"
