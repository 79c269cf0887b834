#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined) outside
# Bazel, against the protobuf-c code Bazel generated in bazel-bin/proto:
#   tests/fuzz/build.sh [OUT_DIR]      (default /tmp/yaowei-fuzz)
# Targets: fuzz_creator_profile, fuzz_tier_scoring, fuzz_attribution, fuzz_reflection.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${YW_FUZZ_OUT:-/tmp/yaowei-fuzz}}
BAZEL=${BAZEL:-bazel}
CC=${FUZZ_CC:-clang}
mkdir -p "$OUT/obj"
"$BAZEL" build //proto:all >/dev/null
GEN=$(cd "$("$BAZEL" info bazel-bin 2>/dev/null)/proto" && pwd)

CFLAGS=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter
        -Wno-missing-field-initializers
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
        -I. -I"$GEN"
        # as //third_party:pq (libpq-dev's headers: the store's PostgreSQL backend)
        -isystem /usr/include/postgresql
        # as //third_party:sqlite3 declares them (Debian's libsqlite3 has the session
        # extension; the store's changeset shipping needs its declarations)
        -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK)
LIBS=(-lgrpc -lgpr -lprotobuf-c -luv -lsqlite3 -lmicrohttpd -lsystemd -ljansson -lcrypto
      -lnats -lpq -lpthread -lm)

# An object is reused only when it was built from the same source, headers and flags:
# its name carries a hash of them (OUT may be shared by several checkouts; a file's
# mtime said nothing about which checkout built it, and headers were not looked at).
HDRS=$( { printf '%s\n' "${CFLAGS[*]} ${EXTRA_CFLAGS:-}"; \
          find common services tests/fuzz "$GEN" -name '*.h' -print0 | sort -z | xargs -0 cat; } \
        | sha1sum | cut -c1-12)

# compile OBJ_DIR SRC... : objects into OBJ_DIR, printed one per line
compile() {
    local dir=$1; shift
    mkdir -p "$dir"
    local pids=() objs=()
    for src in "$@"; do
        local sum
        sum=$(sha1sum <"$src" | cut -c1-12)
        local obj="$dir/$(echo "$src" | tr '/' '_' | sed 's/\.c$//')-$sum-$HDRS.o"
        objs+=("$obj")
        if [ ! -f "$obj" ]; then
            "$CC" "${CFLAGS[@]}" ${EXTRA_CFLAGS:-} -c "$src" -o "$obj" &
            pids+=($!)
            if [ ${#pids[@]} -ge "$(nproc)" ]; then
                wait "${pids[0]}" || { echo "fuzz build: cannot compile" >&2; return 1; }
                pids=("${pids[@]:1}")
            fi
        fi
    done
    local failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [ "$failed" = 0 ] || { echo "fuzz build: compile errors (see above)" >&2; return 1; }
    printf '%s\n' "${objs[@]}"
}

compile "$OUT/obj/common" common/*.c \
    "$GEN"/google/protobuf/*.pb-c.c "$GEN"/grpc/health/v1/*.pb-c.c \
    "$GEN"/grpc/reflection/v1/*.pb-c.c "$GEN"/yaowei/*/v1/*.pb-c.c \
    "$GEN"/yaowei/*/internal/v1/*.pb-c.c >"$OUT/obj/common.list"
mapfile -t COMMON <"$OUT/obj/common.list"

# Only some targets: FUZZ_TARGETS="fuzz_creator_profile fuzz_reflection".
want() { [ -z "${FUZZ_TARGETS:-}" ] || [[ " $FUZZ_TARGETS " == *" $1 "* ]]; }

# target NAME SERVICE_DIR DESCRIPTORS DEFINES...
target() {
    local name=$1 dir=$2 desc=$3; shift 3
    want "$name" || return 0
    local srcs=()
    for f in "services/$dir"/*.c; do
        [ "$(basename "$f")" = main.c ] || srcs+=("$f")
    done
    compile "$OUT/obj/$dir" "${srcs[@]}" "$GEN/${desc}_embed.c" >"$OUT/obj/$dir.list"
    mapfile -t SVC <"$OUT/obj/$dir.list"
    "$CC" "${CFLAGS[@]}" -Dmain=yw_fuzz_service_main -c "services/$dir/main.c" \
        -o "$OUT/obj/$name-main.o"
    "$CC" "${CFLAGS[@]}" "$@" -c tests/fuzz/fuzz_service.c -o "$OUT/obj/$name-harness.o"
    "$CC" -fsanitize=fuzzer,address,undefined -o "$OUT/$name" "$OUT/obj/$name-harness.o" \
        "$OUT/obj/$name-main.o" "${SVC[@]}" "${COMMON[@]}" "${LIBS[@]}"
    echo "built $OUT/$name"
}

target fuzz_creator_profile creator_profile creator_profile_descriptors \
    -DYW_FUZZ_SERVICE=creator_service \
    '-DYW_FUZZ_HEADER="services/creator_profile/creator_service.h"'
target fuzz_tier_scoring tier_scoring tier_scoring_descriptors \
    -DYW_FUZZ_SERVICE=tier_service '-DYW_FUZZ_HEADER="services/tier_scoring/tier_service.h"'
target fuzz_attribution attribution attribution_descriptors \
    -DYW_FUZZ_SERVICE=attr_service '-DYW_FUZZ_HEADER="services/attribution/attr_service.h"'
target fuzz_reflection creator_profile creator_profile_descriptors -DYW_FUZZ_REFLECTION
