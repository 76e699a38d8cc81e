#!/usr/bin/env bash
# Failure and switchover benchmark: sysbench through Causeway while a
# server of the playground dies, hangs or changes role. Each event gets a
# fresh playground (1 primary, 2 replicas) and prints what the clients saw:
# errors (sysbench --mysql-ignore-errors=all counts them instead of
# stopping), reconnects, and the longest stall (sysbench's longest
# transaction or query, `--percentile` aside: its `max` latency).
#
# Events:
#   replica_kill_ps      kill -9 of replica1 under oltp_read_only --skip_trx=on
#                        (--db-ps-mode=auto), restarted 4 s later
#   replica_kill_text    the same with --db-ps-mode=disable
#   replica_stop         SIGSTOP of replica1 for 10 s, same load
#   primary_kill         kill -9 of the primary under a read-only load
#   switchover           `causeway playground switchover --to replica1` under
#                        oltp_read_write
#   manual_switchover    the same by hand, in SQL (old primary read-only,
#                        replica1 promoted, the others re-pointed); prints how
#                        long after replica1 took writes a write through
#                        Causeway landed there
#   manual_switchover_replay  the same with [transaction_replay] enabled
#
# Usage: benches/failover.sh
#        EVENTS="switchover manual_switchover" benches/failover.sh
# Env:   EVENTS, THREADS (8), CAUSEWAY_BIN (default: build the release binary),
#        OUT (Markdown table, default target/failover-results.md),
#        KEEP=1 keeps the playground's log and sysbench output after a good run
# Needs: sysbench, mariadb client, MariaDB server (for the playground).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=failover
# shellcheck source=benches/lib.sh
source benches/lib.sh

EVENTS=${EVENTS:-replica_kill_ps replica_kill_text replica_stop primary_kill switchover manual_switchover manual_switchover_replay}
THREADS=${THREADS:-8}
OUT=${OUT:-target/failover-results.md}
CAUSEWAY_BIN=${CAUSEWAY_BIN:-}
TABLES=2
TABLE_SIZE=10000
READY_TIMEOUT=60

for tool in sysbench mariadb python3; do
    command -v "$tool" >/dev/null || { echo "failover: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d -t causeway-failover.XXXXXX)
PG_PID=""
DB_PIDS=""
STOPPED=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $STOPPED ]] && kill -CONT "$STOPPED" 2>/dev/null
    stop_playground "$PG_PID" "$DB_PIDS"
    if ((rc != 0)); then
        log "failed (exit $rc); logs kept in $TMP"
        tail -n 20 "$TMP"/playground.err 2>/dev/null >&2 || true
    else
        [[ -n ${KEEP:-} ]] && log "logs kept in $TMP" || rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

causeway_bin

# The mariadbd of the playground server listening on port $1 (found by
# its port, among the playground's children).
pid_of_port() {
    local pid cnf
    for pid in $DB_PIDS; do
        cnf=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^--defaults-file=//p')
        [[ -n $cnf ]] && grep -qx "port=$1" "$cnf" && { echo "$pid"; return; }
    done
}

pg() { "$CAUSEWAY_BIN" playground "$@" --dir "$TMP/pg"; }

# Through Causeway, keeping comments (hints) in the statement.
hinted_sql() { # port statement
    MYSQL_PWD="$DB_PASS" mariadb --no-defaults -c --protocol=TCP -h127.0.0.1 -P"$1" -u"$DB_USER" -N -B -e "$2" sbtest
}

# One sysbench run through Causeway in the background; its report in
# $TMP/sb.log. Arguments: duration, workload, extra options.
sysbench_start() {
    local duration=$1 workload=$2
    shift 2
    # sysbench restarts a failed transaction without looking at the
    # clock: if every attempt fails it never ends on its own.
    timeout -s KILL $((duration + 20)) \
        sysbench "$workload" --mysql-host=127.0.0.1 --mysql-port="$PROXY_PORT" "${SB_COMMON[@]}" \
        --threads="$THREADS" --time="$duration" --report-interval=1 \
        --mysql-ignore-errors=all "$@" run >"$TMP/sb.log" 2>&1 &
    SB_PID=$!
}

# Prints and records one result row from $TMP/sb.log: errors, reconnects,
# longest stall, and a note.
report() { # event note
    local errors reconnects max tps
    errors=$(sed -n 's/^ *ignored errors: *\([0-9]*\).*/\1/p' "$TMP/sb.log")
    reconnects=$(sed -n 's/^ *reconnects: *\([0-9]*\).*/\1/p' "$TMP/sb.log")
    # No summary (sysbench was killed): the sum of the 1 s reports.
    if [[ -z $errors ]]; then
        errors="~$(grep -o 'err/s: [0-9.]*' "$TMP/sb.log" | awk '{ s += $2 } END { printf "%d", s }') (killed)"
        reconnects="~$(grep -o 'reconn/s: [0-9.]*' "$TMP/sb.log" | awk '{ s += $2 } END { printf "%d", s }')"
    fi
    max=$(sed -n 's/^ *max: *\([0-9.]*\).*/\1/p' "$TMP/sb.log" | head -n 1)
    tps=$(sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\) per sec.*/\1/p' "$TMP/sb.log")
    local zero
    # Seconds with no transaction at all (from the 1 s reports).
    zero=$(grep -c 'tps: 0.00 ' "$TMP/sb.log" || true)
    printf '%-18s errors=%-6s reconnects=%-4s longest_stall_ms=%-9s zero_tps_seconds=%-3s tps=%-8s %s\n' \
        "$1" "${errors:-?}" "${reconnects:-?}" "${max:-?}" "$zero" "${tps:-?}" "$2"
    md_row "$1|${errors:-?}|${reconnects:-?}|${max:-?}|$zero|${tps:-?}|$2" >>"$OUT"
    grep -E '^\[ *[0-9]+s \]' "$TMP/sb.log" | grep -v 'err/s: 0.00 reconn/s: 0.00' | sed 's/^/    /' | head -n 20 || true
}

fresh() { # [playground args...]
    stop_playground "$PG_PID" "$DB_PIDS"
    PG_PID=""
    rm -rf "$TMP/pg"
    start_playground "$CAUSEWAY_BIN" "$TMP/pg" --replicas 2 "$@"
    sysbench_prepare "$TABLES" "$TABLE_SIZE"
    R1_PORT=$(port_of "${REPLICAS%% *}")
}

event_replica_kill() { # ps-mode
    fresh
    sysbench_start 12 oltp_read_only --skip_trx=on --db-ps-mode="$1"
    sleep 4
    pg kill replica1 >&2
    sleep 4
    pg start replica1 >&2
    wait "$SB_PID" || true
    report "replica_kill_$2" "kill -9 replica1 at 4 s, restarted at 8 s (ps-mode $1)"
}

event_replica_stop() {
    fresh
    local pid
    pid=$(pid_of_port "$R1_PORT")
    sysbench_start 18 oltp_read_only --skip_trx=on
    sleep 3
    kill -STOP "$pid"
    STOPPED=$pid
    sleep 10
    kill -CONT "$pid"
    STOPPED=""
    wait "$SB_PID" || true
    report replica_stop "SIGSTOP replica1 at 3 s for 10 s"
}

event_primary_kill() {
    fresh
    sysbench_start 10 oltp_read_only --skip_trx=on
    sleep 4
    pg kill primary >&2
    wait "$SB_PID" || true
    report primary_kill "kill -9 primary at 4 s (read-only load)"
}

event_switchover() {
    fresh
    sysbench_start 12 oltp_read_write
    sleep 4
    pg switchover --to replica1 >"$TMP/switchover.json" || true
    log "switchover: $(cat "$TMP/switchover.json")"
    wait "$SB_PID" || true
    local stall
    stall=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("stall_ms", "?"))' "$TMP/switchover.json" 2>/dev/null || echo "?")
    report switchover "causeway playground switchover at 4 s (writes held ${stall} ms)"
}

# A switchover by hand: what a DBA or an external tool does, in SQL.
# Argument: a file of TOML for the playground's configuration (replay on).
event_manual_switchover() { # [extra config]
    local name=manual_switchover what="by hand in SQL at 4 s"
    if [[ -n ${1:-} ]]; then
        fresh --extra-config "$1"
        name=manual_switchover_replay
        what="$what, transaction_replay on"
    else
        fresh
    fi
    local pos r2_port promoted landed p1
    r2_port=$(port_of "${REPLICAS##* }")
    sysbench_start 12 oltp_read_write
    sleep 4
    root_sql "$PRIMARY_PORT" 'SET GLOBAL read_only=1'
    pos=$(root_sql "$PRIMARY_PORT" 'SELECT @@gtid_binlog_pos')
    root_sql "$R1_PORT" "SELECT MASTER_GTID_WAIT('$pos', 10)" >/dev/null
    root_sql "$R1_PORT" 'STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0'
    promoted=$(date +%s%N)
    root_sql "$PRIMARY_PORT" "SET GLOBAL gtid_slave_pos='$pos'; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$R1_PORT, MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos; START SLAVE"
    root_sql "$r2_port" "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$R1_PORT, MASTER_USE_GTID=slave_pos; START SLAVE"
    # When does a write through Causeway land on replica1 (server id 2)?
    landed=""
    for _ in $(seq 1 100); do
        p1=$(hinted_sql "$PROXY_PORT" '/*FORCE_MASTER*/ SELECT @@server_id' 2>/dev/null || true)
        if [[ $p1 == 2 ]]; then
            landed=$((($(date +%s%N) - promoted) / 1000000))
            break
        fi
        sleep 0.05
    done
    wait "$SB_PID" || true
    report "$name" "$what; writes reached the new primary ${landed:-never} ms after it became writable"
}

mkdir -p "$(dirname "$OUT")"
{
    echo "| event | client errors | reconnects | longest stall (ms) | seconds with 0 tps | tps | what |"
    echo "|---|---|---|---|---|---|---|"
} >"$OUT"
for e in $EVENTS; do
    case $e in
        replica_kill_ps) event_replica_kill auto ps ;;
        replica_kill_text) event_replica_kill disable text ;;
        replica_stop) event_replica_stop ;;
        primary_kill) event_primary_kill ;;
        switchover) event_switchover ;;
        manual_switchover) event_manual_switchover ;;
        manual_switchover_replay)
            printf '[transaction_replay]\nenabled = true\n' >"$TMP/replay.toml"
            event_manual_switchover "$TMP/replay.toml" ;;
        *) log "unknown event $e"; exit 1 ;;
    esac
done
log "results in $OUT"
cat "$OUT"
