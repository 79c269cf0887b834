#!/usr/bin/env bash
# GetCreator under h2load: 100,000 creators stored, 64 calls in flight on one
# connection, medians of RUNS runs; prints QPS and server CPU per call.
#   bench/h2load_get_creator.sh [RUNS] [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
CALLS=${2:-300000}
BIN=${YW_BIN_DIR:-bazel-bin}/services/creator_profile/creator_profile
WORK=$(mktemp -d)
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --log-level warn 2>"$WORK/server.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
    /usr/bin/python3 -c "import grpc,sys; grpc.channel_ready_future(grpc.insecure_channel('127.0.0.1:$PORT')).result(timeout=0.2)" 2>/dev/null && break
    sleep 0.1
done
/usr/bin/python3 bench/load_creators.py --addr 127.0.0.1:$PORT --count 100000
# Body: gRPC prefix (0 = uncompressed, 4-byte big-endian length) + GetCreatorRequest{creator_id}.
/usr/bin/python3 - "$WORK/body" <<'PY'
import struct, sys
cid = b"creator-012345"
msg = b"\x0a" + bytes([len(cid)]) + cid
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
TICKS=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
for r in $(seq "$RUNS"); do
    c0=$(cpu)
    out=$(h2load -n "$CALLS" -c 1 -m 64 -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$WORK/body" "http://127.0.0.1:$PORT/yaowei.creator.v1.CreatorProfileService/GetCreator")
    c1=$(cpu)
    rps=$(echo "$out" | awk '/finished in/ {print $4}' | tr -d ',')
    ok=$(echo "$out" | awk '/status codes:/ {print $3}')
    us=$(awk -v c="$((c1 - c0))" -v t="$TICKS" -v n="$CALLS" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')
    echo "run $r: $rps req/s, 2xx $ok of $CALLS, server CPU $us us/call"
done
