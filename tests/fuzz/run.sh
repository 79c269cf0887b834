#!/usr/bin/env bash
# Runs each fuzz target for SECONDS on its corpus (tests/fuzz/corpus/<target>/: seeds
# and regression inputs, replayed first every time):
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     (default 60 s, all four targets)
# New inputs go to a scratch corpus under the build dir; FUZZ_MERGE=1 merges them into
# the tracked corpus afterwards. A crash, a hang (the harness aborts after 10 s without
# a status) or a sanitizer report stops the run non-zero and leaves the input in
# $OUT/artifacts/: fix the bug, then keep the input as
# tests/fuzz/corpus/<target>/regress-<what> so that every later run replays it.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
shift || true
OUT=${YW_FUZZ_OUT:-/tmp/yaowei-fuzz}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_creator_profile fuzz_tier_scoring fuzz_attribution fuzz_reflection)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p "$OUT/artifacts"
status=0
for t in "${TARGETS[@]}"; do
    exe="$OUT/$t"
    [ -x "$exe" ] || { echo "fuzz: $exe is not built (tests/fuzz/build.sh)"; status=1; continue; }
    scratch="$OUT/corpus/$t"
    mkdir -p "$scratch"
    echo "== $t: ${SECONDS_EACH} s"
    "$exe" "$scratch" "tests/fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" -timeout=30 \
        -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 -max_len=65536 \
        -artifact_prefix="$OUT/artifacts/$t-" >"$OUT/$t.log" 2>&1
    rc=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$OUT/$t.log" |
        sed 's/^/   /'
    if [ $rc -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $rc); log $OUT/$t.log; input(s):"
        ls -1 "$OUT/artifacts/$t-"* 2>/dev/null | sed 's/^/   /'
        tail -40 "$OUT/$t.log"
        status=1
    elif [ "${FUZZ_MERGE:-0}" = 1 ]; then
        "$exe" -merge=1 "tests/fuzz/corpus/$t" "$scratch" >"$OUT/$t.merge.log" 2>&1 &&
            echo "   merged new inputs into tests/fuzz/corpus/$t"
    fi
done
exit $status
