#!/usr/bin/env bash
# Short connections per second: connect + `SELECT 1` + disconnect, with
# `mariadb-slap --detach=1` (a new connection for every query), over four
# paths in one run against one playground cluster:
#   direct         mariadb-slap -> primary mariadbd
#   haproxy        -> HAProxy (TCP mode) -> primary
#   causeway       -> Causeway, session pool off (the playground's own)
#   causeway+pool  -> a second Causeway with `[pool] session_pool = true`
#   causeway+txn   -> a third with `[pool] transaction_pool = true`
#   causeway-before -> with BEFORE_BIN set: that (older) binary, session
#                     pool off, for a before/after ratio in one run
#
# Then the latency of one client alone: the same loop with one connection
# at a time (LATENCY_QUERIES of them per path and round), in ms per
# connection and as a ratio to direct.
#
# Usage: benches/connect.sh
# Env:   QUERIES (per path and round, default 4000), ROUNDS (3),
#        CONCURRENCY (8), LATENCY_QUERIES (500),
#        OUT (Markdown, default target/connect-results.md),
#        BEFORE_BIN (an older causeway binary to compare with, optional)
# Needs: mariadb-slap, haproxy, mariadb client, MariaDB server, python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=connect
# shellcheck source=benches/lib.sh
source benches/lib.sh

QUERIES=${QUERIES:-4000}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-8}
LATENCY_QUERIES=${LATENCY_QUERIES:-500}
OUT=${OUT:-target/connect-results.md}
BEFORE_BIN=${BEFORE_BIN:-}
COMMAND="QUERIES=$QUERIES ROUNDS=$ROUNDS CONCURRENCY=$CONCURRENCY LATENCY_QUERIES=$LATENCY_QUERIES OUT=$OUT${BEFORE_BIN:+ BEFORE_BIN=$BEFORE_BIN} benches/connect.sh"

for tool in mariadb-slap haproxy mariadb python3; do
    command -v "$tool" >/dev/null || { echo "connect: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d -t causeway-connect.XXXXXX)
PG_PID=""
HA_PID=""
CW_PID=""
TX_PID=""
BF_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $BF_PID $TX_PID $CW_PID $HA_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 40 || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $PG_PID ]]; then
        # The playground stops its own mariadbd children on SIGINT.
        kill -INT "$PG_PID" 2>/dev/null || true
        wait_gone "$PG_PID" 160 || kill -KILL "$PG_PID" 2>/dev/null || true
    fi
    if ((rc != 0)); then log "failed (exit $rc); logs kept in $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building release binary"
cargo build --release --quiet

log "starting playground"
target/release/causeway playground --dir "$TMP/pg" --port 0 --admin-port 0 --replicas 1 --json \
    >"$TMP/playground.json" 2>"$TMP/playground.err" &
PG_PID=$!
deadline=$((SECONDS + 60))
until [[ -s $TMP/playground.json ]] && grep -q '}' "$TMP/playground.json"; do
    kill -0 "$PG_PID" 2>/dev/null || { log "playground exited before it was ready"; exit 1; }
    ((SECONDS < deadline)) || { log "playground not ready after 60 s"; exit 1; }
    sleep 0.2
done
PROXY_PORT=$(port_of "$(json_field "$TMP/playground.json" proxy)")
PRIMARY_PORT=$(port_of "$(json_field "$TMP/playground.json" primary)")
DB_USER=$(json_field "$TMP/playground.json" user)
DB_PASS=$(json_field "$TMP/playground.json" password)

start_haproxy "$PRIMARY_PORT"

# A second Causeway on the same cluster with the session pool on: the
# playground's configuration with new ports.
POOL_PORT=$(free_port)
POOL_ADMIN=$(free_port)
second_config() { # src dst port admin pool-key
    python3 - "$@" <<'PY'
import re, sys
src, dst, port, admin, key = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^listen = .*$', f'listen = "127.0.0.1:{port}"', text)
text = re.sub(r'(?m)^admin_listen = .*$', f'admin_listen = "127.0.0.1:{admin}"', text)
if key:
    text += f"\n[pool]\n{key} = true\n"
open(dst, "w").write(text)
PY
}
second_config "$TMP/pg/causeway.toml" "$TMP/pool.toml" "$POOL_PORT" "$POOL_ADMIN" session_pool
target/release/causeway --config "$TMP/pool.toml" >"$TMP/pool.out" 2>"$TMP/pool.err" &
CW_PID=$!
wait_port "$POOL_PORT" "$CW_PID"
TXN_PORT=$(free_port)
TXN_ADMIN=$(free_port)
second_config "$TMP/pg/causeway.toml" "$TMP/txn.toml" "$TXN_PORT" "$TXN_ADMIN" transaction_pool
target/release/causeway --config "$TMP/txn.toml" >"$TMP/txn.out" 2>"$TMP/txn.err" &
TX_PID=$!
wait_port "$TXN_PORT" "$TX_PID"

if [[ -n $BEFORE_BIN ]]; then
    BF_PORT=$(free_port)
    BF_ADMIN=$(free_port)
    second_config "$TMP/pg/causeway.toml" "$TMP/before.toml" "$BF_PORT" "$BF_ADMIN" ""
    "$BEFORE_BIN" --config "$TMP/before.toml" >"$TMP/before.out" 2>"$TMP/before.err" &
    BF_PID=$!
    wait_port "$BF_PORT" "$BF_PID"
fi

PRIMARY_PID=$(<"$TMP/pg/primary/mariadbd.pid")
REPLICA_PID=$(<"$TMP/pg/replica1/mariadbd.pid")
TICK=$(getconf CLK_TCK)

# One path's run: "connections/s client-µs" (the client's CPU per
# connection, from getrusage of mariadb-slap).
slap() { # port [queries concurrency]
    MYSQL_PWD="$DB_PASS" python3 - "$1" "${2:-$QUERIES}" "${3:-$CONCURRENCY}" "$DB_USER" <<'PY'
import re, resource, subprocess, sys
port, n, conc, user = sys.argv[1:]
before = resource.getrusage(resource.RUSAGE_CHILDREN)
r = subprocess.run(["mariadb-slap", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", f"-P{port}",
                    f"-u{user}", "--create-schema=app", "--no-drop", f"--concurrency={conc}",
                    f"--number-of-queries={n}", "--detach=1", "--query=SELECT 1", "--iterations=1"],
                   capture_output=True, text=True)
after = resource.getrusage(resource.RUSAGE_CHILDREN)
m = re.search(r"Average number of seconds to run all queries: ([0-9.]+) seconds", r.stdout)
if r.returncode != 0 or not m:
    sys.exit(f"mariadb-slap on port {port} failed: {r.stdout}{r.stderr}")
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
print(round(int(n) / max(float(m.group(1)), 1e-3)), round(cpu * 1e6 / int(n)))
PY
}

# CPU per connection of a process over all rounds, in µs.
per_conn() { # ticks
    python3 -c "import sys; print(round(int(sys.argv[1]) * 1e6 / int(sys.argv[2]) / int(sys.argv[3])))" \
        "$1" "$TICK" "$((QUERIES * ROUNDS))"
}

PATHS=(direct haproxy causeway causeway+pool causeway+txn)
declare -A PORT PROXYPID RATES CLIENT_US PTICKS RTICKS XTICKS
PORT=([direct]=$PRIMARY_PORT [haproxy]=$HA_PORT [causeway]=$PROXY_PORT [causeway+pool]=$POOL_PORT [causeway+txn]=$TXN_PORT)
PROXYPID=([direct]="" [haproxy]=$HA_PID [causeway]=$PG_PID [causeway+pool]=$CW_PID [causeway+txn]=$TX_PID)
if [[ -n $BEFORE_BIN ]]; then
    PATHS+=(causeway-before)
    PORT[causeway-before]=$BF_PORT
    PROXYPID[causeway-before]=$BF_PID
fi
for path in "${PATHS[@]}"; do
    slap "${PORT[$path]}" >/dev/null # warm-up (fills the pools)
    RATES[$path]="" CLIENT_US[$path]=0 PTICKS[$path]=0 RTICKS[$path]=0 XTICKS[$path]=0
done
# Rounds rotate the order of the paths, so that no path always runs after
# the same ones (the TIME_WAIT sockets each run leaves slow later connects).
for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < ${#PATHS[@]}; i++)); do
        path=${PATHS[$(((i + round) % ${#PATHS[@]}))]}
        proxy=${PROXYPID[$path]}
        p0=$(cpu_ticks "$PRIMARY_PID") r0=$(cpu_ticks "$REPLICA_PID") x0=0
        [[ -n $proxy ]] && x0=$(cpu_ticks "$proxy")
        out=$(slap "${PORT[$path]}")
        read -r rate client <<<"$out"
        p1=$(cpu_ticks "$PRIMARY_PID") r1=$(cpu_ticks "$REPLICA_PID") x1=0
        [[ -n $proxy ]] && x1=$(cpu_ticks "$proxy")
        RATES[$path]+="$rate "
        CLIENT_US[$path]=$((CLIENT_US[$path] + client))
        PTICKS[$path]=$((PTICKS[$path] + p1 - p0))
        RTICKS[$path]=$((RTICKS[$path] + r1 - r0))
        XTICKS[$path]=$((XTICKS[$path] + x1 - x0))
        log "round $((round + 1)): $path: $rate connections/s"
    done
done

# One client alone: µs per connection, per path and round.
declare -A LAT
for path in "${PATHS[@]}"; do LAT[$path]=""; done
for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < ${#PATHS[@]}; i++)); do
        path=${PATHS[$(((i + round) % ${#PATHS[@]}))]}
        read -r rate _ <<<"$(slap "${PORT[$path]}" "$LATENCY_QUERIES" 1)"
        LAT[$path]+="$((1000000 / rate)) "
        log "round $((round + 1)): $path alone: $((1000000 / rate)) µs per connection"
    done
done

median() { python3 -c 'import statistics, sys; print(round(statistics.median(map(int, sys.argv[1:]))))' "$@"; }
declare -A RATE CLIENT PRIMARY REPLICA PROXY SPREAD
for path in "${PATHS[@]}"; do
    # shellcheck disable=SC2086 # the rates are a space-separated list
    RATE[$path]=$(median ${RATES[$path]})
    # shellcheck disable=SC2086
    SPREAD[$path]=$(python3 -c 'import sys; v = list(map(int, sys.argv[1:])); print(f"{min(v)}–{max(v)}")' ${RATES[$path]})
    CLIENT[$path]=$((CLIENT_US[$path] / ROUNDS))
    PRIMARY[$path]=$(per_conn "${PTICKS[$path]}")
    REPLICA[$path]=$(per_conn "${RTICKS[$path]}")
    PROXY[$path]=$(per_conn "${XTICKS[$path]}")
done

{
    echo "# Short connections per second"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(nproc) CPUs; causeway: $(git rev-parse --short HEAD)"
    echo "- command: \`$COMMAND\`"
    echo "- each connection: connect, \`SELECT 1\`, disconnect (\`mariadb-slap --detach=1\`), $CONCURRENCY concurrent; per path one warm-up run, then $ROUNDS runs of $QUERIES connections, in rotating order; the median run and the range"
    echo
    echo "- CPU: µs per connection of the client (mariadb-slap), each server and the proxy, from getrusage and /proc/PID/stat"
    echo
    md_row "path|connections/s|range|vs direct|client µs|primary µs|replica µs|proxy µs|total µs"
    md_row "---|--:|--:|--:|--:|--:|--:|--:|--:"
    for path in "${PATHS[@]}"; do
        total=$((CLIENT[$path] + PRIMARY[$path] + REPLICA[$path] + PROXY[$path]))
        md_row "$path|${RATE[$path]}|${SPREAD[$path]}|$(python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}x')" "${RATE[$path]}" "${RATE[direct]}")|${CLIENT[$path]}|${PRIMARY[$path]}|${REPLICA[$path]}|${PROXY[$path]}|$total"
    done
    # With every process on the same cores, connections/s follow total CPU
    # per connection: the proxy's share that 1.5x direct leaves.
    direct_total=$((CLIENT[direct] + PRIMARY[direct] + REPLICA[direct]))
    rest=$((CLIENT[causeway+pool] + PRIMARY[causeway+pool] + REPLICA[causeway+pool]))
    echo
    echo
    echo "One client alone (\`--concurrency=1\`, $LATENCY_QUERIES connections per path and round): the median round"
    echo
    md_row "path|ms per connection|range (ms)|vs direct"
    md_row "---|--:|--:|--:"
    # shellcheck disable=SC2086 # the latencies are a space-separated list
    lat_direct=$(median ${LAT[direct]})
    for path in "${PATHS[@]}"; do
        # shellcheck disable=SC2086
        lat=$(median ${LAT[$path]})
        # shellcheck disable=SC2086
        md_row "$path|$(python3 -c "import sys; print(f'{int(sys.argv[1]) / 1000:.2f}')" "$lat")|$(python3 -c 'import sys; v = list(map(int, sys.argv[1:])); print(f"{min(v) / 1000:.2f}–{max(v) / 1000:.2f}")' ${LAT[$path]})|$(python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}x')" "$lat" "$lat_direct")"
    done
    echo
    echo "- CPU budget: direct costs $direct_total µs per connection in all; at 1.5x direct on the same cores a pooled connection may cost $((direct_total * 2 / 3)) µs, of which the client and servers already take $rest µs, leaving $((direct_total * 2 / 3 - rest)) µs for the proxy (measured: ${PROXY[causeway+pool]} µs)."
} | tee "$OUT"
