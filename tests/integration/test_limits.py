"""Limits a caller cannot exceed (issue 7), each with its status code:

- message size (--max-message-bytes): RESOURCE_EXHAUSTED, every service;
- batch size (per method, in the services): INVALID_ARGUMENT naming the field;
- concurrent streams per connection (--max-streams-per-connection, HTTP/2
  SETTINGS_MAX_CONCURRENT_STREAMS): calls beyond it wait for a free slot on that
  connection (DEADLINE_EXCEEDED when their deadline comes first), while other
  connections are served at once — one caller cannot take every call slot.
"""

import time

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

BINS = {"creator_profile": (CREATOR_BIN, CP, "GetCreator"),
        "tier_scoring": (TIER_BIN, TS, "BatchScoreCreators"),
        "attribution": (ATTR_BIN, AT, "RecordExposures")}


def make(tmp_path_factory, which, extra=()):
    rel = BINS[which][0]
    base = tmp_path_factory.mktemp("lim_" + which)
    data = base / "data"
    data.mkdir()
    peer = []
    if which == "tier_scoring":
        peer = ["--creator-profile-addr", "127.0.0.1:%d" % free_port()]
    elif which == "attribution":
        peer = ["--tier-scoring-addr", "127.0.0.1:%d" % free_port()]
    return ServerProcess(binary_path(rel), str(data), str(base), peer + list(extra),
                         name="lim_" + which)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


@pytest.mark.parametrize("which", sorted(BINS))
def test_message_size_limit_every_service(tmp_path_factory, which):
    srv = make(tmp_path_factory, which, ["--max-message-bytes", "65536"])
    srv.start()
    try:
        _, svc, method = BINS[which]
        ch = ywclient.connect(srv.address, max_message_bytes=1 << 20)
        # A bytes field 1 (any of these requests starts with a string or repeated field)
        # of 70,000 bytes: too big before it is even parsed.
        big = b"\x0a" + bytes([0x80 | (70000 & 0x7f), (70000 >> 7) & 0x7f | 0x80,
                               70000 >> 14]) + b"x" * 70000
        with pytest.raises(grpc.RpcError) as ei:
            ywclient.call_raw(ch, "/%s/%s" % (svc, method), big, timeout=10)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ch.close()
        srv.assert_alive()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    srv = make(tmp_path_factory, "creator_profile", ["--max-streams-per-connection", "4"])
    srv.start()
    yield srv
    srv.stop()


def test_batch_size_limits(cp, tmp_path_factory):
    ch = cp.channel
    c = cp.client
    with pytest.raises(grpc.RpcError) as ei:
        c.call("%s/BatchGetCreators" % CP, {"creator_ids": ["c-%d" % i for i in range(1001)]})
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "creator_ids: at most 1000" in ei.value.details()
    rows = [{"note_id": "n-%d" % i, "creator_id": "c", "day": "2026-01-01"} for i in range(10001)]
    with pytest.raises(grpc.RpcError) as ei:
        c.call("%s/RecordNoteStats" % CP, {"stats": rows}, timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stats: at most 10000" in ei.value.details()
    del ch
    ts = make(tmp_path_factory, "tier_scoring")
    ts.start()
    try:
        with pytest.raises(grpc.RpcError) as ei:
            ts.client.call("%s/BatchScoreCreators" % TS,
                           {"creator_ids": ["c-%d" % i for i in range(1001)]})
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 1000" in ei.value.details()
    finally:
        ts.stop()


def _watch(ch):
    """Opens a Health Watch stream on ch and waits for its first message: the stream
    then holds one of the connection's stream slots until cancelled."""
    it = ywclient.health_watch(ch, "")
    first = next(it)
    assert ywclient.status_name(first) == "SERVING"
    return it


def test_max_concurrent_streams_per_connection(cp):
    # A connection of its own (grpcio shares connections between channels by default).
    ch = grpc.insecure_channel(cp.address, options=[("grpc.use_local_subchannel_pool", 1)])
    watches = [_watch(ch) for _ in range(4)]
    try:
        # The fifth call on this connection waits for a slot: its deadline passes.
        t0 = time.monotonic()
        assert code_of(lambda: ywclient.health_check(ch, "", timeout=1.0)) == \
            grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
        # Another connection is not starved.
        other = grpc.insecure_channel(cp.address, options=[("grpc.use_local_subchannel_pool", 1)])
        assert ywclient.health_check(other, "", timeout=2.0) == "SERVING"
        other.close()
        # A slot freed on the first connection serves the next call.
        watches.pop().cancel()
        deadline = time.monotonic() + 5
        while True:
            code = code_of(lambda: ywclient.health_check(ch, "", timeout=1.0))
            if code == grpc.StatusCode.OK or time.monotonic() > deadline:
                break
        assert code == grpc.StatusCode.OK
    finally:
        for w in watches:
            w.cancel()
        ch.close()
    cp.assert_alive()


def test_default_streams_limit_is_announced(tmp_path_factory):
    """The default (128) lets the benchmark's 64 calls in flight on one connection run
    together; --help names the flag."""
    import subprocess
    out = subprocess.run([binary_path(CREATOR_BIN), "--help"], capture_output=True,
                         text=True).stdout
    assert "--max-streams-per-connection" in out and "default 128" in out
