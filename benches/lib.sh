# Shell helpers shared by the end-to-end benchmark scripts (sourced, not run).
# The sourcing script sets BENCH (the log prefix) and DB_USER / DB_PASS
# before calling `sql`.

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH" -1 "$*" >&2; }

# Waits up to $2 quarter-seconds for PID $1 to exit.
wait_gone() {
    local pid=$1 n=$2
    while ((n-- > 0)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    ! kill -0 "$pid" 2>/dev/null
}

# CPU time of a process in clock ticks (utime + stime, fields 14 and 15).
# The command name (field 2) may hold spaces: split after its ')'.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # Now field 3 (state) is $1, so utime/stime are $12/$13.
    awk '{ print $12 + $13 }' <<<"$stat"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
    local port=$1 pid=$2 deadline=$((SECONDS + 20))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { log "pid $pid exited before listening on $port"; return 1; }
        ((SECONDS < deadline)) || { log "nothing listens on port $port"; return 1; }
        sleep 0.1
    done
}

json_field() { # file key
    python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(" ".join(v) if isinstance(v, list) else v)' "$1" "$2"
}

port_of() { echo "${1##*:}"; }

sql() { # port statement (as the application user)
    MYSQL_PWD="$DB_PASS" mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" -u"$DB_USER" -N -B -e "$2"
}

root_sql() { # port statement (the playground's root: no password, over TCP)
    env -u MYSQL_PWD mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"
}

md_row() { echo "| ${1//|/ | } |"; }

# Sends signal $2 to PID $1 (if set) and waits up to $3 quarter-seconds for
# it to exit, then kills it.
stop_pid() { # pid signal quarter-seconds
    [[ -n $1 ]] || return 0
    kill -0 "$1" 2>/dev/null || return 0
    kill "-$2" "$1" 2>/dev/null || true
    wait_gone "$1" "$3" || kill -KILL "$1" 2>/dev/null || true
}

# Stops a playground (it stops its own mariadbd children on SIGINT), then
# kills any of the servers it started (PIDs in $2) that outlived it.
stop_playground() { # pid "db pids"
    local pid
    stop_pid "$1" INT 160
    for pid in $2; do
        if kill -0 "$pid" 2>/dev/null; then
            log "mariadbd $pid outlived the playground; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# Starts `causeway playground` in the background and waits until it has
# printed its JSON (ready). Arguments after the first two go to the
# playground (e.g. --replicas 2 --policy FILE). Sets PG_PID, PROXY,
# PRIMARY, REPLICAS, DB_USER, DB_PASS, PROXY_PORT, PRIMARY_PORT, and
# PRIMARY_PID, REPLICA_PIDS, DB_PIDS (the mariadbd children, told apart by
# the port in their config file).
start_playground() { # binary dir [playground args...]
    local bin=$1 dir=$2 deadline pid cnf
    shift 2
    log "starting playground ($bin $*)"
    "$bin" playground --dir "$dir" --port 0 --admin-port 0 --json "$@" \
        >"$TMP/playground.json" 2>"$TMP/playground.err" &
    PG_PID=$!
    deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
    until [[ -s $TMP/playground.json ]] && grep -q '}' "$TMP/playground.json"; do
        kill -0 "$PG_PID" 2>/dev/null || { log "playground exited before it was ready"; tail -n 20 "$TMP/playground.err" >&2; return 1; }
        ((SECONDS < deadline)) || { log "playground not ready after ${READY_TIMEOUT:-60}s"; return 1; }
        sleep 0.2
    done
    PROXY=$(json_field "$TMP/playground.json" proxy)
    PRIMARY=$(json_field "$TMP/playground.json" primary)
    REPLICAS=$(json_field "$TMP/playground.json" replicas)
    DB_USER=$(json_field "$TMP/playground.json" user)
    DB_PASS=$(json_field "$TMP/playground.json" password)
    PROXY_PORT=$(port_of "$PROXY")
    PRIMARY_PORT=$(port_of "$PRIMARY")
    PRIMARY_PID=""
    REPLICA_PIDS=""
    DB_PIDS=""
    for pid in $(pgrep -P "$PG_PID" -x mariadbd || true); do
        DB_PIDS="$DB_PIDS $pid"
        cnf=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's/^--defaults-file=//p')
        if grep -qx "port=$PRIMARY_PORT" "$cnf"; then
            PRIMARY_PID=$pid
        else
            REPLICA_PIDS="$REPLICA_PIDS $pid"
        fi
    done
    [[ -n $PRIMARY_PID ]] || { log "could not find the primary mariadbd among the playground's children"; return 1; }
    log "playground pid $PG_PID: causeway $PROXY; primary $PRIMARY (pid $PRIMARY_PID); replicas $REPLICAS (pids$REPLICA_PIDS)"
}

# Starts HAProxy 2.6 in TCP mode (parses nothing) in the foreground mode,
# in front of 127.0.0.1:$1. Sets HA_PORT and HA_PID.
start_haproxy() { # backend port
    HA_PORT=$(free_port)
    # maxconn is far above the benchmarks' threads; HAProxy needs ~2 fds
    # per connection and refuses to start if `ulimit -n` cannot cover that.
    cat >"$TMP/haproxy.cfg" <<CFG
global
    maxconn 4096
    nbthread 2

defaults
    mode tcp
    maxconn 4096
    timeout connect 10s
    timeout client 1h
    timeout server 1h

listen mariadb
    bind 127.0.0.1:$HA_PORT
    server primary 127.0.0.1:$1
CFG
    haproxy -c -q -f "$TMP/haproxy.cfg"
    haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
    HA_PID=$!
    wait_port "$HA_PORT" "$HA_PID"
    log "haproxy pid $HA_PID on 127.0.0.1:$HA_PORT"
}

# sysbench's tables on the primary ($PRIMARY_PORT), then every replica in
# $REPLICAS caught up. Sets SB_COMMON (connection and table options).
sysbench_prepare() { # tables table_size
    SB_COMMON=(--mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db=sbtest
        --tables="$1" --table-size="$2")
    log "sysbench prepare ($1 x $2 rows) on the primary"
    sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB_COMMON[@]}" \
        prepare >"$TMP/prepare.log" 2>&1 || { cat "$TMP/prepare.log" >&2; return 1; }
    wait_replicas
}

# Waits until every replica in $REPLICAS has applied the primary's
# position (a delayed one too, after its delay); sets GTID to it.
wait_replicas() {
    local r got
    GTID=$(sql "$PRIMARY_PORT" 'SELECT @@gtid_binlog_pos')
    for r in $REPLICAS; do
        got=$(sql "$(port_of "$r")" "SELECT MASTER_GTID_WAIT('$GTID', 120)")
        [[ $got == 0 ]] || { log "replica $r did not reach $GTID (MASTER_GTID_WAIT=$got)"; return 1; }
    done
    log "replicas caught up to $GTID"
}

# CPU ticks of several processes together.
sum_ticks() {
    local total=0 pid
    for pid in "$@"; do total=$((total + $(cpu_ticks "$pid"))); done
    echo "$total"
}

# Microseconds of CPU per query from a tick count (needs CLK_TCK).
per_query_us() { # ticks queries
    awk -v t="$1" -v q="$2" -v hz="$CLK_TCK" 'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "n/a" }'
}

# Builds the release binary unless CAUSEWAY_BIN names one; sets CAUSEWAY_BIN.
causeway_bin() {
    if [[ -z ${CAUSEWAY_BIN:-} ]]; then
        log "building release binary"
        cargo build --release --quiet --bin causeway
        CAUSEWAY_BIN=target/release/causeway
    fi
    [[ -x $CAUSEWAY_BIN ]] || { log "no executable causeway at $CAUSEWAY_BIN"; return 1; }
}
