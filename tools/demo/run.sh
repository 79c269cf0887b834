#!/usr/bin/env bash
# tools/demo/run.sh — the main job (`make run`): starts creator profile, tier scoring and
# attribution on free loopback ports with fresh SQLite data directories under a temp
# dir, waits for their health to be SERVING (tools/health_probe), runs the demo against
# them (tools/demo), then stops them with SIGTERM and checks that each exits 0.
#
#   tools/demo/run.sh [--bin-dir DIR] [--quick] [--serve] [-- DEMO FLAGS...]
#
#   --bin-dir DIR  where the Bazel outputs are (default: ./bazel-bin)
#   --quick        the demo's QUICK size (a first look in well under a minute)
#   --serve        keep the services up after the report, printing grpcurl commands to
#                  try, until Ctrl-C
#   KEEP_DATA=1    keep the temp dir (data and logs) at the end
#   TIER_REFRESH_MS  tier scoring's --refresh-interval-ms (default: its own, 60000)
#
# Exit status: the demo's (0 all checks passed, 1 a check failed, 2 bad flags, 3 a
# service could not be used), or 4 when a service failed to start or to stop cleanly.
# stop_all, cleanup and on_signal run from traps, which shellcheck does not follow.
# shellcheck disable=SC2317
set -u -o pipefail

BIN_DIR=./bazel-bin
QUICK=0
SERVE=0
DEMO_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --serve) SERVE=1; shift ;;
    --) shift; DEMO_ARGS+=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/yaowei-run.XXXXXX") || exit 4
NAMES=()
PIDS=()
LOGS=()
STOP_FAILED=0

log_tail() {
    echo "--- last lines of $1 ---" >&2
    tail -n 15 "$1" >&2
}

# Stops the services, last started first: SIGTERM, then each must exit 0 in time.
stop_all() {
    local i pid rc waited
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
        fi
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 150 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: ${NAMES[$i]} did not stop within 15 s of SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            log_tail "${LOGS[$i]}"
            STOP_FAILED=1
        else
            wait "$pid"
            rc=$?
            if [ "$rc" -ne 0 ]; then
                echo "run.sh: ${NAMES[$i]} exited with status $rc at SIGTERM" >&2
                log_tail "${LOGS[$i]}"
                STOP_FAILED=1
            else
                echo "stopped ${NAMES[$i]} (exit 0)" >&2
            fi
        fi
        PIDS[i]=
    done
}

# On exit, whatever the reason: stop the services; a failed stop turns success into 4.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    stop_all
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

# Starts a service on 127.0.0.1:0 (a free port the kernel picks) and reads the port it
# logged ("serving ... (port N)"), then waits for its health to be SERVING.
# Sets ADDR.
start() {
    local name=$1 bin=$2
    shift 2
    local dir=$WORK/$name
    mkdir -p "$dir/data"
    local logf=$dir/$name.log
    : >"$logf"
    "$bin" --listen 127.0.0.1:0 --data-dir "$dir/data" "$@" >"$logf" 2>&1 &
    local pid=$!
    NAMES+=("$name")
    PIDS+=("$pid")
    LOGS+=("$logf")
    local port="" i
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/.*"msg":"serving [^"]*(port \([0-9][0-9]*\)[,)].*/\1/p' "$logf" |
            head -n 1)
        [ -n "$port" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "run.sh: $name did not start (no port in its log)" >&2
        log_tail "$logf"
        exit 4
    fi
    ADDR=127.0.0.1:$port
    for ((i = 0; i < 100; i++)); do
        if "$PROBE_BIN" -addr "$ADDR" -rpc-timeout 1000 >/dev/null 2>&1; then
            echo "started $name on $ADDR (pid $pid, data in $dir/data)" >&2
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "run.sh: $name on $ADDR is not SERVING" >&2
    log_tail "$logf"
    exit 4
}

start creator_profile "$CP_BIN"
CP_ADDR=$ADDR
# The demo asks tier scoring for a refresh once the stats are in (RefreshPopulation), so
# tier scoring keeps its default interval (60 s) unless TIER_REFRESH_MS says otherwise.
TS_ARGS=(--creator-profile-addr "$CP_ADDR")
[ -n "${TIER_REFRESH_MS:-}" ] && TS_ARGS+=(--refresh-interval-ms "$TIER_REFRESH_MS")
start tier_scoring "$TS_BIN" "${TS_ARGS[@]}"
TS_ADDR=$ADDR
start attribution "$AT_BIN" --tier-scoring-addr "$TS_ADDR"
AT_ADDR=$ADDR

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
    echo "services up: creator profile $CP_ADDR, tier scoring $TS_ADDR, attribution $AT_ADDR"
    echo "data and logs in $WORK; Ctrl-C stops them."
    trap 'echo >&2; exit 0' INT TERM
    while :; do
        sleep 3600 &
        SLEEP_PID=$!
        wait "$SLEEP_PID"
    done
fi
exit $DEMO_RC
