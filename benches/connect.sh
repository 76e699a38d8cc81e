#!/usr/bin/env bash
# Short connections per second: connect + `SELECT 1` + disconnect, with
# `mariadb-slap --detach=1` (a new connection for every query), over four
# paths in one run against one playground cluster:
#   direct         mariadb-slap -> primary mariadbd
#   haproxy        -> HAProxy (TCP mode) -> primary
#   causeway       -> Causeway, session pool off (the playground's own)
#   causeway+pool  -> a second Causeway with `[pool] session_pool = true`
#   causeway+txn   -> a third with `[pool] transaction_pool = true`
#
# Usage: benches/connect.sh
# Env:   QUERIES (per path, default 4000), CONCURRENCY (8),
#        OUT (Markdown, default target/connect-results.md)
# Needs: mariadb-slap, haproxy, mariadb client, MariaDB server, python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=connect
# shellcheck source=benches/lib.sh
source benches/lib.sh

QUERIES=${QUERIES:-4000}
CONCURRENCY=${CONCURRENCY:-8}
OUT=${OUT:-target/connect-results.md}
COMMAND="QUERIES=$QUERIES CONCURRENCY=$CONCURRENCY OUT=$OUT benches/connect.sh"

for tool in mariadb-slap haproxy mariadb python3; do
    command -v "$tool" >/dev/null || { echo "connect: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d -t causeway-connect.XXXXXX)
PG_PID=""
HA_PID=""
CW_PID=""
TX_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $TX_PID $CW_PID $HA_PID; do
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

HA_PORT=$(free_port)
cat >"$TMP/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    maxconn 4096
    timeout connect 10s
    timeout client 1h
    timeout server 1h
listen mariadb
    bind 127.0.0.1:$HA_PORT
    server primary 127.0.0.1:$PRIMARY_PORT
CFG
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HA_PID=$!
wait_port "$HA_PORT" "$HA_PID"

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

# Connections per second for one path: QUERIES connections of one SELECT.
slap() { # port
    local out secs
    out=$(MYSQL_PWD="$DB_PASS" mariadb-slap --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" \
        -u"$DB_USER" --create-schema=app --no-drop --concurrency="$CONCURRENCY" \
        --number-of-queries="$QUERIES" --detach=1 --query="SELECT 1" --iterations=1 2>&1) \
        || { log "mariadb-slap on port $1 failed: $out"; return 1; }
    secs=$(sed -n 's/.*Average number of seconds to run all queries: \([0-9.]*\) seconds.*/\1/p' <<<"$out")
    python3 -c "import sys; print(round(int(sys.argv[1]) / max(float(sys.argv[2]), 1e-3)))" "$QUERIES" "$secs"
}

declare -A RATE
for path in direct haproxy causeway causeway+pool causeway+txn; do
    case $path in
        direct) port=$PRIMARY_PORT ;;
        haproxy) port=$HA_PORT ;;
        causeway) port=$PROXY_PORT ;;
        causeway+pool) port=$POOL_PORT ;;
        causeway+txn) port=$TXN_PORT ;;
    esac
    slap "$port" >/dev/null # warm-up (fills the pool)
    RATE[$path]=$(slap "$port")
    log "$path: ${RATE[$path]} connections/s"
done

{
    echo "# Short connections per second"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(nproc) CPUs; causeway: $(git rev-parse --short HEAD)"
    echo "- command: \`$COMMAND\`"
    echo "- each connection: connect, \`SELECT 1\`, disconnect (\`mariadb-slap --detach=1\`), $CONCURRENCY concurrent, $QUERIES connections per path after one warm-up round"
    echo
    md_row "path|connections/s|vs direct"
    md_row "---|--:|--:"
    for path in direct haproxy causeway causeway+pool causeway+txn; do
        md_row "$path|${RATE[$path]}|$(python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}x')" "${RATE[$path]}" "${RATE[direct]}")"
    done
} | tee "$OUT"
