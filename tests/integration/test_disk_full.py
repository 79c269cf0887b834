"""A full disk (common/disk.h): every write of every service is RESOURCE_EXHAUSTED (never
UNAVAILABLE, which invites blind retries), a reserve file is released so that checkpoints
can complete, retries cannot fill up again what little space comes back, writes resume
by themselves once twice the reserve is free, and nothing acknowledged is lost.

The data dirs are on small tmpfs mounts (mounting needs root: skipped otherwise).
"""

import os
import subprocess
import time

import grpc
import pytest

from conftest import CREATOR_SERVICE, TIER_SERVICE, ServerProcess, binary_path, free_port
from test_attribution import ATTR, RANGE, T, conversion, exposure, refund, uid
from test_faults import fill

ATTR_BIN = "services/attribution/attribution"
CREATOR_BIN = "services/creator_profile/creator_profile"
TIER_BIN = "services/tier_scoring/tier_scoring"
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
MIB = 1 << 20
RESERVE_MB = 2
# What a service's own writes may take meanwhile (persisting what it acknowledged).
SLACK = 256 * 1024


@pytest.fixture
def tmpfs_factory(tmp_path):
    """mount(name) -> a 32 MiB tmpfs (a 2 MiB reserve is 1/16 of it); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(name):
        mnt = tmp_path / name
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs",
                              str(mnt)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip("cannot mount a tmpfs: %s" % res.stderr.strip())
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free_bytes(path):
    st = os.statvfs(str(path))
    return st.f_bavail * st.f_frsize


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        assert e.code() != EXHAUSTED or "disk" in (e.details() or "") \
            or "full" in (e.details() or ""), e.details()
        return e.code()


def shrink(path, by):
    fd = os.open(str(path), os.O_WRONLY)
    try:
        os.ftruncate(fd, os.fstat(fd).st_size - by)
    finally:
        os.close(fd)


def start(tmp_path_factory, rel, name, data, extra=()):
    base = tmp_path_factory.mktemp(name)
    data.mkdir()
    return ServerProcess(binary_path(rel), str(data), str(base),
                         ["--disk-reserve-mb", str(RESERVE_MB), "--grace-ms", "2000"]
                         + list(extra), name=name).start()


def until(fn, seconds, what):
    deadline = time.monotonic() + seconds
    while not fn():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return time.monotonic()


class Writes:
    """Attribution writes of every kind, remembering what was acknowledged."""

    def __init__(self, srv):
        self.srv = srv
        self.viewer = uid("v")
        self.orders = []
        self.exposed = 0

    def call(self, method, req, timeout=10):
        return self.srv.client.call("%s/%s" % (ATTR, method), req, timeout=timeout)

    def exposures(self, n=100):
        # One exposure a call shows the product the orders buy: few touches to persist.
        ev = [exposure(uid("e"), self.viewer, "c-disk",
                       [uid("p") for _ in range(11)] + ["p-1" if i == 0 else uid("p")],
                       "CLICK", T - 100) for i in range(n)]
        r = self.call("RecordExposures", {"events": ev})
        assert int(r.get("accepted", 0)) == n, r
        self.exposed += n

    def conversions(self, n=20):
        ev = [conversion(uid("o"), self.viewer, "p-1", 100, T) for _ in range(n)]
        r = self.call("RecordConversions", {"events": ev})
        assert int(r.get("accepted", 0)) == n, r
        self.orders += [e["order_id"] for e in ev]

    def refunds(self):
        self.call("RecordRefunds", {"events": [refund(uid("r"), self.orders[0], 1)]})

    def settings(self):
        self.call("UpdateAttributionSettings", {"settings": {"engaged_view_ms": "9000"},
                                                "update_mask": "engagedViewMs"})

    def stream(self):
        md = self.srv.client.method("%s/IngestExposures" % ATTR)
        cls = self.srv.client.message_class(md.input_type)
        from google.protobuf import json_format
        msg = json_format.ParseDict(exposure(uid("e"), self.viewer, "c-disk", ["p-1"], "VIEW",
                                             T - 50, watch_ms=20000), cls())
        stub = self.srv.channel.stream_unary("/%s/IngestExposures" % ATTR,
                                             request_serializer=lambda m: m.SerializeToString(),
                                             response_deserializer=lambda b: b)
        stub(iter([msg]), timeout=10)

    def every_kind(self):
        return {"RecordExposures": code_of(self.exposures),
                "RecordConversions": code_of(self.conversions),
                "RecordRefunds": code_of(self.refunds),
                "UpdateAttributionSettings": code_of(self.settings),
                "IngestExposures": code_of(self.stream)}


def test_attribution_full_disk_is_resource_exhausted_keeps_its_reserve_and_resumes(
        tmp_path_factory, tmpfs_factory):
    tmpfs = tmpfs_factory("attr")
    data = tmpfs / "data"
    srv = start(tmp_path_factory, ATTR_BIN, "attr_disk", data,
                ["--tier-scoring-addr", "127.0.0.1:%d" % free_port()])
    w = Writes(srv)
    reserve = data / "attribution.reserve"
    wal = data / "attribution.db-wal"
    try:
        for _ in range(3):
            w.exposures()
            w.conversions()
        filler = fill(str(tmpfs))
        # Whatever a write meets first (ENOSPC in the exposure log or SQLite, or the gate
        # closed by the file system's free space), every kind of write is refused
        # RESOURCE_EXHAUSTED, and keeps being.
        for _ in range(10):
            w.every_kind()
        time.sleep(1.5)  # a look at the file system, at the latest
        for _ in range(3):
            assert set(w.every_kind().values()) == {EXHAUSTED}
        # The reserve was released: room for checkpoints and the writes in flight (the
        # service's own: persisting what it acknowledged, a clean shutdown).
        assert not reserve.exists()
        # Reads go on.
        srv.assert_alive()
        rep = srv.client.call("%s/GetCreatorReport" % ATTR, dict(RANGE, creator_id="c-disk"))
        assert int(rep.get("clicks", 0)) >= w.exposed
        srv.client.call("%s/ListTopCreators" % ATTR, RANGE)

        # 1 MiB back, less than twice the reserve: 3 s of retries change nothing, and
        # cannot fill the disk again (before, they took it all within 3 s).
        shrink(filler, MIB)
        free0, wal0 = free_bytes(tmpfs), wal.stat().st_size if wal.exists() else 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            assert set(w.every_kind().values()) == {EXHAUSTED}
        assert free_bytes(tmpfs) >= free0 - SLACK, (free0, free_bytes(tmpfs))
        assert (wal.stat().st_size if wal.exists() else 0) <= wal0 + SLACK

        # Space back: writes resume by themselves, the reserve in place again.
        os.unlink(filler)
        t_free = time.monotonic()
        t_ok = until(lambda: set(w.every_kind().values()) == {grpc.StatusCode.OK}, 10,
                     "writes did not resume within 10 s of space coming back")
        assert reserve.stat().st_size == RESERVE_MB * MIB
        print("resumed %.1f s after the space came back" % (t_ok - t_free))
        w.exposures()
        w.conversions()

        # Everything acknowledged survives kill -9.
        srv.kill9()
        srv.start()
        rep = srv.client.call("%s/GetCreatorReport" % ATTR, dict(RANGE, creator_id="c-disk"))
        assert int(rep.get("clicks", 0)) >= w.exposed, (rep, w.exposed)
        for o in w.orders:
            assert srv.client.call("%s/ExplainConversion" % ATTR, {"order_id": o})
    finally:
        srv.stop()


def test_creator_profile_and_tier_scoring_full_disk(tmp_path_factory, tmpfs_factory):
    """Each on a file system of its own (services sharing one: README, "Full disk")."""
    fs = {"cp": tmpfs_factory("cp"), "ts": tmpfs_factory("ts")}
    cp = start(tmp_path_factory, CREATOR_BIN, "cp_disk", fs["cp"] / "data")
    ts = start(tmp_path_factory, TIER_BIN, "ts_disk", fs["ts"] / "data",
               ["--creator-profile-addr", cp.address, "--refresh-interval-ms", "300"])
    reserves = [fs["cp"] / "data" / "creator_profile.reserve",
                fs["ts"] / "data" / "tier_scoring.reserve"]
    try:
        def create():
            cid = uid("c")
            cp.call("%s/CreateCreator" % CREATOR_SERVICE, {"creator": {
                "creator_id": cid, "display_name": "名" * 60, "followers": "7000",
                "categories": ["c%d" % i for i in range(20)]}}, timeout=10)

        def policy():
            ts.call("%s/UpdateTierPolicy" % TIER_SERVICE, {
                "policy": {"rising_top_fraction": 0.2}, "update_mask": "risingTopFraction"},
                timeout=10)

        create()
        policy()
        fillers = [fill(str(m)) for m in fs.values()]
        for _ in range(5):
            code_of(create)
            code_of(policy)
        time.sleep(1.5)
        for _ in range(3):
            assert code_of(create) == EXHAUSTED
            assert code_of(policy) == EXHAUSTED
        cp.assert_alive()
        ts.assert_alive()
        assert ts.call("%s/GetTierPolicy" % TIER_SERVICE, {})
        # Both reserves were released; 1 MiB more back is less than twice a reserve:
        # retries for 3 s change nothing and fill nothing.
        assert not any(r.exists() for r in reserves)
        for f in fillers:
            shrink(f, MIB)
        free0 = {k: free_bytes(m) for k, m in fs.items()}
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            assert code_of(create) == EXHAUSTED
            assert code_of(policy) == EXHAUSTED
        for k, m in fs.items():
            assert free_bytes(m) >= free0[k] - SLACK, (k, free0[k], free_bytes(m))
        for f in fillers:
            os.unlink(f)
        until(lambda: code_of(create) == grpc.StatusCode.OK and
              code_of(policy) == grpc.StatusCode.OK, 10, "writes did not resume")
        assert all(r.stat().st_size == RESERVE_MB * MIB for r in reserves)
    finally:
        ts.stop()
        cp.stop()
