"""Load (issue 7): each service held at a high rate on loopback, with many connections
and streams, for YW_LOAD_SECONDS (default 10; `make soak` runs minutes). Bounded in time
and count; every request goes to 127.0.0.1.

Per service, at once:
- h2load: 16 connections x 16 streams of the service's hot read, closed loop;
- 64 long-lived grpc.health.v1 Watch streams on 4 connections;
- a writer (creates, stats, exposures: the service's write path);
- a canceller: calls with 1 ms deadlines and calls cancelled right after they start,
  whose resources must be released (checked: calls in flight back to zero, memory
  flat, and under the sanitizer build no leak at exit).

Checked: every h2load request answered 2xx with grpc-status OK (server counters: started
= handled for every method), nothing timed out, RSS flat after warm-up
(not under ASan, whose quarantine holds freed memory), the process still serving and
exiting 0 on SIGTERM.
"""

import os
import re
import statistics
import struct
import subprocess
import threading
import time
import urllib.request
import uuid

import grpc
import pytest

import ywclient
from conftest import ServerProcess, binary_path, free_port

pytestmark = pytest.mark.release  # conftest.py RELEASE_PASS

CREATOR_BIN = "services/creator_profile/creator_profile"
TIER_BIN = "services/tier_scoring/tier_scoring"
ATTR_BIN = "services/attribution/attribution"
CP = "yaowei.creator.v1.CreatorProfileService"
TS = "yaowei.tier.v1.TierScoringService"
AT = "yaowei.attribution.v1.AttributionService"

LOAD_S = float(os.environ.get("YW_LOAD_SECONDS", "10"))
SANITIZED = os.environ.get("YW_SANITIZED") == "1"
# Latency is printed, not asserted: tests never assert a time (a p99 bound of 250 ms
# failed with another build on the machine: 306 ms); `make bench` measures it.
H2LOAD = "h2load"


def rfc3339(sec):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def grpc_body(path, msg_bytes):
    with open(path, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(msg_bytes)) + msg_bytes)
    return path


def encode(client, method, req):
    md = client.method(method)
    from google.protobuf import json_format
    m = client.message_class(md.input_type)()
    json_format.ParseDict(req, m)
    return m.SerializeToString()


class Metrics:
    def __init__(self, port):
        self.port = port

    def text(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            return r.read().decode()

    def value(self, name, **labels):
        total = 0.0
        found = False
        for line in self.text().splitlines():
            if not line.startswith(name):
                continue
            m = re.match(r'^%s(\{[^}]*\})? (\S+)$' % re.escape(name), line)
            if not m:
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
                found = True
        return total if found else None

    def unanswered(self):
        """Methods whose started count differs from their handled count."""
        started, handled = {}, {}
        for line in self.text().splitlines():
            m = re.match(r'^grpc_server_(started|handled)_total\{([^}]*)\} (\S+)$', line)
            if not m:
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            key = (lab["grpc_service"], lab["grpc_method"])
            d = started if m.group(1) == "started" else handled
            d[key] = d.get(key, 0) + float(m.group(3))
        return {k: (v, handled.get(k, 0)) for k, v in started.items() if handled.get(k, 0) != v}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_h2load(address, path, body, seconds, log_path, clients=16, streams=16):
    warm = max(1.0, seconds * 0.2)
    cmd = [H2LOAD, "-c", str(clients), "-m", str(streams), "-t", "1",
           "-D", "%.0f" % seconds, "--warm-up-time", "%.0f" % warm,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", body, "--log-file", log_path, "http://%s%s" % (address, path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warm + 60)
    out = res.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    assert res.returncode == 0 and m, (cmd, out, res.stderr)
    total, started, done, ok, failed, errored, tmo = map(int, m.groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    lat = []
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "200":
                lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    return {"done": done, "started": started, "ok": ok, "failed": failed, "errored": errored,
            "timeout": tmo, "2xx": int(codes.group(1)) if codes else 0, "lat": lat,
            "rps": re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1)}


def pct(lat, p):
    return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")


class SideLoad:
    """Watches, a writer and a canceller beside h2load; stopped by stop()."""

    def __init__(self, srv, writer, cancel_method, cancel_req):
        self.srv = srv
        self.stop_ev = threading.Event()
        self.threads = []
        self.watch_channels = [grpc.insecure_channel(srv.address, options=[
            ("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
        self.watches = []
        for ch in self.watch_channels:
            for _ in range(16):
                it = ywclient.health_watch(ch, "")
                assert ywclient.status_name(next(it)) == "SERVING"
                self.watches.append(it)
        self.writes = 0
        self.write_errors = []
        self.cancelled = 0
        self.rss = []
        self._start(self._writer, writer)
        self._start(self._canceller, cancel_method, cancel_req)
        self._start(self._sampler)

    def _start(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _writer(self, write):
        ch = self.srv.new_channel()
        cl = ywclient.DynamicClient(ch)
        n = 0
        while not self.stop_ev.is_set():
            try:
                write(cl, n)
                self.writes += 1
            except grpc.RpcError as e:
                self.write_errors.append((e.code(), e.details()))
            n += 1
            time.sleep(0.01)
        ch.close()

    def _canceller(self, method, req):
        ch = grpc.insecure_channel(self.srv.address, options=[("grpc.use_local_subchannel_pool", 1)])
        cl = ywclient.DynamicClient(ch)
        md = cl.method(method)
        req_cls, resp_cls = cl.message_class(md.input_type), cl.message_class(md.output_type)
        from google.protobuf import json_format
        msg = req_cls()
        json_format.ParseDict(req, msg)
        stub = ch.unary_unary("/%s/%s" % (md.containing_service.full_name, md.name),
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=resp_cls.FromString)
        while not self.stop_ev.is_set():
            futs = [stub.future(msg, timeout=0.001) for _ in range(8)]
            futs += [stub.future(msg, timeout=5) for _ in range(8)]
            for f in futs[8:]:
                f.cancel()
            for f in futs:
                try:
                    f.result()
                except (grpc.RpcError, grpc.FutureCancelledError):
                    self.cancelled += 1
            time.sleep(0.005)
        ch.close()

    def _sampler(self):
        t0 = time.monotonic()
        while not self.stop_ev.is_set():
            self.rss.append((time.monotonic() - t0, rss_kb(self.srv.proc.pid)))
            time.sleep(0.25)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)
        for w in self.watches:
            w.cancel()
        for ch in self.watch_channels:
            ch.close()


def hold(srv, metrics, path, body, side_writer, cancel_method, cancel_req, tmp_path):
    """Runs the load; returns the h2load result and the side load, after the checks."""
    side = SideLoad(srv, side_writer, cancel_method, cancel_req)
    try:
        r = run_h2load(srv.address, path, body, LOAD_S, str(tmp_path / "h2load.log"))
    finally:
        side.stop()
    lat = r["lat"]
    print("\n%s %s: %s calls/s, %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms; side: %d "
          "writes, %d cancelled/expired; RSS %d -> %d kB" % (
              srv.name, path, r["rps"], r["done"], pct(lat, 0.5), pct(lat, 0.99), lat[-1] if lat
              else 0, side.writes, side.cancelled, side.rss[0][1] if side.rss else 0,
              side.rss[-1][1] if side.rss else 0))
    # Every request answered, with HTTP 200 (gRPC status checked on the server below).
    assert r["done"] > 0 and r["failed"] == 0 and r["errored"] == 0 and r["timeout"] == 0, r
    assert r["2xx"] == r["done"], r
    assert not side.write_errors, side.write_errors[:5]
    assert side.cancelled > 0
    # Quiet again: every call ended, every started call was answered with a status.
    deadline = time.monotonic() + 10
    while metrics.value("grpc_server_calls_in_flight") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metrics.value("grpc_server_calls_in_flight") == 0
    assert metrics.unanswered() == {}
    # h2load's calls were all OK on the server too.
    svc, meth = path.strip("/").split("/")
    assert metrics.value("grpc_server_handled_total", grpc_service=svc, grpc_method=meth,
                         grpc_code="OK") >= r["done"]
    # Memory flat after warm-up: the peak of the last 40% is within 10% + 16 MB of the
    # level at 30% of the run (not under ASan: its quarantine keeps freed memory).
    if not SANITIZED and len(side.rss) > 8:
        end = side.rss[-1][0]
        warm = [kb for t, kb in side.rss if t <= end * 0.3][-1]
        late = max(kb for t, kb in side.rss if t >= end * 0.6)
        assert late <= warm * 1.10 + 16 * 1024, (warm, late, side.rss[::8])
    srv.assert_alive()
    return r, side


def start(tmp_path_factory, rel, name, extra=()):
    base = tmp_path_factory.mktemp(name)
    data = base / "data"
    data.mkdir()
    mport = free_port()
    srv = ServerProcess(binary_path(rel), str(data), str(base),
                        ["--metrics-listen", "127.0.0.1:%d" % mport, "--log-level", "warn"]
                        + list(extra), name=name)
    srv.start()
    return srv, Metrics(mport)


def preload_creators(srv, n, tag):
    cl = srv.client
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        cl.call("%s/CreateCreator" % CP, {"request_id": "%s-r-%d" % (tag, i), "creator": {
            "creator_id": "%s-%05d" % (tag, i), "display_name": "creator %d" % i,
            "categories": ["food"], "followers": str(1000 + 97 * i)}})

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(n)))


@pytest.fixture(autouse=True)
def _need_h2load():
    if subprocess.run(["sh", "-c", "command -v %s" % H2LOAD], capture_output=True).returncode:
        pytest.fail("h2load not found (Debian nghttp2-client: make deps)")


def test_load_creator_profile(tmp_path_factory, tmp_path):
    srv, metrics = start(tmp_path_factory, CREATOR_BIN, "load_cp")
    try:
        tag = "c" + uuid.uuid4().hex[:6]
        preload_creators(srv, 1000, tag)
        body = grpc_body(str(tmp_path / "body"),
                         encode(srv.client, "%s/GetCreator" % CP, {"creator_id": tag + "-00123"}))

        def write(cl, n):
            cid = "%s-w-%d" % (tag, n)
            cl.call("%s/CreateCreator" % CP, {"request_id": cid, "creator": {
                "creator_id": cid, "display_name": "w", "followers": "10"}})
            cl.call("%s/RecordNoteStats" % CP, {"stats": [{
                "note_id": "n-%s" % cid, "creator_id": cid, "day": "2026-01-02",
                "impressions": "100", "likes": "3"}]})

        hold(srv, metrics, "/%s/GetCreator" % CP, body, write, "%s/ListCreators" % CP,
             {"page_size": 50}, tmp_path)
    finally:
        srv.stop()


def test_load_tier_scoring(tmp_path_factory, tmp_path):
    cp, _ = start(tmp_path_factory, CREATOR_BIN, "load_ts_cp")
    ts = None
    try:
        tag = "t" + uuid.uuid4().hex[:6]
        preload_creators(cp, 500, tag)
        ts, metrics = start(tmp_path_factory, TIER_BIN, "load_ts",
                            ["--creator-profile-addr", cp.address,
                             "--refresh-interval-ms", "2000"])
        body = grpc_body(str(tmp_path / "body"), encode(
            ts.client, "%s/ScoreCreator" % TS, {"creator_id": tag + "-00042"}))

        def write(cl, n):
            cl.call("%s/GetTierDistribution" % TS, {"category": "food"})

        hold(ts, metrics, "/%s/ScoreCreator" % TS, body, write, "%s/BatchScoreCreators" % TS,
             {"creator_ids": ["%s-%05d" % (tag, i) for i in range(50)]}, tmp_path)
    finally:
        if ts is not None:
            ts.stop()
        cp.stop()


def test_load_attribution(tmp_path_factory, tmp_path):
    srv, metrics = start(tmp_path_factory, ATTR_BIN, "load_at",
                         ["--tier-scoring-addr", "127.0.0.1:%d" % free_port(),
                          # small index runs: the open run (in memory) seals every few
                          # seconds, so RSS reaches its steady state within the run
                          "--index-run-exposures", "4096"])
    try:
        now = int(time.time())
        day = now - now % 86400
        rng = {"start_time": rfc3339(day - 7 * 86400), "end_time": rfc3339(day + 86400)}
        tag = "a" + uuid.uuid4().hex[:6]

        def write(cl, n):
            evs = [{"event_id": "%s-%d-%d" % (tag, n, k), "viewer_id": "v-%d" % (k % 50),
                    "creator_id": "%s-c%d" % (tag, k % 20), "product_ids": ["p-%d" % (k % 7)],
                    "kind": "EXPOSURE_KIND_CLICK", "occur_time": rfc3339(now - 600 - k)}
                   for k in range(200)]
            s = cl.call("%s/RecordExposures" % AT, {"events": evs})
            assert int(s.get("accepted", 0)) == 200, s
            cl.call("%s/RecordConversions" % AT, {"events": [{
                "order_id": "%s-o-%d" % (tag, n), "viewer_id": "v-%d" % (n % 50),
                "product_id": "p-%d" % (n % 7), "quantity": "1", "amount_minor": "999",
                "occur_time": rfc3339(now - 60)}]})

        write(srv.client, -1)
        body = grpc_body(str(tmp_path / "body"), encode(
            srv.client, "%s/GetCreatorReport" % AT, dict(rng, creator_id=tag + "-c3")))
        hold(srv, metrics, "/%s/GetCreatorReport" % AT, body, write, "%s/GetTierReport" % AT,
             rng, tmp_path)
    finally:
        srv.stop()
