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
