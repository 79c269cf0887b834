#!/usr/bin/env bash
# tools/demo/run.sh — the main job (`make run`): starts creator profile, tier scoring and
# attribution on free loopback ports with fresh SQLite data directories under a temp
# dir, waits for their health to be SERVING (tools/health_probe), runs the demo against
# them (tools/demo), then stops them with SIGTERM and checks that each exits 0.
#
#   tools/demo/run.sh [--bin-dir DIR] [--quick] [--serve] [--cluster] [--store STORE]
#                     [-- DEMO FLAGS...]
#
#   --bin-dir DIR  where the Bazel outputs are (default: ./bazel-bin)
#   --quick        the demo's QUICK size (a first look in well under a minute)
#   --serve        keep the services up after the report, printing grpcurl commands to
#                  try, until Ctrl-C
#   --cluster      attribution as a cluster (`make run CLUSTER=1`): three nats-server
#                  (JetStream, one cluster over routes) and three attribution nodes
#                  instead of one attribution; the demo spreads its attribution calls
#                  over the three nodes, one call to each in turn
#   --store STORE  where creator profile and tier scoring keep their data: sqlite (the
#                  default: a file in each data dir) or postgres (`make run
#                  STORE=postgres`): a PostgreSQL server of this run's own, initdb in a
#                  temp dir of its own on a free loopback port (as the postgres user
#                  when run as root), one database both services share (--store);
#                  stopped and removed at the end whatever happened (KEEP_DATA=1 keeps
#                  its directory; its log is copied to the kept temp dir on failure)
#   KEEP_DATA=1    keep the temp dir (data and logs) at the end
#   TIER_REFRESH_MS  tier scoring's --refresh-interval-ms (default: its own, 60000)
#   CLUSTER_PARTITIONS  the cluster's --partitions (default: attribution's own, 64)
#
# Exit status: the demo's (0 all checks passed, 1 a check failed, 2 bad flags, 3 a
# service could not be used), or 4 when a service failed to start or to stop cleanly.

# stop_all, cleanup and on_signal run from traps, which shellcheck does not follow.
# shellcheck disable=SC2317
set -u -o pipefail

BIN_DIR=./bazel-bin
QUICK=0
SERVE=0
CLUSTER=0
STORE=sqlite
DEMO_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --serve) SERVE=1; shift ;;
    --cluster) CLUSTER=1; shift ;;
    --store) STORE=${2:-}; shift 2 ;;
    --store=*) STORE=${1#*=}; shift ;;
    --) shift; DEMO_ARGS+=("$@"); break ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

CP_BIN=$BIN_DIR/services/creator_profile/creator_profile
TS_BIN=$BIN_DIR/services/tier_scoring/tier_scoring
AT_BIN=$BIN_DIR/services/attribution/attribution
PROBE_BIN=$BIN_DIR/tools/health_probe/health_probe
DEMO_BIN=$BIN_DIR/tools/demo/demo
for b in "$CP_BIN" "$TS_BIN" "$AT_BIN" "$PROBE_BIN" "$DEMO_BIN"; do
    if [ ! -x "$b" ]; then
        echo "run.sh: $b is missing: build first (bazel build //...)" >&2
        exit 4
    fi
done
case "$STORE" in
sqlite | postgres) ;;
*) echo "run.sh: --store must be sqlite or postgres, not '$STORE'" >&2; exit 2 ;;
esac
# Debian's PostgreSQL server programs (the newest installed), for --store postgres.
PG_BIN=
if [ "$STORE" = postgres ]; then
    PG_BIN=$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
    PG_BIN=${PG_BIN%/initdb}
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
        echo "run.sh: PostgreSQL is missing: install it (make deps, Debian's postgresql)" >&2
        exit 4
    fi
fi
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ "$CLUSTER" = 1 ] && [ ! -x "$NATS_BIN" ]; then
    echo "run.sh: nats-server is missing: install it (make deps, Debian's nats-server)" >&2
    exit 4
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/yaowei-run.XXXXXX") || exit 4
# Every process started, in start order; those of one stop wave are signalled together,
# with their stop signal (SIGTERM; SIGINT for nats-server, whose clean stop exits 0 at
# SIGINT and 1 at SIGTERM).
NAMES=()
PIDS=()
LOGS=()
WAVES=()
STOP_SIGS=()
STOP_FAILED=0
PG_DIR=

log_tail() {
    echo "--- last lines of $1 ---" >&2
    tail -n 15 "$1" >&2
}

# Waits for process i to exit after its stop signal: it must exit 0 within 15 s.
wait_stopped() {
    local i=$1 pid=${PIDS[$1]} rc waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 150 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: ${NAMES[$i]} did not stop within 15 s of SIG${STOP_SIGS[$i]}; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        log_tail "${LOGS[$i]}"
        STOP_FAILED=1
        return
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: ${NAMES[$i]} exited with status $rc at SIG${STOP_SIGS[$i]}" >&2
        log_tail "${LOGS[$i]}"
        STOP_FAILED=1
    else
        echo "stopped ${NAMES[$i]} (exit 0)" >&2
    fi
}

# Stops the processes, last started first, a wave at a time: the stop signal to every
# process of the wave (the three attribution nodes leave together, rather than each
# handing its partitions to the others on its way out), then each must exit 0 in time.
stop_all() {
    local i j k wave
    for ((i = ${#PIDS[@]} - 1; i >= 0; i = j)); do
        wave=${WAVES[$i]}
        for ((j = i; j >= 0; j--)); do
            [ "${WAVES[$j]}" = "$wave" ] || break
            if [ -n "${PIDS[$j]}" ] && kill -0 "${PIDS[$j]}" 2>/dev/null; then
                kill -"${STOP_SIGS[$j]}" "${PIDS[$j]}" 2>/dev/null
            fi
        done
        for ((k = i; k > j; k--)); do
            [ -n "${PIDS[$k]}" ] || continue
            wait_stopped "$k"
            PIDS[k]=
        done
    done
}

# On exit, whatever the reason: stop the services; a failed stop turns success into 4.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    stop_all
    stop_pg "$rc"
    if [ "$STOP_FAILED" -ne 0 ] && [ "$rc" -eq 0 ]; then
        rc=4
    fi
    if [ "${KEEP_DATA:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "data and logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
DEMO_PID=
SLEEP_PID=
on_signal() {
    echo >&2
    echo "run.sh: interrupted; stopping the services" >&2
    [ -n "$DEMO_PID" ] && kill -TERM "$DEMO_PID" 2>/dev/null
    exit 130
}
trap on_signal INT TERM

# Starts a process in the background, its output in $WORK/<name>/<name>.log, to be
# stopped with signal `sig` (TERM, INT) together with the other processes of `wave`.
# Sets PID, LOGF and IDX (its index in NAMES, PIDS, LOGS, WAVES and STOP_SIGS).
launch() {
    local name=$1 wave=$2 sig=$3
    shift 3
    mkdir -p "$WORK/$name"
    LOGF=$WORK/$name/$name.log
    : >"$LOGF"
    "$@" >"$LOGF" 2>&1 &
    PID=$!
    NAMES+=("$name")
    PIDS+=("$PID")
    LOGS+=("$LOGF")
    WAVES+=("$wave")
    STOP_SIGS+=("$sig")
    IDX=$((${#PIDS[@]} - 1))
}

# Starts a service listening on `listen` (127.0.0.1:0: a free port the kernel picks) with
# its data in $WORK/<name>/data, and reads the port it logged ("serving ... (port N)").
# Does not wait for its health (wait_serving does). Sets ADDR, PID and LOGF.
start_service() {
    local name=$1 wave=$2 bin=$3 listen=$4
    shift 4
    mkdir -p "$WORK/$name/data"
    launch "$name" "$wave" TERM "$bin" --listen "$listen" --data-dir "$WORK/$name/data" "$@"
    local port="" i
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/.*"msg":"serving [^"]*(port \([0-9][0-9]*\)[,)].*/\1/p' "$LOGF" |
            head -n 1)
        [ -n "$port" ] && break
        if ! kill -0 "$PID" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "run.sh: $name did not start (no port in its log)" >&2
        log_tail "$LOGF"
        exit 4
    fi
    ADDR=127.0.0.1:$port
}

# Waits up to `seconds` for the health of the service at `addr` to be SERVING.
wait_serving() {
    local name=$1 addr=$2 pid=$3 logf=$4 seconds=$5 i
    for ((i = 0; i < seconds * 10; i++)); do
        if "$PROBE_BIN" -addr "$addr" -rpc-timeout 1000 >/dev/null 2>&1; then
            echo "started $name on $addr (pid $pid, data in $WORK/$name/data)" >&2
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "run.sh: $name on $addr is not SERVING" >&2
    log_tail "$logf"
    exit 4
}

# A service on a free port, SERVING. Sets ADDR.
start() {
    local name=$1 bin=$2
    shift 2
    start_service "$name" "$name" "$bin" 127.0.0.1:0 "$@"
    wait_serving "$name" "$ADDR" "$PID" "$LOGF" 10
}

# ---- PostgreSQL (--store postgres) ------------------------------------------------------

# Runs a PostgreSQL program as the postgres user when we are root (initdb refuses root),
# in a session of its own (setsid): Ctrl-C at the terminal reaches this script and the
# services, not the server, which must outlive them (they stop first).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- setsid -w "$@"
    else
        setsid -w "$@"
    fi
}

# A PostgreSQL server of this run's own: initdb in a temp dir (not $WORK: as root that is
# root's alone, and the server runs as postgres), a free loopback port, no Unix socket,
# trust on loopback; a database `yaowei`. Sets PG_URI.
start_pg() {
    local parent=${TMPDIR:-/tmp}
    # As root, somewhere the postgres user can reach (a root-only TMPDIR: /tmp instead).
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$parent" 2>/dev/null; then
        parent=/tmp
    fi
    PG_DIR=$(mktemp -d "$parent/yaowei-pg.XXXXXX") || exit 4
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1; then
        echo "run.sh: initdb failed" >&2
        log_tail "$PG_DIR/initdb.log"
        exit 4
    fi
    free_port
    PG_PORT=$FREE_PORT
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" \
        start >/dev/null; then
        echo "run.sh: PostgreSQL did not start" >&2
        log_tail "$PG_DIR/postgres.log"
        exit 4
    fi
    if ! "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "CREATE DATABASE yaowei" >/dev/null; then
        echo "run.sh: could not create the database" >&2
        exit 4
    fi
    PG_URI=postgresql://postgres@127.0.0.1:$PG_PORT/yaowei
    echo "started postgres on 127.0.0.1:$PG_PORT ($PG_URI, data in $PG_DIR/data)" >&2
}

# Stops the server (after the services) and removes its directory; its log goes to
# $WORK when the run failed (rc, the exit status so far, not 0) or KEEP_DATA=1.
stop_pg() {
    local rc=$1
    [ -n "$PG_DIR" ] || return 0
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            echo "stopped postgres" >&2
        else
            echo "run.sh: PostgreSQL did not stop within 30 s; killing it" >&2
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
            STOP_FAILED=1
        fi
    fi
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        echo "PostgreSQL's data kept in $PG_DIR" >&2
    else
        if [ "$rc" -ne 0 ] || [ "$STOP_FAILED" -ne 0 ]; then
            cp "$PG_DIR/postgres.log" "$WORK/postgres.log" 2>/dev/null
        fi
        rm -rf "$PG_DIR"
    fi
    PG_DIR=
}

# ---- the cluster (--cluster) ----------------------------------------------------------

# Sets FREE_PORT to a loopback port that no socket uses, from 20000..32767 (below Linux's
# ephemeral range, so that no outgoing connection takes it meanwhile), and not handed out
# before in this run. Used where a port must be known before its process starts: the
# NATS servers' routes name each other's ports, and a node advertises its own.
TAKEN_PORTS=" "
free_port() {
    local p hex
    while :; do
        p=$((20000 + RANDOM % 12768))
        case $TAKEN_PORTS in *" $p "*) continue ;; esac
        hex=$(printf '%04X' "$p")
        if ! awk -v h="$hex" 'NR > 1 { split($2, a, ":"); if (a[2] == h) found = 1 }
                END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            TAKEN_PORTS="$TAKEN_PORTS$p "
            FREE_PORT=$p
            return
        fi
    done
}

# Three nats-server, JetStream on, one cluster: each with its own config and store under
# $WORK/nats-<i>, client, route and monitoring ports free, routes to the two others.
# Waits until each is ready for clients. Sets NATS_URLS.
start_nats() {
    local i j conf routes
    local -a cport=() rport=() hport=() pidx=()
    for ((i = 1; i <= 3; i++)); do
        free_port; cport[i]=$FREE_PORT
        free_port; rport[i]=$FREE_PORT
        free_port; hport[i]=$FREE_PORT
    done
    for ((i = 1; i <= 3; i++)); do
        mkdir -p "$WORK/nats-$i/js"
        routes=""
        for ((j = 1; j <= 3; j++)); do
            [ "$j" = "$i" ] || routes="$routes    nats-route://127.0.0.1:${rport[j]}"$'\n'
        done
        conf=$WORK/nats-$i/nats.conf
        cat >"$conf" <<EOF
server_name: nats-$i
listen: 127.0.0.1:${cport[i]}
http: 127.0.0.1:${hport[i]}
jetstream {
  store_dir: "$WORK/nats-$i/js"
}
cluster {
  name: yaowei-run
  listen: 127.0.0.1:${rport[i]}
  routes: [
$routes  ]
}
EOF
        # A process group of its own (job control on for the start): Ctrl-C at the
        # terminal reaches this script and the services, not the NATS servers, which
        # must outlive the attribution nodes (a node leaving lets its leases go through
        # NATS, and waits for it).
        set -m
        launch "nats-$i" nats INT "$NATS_BIN" -c "$conf"
        set +m
        pidx[i]=$IDX
    done
    NATS_URLS=""
    for ((i = 1; i <= 3; i++)); do
        wait_nats_ready "$i" "${pidx[i]}" "${cport[i]}" "${hport[i]}"
        NATS_URLS="$NATS_URLS${NATS_URLS:+,}nats://127.0.0.1:${cport[i]}"
    done
}

# nats-server i (process idx) logs "Server is ready" once it takes clients (JetStream's
# leader is elected after: the attribution nodes wait for it, NOT_SERVING meanwhile).
wait_nats_ready() {
    local i=$1 idx=$2 port=$3 http=$4 k logf=${LOGS[$2]}
    for ((k = 0; k < 100; k++)); do
        if grep -q "Server is ready" "$logf"; then
            echo "started nats-$i on 127.0.0.1:$port (pid ${PIDS[$idx]}, monitoring" \
                "http://127.0.0.1:$http/jsz, store in $WORK/nats-$i/js)" >&2
            return 0
        fi
        kill -0 "${PIDS[$idx]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "run.sh: nats-$i did not start" >&2
    log_tail "$logf"
    exit 4
}

# Three attribution nodes on the NATS cluster, each with its own data dir and a port it
# advertises to the others. They start together and share the partitions; each is
# SERVING once it serves every partition assigned to it. Sets AT_ADDR (the three, comma-
# separated, for the demo's --attribution-addr).
start_attribution_cluster() {
    local i
    local -a addrs=() pids=() logs=() args=()
    [ -n "${CLUSTER_PARTITIONS:-}" ] && args+=(--partitions "$CLUSTER_PARTITIONS")
    for ((i = 1; i <= 3; i++)); do
        free_port
        start_service "attribution-$i" attribution "$AT_BIN" "127.0.0.1:$FREE_PORT" \
            --cluster "$NATS_URLS" --node-id "attr-$i" --advertise-addr "127.0.0.1:$FREE_PORT" \
            --replicas 3 --tier-scoring-addr "$TS_ADDR" ${args[@]+"${args[@]}"}
        addrs+=("$ADDR")
        pids+=("$PID")
        logs+=("$LOGF")
    done
    # Joining NATS, creating the streams and buckets (the first node), then building
    # the partitions assigned: a minute at most on a busy machine.
    for ((i = 1; i <= 3; i++)); do
        wait_serving "attribution-$i" "${addrs[i - 1]}" "${pids[i - 1]}" "${logs[i - 1]}" 60
    done
    AT_ADDR=$(IFS=,; echo "${addrs[*]}")
}

# ---- the main job ---------------------------------------------------------------------

[ "$CLUSTER" = 1 ] && start_nats
# Creator profile and tier scoring on SQLite in their data dirs, or both on one database.
STORE_ARGS=()
if [ "$STORE" = postgres ]; then
    start_pg
    STORE_ARGS=(--store "$PG_URI")
fi
start creator_profile "$CP_BIN" ${STORE_ARGS[@]+"${STORE_ARGS[@]}"}
CP_ADDR=$ADDR
# The demo asks tier scoring for a refresh once the stats are in (RefreshPopulation), so
# tier scoring keeps its default interval (60 s) unless TIER_REFRESH_MS says otherwise.
TS_ARGS=(--creator-profile-addr "$CP_ADDR" ${STORE_ARGS[@]+"${STORE_ARGS[@]}"})
[ -n "${TIER_REFRESH_MS:-}" ] && TS_ARGS+=(--refresh-interval-ms "$TIER_REFRESH_MS")
start tier_scoring "$TS_BIN" "${TS_ARGS[@]}"
TS_ADDR=$ADDR
if [ "$CLUSTER" = 1 ]; then
    start_attribution_cluster
else
    start attribution "$AT_BIN" --tier-scoring-addr "$TS_ADDR"
    AT_ADDR=$ADDR
fi

ARGS=(--creator-profile-addr "$CP_ADDR" --tier-scoring-addr "$TS_ADDR"
    --attribution-addr "$AT_ADDR")
[ "$QUICK" = 1 ] && ARGS+=(--quick)
[ "$SERVE" = 1 ] && ARGS+=(--serve)
# In the background so that a signal to this script is handled at once (the trap stops
# the demo, then the services).
"$DEMO_BIN" "${ARGS[@]}" ${DEMO_ARGS[@]+"${DEMO_ARGS[@]}"} &
DEMO_PID=$!
wait "$DEMO_PID"
DEMO_RC=$?
DEMO_PID=

if [ "$SERVE" = 1 ] && [ $DEMO_RC -le 1 ]; then
    echo
    echo "services up: creator profile $CP_ADDR, tier scoring $TS_ADDR, attribution ${AT_ADDR//,/, }"
    [ "$CLUSTER" = 1 ] && echo "NATS: $NATS_URLS"
    [ "$STORE" = postgres ] && echo "PostgreSQL: $PG_URI (psql $PG_URI)"
    echo "data and logs in $WORK; Ctrl-C stops them."
    trap 'echo >&2; exit 0' INT TERM
    while :; do
        sleep 3600 &
        SLEEP_PID=$!
        wait "$SLEEP_PID"
    done
fi
exit $DEMO_RC
