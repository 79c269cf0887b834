#!/usr/bin/env bash
# Durable exposures/s through RecordExposures alone (batches of 1,000, 4 calls in flight,
# one channel), on an attribution process with PRELOAD exposures already stored (default
# 10 million, sent first and not measured). Medians of RUNS runs of SECONDS each; also
# prints the server's CPU per exposure and its resident memory. `make bench`
# (bench/bench.py) measures this and everything else together.
#   bench/ingest_exposures.sh [RUNS] [SECONDS] [PRELOAD]
# Env: YW_BIN_DIR (bazel-bin), BENCH_DIR (a directory on the disk to measure; default a
# temporary directory under /var/tmp), INFLIGHT (4), BATCH (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-10}
PRELOAD=${3:-10000000}
INFLIGHT=${INFLIGHT:-4}
BATCH=${BATCH:-1000}
BIN_DIR=${YW_BIN_DIR:-bazel-bin}
SERVER=$BIN_DIR/services/attribution/attribution
LOADGEN=$BIN_DIR/bench/ingest_exposures
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/yw-ingest.XXXXXX")
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --log-level warn \
    --tier-scoring-addr 127.0.0.1:1 2>"$WORK/server.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
    /usr/bin/python3 -c "import grpc; grpc.channel_ready_future(grpc.insecure_channel('127.0.0.1:$PORT')).result(timeout=0.2)" 2>/dev/null && break
    sleep 0.1
done
echo "data on $(df -h --output=source,fstype "$WORK" | tail -1)"
# Seed 1 for the preload, 100 + run for the runs: every run sends new exposures.
if [ "$PRELOAD" -gt 0 ]; then
    "$LOADGEN" --addr 127.0.0.1:$PORT --batch "$BATCH" --inflight "$INFLIGHT" \
        --count "$PRELOAD" --seed 1 | sed 's/^/preload: /'
fi
rates=()
for r in $(seq "$RUNS"); do
    out=$("$LOADGEN" --addr 127.0.0.1:$PORT --batch "$BATCH" --inflight "$INFLIGHT" \
        --seconds "$SECONDS_PER_RUN" --warmup 1 --seed $((100 + r)) --server-pids $PID)
    rate=$(echo "$out" | sed -n 's/.* exposures_per_s=\([0-9]*\).*/\1/p')
    rss=$(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$PID/status)
    echo "run $r: $out server_rss=$rss"
    rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: $median durable exposures/s (batch $BATCH, $INFLIGHT in flight, $RUNS runs)"
