"""Memory under hostile clients is bounded by the documented limits (issue 12, part 4).

Black box over gRPC, each case a few seconds; peak RSS is the process's VmHWM
(/proc/<pid>/status), and a probe (a small call from another connection) must be
answered within PROBE_BOUND_S all along:

- big requests: messages far over --max-message-bytes, alone and concurrent, are reset
  once gRPC's buffers reach --grpc-memory-mb (gRPC C core 1.51 checks the size only
  after a message has arrived whole, so the budget is what bounds it), RESOURCE_EXHAUSTED;
- unauthenticated big requests (--auth-config): UNAUTHENTICATED from the headers, the
  body never read;
- attribution's wide exposures (100 product ids of 250 bytes each, within every limit):
  streams and unary batches keep it under its bound, the loop answers a probe, and
  memory goes back after the load; no call of this legitimate load is reset, with the
  default budget and a tight one (a paused stream holds one --stream-window-kb window).

Peak RSS bounds (README "Limits"): creator profile and tier scoring 256 MB, attribution
512 MB, with default flags. Under the sanitizers (YW_SANITIZED=1) RSS is not asserted.
`make soak` runs the long versions (YW_HOSTILE_SECONDS).

Needs: bazel build //services/...
"""

import json
import os
import subprocess
import sys
import threading
import time

import grpc
import pytest

from conftest import (ATTRIBUTION_BIN, CREATOR_PROFILE_BIN, TIER_SCORING_BIN, ServerProcess,
                      binary_path, free_port, proc_status_kib)

pytestmark = pytest.mark.release  # conftest.py RELEASE_PASS

SANITIZED = os.environ.get("YW_SANITIZED") == "1"
SECONDS = float(os.environ.get("YW_HOSTILE_SECONDS", "0"))  # > 0: soak length
# Tests assert no times: on a shared 2-core machine (load 5 to 7) the probe process itself
# waits for a core (0.86 to 2.0 s seen with the loop free). By default the probe only
# checks that the loop is not starved: every call answered within 5 s (the issue's
# GetAttributionSettings timed out 4 x 5 s; before the fixes the wide case also held probes
# 3.5 to 4.3 s), and the slowest wait is printed. The requirement itself (1 s) is checked
# with YW_PROBE_BOUND_S=1 on a quiet machine (`make soak` passes PROBE_BOUND_S). Wide case,
# load about 1.5: slowest probe 0.27 to 0.57 s (3 runs) once a run's join table grew a few
# keys per append and the log's frame commits took 2 ms a loop turn; 0.89 to 2.03 s before.
# 60 s (YW_HOSTILE_SECONDS=60, YW_PROBE_BOUND_S=1): 0.79 s default budget, 0.90 s tight,
# once large requests were also unpacked and freed on the thread pool (1.11 s before).
PROBE_BOUND_S = float(os.environ.get("YW_PROBE_BOUND_S", "5.0" if not SANITIZED else "15.0"))

CP = "yaowei.creator.v1.CreatorProfileService"
TS = "yaowei.tier.v1.TierScoringService"
AT = "yaowei.attribution.v1.AttributionService"

REFUSED = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
BOUND_MB = {"creator_profile": 256, "tier_scoring": 256, "attribution": 512}
BINS = {"creator_profile": (CREATOR_PROFILE_BIN, "/%s/GetCreator" % CP),
        "tier_scoring": (TIER_SCORING_BIN, "/%s/BatchScoreCreators" % TS),
        "attribution": (ATTRIBUTION_BIN, "/%s/RecordExposures" % AT)}


def make(tmp_path_factory, which, extra=()):
    base = tmp_path_factory.mktemp("hostile_" + which)
    data = base / "data"
    data.mkdir()
    peer = []
    if which == "tier_scoring":
        peer = ["--creator-profile-addr", "127.0.0.1:%d" % free_port()]
    elif which == "attribution":
        peer = ["--tier-scoring-addr", "127.0.0.1:%d" % free_port()]
    return ServerProcess(binary_path(BINS[which][0]), str(data), str(base),
                         peer + list(extra), name="hostile_" + which)


def big_message(n):
    """A request whose field 1 (a string or repeated field in every request here) holds
    n bytes: as big on the wire as n, refused before it is parsed."""
    head = bytearray(b"\x0a")
    v = n
    while True:
        b = v & 0x7F
        v >>= 7
        head.append(b | (0x80 if v else 0))
        if not v:
            break
    return bytes(head) + b"x" * n


PROBE_SCRIPT = r"""
import json, sys, threading, time
import grpc

address, method, request = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
# Under memory pressure gRPC closes idle connections (GOAWAY, "Buffers full"): a call
# sent just then fails UNAVAILABLE, and a client retries it, as this one does.
retry = {"methodConfig": [{"name": [{}], "retryPolicy": {
    "maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}
ch = grpc.insecure_channel(address, options=[("grpc.service_config", json.dumps(retry)),
                                             ("grpc.enable_retries", 1)])
fn = ch.unary_unary(method)
fn(request, timeout=10)  # connected before the load starts
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print("ready", flush=True)
worst, n, errors = 0.0, 0, []
while not stop.is_set():
    t0 = time.monotonic()
    try:
        fn(request, timeout=5)
    except grpc.RpcError as e:
        errors.append("%s: %s" % (e.code(), e.details()))
    worst = max(worst, time.monotonic() - t0)
    n += 1
    stop.wait(0.05)
print(json.dumps({"worst": worst, "n": n, "errors": errors[:5]}), flush=True)
"""


class Probe:
    """A small call every 50 ms from a process and connection of its own (so that the
    test's own big payloads cannot delay it): the slowest answer is what a client of
    the service waited while the load ran."""

    def __init__(self, address, method="/grpc.health.v1.Health/Check", request=b""):
        self.args = [sys.executable, "-c", PROBE_SCRIPT, address, method, request.hex()]
        self.worst = 0.0
        self.errors = []
        self.n = 0

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc):
        out, _ = self.proc.communicate("stop\n", timeout=30)
        r = json.loads(out.strip().splitlines()[-1])
        self.worst, self.n, self.errors = r["worst"], r["n"], r["errors"]
        print("probe: %d calls, slowest %.3f s" % (self.n, self.worst))

    def check(self):
        assert not self.errors, "probe calls failed: %s" % self.errors[:3]
        assert self.n > 0
        assert self.worst < PROBE_BOUND_S, (
            "a probe waited %.2f s (bound %.1f s)" % (self.worst, PROBE_BOUND_S))


def send_concurrently(address, method, payload, n, metadata=None):
    """n calls of `payload`, each on a connection of its own, at once; their codes."""
    codes, details = [], []

    def one():
        ch = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
        try:
            ch.unary_unary(method)(payload, timeout=60, metadata=metadata)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            details.append(e.details())
        finally:
            ch.close()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes, details


def check_rss(srv, which, what):
    hwm = proc_status_kib(srv.proc.pid, "VmHWM") / 1024.0
    print("%s %s: peak RSS %.0f MB" % (which, what, hwm))
    if not SANITIZED:
        assert hwm < BOUND_MB[which], "%s: %s took peak RSS to %.0f MB (bound %d MB)" % (
            which, what, hwm, BOUND_MB[which])
    return hwm


# -- big requests -----------------------------------------------------------------------

@pytest.mark.parametrize("which", sorted(BINS))
def test_big_requests_are_reset_within_the_budget(tmp_path_factory, which):
    srv = make(tmp_path_factory, which)
    srv.start()
    try:
        method = BINS[which][1]
        rounds = max(1, int(SECONDS / 5)) if SECONDS else 1
        huge, big = big_message(300 << 20), big_message(100 << 20)
        with Probe(srv.address) as probe:
            for _ in range(rounds):
                # One request of 300 MB, then eight of 100 MB at once (each over the 4 MiB
                # limit): none may be held whole.
                codes, details = send_concurrently(srv.address, method, huge, 1)
                assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED], details
                # Under the pressure gRPC may also close a connection that has not sent
                # its request yet (GOAWAY): UNAVAILABLE. Never OK.
                codes, details = send_concurrently(srv.address, method, big, 8)
                assert set(codes) <= REFUSED and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, (
                    codes, details)
        probe.check()
        check_rss(srv, which, "1 x 300 MB and 8 x 100 MB requests")
        # Within the limits, calls still go through: a 3 MB request is parsed (and
        # refused for what it holds, not for its size).
        ch = grpc.insecure_channel(srv.address)
        try:
            ch.unary_unary(method)(big_message(3 << 20), timeout=30)
        except grpc.RpcError as e:
            assert e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
        ch.close()
        srv.assert_alive()
    finally:
        srv.stop()


def test_grpc_memory_flag_is_checked(tmp_path_factory):
    srv = make(tmp_path_factory, "creator_profile",
               ["--grpc-memory-mb", "4", "--max-message-bytes", "4194304"])
    r = subprocess.run(srv.args(), capture_output=True, timeout=20)
    assert r.returncode == 1, r
    assert b"--grpc-memory-mb" in r.stderr + r.stdout


@pytest.mark.parametrize("kb", ["-1", "1048577"])
def test_stream_window_flag_is_checked(tmp_path_factory, kb):
    srv = make(tmp_path_factory, "creator_profile", ["--stream-window-kb", kb])
    r = subprocess.run(srv.args(), capture_output=True, timeout=20)
    assert r.returncode == 1, r
    assert b"--stream-window-kb: must be within 0..1048576" in r.stderr + r.stdout


def test_unauthenticated_big_requests_are_refused_from_their_headers(tmp_path_factory):
    from secure import write_auth_config
    import hashlib
    token = "t-" + "a" * 30
    callers = [{"name": "admin", "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                "roles": ["admin"]}]
    methods = {"/%s/*" % CP: ["admin"], "/grpc.reflection.v1.ServerReflection/*": ["*"],
               "/grpc.reflection.v1alpha.ServerReflection/*": ["*"]}
    base = tmp_path_factory.mktemp("hostile_auth")
    auth = write_auth_config(base / "auth.json", callers, methods)
    srv = make(tmp_path_factory, "creator_profile", ["--auth-config", auth])
    srv.start()
    try:
        method = BINS["creator_profile"][1]
        big = big_message(100 << 20)
        with Probe(srv.address) as probe:
            codes, details = send_concurrently(srv.address, method, big, 4)
            assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}, (codes, details)
            # A wrong token: the same, from the headers.
            codes, details = send_concurrently(srv.address, method, big, 2,
                                               metadata=[("authorization", "Bearer nope")])
            assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}, (codes, details)
        probe.check()
        hwm = check_rss(srv, "creator_profile", "unauthenticated 6 x 100 MB")
        if not SANITIZED:
            # Nothing of the bodies was read: far below even one of them.
            assert hwm < 64, "peak RSS %.0f MB: the bodies were read" % hwm
        # An authenticated caller still gets its request read and answered.
        ch = grpc.insecure_channel(srv.address)
        fn = ch.unary_unary(method)
        with pytest.raises(grpc.RpcError) as ei:
            fn(b"", timeout=10, metadata=[("authorization", "Bearer " + token)])
        assert ei.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        with pytest.raises(grpc.RpcError) as ei:
            fn(big_message(5 << 20), timeout=30, metadata=[("authorization", "Bearer " + token)])
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ch.close()
        srv.assert_alive()
    finally:
        srv.stop()


# -- attribution: wide exposures --------------------------------------------------------

def _ld(field, data):
    """A length-delimited protobuf field."""
    n, head = len(data), bytearray([field << 3 | 2])
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | (0x80 if n else 0))
        if not n:
            return bytes(head) + data


def _varint_field(field, v):
    out = bytearray([field << 3])
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


class Wide:
    """Exposures built as raw protobuf (fast enough to flood with from Python): `wide`
    ones carry 100 product ids of 250 bytes (about 25 KB, within every limit), narrow
    ones (product_len 0) 100 ids of 1 or 2 bytes (about 425 bytes)."""

    def __init__(self, tag, product_len):
        self.tag = tag
        self.n = 0
        at = _ld(8, _varint_field(1, int(time.time()) - 3600))
        if product_len:
            ids = [("%s-p%03d-" % (tag, k)).encode().ljust(product_len, b"x") for k in range(100)]
        else:
            ids = [b"%d" % k for k in range(100)]
        prods = b"".join(_ld(5, p) for p in ids)
        self.tail = _ld(3, b"cr-" + tag.encode()) + _ld(4, b"n1") + prods + \
            _varint_field(6, 1) + at

    def event(self):
        self.n += 1
        return _ld(1, ("%s-e%d" % (self.tag, self.n)).encode()) + \
            _ld(2, ("v-%d" % (self.n % 5000)).encode()) + self.tail

    def batch(self, k):
        return b"".join(_ld(1, self.event()) for _ in range(k))


def attr_server(tmp_path_factory, extra=()):
    port = free_port()
    srv = make(tmp_path_factory, "attribution",
               ["--metrics-listen", "127.0.0.1:%d" % port] + list(extra))
    srv.metrics_port = port
    return srv


def pending_gauge(srv):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port,
                                timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('yaowei_attribution_memory_bytes{part="exposures_pending"}'):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no exposures_pending gauge")


SETTINGS = "/%s/GetAttributionSettings" % AT


# The wide load is legitimate (every call within every limit), so no call of it may be
# reset, with the default budget and with a tight one. "tight" (24 MiB) is what the load
# needs with bounded stream windows (--stream-window-kb, 1 MiB): about 2 x 3.4 MB + 2 x
# 2.5 MB messages being received, a window per stream, read buffers. With windows sized by
# gRPC's bandwidth-delay probe a paused stream holds several MB and the streams took even
# the default 128 MiB over: gRPC reset calls of every kind ("RST_STREAM with error code
# 11") in 1 of 8 loaded runs, and the tight budget in 1 of 2.
@pytest.mark.parametrize("budget", ["default", "tight"])
def test_attribution_wide_exposures_stay_within_bounds(tmp_path_factory, budget):
    srv = attr_server(tmp_path_factory, ["--grpc-memory-mb", "24"] if budget == "tight" else [])
    srv.start()
    try:
        seconds = SECONDS or 8.0
        stop = threading.Event()
        errors = []
        sent = [0]

        def stream(tag):
            w = Wide(tag, 250)
            ch = grpc.insecure_channel(srv.address)
            fn = ch.stream_unary("/%s/IngestExposures" % AT)

            def gen():
                while not stop.is_set():
                    sent[0] += 1
                    yield w.event()
            try:
                fn(gen(), timeout=seconds + 60)
            except grpc.RpcError as e:
                errors.append("stream: %s %s" % (e.code(), e.details()))
            ch.close()

        def unary(tag):
            w = Wide(tag, 250)
            ch = grpc.insecure_channel(srv.address)
            fn = ch.unary_unary("/%s/RecordExposures" % AT)
            while not stop.is_set():
                try:
                    fn(w.batch(100), timeout=60)
                except grpc.RpcError as e:
                    errors.append("unary: %s %s" % (e.code(), e.details()))

        def big_batches(tag):
            # 8,000 exposures of 100 short product ids (about 3.4 MB a call).
            w = Wide(tag, 0)
            ch = grpc.insecure_channel(srv.address)
            fn = ch.unary_unary("/%s/RecordExposures" % AT)
            req = w.batch(8000)
            while not stop.is_set():
                try:
                    fn(req, timeout=60)
                except grpc.RpcError as e:
                    errors.append("big: %s %s" % (e.code(), e.details()))
                req = w.batch(8000)

        workers = [threading.Thread(target=stream, args=("s%d" % i,)) for i in range(2)]
        workers += [threading.Thread(target=unary, args=("u%d" % i,)) for i in range(2)]
        workers += [threading.Thread(target=big_batches, args=("b%d" % i,)) for i in range(2)]
        with Probe(srv.address, SETTINGS) as probe:
            for t in workers:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in workers:
                t.join()
        print("attribution: %d streamed exposures" % sent[0])
        assert not errors, errors[:3]
        probe.check()
        hwm = check_rss(srv, "attribution", "wide exposures (streams, unary, big batches)")
        # Memory goes back after the load: the pending area keeps its last chunk (1,024
        # exposures' strings: 25 MB of wide ones) and spares of 256 KiB, and the
        # allocator returns the rest (a tick trims it). Before: 482 MiB pending for good.
        deadline = time.monotonic() + 20
        while True:
            rss = proc_status_kib(srv.proc.pid, "VmRSS") / 1024.0
            pend = pending_gauge(srv) / (1 << 20)
            if (rss < max(hwm / 2, 128) and pend < 32) or time.monotonic() > deadline:
                break
            time.sleep(1)
        print("attribution after the load: RSS %.0f MB, exposures_pending %.1f MiB" % (rss, pend))
        assert pend < 32, "exposures_pending still %.1f MiB after the load" % pend
        if not SANITIZED:
            assert rss < max(hwm / 2, 128), "RSS still %.0f MB after the load (peak %.0f MB)" % (
                rss, hwm)
        srv.assert_alive()
    finally:
        srv.stop()
