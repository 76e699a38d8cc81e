#!/usr/bin/env bash
# What session tracking costs the server: sysbench oltp_point_select
# straight to a playground's primary (no proxy), alternating the server's
# global tracking settings (new connections inherit them) between
# `last_gtid:ON` (only last_gtid among the variables, plus state-change
# tracking) and `*:ON`, what every Causeway backend connection asks for
# (`session_track_system_variables='*'`, `session_track_state_change=ON`,
# `session_track_schema=ON`). Prints
# queries/s and the primary mariadbd's CPU per query for each, ROUNDS times.
#
# Usage: benches/tracking.sh      Env: DURATION (s, 8), THREADS (16), ROUNDS (3),
#        VARIANTS (space-separated `vars:state_change`, default "last_gtid:ON *:ON")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=tracking
# shellcheck source=benches/lib.sh
source benches/lib.sh

DURATION=${DURATION:-8}
THREADS=${THREADS:-16}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-last_gtid:ON *:ON}
CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d -t causeway-tracking.XXXXXX)
PG_PID=""
DB_PIDS=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_playground "$PG_PID" "$DB_PIDS"
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

causeway_bin
start_playground "$CAUSEWAY_BIN" "$TMP/pg" --replicas 1
sysbench_prepare 4 10000

run() { # label
    local t0 t1 q
    t0=$(cpu_ticks "$PRIMARY_PID")
    sysbench oltp_point_select --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB_COMMON[@]}" \
        --threads="$THREADS" --time="$DURATION" --db-ps-mode=auto run >"$TMP/sb.log"
    t1=$(cpu_ticks "$PRIMARY_PID")
    q=$(awk '$1 == "queries:" { print $2 }' "$TMP/sb.log")
    printf '%-14s %8s q/s  mariadbd %6s µs/query\n' "$1" \
        "$(awk '$1 == "queries:" { gsub(/\(/, "", $3); printf "%.0f", $3 }' "$TMP/sb.log")" \
        "$(per_query_us $((t1 - t0)) "$q")"
}

set -f # VARIANTS holds '*'
for ((i = 1; i <= ROUNDS; i++)); do
    for v in $VARIANTS; do
        root_sql "$PRIMARY_PORT" "SET GLOBAL session_track_system_variables='${v%%:*}', \
            session_track_schema=ON, session_track_state_change=${v##*:}"
        run "$v"
    done
done
