#!/usr/bin/env bash
# The transaction-level pool, three figures from one run against one
# playground cluster (primary + 1 replica); each part gets a fresh second
# Causeway (the playground's causeway.toml, new ports, plus
#   [pool] transaction_pool = true, transaction_pool_max_per_backend = 50,
#   transaction_pool_queue_timeout_ms = 5000):
#   clients  sysbench oltp_point_select with CLIENTS (5000) threads through
#            it for DURATION s, the backends' max_connections lowered to
#            MariaDB's default 151; q/s, errors (--mysql-ignore-errors=none:
#            every error is fatal and visible), and the peak number of the
#            application user's connections on the primary and on the replica
#            (information_schema.PROCESSLIST, as root, every 0.5 s).
#            Target: at most 50 per backend, zero errors.
#   idle     Causeway's VmRSS before and after IDLE (5000) idle clients
#            (examples/idle_clients.rs) connect: KiB per client.
#            Target: at most 16 KiB.
#   compare  sysbench oltp_point_select, THREADS (64) threads, DURATION s,
#            through two second Causeways started side by side, one without
#            and one with the transaction pool, one run after the other,
#            ROUNDS (2) times alternating: q/s and Causeway's CPU per query
#            (utime+stime from /proc/PID/stat over sysbench's query count)
#            of each, and the ratios pool / no pool.
#
# Usage: benches/txn_pool.sh                    (about 3 minutes)
#        DURATION=5 CLIENTS=1000 IDLE=1000 benches/txn_pool.sh
#        TXN_POOL=off BACKEND_MAX_CONNECTIONS= benches/txn_pool.sh   (rehearsal, see below)
# Env:   DURATION (s per sysbench run, default 30), CLIENTS (5000), IDLE (5000),
#        THREADS (64), ROUNDS (2), PARTS ("clients idle compare"),
#        BACKEND_MAX_CONNECTIONS (151; empty keeps the playground's 2000),
#        PS_MODE (sysbench --db-ps-mode, auto), TXN_POOL (on; off runs the
#        same measurements through a second Causeway without the pool: the
#        failure mode and the baseline), KEEP=1 (keep logs and samples),
#        OUT (Markdown, default target/txn-pool-results.md)
# Needs: sysbench, mariadb client, MariaDB server (for the playground), python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=txn_pool
# shellcheck source=benches/lib.sh
source benches/lib.sh

DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-5000}
IDLE=${IDLE:-5000}
THREADS=${THREADS:-64}
ROUNDS=${ROUNDS:-2}
PARTS=${PARTS:-clients idle compare}
BACKEND_MAX_CONNECTIONS=${BACKEND_MAX_CONNECTIONS-151}
PS_MODE=${PS_MODE:-auto}
TXN_POOL=${TXN_POOL:-on}
KEEP=${KEEP:-0}
OUT=${OUT:-target/txn-pool-results.md}
CLK_TCK=$(getconf CLK_TCK)
TABLES=4
TABLE_SIZE=10000
MAX_PER_BACKEND=50 # the pool's limit, and the target for `clients`
QUEUE_TIMEOUT_MS=5000
RSS_TARGET_KIB=16
SAMPLE_S=0.5
READY_TIMEOUT=60
IDLE_TIMEOUT=600 # seconds for IDLE clients to log in

COMMAND="DURATION=$DURATION CLIENTS=$CLIENTS IDLE=$IDLE THREADS=$THREADS ROUNDS=$ROUNDS PARTS=\"$PARTS\" BACKEND_MAX_CONNECTIONS=$BACKEND_MAX_CONNECTIONS PS_MODE=$PS_MODE TXN_POOL=$TXN_POOL OUT=$OUT benches/txn_pool.sh"

for tool in sysbench mariadb python3 cargo; do
    command -v "$tool" >/dev/null || { echo "txn_pool: $tool not found" >&2; exit 1; }
done
case $TXN_POOL in on | off) ;; *) echo "txn_pool: TXN_POOL is on or off, not '$TXN_POOL'" >&2; exit 1 ;; esac
for part in $PARTS; do
    case $part in clients | idle | compare) ;; *) echo "txn_pool: unknown part '$part'" >&2; exit 1 ;; esac
done

# Every client is a socket in sysbench (or idle_clients) and in Causeway,
# and a thread in sysbench. Children inherit the raised soft limits.
BIGGEST=$((CLIENTS > IDLE ? CLIENTS : IDLE))
NEED_FDS=$((3 * BIGGEST + 1024)) # Causeway without the pool: client + 2 backends
if (($(ulimit -n) < NEED_FDS)); then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if (($(ulimit -n) < BIGGEST + 1024)); then
    echo "txn_pool: ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $BIGGEST clients need $((BIGGEST + 1024))" >&2
    exit 1
fi
if [[ $(ulimit -u) != unlimited ]] && (($(ulimit -u) < CLIENTS + 1024)); then
    ulimit -u "$(ulimit -Hu)" 2>/dev/null || true
fi

TMP=$(mktemp -d -t causeway-txn-pool.XXXXXX)
PG_PID=""
DB_PIDS=""
CW_PID=""     # the second Causeway of the current part
CW_OFF_PID="" # compare: the second Causeway without the pool
SAMPLER_PID=""
IDLE_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$SAMPLER_PID" TERM 8
    stop_pid "$IDLE_PID" TERM 160
    stop_pid "$CW_PID" TERM 60
    stop_pid "$CW_OFF_PID" TERM 60
    stop_playground "$PG_PID" "$DB_PIDS"
    if ((rc != 0)); then
        log "failed (exit $rc); logs kept in $TMP"
        tail -n 5 "$TMP"/cw.*.err 2>/dev/null >&2 || true
    elif [[ $KEEP == 1 ]]; then
        log "logs and samples kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ---------------------------------------------------------------- start

log "building release binary and examples/idle_clients"
cargo build --release --quiet --bin causeway --example idle_clients

start_playground target/release/causeway "$TMP/pg" --replicas 1
REPLICA_PORT=$(port_of "$REPLICAS")

if [[ -n $BACKEND_MAX_CONNECTIONS ]]; then
    for port in $PRIMARY_PORT $REPLICA_PORT; do
        root_sql "$port" "SET GLOBAL max_connections = $BACKEND_MAX_CONNECTIONS"
    done
fi
MAX_CONN_SEEN=$(root_sql "$PRIMARY_PORT" 'SELECT @@max_connections')
MAX_STMT_SEEN=$(root_sql "$PRIMARY_PORT" 'SELECT @@max_prepared_stmt_count')
log "backends: max_connections $MAX_CONN_SEEN, max_prepared_stmt_count $MAX_STMT_SEEN"

sysbench_prepare "$TABLES" "$TABLE_SIZE"

# ---------------------------------------------------------------- helpers

# Starts a second Causeway (the playground's configuration, new ports, the
# transaction pool if the second argument, default TXN_POOL, is on); sets
# CW_PID, CW_PORT, CW_ADMIN.
start_causeway() { # tag [on|off]
    local with=${2:-$TXN_POOL}
    CW_PORT=$(free_port)
    CW_ADMIN=$(free_port)
    local pool=""
    [[ $with == on ]] && pool="
[pool]
transaction_pool = true
transaction_pool_max_per_backend = $MAX_PER_BACKEND
transaction_pool_queue_timeout_ms = $QUEUE_TIMEOUT_MS
"
    python3 - "$TMP/pg/causeway.toml" "$TMP/cw.$1.toml" "$CW_PORT" "$CW_ADMIN" "$pool" <<'PY'
import re, sys
src, dst, port, admin, pool = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^listen = .*$', f'listen = "127.0.0.1:{port}"', text)
text = re.sub(r'(?m)^admin_listen = .*$', f'admin_listen = "127.0.0.1:{admin}"', text)
open(dst, "w").write(text + pool)
PY
    target/release/causeway --config "$TMP/cw.$1.toml" >"$TMP/cw.$1.out" 2>"$TMP/cw.$1.err" &
    CW_PID=$!
    wait_port "$CW_PORT" "$CW_PID" || { tail -n 5 "$TMP/cw.$1.err" >&2; exit 1; }
    log "causeway ($1, transaction pool $with) pid $CW_PID on :$CW_PORT, admin :$CW_ADMIN"
}

stop_causeway() {
    stop_pid "$CW_PID" TERM 60
    CW_PID=""
}

# /metrics over bash's /dev/tcp (cheap enough to sample twice a second); a
# subshell, so a refused connection cannot end the script.
metrics() ( # admin-port
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    timeout 5 cat <&3 || true
)

# "backend=total,..." of causeway_txn_pool_connections (idle + busy), or "-".
pool_conns() { # admin-port
    metrics "$1" 2>/dev/null | awk '
        /^causeway_txn_pool_connections\{/ {
            if (match($0, /backend="[^"]*"/)) {
                b = substr($0, RSTART + 9, RLENGTH - 10); n[b] += $NF; seen = 1
            }
        }
        END {
            if (!seen) { print "-"; exit }
            s = ""; for (b in n) s = s (s == "" ? "" : ",") b "=" n[b]; print s
        }'
}

# The application user's connections and the prepared statements on a backend.
BACKEND_PROBE="SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '$DB_USER'),
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT')"

# Until killed, every SAMPLE_S: "epoch primary_conns primary_stmts
# replica_conns replica_stmts pool" ("?" when a backend did not answer).
sampler() { # admin-port
    local line port v
    while :; do
        line=$(date +%s.%N)
        for port in $PRIMARY_PORT $REPLICA_PORT; do
            v=$(timeout 5 env -u MYSQL_PWD mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" \
                -uroot -N -B -e "$BACKEND_PROBE" 2>/dev/null | tr '\t' ' ') || v=""
            [[ -n $v ]] || v="? ?"
            line="$line $v"
        done
        echo "$line $(pool_conns "$1")"
        sleep "$SAMPLE_S"
    done
}

start_sampler() { # admin-port file
    sampler "$1" >"$2" 2>/dev/null &
    SAMPLER_PID=$!
}

stop_sampler() {
    stop_pid "$SAMPLER_PID" TERM 8
    SAMPLER_PID=""
}

# Column max of the sample file (2: primary conns, 3: primary statements,
# 4: replica conns, 5: replica statements); "?" when nothing was sampled.
peak() { # file column
    awk -v c="$2" '$c ~ /^[0-9]+$/ { if (!seen || $c + 0 > m) m = $c + 0; seen = 1 }
        END { print seen ? m : "?" }' "$1"
}

# Peak of the pool gauge per backend: "primary 50, replica1 48" or "-".
pool_peak() { # file
    awk '$6 != "-" && $6 != "" {
            n = split($6, kv, ","); for (i = 1; i <= n; i++) {
                split(kv[i], p, "="); if (p[2] + 0 > m[p[1]]) m[p[1]] = p[2] + 0; seen[p[1]] = 1
            }
        }
        END { for (b in seen) print b " " m[b] }' "$1" | sort | paste -sd, - | sed 's/,/, /g; s/^$/-/'
}

# sysbench's queries/s: the summary's, or (when failing threads made it exit
# before the summary) the mean of its per-second reports, marked "~".
sb_qps() { # log
    local q
    q=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); printf "%.0f", $3 }' "$1")
    if [[ -z $q ]]; then
        q=$(awk '/^\[ *[0-9]+s \]/ { for (i = 1; i <= NF; i++) if ($i == "qps:") { s += $(i + 1); n++ } }
            END { if (n) printf "~%.0f", s / n; else print 0 }' "$1")
    fi
    echo "$q"
}

# Errors in a sysbench log: "0", or e.g. "ignored 3; 2955 threads failed (1040 x2999); rc=1".
sb_errors() { # log rc
    local ignored failed codes out
    ignored=$(awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$1")
    failed=$(grep -c "function failed" "$1" || true)
    codes=$(grep -oE "FATAL: error [0-9]+|returned error [0-9]+|MySQL error: [0-9]+" "$1" |
        grep -oE "[0-9]+$" | sort | uniq -c | sort -rn | awk '{ printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1 }' || true)
    out=""
    [[ -n $ignored && $ignored != 0 ]] && out="ignored $ignored"
    if ((failed > 0)) || [[ -n $codes ]] || (($2 != 0)); then
        out="${out:+$out; }$failed threads failed${codes:+ ($codes)}; rc=$2"
    fi
    echo "${out:-0}"
}

run_sysbench() { # port threads log -> rc
    local rc=0
    # --forced-shutdown: threads stuck on a stalled proxy must not hang the run.
    timeout $((DURATION + 600)) sysbench oltp_point_select --mysql-host=127.0.0.1 --mysql-port="$1" \
        "${SB_COMMON[@]}" --threads="$2" --time="$DURATION" --forced-shutdown=60 \
        --report-interval=1 --db-ps-mode="$PS_MODE" --mysql-ignore-errors=none \
        run >"$3" 2>&1 || rc=$?
    return "$rc"
}

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

verdict() { if [[ $1 == 1 ]]; then echo "met"; else echo "**NOT met**"; fi; }

# ---------------------------------------------------------------- parts

declare -A R # results by name

part_clients() {
    start_causeway clients
    start_sampler "$CW_ADMIN" "$TMP/samples.clients"
    log "clients: sysbench oltp_point_select, $CLIENTS threads, ${DURATION}s, via :$CW_PORT"
    local t0=$SECONDS rc=0
    run_sysbench "$CW_PORT" "$CLIENTS" "$TMP/sysbench.clients.log" || rc=$?
    R[clients_wall]=$((SECONDS - t0))
    sleep 1 # one more sample after the run
    stop_sampler
    metrics "$CW_ADMIN" >"$TMP/metrics.clients" 2>/dev/null || true
    kill -0 "$CW_PID" 2>/dev/null || { log "causeway died during the run"; R[clients_died]=1; }
    stop_causeway
    R[clients_qps]=$(sb_qps "$TMP/sysbench.clients.log")
    R[clients_errors]=$(sb_errors "$TMP/sysbench.clients.log" "$rc")
    R[clients_rc]=$rc
    R[clients_peak_p]=$(peak "$TMP/samples.clients" 2)
    R[clients_peak_r]=$(peak "$TMP/samples.clients" 4)
    R[clients_stmts_p]=$(peak "$TMP/samples.clients" 3)
    R[clients_stmts_r]=$(peak "$TMP/samples.clients" 5)
    R[clients_pool_peak]=$(pool_peak "$TMP/samples.clients")
    R[clients_samples]=$(wc -l <"$TMP/samples.clients")
    R[clients_started]=$(grep -c '^Threads started!' "$TMP/sysbench.clients.log" || true)
    R[clients_pool_counters]=$(awk '/^causeway_(txn_pool_waits_total|txn_pool_timeouts_total|client_errors_total|pins_total)/ {
            printf "%s`%s %s`", (n++ ? ", " : ""), $1, $2 }' "$TMP/metrics.clients")
    log "clients: ${R[clients_qps]} q/s, errors ${R[clients_errors]}, peak app connections primary ${R[clients_peak_p]} / replica ${R[clients_peak_r]}"
    if ((rc != 0)); then
        log "sysbench failed (rc=$rc); its first errors:"
        grep -m 5 FATAL "$TMP/sysbench.clients.log" >&2 || tail -n 5 "$TMP/sysbench.clients.log" >&2
    fi
}

part_idle() {
    start_causeway idle
    # One client first, so one-time allocations (first backend login, lazily
    # built structures) land in "before".
    sql "$CW_PORT" 'SELECT 1' >/dev/null
    sleep 1
    local before after line connected failed fifo="$TMP/idle.stdin" deadline
    before=$(rss_kib "$CW_PID")
    mkfifo "$fifo"
    target/release/examples/idle_clients --addr "127.0.0.1:$CW_PORT" --user "$DB_USER" \
        --password "$DB_PASS" --db sbtest --count "$IDLE" --concurrency 64 \
        <"$fifo" >"$TMP/idle.out" 2>"$TMP/idle.err" &
    IDLE_PID=$!
    exec 7>"$fifo" # idle_clients holds its connections until this closes
    log "idle: $IDLE clients connecting to :$CW_PORT (VmRSS before: $before KiB)"
    deadline=$((SECONDS + IDLE_TIMEOUT))
    until grep -q '^ready' "$TMP/idle.out"; do
        kill -0 "$IDLE_PID" 2>/dev/null || { log "idle_clients exited early"; cat "$TMP/idle.err" >&2; exit 1; }
        ((SECONDS < deadline)) || { log "idle clients not connected after ${IDLE_TIMEOUT}s"; exit 1; }
        sleep 0.2
    done
    read -r _ connected failed < <(grep -m 1 '^ready' "$TMP/idle.out")
    sleep 2 # let Causeway settle (handshake buffers, pool returns)
    after=$(rss_kib "$CW_PID")
    R[idle_open]=$(metrics "$CW_ADMIN" 2>/dev/null | awk '$1 == "causeway_client_connections_open" { print $2 }')
    R[idle_backend_p]=$(root_sql "$PRIMARY_PORT" "$BACKEND_PROBE" | cut -f1)
    R[idle_backend_r]=$(root_sql "$REPLICA_PORT" "$BACKEND_PROBE" | cut -f1)
    exec 7>&-
    wait_gone "$IDLE_PID" 240 || stop_pid "$IDLE_PID" TERM 40
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    stop_causeway
    R[idle_before]=$before
    R[idle_after]=$after
    R[idle_connected]=$connected
    R[idle_failed]=$failed
    R[idle_first_error]=$(grep -m 1 'first:' "$TMP/idle.err" | sed 's/.*first: //' || true)
    R[idle_per_client]=$(awk -v a="$after" -v b="$before" -v n="$connected" \
        'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "n/a" }')
    log "idle: $connected connected, $failed failed; VmRSS $before -> $after KiB: ${R[idle_per_client]} KiB per client"
}

# One compare run through port $1 (Causeway pid $2): "qps cpu_us errors".
compare_run() { # port pid log
    local rc=0 t0 t1 total
    t0=$(cpu_ticks "$2")
    run_sysbench "$1" "$THREADS" "$3" || rc=$?
    t1=$(cpu_ticks "$2")
    total=$(awk '$1 == "queries:" { print $2 }' "$3")
    echo "$(sb_qps "$3") $(awk -v t=$((t1 - t0)) -v q="${total:-0}" -v hz="$CLK_TCK" \
        'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "n/a" }') $(sb_errors "$3" "$rc" | tr ' ' '_')"
}

ratio() { awk -v a="${1#\~}" -v b="${2#\~}" 'BEGIN { if (b > 0 && a != "n/a") printf "%.2f", a / b; else print "n/a" }'; }

part_compare() {
    start_causeway compare-off off
    CW_OFF_PID=$CW_PID
    local off_port=$CW_PORT
    start_causeway compare-on
    local round q c e
    R[cmp_rows]=""
    for ((round = 1; round <= ROUNDS; round++)); do
        log "compare $round/$ROUNDS: $THREADS threads, ${DURATION}s, no transaction pool :$off_port"
        read -r q c e < <(compare_run "$off_port" "$CW_OFF_PID" "$TMP/sysbench.compare.off.$round.log")
        local off_q=$q off_c=$c off_e=$e
        log "compare $round/$ROUNDS: $THREADS threads, ${DURATION}s, transaction pool $TXN_POOL :$CW_PORT"
        read -r q c e < <(compare_run "$CW_PORT" "$CW_PID" "$TMP/sysbench.compare.on.$round.log")
        local qr cr
        qr=$(ratio "$q" "$off_q")
        cr=$(ratio "$c" "$off_c")
        R[cmp_rows]+="$round|$off_q|$q|$qr|$off_c|$c|$cr|${off_e//_/ }|${e//_/ }"$'\n'
        log "compare $round/$ROUNDS: pool $q q/s $c µs/query, no pool $off_q q/s $off_c µs/query: throughput ${qr}x, CPU per query ${cr}x"
    done
    stop_causeway
    stop_pid "$CW_OFF_PID" TERM 60
    CW_OFF_PID=""
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for part in $PARTS; do "part_$part"; done

# ---------------------------------------------------------------- report

report() {
    local model pool_label ok
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    pool_label="transaction pool on (max $MAX_PER_BACKEND per backend, queue timeout $QUEUE_TIMEOUT_MS ms)"
    [[ $TXN_POOL == off ]] && pool_label="**REHEARSAL: TXN_POOL=off, the second Causeway has no transaction pool**"
    echo "# Transaction-level pool"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '$1 == "MemTotal:" { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average before: $LOAD_BEFORE"
    echo "- versions: $(sysbench --version), MariaDB $(mariadbd --version 2>/dev/null | awk '{ print $3 }')"
    echo "- causeway: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)'); $pool_label"
    echo "- command: \`$COMMAND\`"
    echo "- cluster: playground, primary + 1 replica; backends' max_connections $MAX_CONN_SEEN, max_prepared_stmt_count $MAX_STMT_SEEN;"
    echo "  sysbench oltp_point_select, $TABLES x $TABLE_SIZE rows, --db-ps-mode=$PS_MODE, --mysql-ignore-errors=none (any error ends the thread and is counted); limits: ulimit -n $(ulimit -n), -u $(ulimit -u)"
    echo
    md_row "measure|value|target|result"
    md_row "---|--:|--:|---"
    if [[ -n ${R[clients_qps]:-} ]]; then
        ok=0
        [[ ${R[clients_errors]} == 0 && ${R[clients_peak_p]} =~ ^[0-9]+$ && ${R[clients_peak_r]} =~ ^[0-9]+$ ]] &&
            ((R[clients_peak_p] <= MAX_PER_BACKEND && R[clients_peak_r] <= MAX_PER_BACKEND)) && ok=1
        md_row "$CLIENTS clients: queries/s|${R[clients_qps]}|—|"
        md_row "$CLIENTS clients: errors|${R[clients_errors]}|0|$( [[ ${R[clients_errors]} == 0 ]] && echo met || echo '**NOT met**')"
        md_row "$CLIENTS clients: peak app connections, primary / replica|${R[clients_peak_p]} / ${R[clients_peak_r]}|≤ $MAX_PER_BACKEND each|$(verdict $ok)"
    fi
    if [[ -n ${R[idle_per_client]:-} ]]; then
        ok=0
        [[ ${R[idle_failed]} == 0 ]] && awk -v v="${R[idle_per_client]}" -v t="$RSS_TARGET_KIB" 'BEGIN { exit !(v != "n/a" && v + 0 <= t) }' && ok=1
        md_row "$IDLE idle clients: RSS per client (KiB)|${R[idle_per_client]}|≤ $RSS_TARGET_KIB|$(verdict $ok)"
    fi
    echo
    echo "Details:"
    echo
    if [[ -n ${R[clients_qps]:-} ]]; then
        echo "- **$CLIENTS clients**: sysbench wall time ${R[clients_wall]} s for a ${DURATION} s run (includes logging in all threads);"
        echo "  all threads started: $([[ ${R[clients_started]} -gt 0 ]] && echo yes || echo no); exit status ${R[clients_rc]}$([[ -n ${R[clients_died]:-} ]] && echo '; **Causeway died during the run**')."
        echo "  App-user connections (\`information_schema.PROCESSLIST\`, as root, every ${SAMPLE_S} s, ${R[clients_samples]} samples): peak primary ${R[clients_peak_p]}, replica ${R[clients_peak_r]}."
        echo "  Peak prepared statements (\`Prepared_stmt_count\`): primary ${R[clients_stmts_p]}, replica ${R[clients_stmts_r]}."
        echo "  Peak \`causeway_txn_pool_connections\` (idle + busy) per backend: ${R[clients_pool_peak]}."
        echo "  Counters at the end: ${R[clients_pool_counters]:-none}."
        if [[ ${R[clients_qps]} == "~"* ]]; then
            echo "  \"~\" before queries/s: sysbench stopped before its summary; the mean of its per-second reports."
        fi
    fi
    if [[ -n ${R[idle_per_client]:-} ]]; then
        echo "- **idle clients**: examples/idle_clients, logged in to a fresh Causeway (after one warm-up client), 64 at a time;"
        echo "  ${R[idle_connected]} connected, ${R[idle_failed]} failed${R[idle_first_error]:+ (first error: ${R[idle_first_error]})};"
        echo "  VmRSS ${R[idle_before]} KiB before, ${R[idle_after]} KiB after (2 s after the last login): (after - before) / connected."
        echo "  While they were connected: Causeway's \`causeway_client_connections_open\` ${R[idle_open]:-?}; app-user connections on the primary ${R[idle_backend_p]:-?}, replica ${R[idle_backend_r]:-?}."
    fi
    if [[ -n ${R[cmp_rows]:-} ]]; then
        echo
        echo "**$THREADS threads, oltp_point_select**: two second Causeways (same binary and configuration apart from"
        echo "\`[pool]\`), one run after the other on $(nproc) shared cores, $ROUNDS rounds. CPU: Causeway's utime+stime per query."
        echo "Targets: throughput ≥ 0.95x, CPU per query ≤ 1.1x."
        echo
        md_row "round|no pool q/s|pool q/s|throughput ratio|no pool µs/query|pool µs/query|CPU ratio|errors no pool|errors pool"
        md_row "--:|--:|--:|--:|--:|--:|--:|---|---"
        while IFS= read -r row; do if [[ -n $row ]]; then md_row "$row"; fi; done <<<"${R[cmp_rows]}"
    fi
}

echo
mkdir -p "$(dirname "$OUT")"
report | tee "$OUT"
echo
log "Markdown written to $(realpath "$OUT")"
