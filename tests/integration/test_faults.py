"""Faults (issue 7): crashes during ingestion, peers down / slow / restarting, a full
disk, a read-only or corrupt data directory. Each test drives real processes over
gRPC and checks what the callers see and what survives.

The disk tests mount a small tmpfs (root only; skipped otherwise).
"""

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import grpc
import pytest

import ywclient
from conftest import ServerProcess, binary_path, free_port

CREATOR_BIN = "services/creator_profile/creator_profile"
TIER_BIN = "services/tier_scoring/tier_scoring"
ATTR_BIN = "services/attribution/attribution"
CP = "yaowei.creator.v1.CreatorProfileService"
TS = "yaowei.tier.v1.TierScoringService"
AT = "yaowei.attribution.v1.AttributionService"

DAY = 86400
NOW = int(time.time())
TODAY = NOW - NOW % DAY


def rfc3339(sec):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


RANGE = {"start_time": rfc3339(TODAY - 20 * DAY), "end_time": rfc3339(TODAY + DAY)}


def I(d, key):
    return int(d.get(key, 0))


def uid(p):
    return "%s-%s" % (p, uuid.uuid4().hex[:10])


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def make(tmp_path_factory, rel, name, extra=(), data_dir=None):
    base = tmp_path_factory.mktemp(name)
    if data_dir is None:
        data_dir = base / "data"
        data_dir.mkdir()
    return ServerProcess(binary_path(rel), str(data_dir), str(base), list(extra), name=name)


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.split()[-1])
    return None


# -- kill -9 during ingestion: acknowledged exactly once; resending converges -------------------

class Workload:
    """A deterministic ingestion workload and its ground truth: batches of exposures,
    each followed by a batch of orders by viewers who saw the product."""

    def __init__(self, seed, batches=24, per_batch=250, orders_per_batch=25):
        rnd = random.Random(seed)
        tag = uuid.uuid4().hex[:6]
        self.creators = ["c-%s-%02d" % (tag, i) for i in range(12)]
        viewers = ["v-%s-%03d" % (tag, i) for i in range(150)]
        products = ["p-%s-%02d" % (tag, i) for i in range(30)]
        kinds = ["IMPRESSION", "VIEW", "CLICK"]
        self.expected = {c: [0, 0, 0] for c in self.creators}
        self.order_total = 0
        self.batches = []  # (method, events)
        n = 0
        for b in range(batches):
            evs, seen = [], []
            for _ in range(per_batch):
                n += 1
                c, v = rnd.choice(self.creators), rnd.choice(viewers)
                ps = rnd.sample(products, rnd.randint(1, 3))
                k = rnd.randrange(3)
                self.expected[c][k] += 1
                evs.append({"event_id": "e-%s-%d" % (tag, n), "viewer_id": v, "creator_id": c,
                            "note_id": "n-%d" % (n % 97), "product_ids": ps,
                            "kind": "EXPOSURE_KIND_" + kinds[k],
                            "watch_ms": str(rnd.choice([0, 3000, 15000])),
                            "occur_time": rfc3339(NOW - 7200 - rnd.randrange(86400))})
                seen.append((v, ps[0]))
            self.batches.append(("RecordExposures", evs))
            orders = []
            for j in range(orders_per_batch):
                v, p = rnd.choice(seen)
                amount = rnd.randint(100, 50000)
                self.order_total += amount
                orders.append({"order_id": "o-%s-%d-%d" % (tag, b, j), "viewer_id": v,
                               "product_id": p, "quantity": "1", "amount_minor": str(amount),
                               "occur_time": rfc3339(NOW - 3600 + b)})
            self.batches.append(("RecordConversions", orders))


def attr_server(tmp_path_factory, name):
    return make(tmp_path_factory, ATTR_BIN, name,
                ["--tier-scoring-addr", "127.0.0.1:%d" % free_port(), "--grace-ms", "2000"])


def totals(srv, creators, models=("ATTRIBUTION_MODEL_LAST_TOUCH", "ATTRIBUTION_MODEL_LINEAR")):
    out = {}
    for c in creators:
        for m in models:
            r = srv.client.call("%s/GetCreatorReport" % AT, dict(RANGE, creator_id=c, model=m))
            out[(c, m)] = (I(r, "impressions"), I(r, "views"), I(r, "clicks"),
                           round(float(r.get("attributed_conversions", 0)), 6),
                           I(r, "attributed_gmv_minor"))
    return out


def test_attribution_kill9_during_ingestion_then_resend_matches_a_run_without_crash(
        tmp_path_factory):
    w = Workload(seed=7)

    # The reference: the same workload, no crash.
    ref = attr_server(tmp_path_factory, "faults_ref").start()
    try:
        for method, events in w.batches:
            s = ref.client.call("%s/%s" % (AT, method), {"events": events}, timeout=30)
            assert I(s, "accepted") == len(events), s
        want = totals(ref, w.creators)
    finally:
        ref.stop()
    # The generator's own counts: every exposure counted once, by kind.
    for c in w.creators:
        got = want[(c, "ATTRIBUTION_MODEL_LAST_TOUCH")][:3]
        assert list(got) == w.expected[c], (c, got, w.expected[c])

    # Two writers; SIGKILL lands mid-way; then everything not acknowledged is resent.
    srv = attr_server(tmp_path_factory, "faults_crash").start()
    acked = set()
    lock = threading.Lock()

    def writer(idxs):
        ch = srv.new_channel()
        cl = ywclient.DynamicClient(ch)
        try:
            for i in idxs:
                method, events = w.batches[i]
                try:
                    s = cl.call("%s/%s" % (AT, method), {"events": events}, timeout=10)
                except grpc.RpcError:
                    return
                assert I(s, "accepted") + I(s, "duplicates") == len(events), s
                with lock:
                    acked.add(i)
        finally:
            ch.close()

    # Exposures and their orders go through different writers, so the crash may separate
    # an order from the exposures it joins (late data then re-credits it on resend).
    threads = [threading.Thread(target=writer, args=(range(k, len(w.batches), 2),))
               for k in (0, 1)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < len(w.batches) // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.kill9() == -9
    for t in threads:
        t.join(timeout=30)
    assert 0 < len(acked) < len(w.batches), len(acked)
    srv.start()
    try:
        # Every acknowledged batch is there, exactly once: resent, it is all duplicates.
        for i in sorted(acked):
            method, events = w.batches[i]
            s = srv.client.call("%s/%s" % (AT, method), {"events": events}, timeout=30)
            assert I(s, "duplicates") == len(events) and I(s, "accepted") == 0, (i, s)
        # The client resends what was not acknowledged, in its order.
        for i in range(len(w.batches)):
            if i in acked:
                continue
            method, events = w.batches[i]
            s = srv.client.call("%s/%s" % (AT, method), {"events": events}, timeout=30)
            assert I(s, "accepted") + I(s, "duplicates") == len(events), (i, s)
            assert I(s, "rejected") == 0, (i, s)
        got = totals(srv, w.creators)
        assert got == want
        # And once more after a clean restart (replay of the log and the database).
        srv.restart()
        assert totals(srv, w.creators) == want
    finally:
        srv.stop()


# -- peers down, slow, restarting --------------------------------------------------------------

@pytest.fixture
def stack3(tmp_path_factory):
    cp = make(tmp_path_factory, CREATOR_BIN, "f_cp").start()
    ts_metrics = free_port()
    ts = make(tmp_path_factory, TIER_BIN, "f_ts",
              ["--creator-profile-addr", cp.address, "--refresh-interval-ms", "300",
               "--creator-profile-timeout-ms", "1500", "--metrics-listen",
               "127.0.0.1:%d" % ts_metrics]).start()
    ts.metrics_port = ts_metrics
    at = make(tmp_path_factory, ATTR_BIN, "f_at",
              ["--tier-scoring-addr", ts.address, "--tier-label-ttl-s", "0"]).start()
    yield cp, ts, at
    for s in (cp, ts, at):
        if s.proc is not None and s.proc.poll() is None:
            try:
                s.proc.send_signal(signal.SIGCONT)
            except OSError:
                pass
    at.stop()
    ts.stop()
    cp.stop()


def test_peer_slow_down_and_restarting_nothing_hangs(stack3):
    cp, ts, at = stack3
    cid = uid("c")
    cp.call("%s/CreateCreator" % CP, {"request_id": uid("r"), "creator": {
        "creator_id": cid, "display_name": "n", "categories": ["food"], "followers": "9000"}})
    at.client.call("%s/RecordExposures" % AT, {"events": [{
        "event_id": uid("e"), "viewer_id": "v", "creator_id": cid, "product_ids": ["p"],
        "kind": "EXPOSURE_KIND_IMPRESSION", "occur_time": rfc3339(NOW - 60)}]})

    def tier_report(timeout):
        return at.client.call("%s/GetTierReport" % AT, RANGE, timeout=timeout)

    def labelled():
        r = tier_report(10)
        return any(row.get("tier") == "TIER_TAIL" for row in r.get("rows", [])) and \
            not r.get("tier_labels_error")

    deadline = time.monotonic() + 10
    while not labelled():
        assert time.monotonic() < deadline, tier_report(10)
        time.sleep(0.2)

    # Slow (stopped) tier scoring: the report still answers within the caller's deadline,
    # or fails DEADLINE_EXCEEDED at it — never later.
    ts.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        code = code_of(lambda: tier_report(2.0))
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED), code
        assert time.monotonic() - t0 < 3.0
    finally:
        ts.proc.send_signal(signal.SIGCONT)
    # Creator profile stopped: scoring fails with DEADLINE_EXCEEDED at the caller's
    # deadline (carried to the peer call), or at tier scoring's own peer timeout
    # (--creator-profile-timeout-ms, 1.5 s) when the caller set none.
    cp.proc.send_signal(signal.SIGSTOP)
    try:
        for timeout, bound in ((2.0, 3.0), (None, 3.0)):
            t0 = time.monotonic()
            code = code_of(lambda: ywclient.call_raw(
                ts.channel, "/%s/ScoreCreator" % TS,
                b"\x0a" + bytes([len(cid)]) + cid.encode(), timeout=timeout))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (timeout, code)
            assert time.monotonic() - t0 < bound, timeout
    finally:
        cp.proc.send_signal(signal.SIGCONT)

    # Down: UNAVAILABLE quickly, labels missing but the report answers.
    ts.terminate()
    t0 = time.monotonic()
    r = tier_report(10)
    assert time.monotonic() - t0 < 3.0
    assert r.get("tier_labels_error"), r
    cp.terminate()
    ts.start()
    t0 = time.monotonic()
    code = code_of(lambda: ts.call("%s/ScoreCreator" % TS, {"creator_id": cid}, timeout=30))
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), code
    assert time.monotonic() - t0 < 3.0

    # Back on the same ports: everyone reconnects on their own, no restart of callers.
    cp.start()
    deadline = time.monotonic() + 10
    while code_of(lambda: ts.call("%s/ScoreCreator" % TS, {"creator_id": cid})) != \
            grpc.StatusCode.OK:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while not labelled():
        assert time.monotonic() < deadline, tier_report(10)
        time.sleep(0.2)


def test_calls_during_peer_restarts_all_end_and_release_their_slots(stack3):
    """Score calls keep coming while creator profile is killed and restarted twice:
    every call ends (OK, UNAVAILABLE or DEADLINE_EXCEEDED) within its deadline, and
    tier scoring's calls in flight go back to zero."""
    cp, ts, _ = stack3
    cid = uid("c")
    cp.call("%s/CreateCreator" % CP, {"request_id": uid("r"), "creator": {
        "creator_id": cid, "display_name": "n", "categories": ["food"], "followers": "9000"}})
    results, slow = [], []
    stop = threading.Event()

    def caller():
        ch = ts.new_channel()
        cl = ywclient.DynamicClient(ch)
        while not stop.is_set():
            t0 = time.monotonic()
            results.append(code_of(lambda: cl.call("%s/ScoreCreator" % TS, {"creator_id": cid},
                                                   timeout=2.0)))
            if time.monotonic() - t0 > 3.0:
                slow.append(time.monotonic() - t0)
        ch.close()

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            time.sleep(0.5)
            cp.kill9()
            time.sleep(0.5)
            cp.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert not slow, slow
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert set(results) <= allowed, set(results) - allowed
    assert grpc.StatusCode.OK in results
    assert results[-1] == grpc.StatusCode.OK or \
        code_of(lambda: ts.call("%s/ScoreCreator" % TS, {"creator_id": cid})) == grpc.StatusCode.OK
    deadline = time.monotonic() + 5
    while True:
        inflight = metric(scrape(ts.metrics_port), "grpc_server_calls_in_flight")
        if inflight == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert inflight == 0, inflight


# -- disk full, read-only, corrupt --------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    """A 16 MiB tmpfs; skipped when mounting is not allowed (not root)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % res.stderr.strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path):
    """Writes a filler file until the file system is full; returns its path."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_fails_writes_clearly_serves_reads_and_recovers(tmp_path_factory, tmpfs):
    data = tmpfs / "data"
    data.mkdir()
    srv = make(tmp_path_factory, CREATOR_BIN, "diskfull", ["--grace-ms", "2000"],
               data_dir=data).start()
    acked = []

    def create(i, big=True):
        cid = "c-full-%05d" % i
        srv.call("CreateCreator", {"request_id": "r-%d" % i, "creator": {
            "creator_id": cid, "display_name": ("名" * 60 if big else "n"),
            "categories": ["food", "home", "travel"], "region": "CN-31",
            "followers": str(1000 + i)}}, timeout=10)
        acked.append(cid)

    try:
        for i in range(50):
            create(i)
        filler = fill(str(tmpfs))
        failure = None
        for i in range(50, 5000):
            try:
                create(i)
            except grpc.RpcError as e:
                failure = e
                break
        assert failure is not None, "no write failed on a full disk"
        assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
        assert "full" in failure.details() or "disk" in failure.details(), failure.details()
        # Up, healthy, serving reads of what it acknowledged.
        srv.assert_alive()
        for cid in (acked[0], acked[-1]):
            assert srv.call("GetCreator", {"creator_id": cid})["creator_id"] == cid
        assert srv.call("ListCreators", {"page_size": 10})["creators"]
        # Still full: still failing, never a false acknowledgment.
        assert code_of(lambda: create(90000)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Space returns: writes work again, without a restart.
        os.unlink(filler)
        deadline = time.monotonic() + 10
        while code_of(lambda: create(90001 + len(acked))) != grpc.StatusCode.OK:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for i in range(5):
            create(95000 + i)
        # Everything acknowledged survives kill -9.
        srv.kill9()
        srv.start()
        for cid in acked:
            assert srv.call("GetCreator", {"creator_id": cid})["creator_id"] == cid
    finally:
        srv.stop()


def test_read_only_data_dir_refuses_to_start_clearly(tmp_path_factory, tmpfs):
    data = tmpfs / "data"
    data.mkdir()
    srv = make(tmp_path_factory, CREATOR_BIN, "ro", data_dir=data).start()
    srv.call("CreateCreator", {"request_id": "r", "creator": {"creator_id": "c-ro",
                                                             "display_name": "n"}})
    srv.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    res = subprocess.run([binary_path(CREATOR_BIN), "--listen", "127.0.0.1:%d" % free_port(),
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert "creator_profile.db" in res.stderr and "read-only" in res.stderr, res.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    srv.start()
    assert srv.call("GetCreator", {"creator_id": "c-ro"})["creator_id"] == "c-ro"
    srv.stop()


@pytest.mark.parametrize("rel,db", [(CREATOR_BIN, "creator_profile.db"),
                                    (TIER_BIN, "tier_scoring.db"),
                                    (ATTR_BIN, "attribution.db")])
@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_corrupt_database_refuses_to_start(tmp_path_factory, rel, db, damage):
    extra = ["--creator-profile-addr", "127.0.0.1:%d" % free_port(),
             "--tier-scoring-addr", "127.0.0.1:%d" % free_port()]
    if rel == CREATOR_BIN:
        extra = []
    elif rel == TIER_BIN:
        extra = extra[:2]
    else:
        extra = extra[2:]
    srv = make(tmp_path_factory, rel, "corrupt", extra).start()
    srv.stop()
    path = os.path.join(srv.data_dir, db)
    size = os.path.getsize(path)
    assert size >= 8192
    with open(path, "r+b") as f:
        if damage == "garbage":
            f.write(os.urandom(size))
        else:
            # Keep the header page; wreck every other page's header (b-tree page type).
            for off in range(4096, size, 4096):
                f.seek(off)
                f.write(b"\xee" * 16)
    res = subprocess.run([srv.binary] + srv.args()[1:], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1, res
    assert db in res.stderr and ("corrupt" in res.stderr or "not a database" in res.stderr), \
        res.stderr
    # The file is left as it was for whoever investigates; no empty database replaced it.
    assert os.path.getsize(path) == size
