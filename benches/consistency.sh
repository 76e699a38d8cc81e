#!/usr/bin/env bash
# End-to-end benchmark of the consistency levels: sysbench through Causeway
# under each level (eventual, session, global, bounded), with the replicas
# healthy and with one replica lagging, against one playground cluster.
#
# One playground (primary + 2 replicas; its own Causeway runs the
# primary-only policy and takes no traffic here). For every run a fresh
# `causeway --config FILE` process with that level's policy is started
# (fresh, so the wait-time summary's quantiles cover that run alone),
# sysbench runs through it, and /metrics is scraped before and after.
#
#   replication states   healthy   both replicas applying as fast as they can
#                        lagging   replica 1 with MASTER_DELAY = 1 (set as root
#                                  on that replica, restored afterwards)
#
# Reported per (level, state, workload): queries/s, errors, the share of reads
# served by replicas, consistency waits (count, p50, p99), fallbacks to the
# primary, and position queries sent to the primary per read.
#
# Usage: benches/consistency.sh              (4 levels x 2 states x 2 workloads x 10 s)
#        DURATION=3 LEVELS=session STATES=lagging WORKLOADS=oltp_read_only benches/consistency.sh
# Env:   DURATION (s, default 10), THREADS (16), LEVELS, STATES, WORKLOADS,
#        BG_WRITES (writes/s sent straight to the primary during each run,
#        outside Causeway; default 0), OUT (default target/consistency-results.md),
#        KEEP=1 keeps the logs and metric scrapes (always kept on failure),
#        CAUSEWAY_BIN (the Causeway under test; default target/release/causeway:
#        an older build compares before/after; the playground always uses the
#        default)
# Needs: sysbench, mariadb client, MariaDB server (for the playground), python3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH=consistency
# shellcheck source=benches/lib.sh
source benches/lib.sh

DURATION=${DURATION:-10}
THREADS=${THREADS:-16}
LEVELS=${LEVELS:-eventual session global bounded}
STATES=${STATES:-healthy lagging}
WORKLOADS=${WORKLOADS:-oltp_read_write oltp_read_only}
BG_WRITES=${BG_WRITES:-0}
OUT=${OUT:-target/consistency-results.md}
CAUSEWAY_BIN=${CAUSEWAY_BIN:-target/release/causeway}
TABLES=4
TABLE_SIZE=10000
READY_TIMEOUT=60
LAG_DELAY_S=1
# sysbench's default (deadlock, lock wait timeout, 1020) plus duplicate key:
# with --skip_trx=on oltp_read_write's DELETE + INSERT of one id are no longer
# one transaction, so two threads that picked the same id collide. sysbench
# counts these as ignored errors and restarts the event.
IGNORE_ERRORS=1213,1020,1205,1062

COMMAND="CAUSEWAY_BIN=$CAUSEWAY_BIN DURATION=$DURATION THREADS=$THREADS LEVELS=\"$LEVELS\" STATES=\"$STATES\" WORKLOADS=\"$WORKLOADS\" BG_WRITES=$BG_WRITES OUT=$OUT benches/consistency.sh"

for tool in sysbench mariadb python3 getconf; do
    command -v "$tool" >/dev/null || { echo "consistency: $tool not found" >&2; exit 1; }
done
for level in $LEVELS; do
    [[ -f policies/$level.toml ]] || { echo "consistency: no policies/$level.toml" >&2; exit 1; }
done
for state in $STATES; do
    case $state in healthy | lagging) ;; *) echo "consistency: unknown state $state" >&2; exit 1 ;; esac
done
[[ $BG_WRITES =~ ^[0-9]+$ ]] || { echo "consistency: BG_WRITES must be a whole number" >&2; exit 1; }

TMP=$(mktemp -d -t causeway-consistency.XXXXXX)
PG_PID=""    # the playground (its own Causeway + the mariadbd servers)
CW_PID=""    # the Causeway under test, one at a time
BGW_PIDS=""  # background writer (loop + mariadb client)
WATCH_PID="" # metrics scraper during a run
DB_PIDS=""



stop_bg_writer() {
    local pid
    for pid in $BGW_PIDS; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $BGW_PIDS; do
        wait_gone "$pid" 8 || kill -KILL "$pid" 2>/dev/null || true
    done
    BGW_PIDS=""
}

stop_watch() {
    [[ -n $WATCH_PID ]] || return 0
    kill -TERM "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
}

stop_causeway() {
    [[ -n $CW_PID ]] || return 0
    if kill -0 "$CW_PID" 2>/dev/null; then
        kill -TERM "$CW_PID" 2>/dev/null || true
        if ! wait_gone "$CW_PID" 80; then
            log "causeway (pid $CW_PID) ignored SIGTERM for 20 s; killing it"
            kill -KILL "$CW_PID" 2>/dev/null || true
        fi
    fi
    wait "$CW_PID" 2>/dev/null || true
    CW_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_bg_writer
    stop_watch
    stop_causeway
    if [[ -n $PG_PID ]] && kill -0 "$PG_PID" 2>/dev/null; then
        # The playground stops its own mariadbd children on SIGINT.
        kill -INT "$PG_PID" 2>/dev/null || true
        if ! wait_gone "$PG_PID" 120; then
            log "playground (pid $PG_PID) ignored SIGINT for 30 s; sending SIGTERM"
            kill -TERM "$PG_PID" 2>/dev/null || true
            wait_gone "$PG_PID" 40 || kill -KILL "$PG_PID" 2>/dev/null || true
        fi
    fi
    # Only the servers this run started, by pid, if the playground left any.
    for pid in $DB_PIDS; do
        if kill -0 "$pid" 2>/dev/null; then
            log "mariadbd $pid outlived the playground; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if ((rc != 0)) || [[ ${KEEP:-0} == 1 ]]; then
        ((rc == 0)) || log "failed (exit $rc)"
        log "logs and metrics kept in $TMP"
        if ((rc != 0)); then
            tail -n 20 "$TMP"/playground.err 2>/dev/null >&2 || true
            # shellcheck disable=SC2012
            last=$(ls -t "$TMP"/causeway.*.err 2>/dev/null | head -n 1 || true)
            [[ -z $last ]] || tail -n 20 "$last" >&2
        fi
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM







# ---------------------------------------------------------------- helper
# Prometheus text -> {(name, frozenset(labels)): value}, and the rest of the
# arithmetic (configs, readiness, deltas) in one small Python file.
cat >"$TMP/helper.py" <<'PY'
import json, math, re, sys, tomllib, urllib.request

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

def parse(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        key = (name, frozenset(LABEL.findall(labels or '')))
        out[key] = v
    return out

def load(path):
    with open(path) as f:
        return parse(f.read())

def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()

def total(m, name, **want):
    """Sum of the series called `name` whose labels include `want`."""
    w = set(want.items())
    return sum(v for (n, ls), v in m.items() if n == name and w <= ls)

def cmd_scrape(admin, path):
    with open(path, 'w') as f:
        f.write(get(f'http://{admin}/metrics'))

def cmd_ready(admin):
    """Exit 0 once every backend is up and every replica has a position."""
    try:
        s = json.loads(get(f'http://{admin}/status', timeout=2))
    except Exception as e:
        print(f'status: {e}')
        sys.exit(1)
    bad = []
    for b in s.get('topology', {}).get('backends', []):
        if not b.get('up'):
            bad.append(f"{b.get('name')} down")
        elif b.get('role') == 'replica' and not b.get('position'):
            bad.append(f"{b.get('name')} without a position")
    if bad or not s.get('topology', {}).get('backends'):
        print(', '.join(bad) or 'no backends')
        sys.exit(1)
    print(f"policy {s.get('policy')}: all backends up")

def cmd_config(src, dst, policy, listen, admin):
    """The playground's causeway.toml with another policy and other ports."""
    out, section = [], ''
    for line in open(src).read().splitlines():
        st = line.strip()
        if st.startswith('['):
            section = st
        if section == '' and re.match(r'policy\s*=', st):
            continue
        if section == '[proxy]' and re.match(r'listen\s*=', st):
            line = f'listen = {json.dumps(listen)}'
        elif section == '[proxy]' and re.match(r'admin_listen\s*=', st):
            line = f'admin_listen = {json.dumps(admin)}'
        out.append(line)
    text = f'policy = {json.dumps(policy)}\n' + '\n'.join(out) + '\n'
    cfg = tomllib.loads(text)
    assert cfg['proxy']['listen'] == listen and cfg['proxy']['admin_listen'] == admin, cfg['proxy']
    with open(dst, 'w') as f:
        f.write(text)

def cmd_watch(admin):
    """Scrapes /metrics until killed: every 50 ms until the first wait has
    been drained into the summary, then every second (see the note on
    quantiles in the report)."""
    import time
    seen = False
    while True:
        try:
            m = parse(get(f'http://{admin}/metrics', timeout=2))
            seen = seen or total(m, 'causeway_consistency_wait_seconds_count') > 0
        except Exception:
            pass
        time.sleep(1.0 if seen else 0.05)

def cmd_names(cfg):
    c = tomllib.load(open(cfg, 'rb'))['cluster']
    print(c['primary']['name'])
    for r in c.get('replicas', []):
        print(r['name'])

def cmd_free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(int(n))]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    print(' '.join(str(s.getsockname()[1]) for s in socks))

def cmd_report(before, after, level, primary):
    """One line: share|reads|waits|p50|p99|fallbacks|req/read|pq/read|
    replica|replica_after_wait|primary|primary_after_timeout|error|routed_primary|client_errors"""
    b, a = load(before), load(after)
    d = lambda name, **l: total(a, name, **l) - total(b, name, **l)
    R, C = 'causeway_route_decisions_total', 'causeway_consistency_reads_total'
    # Reads the router itself sent to the primary (no replica eligible).
    routed_primary = sum(d(R, target='primary', reason=r) for r in ('read_on_primary', 'no_replica'))
    served = {s: d(C, served=s) for s in ('replica', 'replica_after_wait', 'primary',
                                          'primary_after_timeout', 'error')}
    if level == 'eventual':
        on_replica = d(R, target='replica')
        reads = on_replica + routed_primary + d(R, target='primary', reason='read')
    else:
        on_replica = served['replica'] + served['replica_after_wait']
        reads = sum(served.values()) + routed_primary
    W = 'causeway_consistency_wait_seconds'
    waits = d(W + '_count')
    def quantile(q):
        vals = [v for (n, ls), v in a.items() if n == W and ('quantile', q) in ls]
        vals = [v for v in vals if not math.isnan(v)]
        return f'{max(vals) * 1000:.1f}' if waits > 0 and vals else '-'
    requests = d('causeway_position_requests_total')
    primary_polls = d('causeway_position_polls_total', backend=primary)
    per_read = lambda x: f'{x / reads:.3f}' if reads > 0 else 'n/a'
    share = f'{100 * on_replica / reads:.1f} %' if reads > 0 else 'n/a'
    fields = [share, f'{reads:.0f}', f'{waits:.0f}', quantile('0.5'), quantile('0.99'),
              f"{served['primary_after_timeout']:.0f}", per_read(requests), per_read(primary_polls)]
    fields += [f'{served[s]:.0f}' for s in served]
    fields += [f'{routed_primary:.0f}', f"{d('causeway_client_errors_total'):.0f}"]
    # The mean from _sum/_count is exact; quantiles come from a sketch that
    # can miss samples. A mean above the max quantile means it did.
    mean = d(W + '_sum') / waits if waits > 0 else None
    top = [v for (n, ls), v in a.items() if n == W and ('quantile', '1') in ls]
    fields.append(f'{mean * 1000:.1f}' if mean is not None else '-')
    if mean is not None and top and mean > max(top) * 1.01:
        print(f'warning: mean wait {mean * 1000:.1f} ms above the max quantile {max(top) * 1000:.1f} ms: '
              'the quantiles miss samples', file=sys.stderr)
    print('|'.join(fields))

cmds = {'scrape': cmd_scrape, 'watch': cmd_watch, 'ready': cmd_ready, 'config': cmd_config, 'names': cmd_names,
        'free-ports': cmd_free_ports, 'report': cmd_report}
cmds[sys.argv[1]](*sys.argv[2:])
PY
helper() { python3 "$TMP/helper.py" "$@"; }

# ---------------------------------------------------------------- start

log "building release binary"
cargo build --release --quiet

log "starting playground"
target/release/causeway playground --dir "$TMP/pg" --port 0 --admin-port 0 --replicas 2 --json \
    --policy policies/primary-only.toml >"$TMP/playground.json" 2>"$TMP/playground.err" &
PG_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s $TMP/playground.json ]] && grep -q '}' "$TMP/playground.json"; do
    kill -0 "$PG_PID" 2>/dev/null || { log "playground exited before it was ready"; exit 1; }
    ((SECONDS < deadline)) || { log "playground not ready after ${READY_TIMEOUT}s"; exit 1; }
    sleep 0.2
done
PRIMARY=$(json_field "$TMP/playground.json" primary)
REPLICAS=$(json_field "$TMP/playground.json" replicas)
DB_USER=$(json_field "$TMP/playground.json" user)
DB_PASS=$(json_field "$TMP/playground.json" password)
PRIMARY_PORT=$(port_of "$PRIMARY")
PG_CONFIG="$TMP/pg/causeway.toml"
[[ -f $PG_CONFIG ]] || { log "the playground wrote no $PG_CONFIG"; exit 1; }
mapfile -t NAMES < <(helper names "$PG_CONFIG")
PRIMARY_NAME=${NAMES[0]}
read -r LAG_REPLICA _ <<<"$REPLICAS"
LAG_PORT=$(port_of "$LAG_REPLICA")
log "playground pid $PG_PID; primary $PRIMARY_NAME at $PRIMARY; replicas $REPLICAS (${NAMES[*]:1})"

for pid in $(pgrep -P "$PG_PID" -x mariadbd || true); do
    DB_PIDS="$DB_PIDS $pid"
done
log "mariadbd pids$DB_PIDS"

SB_COMMON=(--mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db=sbtest
    --tables=$TABLES --table-size=$TABLE_SIZE)

log "sysbench prepare ($TABLES x $TABLE_SIZE rows) on the primary"
sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB_COMMON[@]}" \
    prepare >"$TMP/prepare.log" 2>&1 || { cat "$TMP/prepare.log" >&2; exit 1; }

# Every replica applies everything the primary has (a delayed one too,
# after its delay): each run starts from the same replication state.
wait_replicas || exit 1

# COM_STMT_EXECUTEs each replica has run, space-separated in $REPLICAS
# order. sysbench's --db-ps-mode=auto prepares every statement, and
# Causeway's monitor and waits use text queries: so these are the reads each
# replica served (a timed-out wait's read, dropped, counts too).
replica_execs() {
    local r out=""
    for r in $REPLICAS; do
        out="$out $(root_sql "$(port_of "$r")" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'")"
    done
    echo "$out"
}

set_delay() { # seconds
    root_sql "$LAG_PORT" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = $1; START SLAVE;"
    local got
    # \G output keeps the field names only without -N.
    got=$(env -u MYSQL_PWD mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$LAG_PORT" -uroot \
        -e 'SHOW SLAVE STATUS\G' | awk '$1 == "SQL_Delay:" { print $2 }')
    [[ $got == "$1" ]] || { log "replica $LAG_REPLICA: SQL_Delay is '$got', not $1"; exit 1; }
    log "replica $LAG_REPLICA: MASTER_DELAY = $1"
}

start_bg_writer() { # tag
    ((BG_WRITES > 0)) || return 0
    local interval
    interval=$(awk -v n="$BG_WRITES" 'BEGIN { printf "%.4f", 1 / n }')
    # One client reading statements from a loop; the loop writes its own
    # pid so both can be stopped by pid.
    {
        echo "$BASHPID" >"$TMP/bgw.pid"
        while :; do
            echo "UPDATE sbtest1 SET k = k + 1 WHERE id = $((RANDOM % TABLE_SIZE + 1));"
            sleep "$interval"
        done
    } | MYSQL_PWD="$DB_PASS" mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$PRIMARY_PORT" \
        -u"$DB_USER" -N -B sbtest >"$TMP/bgw.$1.log" 2>&1 &
    BGW_PIDS="$!"
    local n=40
    until [[ -s $TMP/bgw.pid ]] || ((n-- == 0)); do sleep 0.05; done
    BGW_PIDS="$BGW_PIDS $(<"$TMP/bgw.pid")"
    rm -f "$TMP/bgw.pid"
}

# Starts a Causeway with policies/<level>.toml on fresh ports; sets CW_PID,
# CW_PORT, CW_ADMIN.
start_causeway() { # level tag
    local level=$1 tag=$2 admin_port policy cfg deadline why
    read -r CW_PORT admin_port <<<"$(helper free-ports 2)"
    CW_ADMIN="127.0.0.1:$admin_port"
    policy="$TMP/policy.$level.toml"
    cp "policies/$level.toml" "$policy"
    cfg="$TMP/causeway.$tag.toml"
    helper config "$PG_CONFIG" "$cfg" "$policy" "127.0.0.1:$CW_PORT" "$CW_ADMIN"
    "$CAUSEWAY_BIN" --config "$cfg" >"$TMP/causeway.$tag.out" 2>"$TMP/causeway.$tag.err" &
    CW_PID=$!
    wait_port "$CW_PORT" "$CW_PID"
    deadline=$((SECONDS + 30))
    until why=$(helper ready "$CW_ADMIN"); do
        kill -0 "$CW_PID" 2>/dev/null || { log "causeway $tag exited"; exit 1; }
        ((SECONDS < deadline)) || { log "causeway $tag not ready after 30 s: $why"; exit 1; }
        sleep 0.2
    done
    log "causeway pid $CW_PID ($tag) on 127.0.0.1:$CW_PORT, admin $CW_ADMIN: $why"
}

# ---------------------------------------------------------------- runs

# CPU ticks of every mariadbd this run started, together.
servers_ticks() {
    local pid sum=0 t
    for pid in $DB_PIDS; do
        t=$(cpu_ticks "$pid" 2>/dev/null || echo 0)
        sum=$((sum + t))
    done
    echo "$sum"
}

# The machine's busy and total CPU ticks so far ("busy all"), from /proc/stat.
machine_ticks() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit }' /proc/stat
}

CLK_TCK=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the runs: $LOAD_BEFORE (figures are only comparable on a quiet machine)"
ROWS=()    # "order|level|state|workload|qps|errors|share|waits|p50|p99|fallbacks|req/read|pq/read"
DETAILS=() # "order|level|state|workload|reads|replica|after_wait|primary|after_timeout|error|routed_primary|per_replica|wait_mean|client_errors|cpu"

index_of() { # word list...
    local w=$1 i=0 x
    shift
    for x in "$@"; do
        [[ $x == "$w" ]] && { echo "$i"; return; }
        i=$((i + 1))
    done
    echo 99
}

run_one() { # level state workload
    local level=$1 state=$2 workload=$3 tag="$1.$2.$3"
    local logf="$TMP/sysbench.$tag.log" rc=0 t0 t1
    wait_replicas || exit 1
    start_causeway "$level" "$tag"
    helper scrape "$CW_ADMIN" "$TMP/metrics.$tag.before"
    t0=$(cpu_ticks "$CW_PID")
    local db0 m0 db1 m1
    db0=$(servers_ticks)
    m0=$(machine_ticks)
    local -a e0 e1
    read -r -a e0 <<<"$(replica_execs)"
    # python3 itself in the background (not the helper function, whose
    # subshell would leave python running when killed).
    python3 "$TMP/helper.py" watch "$CW_ADMIN" &
    WATCH_PID=$!
    start_bg_writer "$tag"
    sysbench "$workload" --mysql-host=127.0.0.1 --mysql-port="$CW_PORT" "${SB_COMMON[@]}" \
        --threads="$THREADS" --time="$DURATION" --report-interval=0 --db-ps-mode=auto \
        --skip_trx=on --mysql-ignore-errors="$IGNORE_ERRORS" run >"$logf" 2>&1 || rc=$?
    stop_bg_writer
    stop_watch
    kill -0 "$CW_PID" 2>/dev/null || { log "causeway died during $tag; sysbench said:"; tail -n 5 "$logf" >&2; exit 1; }
    t1=$(cpu_ticks "$CW_PID")
    db1=$(servers_ticks)
    m1=$(machine_ticks)
    read -r -a e1 <<<"$(replica_execs)"
    local per_replica="" i
    for i in "${!e0[@]}"; do
        per_replica="$per_replica${per_replica:+ / }$((e1[i] - e0[i]))"
    done
    helper scrape "$CW_ADMIN" "$TMP/metrics.$tag.after"
    stop_causeway

    local total qps ignored errors
    total=$(awk '$1 == "queries:" { print $2 }' "$logf")
    qps=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); printf "%.0f", $3 }' "$logf")
    ignored=$(awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$logf")
    errors=${ignored:-?}
    if ((rc != 0)) || grep -q 'FATAL' "$logf"; then
        errors="$errors+FATAL(rc=$rc)"
        log "$tag failed; first errors:"
        grep -m 5 -E 'FATAL|error' "$logf" >&2 || tail -n 5 "$logf" >&2
    fi
    total=${total:-0}
    qps=${qps:-0}
    local cpu
    cpu=$(awk -v t=$((t1 - t0)) -v q="$total" -v hz="$CLK_TCK" \
        'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "n/a" }')

    # The machine: how busy its cores were over the run, and the CPU every
    # process together (sysbench, Causeway, the servers, anything else)
    # spent per query; the three servers' share of it.
    local busy machine servers
    read -r busy machine <<<"$(awk -v b0="${m0% *}" -v a0="${m0#* }" -v b1="${m1% *}" -v a1="${m1#* }" \
        -v q="$total" -v hz="$CLK_TCK" 'BEGIN { db = b1 - b0; da = a1 - a0;
        printf "%.0f %s", (da > 0 ? 100 * db / da : 0), (q > 0 ? sprintf("%.1f", db / hz * 1e6 / q) : "n/a") }')"
    servers=$(awk -v t=$((db1 - db0)) -v q="$total" -v hz="$CLK_TCK" \
        'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "n/a" }')

    local r share reads waits p50 p99 fallbacks reqs pqs replica after_wait primary after_timeout error routed cerr mean
    r=$(helper report "$TMP/metrics.$tag.before" "$TMP/metrics.$tag.after" "$level" "$PRIMARY_NAME")
    IFS='|' read -r share reads waits p50 p99 fallbacks reqs pqs replica after_wait primary after_timeout error routed cerr mean <<<"$r"
    local order
    order=$(printf '%02d%02d%02d' "$(index_of "$level" $LEVELS)" "$(index_of "$state" $STATES)" \
        "$(index_of "$workload" $WORKLOADS)")
    ROWS+=("$order|$level|$state|$workload|$qps|$errors|$share|$waits|$p50|$p99|$fallbacks|$reqs|$pqs")
    DETAILS+=("$order|$level|$state|$workload|$reads|$replica|$after_wait|$primary|$after_timeout|$error|$routed|$per_replica|$mean|$cerr|$cpu|$servers|$machine|$busy")
    log "$tag: $qps q/s, errors $errors, replica share $share of $reads reads, waits $waits (p50 $p50 ms, p99 $p99 ms), fallbacks $fallbacks, requests/read $reqs, primary position queries/read $pqs"
}

for state in $STATES; do
    case $state in
        healthy) ;;
        lagging) set_delay "$LAG_DELAY_S" ;;
    esac
    for level in $LEVELS; do
        for workload in $WORKLOADS; do
            log "running $workload at $level, replication $state, for ${DURATION}s"
            run_one "$level" "$state" "$workload"
        done
    done
    if [[ $state == lagging ]]; then
        set_delay 0
        wait_replicas || exit 1
    fi
done

# ---------------------------------------------------------------- report

HEADER="level|replication|workload|qps|errors|replica share of reads|waits|wait p50 ms|wait p99 ms|fallbacks|position requests/read|primary position queries/read"
REPLICA_NAMES=$(printf ' / %s' "${NAMES[@]:1}")
DETAIL_HEADER="level|replication|workload|reads|replica|replica_after_wait|primary|primary_after_timeout|error|routed to primary|executes on ${REPLICA_NAMES# / }|wait mean ms|client errors|causeway CPU µs/query|servers CPU µs/query|machine CPU µs/query|machine busy %"


sorted() { # rows... -> rows without the order field, in level/state/workload order
    printf '%s\n' "$@" | sort -t'|' -k1,1 -s | cut -d'|' -f2-
}

print_markdown() {
    local model row
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "# Causeway consistency-level benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}; $(uname -sr); load average before the runs: $LOAD_BEFORE"
    echo "- versions: $(sysbench --version), MariaDB $(mariadbd --version 2>/dev/null | awk '{ print $3 }')"
    echo "- causeway: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
    echo "- command: \`$COMMAND\`"
    echo "- sysbench: $THREADS threads, ${DURATION}s per run, --db-ps-mode=auto, --skip_trx=on (for both"
    echo "  workloads: every statement autocommits, so reads are splittable), $TABLES tables x $TABLE_SIZE rows,"
    echo "  prepared once on the primary; sysbench, Causeway and three mariadbd servers share the machine's cores;"
    echo "  --mysql-ignore-errors=$IGNORE_ERRORS: without transactions oltp_read_write's DELETE and INSERT of one"
    echo "  id can interleave between threads (duplicate key, 1062); sysbench restarts the event and counts it in **errors**"
    echo "- one playground (primary + 2 replicas); for every row a fresh \`causeway --config\` with"
    echo "  \`policies/<level>.toml\`, started once every replica has caught up with the primary"
    echo "- replication: \`healthy\` = both replicas as fast as they go; \`lagging\` = replica 1 with"
    echo "  \`MASTER_DELAY = $LAG_DELAY_S\` (it lags only while there are writes: with oltp_read_only and"
    echo "  BG_WRITES=0 it has nothing to be behind on)"
    if ((BG_WRITES > 0)); then
        echo "- background writes: $BG_WRITES single-row UPDATEs/s sent straight to the primary during each run (not through Causeway)"
    fi
    echo
    md_row "$HEADER"
    echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    while IFS= read -r row; do md_row "$row"; done < <(sorted "${ROWS[@]}")
    echo
    echo "Columns (deltas of Causeway's /metrics over the run):"
    echo
    echo "- **reads**: eventual: \`causeway_route_decisions_total\` with target=\"replica\", plus target=\"primary\""
    echo "  with reason read_on_primary / no_replica / read. Other levels: \`causeway_consistency_reads_total\`"
    echo "  over every \`served\` value, plus the route decisions target=\"primary\" reason=read_on_primary / no_replica"
    echo "  (reads the router never offered to a replica are not counted by \`consistency_reads\`)."
    echo "- **replica share of reads**: reads served by a replica / reads; eventual: target=\"replica\";"
    echo "  other levels: served=\"replica\" + served=\"replica_after_wait\"."
    echo "- **waits**: \`causeway_consistency_wait_seconds_count\`; **p50 / p99**: that summary's quantile lines"
    echo "  at the end of the run (the process served this run only); \`-\` without waits. Causeway runs the"
    echo "  exporter's upkeep every second, which moves samples into the summary; the script also scrapes"
    echo "  during the run. **wait mean ms** below is exact (\`_sum\` / \`_count\`)."
    echo "- **fallbacks**: served=\"primary_after_timeout\" (a wait timed out, or the replica failed during it)."
    echo "- **position requests/read**: \`causeway_position_requests_total\` (primary position reads made because a"
    echo "  read asked for a fresh one) / reads. **primary position queries/read**:"
    echo "  \`causeway_position_polls_total{backend=\"$PRIMARY_NAME\"}\` (every position read on the primary: the"
    echo "  requests above plus the periodic polls, every \`monitor.position_interval_ms\`) / reads."
    echo
    echo "Served breakdown (\`causeway_consistency_reads_total\` by \`served\`; none at eventual), reads the router sent"
    echo "to the primary itself, COM_STMT_EXECUTEs each replica ran (from its \`Com_stmt_execute\`: the reads it"
    echo "served, all sysbench statements being prepared; ${NAMES[1]} is the one delayed in \`lagging\`), the exact"
    echo "mean wait, errors Causeway sent to clients, and CPU per query (utime+stime): Causeway's, the three"
    echo "servers' together, and the whole machine's (every process: sysbench, Causeway, servers, the rest;"
    echo "from /proc/stat), with the share of the machine's cores busy over the run:"
    echo
    md_row "$DETAIL_HEADER"
    echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    while IFS= read -r row; do md_row "$row"; done < <(sorted "${DETAILS[@]}")
}

mkdir -p "$(dirname "$OUT")"
print_markdown >"$OUT"
echo
cat "$OUT"
echo
log "Markdown written to $(realpath "$OUT")"
