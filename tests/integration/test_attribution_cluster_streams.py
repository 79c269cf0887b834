"""Client streams (IngestExposures, IngestConversions) on an attribution cluster: real
nats-server processes (nats_cluster.py), real attribution nodes (test_attribution_cluster.py's
Node and fixtures).

A node's front splits a client's stream by viewer partition into parts that it forwards as
RecordExposures / RecordConversions calls, and answers one IngestSummary, as standalone
does: the counts of the whole stream, the error indexes positions in the stream, the lowest
100 ascending. The events are in the replicated log before the summary is sent: a node
killed afterwards loses none of them. Reading pauses while the parts not yet answered hold
more than 8 MiB, so a client that never waits meets HTTP/2 flow control, not a growing node.
"""

import os
import signal
import time
import types

import grpc
import pytest
from google.protobuf import json_format

from conftest import proc_status_kib
from test_attribution import Attr, I, conversion
from test_attribution_cluster import (ATTR, LEASE_TTL_MS, PARTITIONS, balanced, events,
                                      pair_on_own_nats, shares, wait_for)
from test_attribution_cluster import nats, nodes  # noqa: F401 (fixtures: used by name)

SANITIZED = os.environ.get("YW_SANITIZED") == "1"


def stream(node, method, evs, timeout=120):
    """A client stream of dict events to `node`; the summary as a dict (Attr.stream's)."""
    return Attr.stream(types.SimpleNamespace(srv=node), method, evs, timeout=timeout)


def serving(ns):
    """Every partition owned once, fairly, and every node SERVING (its partitions built)."""
    return balanced(ns) and all(n.health() == "SERVING" for n in ns)


def test_streams_through_any_node_count_once_and_survive_a_node_killed(nodes):
    a, b, c = nodes("attr-sa"), nodes("attr-sb"), nodes("attr-sc")
    trio = [a, b, c]
    wait_for(lambda: serving(trio), 30, "three nodes serve their partitions")
    at = int(time.time()) - 7200
    assert stream(a, "IngestExposures", []) == {}

    # ~3,000 exposures over every partition, through one node: all accepted.
    xs = events("st", 3000, at)
    s = stream(a, "IngestExposures", xs)
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (3000, 0, 0), s
    # The same stream through another node: the partitions' engines know every one.
    s = stream(b, "IngestExposures", xs)
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (0, 3000, 0), s

    # Bad events at known positions: their positions in the stream, ascending, the lowest
    # 100 of them listed (180 are bad), every one counted.
    mixed = events("st2", 3000, at)
    bad = sorted(set([0, 1, 999, 1000, 2999] + list(range(13, 3000, 17))))
    for i in bad:
        mixed[i]["event_id"] = ""
    s = stream(c, "IngestExposures", mixed)
    assert I(s, "accepted") == 3000 - len(bad) and I(s, "rejected") == len(bad), s
    assert [I(e, "index") for e in s["errors"]] == bad[:100], s
    assert all("event_id" in e["reason"] for e in s["errors"]), s

    # Conversions likewise: accepted once, duplicates through another node, bad ones at
    # their positions.
    orders = [conversion("st-o%d" % i, "st-v%d" % i, "p%d" % (i % 5), 1000 + i, at + 600)
              for i in range(0, 3000, 2)]
    bad_orders = [3, 700, 701, 1499]
    for i in bad_orders:
        orders[i]["amount_minor"] = "-1"
    s = stream(b, "IngestConversions", orders)
    assert I(s, "accepted") == len(orders) - 4 and I(s, "rejected") == 4, s
    assert [I(e, "index") for e in s["errors"]] == bad_orders, s
    s = stream(c, "IngestConversions", orders)
    assert I(s, "duplicates") == len(orders) - 4 and I(s, "accepted") == 0, s
    assert [I(e, "index") for e in s["errors"]] == bad_orders, s

    # kill -9 of a node: the others build its partitions from their logs; the same streams
    # again are all duplicates, nothing acknowledged lost.
    c.kill9()
    wait_for(lambda: shares([a, b]) == [PARTITIONS // 2, PARTITIONS // 2] and
             all(n.health() == "SERVING" for n in (a, b)),
             LEASE_TTL_MS / 1000 * 2 + 20, "the survivors serve every partition")
    s = stream(a, "IngestExposures", xs + mixed)
    assert I(s, "duplicates") == 6000 - len(bad) and I(s, "accepted") == 0, s
    assert [I(e, "index") for e in s["errors"]] == [3000 + i for i in bad[:100]], s
    s = stream(b, "IngestConversions", orders)
    assert I(s, "duplicates") == len(orders) - 4 and I(s, "accepted") == 0, s


# -- flow control, cancel, a part that fails ----------------------------------------------

# Its own NATS and a long lease: a node stopped (SIGSTOP) for seconds keeps its partitions,
# so the parts forwarded to it wait, and one killed keeps them (its parts fail).
SLOW_TTL_MS = 60000
PAD = 8192  # bytes of an unknown field on every event: the stream's weight, stored nowhere


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def padded(node, method, evs, pulled):
    """The events serialized, each with PAD bytes of an unknown field (a newer client's,
    say: forwarded as received, ignored by the engines), counted in pulled[0] as gRPC takes
    them."""
    c = node.client
    cls = c.message_class(c.method("%s/%s" % (ATTR, method)).input_type)
    pad = varint(1000 << 3 | 2) + varint(PAD) + b"x" * PAD  # field 1000, length-delimited

    def gen():
        for e in evs:
            m = cls()
            json_format.ParseDict(e, m)
            pulled[0] += 1
            yield m.SerializeToString() + pad
    return gen()


def start_stream(node, method, msgs, timeout=180):
    stub = node.channel.stream_unary("/%s/%s" % (ATTR, method),
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
    return stub.future(msgs, timeout=timeout)


def plateau(pulled, limit_s=60):
    """Waits until the client's sends stop (nothing taken for 1.5 s); returns the count."""
    deadline = time.monotonic() + limit_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = pulled[0]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.5:
            return now
        time.sleep(0.1)
    raise AssertionError("the stream never stopped reading (%d events taken)" % pulled[0])


@pytest.fixture
def slow_pair(tmp_path_factory):
    with pair_on_own_nats(tmp_path_factory, ("attr-fa", "attr-fb"), SLOW_TTL_MS) as made:
        yield made


@pytest.mark.release  # RSS asserted in the release build only
def test_a_stream_waits_for_a_slow_owner_in_bounded_memory_and_a_cancel_frees_it(slow_pair):
    a, b = slow_pair
    at = int(time.time()) - 7200
    n = 10000  # 80 MiB of stream: ten times what may wait
    xs = events("fl", n, at)
    rss0 = proc_status_kib(a.proc.pid, "VmRSS")
    b.proc.send_signal(signal.SIGSTOP)
    try:
        pulled = [0]
        fut = start_stream(a, "IngestExposures", padded(a, "IngestExposures", xs, pulled))
        got = plateau(pulled)
        # Half the events are b's: at most 8 MiB sealed and 4 MiB open wait for it (about
        # 1,500 events of 8 KiB), with as many of a's beside them, and the windows.
        assert got < n // 2, got
        if not SANITIZED:
            grew = proc_status_kib(a.proc.pid, "VmRSS") - rss0
            assert grew < 80 * 1024, "the front grew by %d KiB" % grew
        assert not fut.done()
    finally:
        b.proc.send_signal(signal.SIGCONT)
    summary = fut.result(timeout=180)
    cls = a.client.message_class(a.client.method(ATTR + "/IngestExposures").output_type)
    s = a.client.to_dict(cls.FromString(summary))
    assert I(s, "accepted") == n and I(s, "rejected") == 0, s
    assert pulled[0] == n

    # A client that goes away while parts wait for a stopped owner: the call ends at once,
    # the front lets go of everything once the parts have answered (no leak at exit).
    ys = events("fc", 4000, at)
    b.proc.send_signal(signal.SIGSTOP)
    try:
        pulled = [0]
        fut = start_stream(a, "IngestExposures", padded(a, "IngestExposures", ys, pulled))
        plateau(pulled)
        fut.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            fut.result(timeout=10)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # The node goes on serving streams (the cancelled one's events that got through are
    # stored: sent again, they are duplicates; the rest accepted).
    s = stream(a, "IngestExposures", ys[:500])
    assert I(s, "accepted") + I(s, "duplicates") == 500 and I(s, "rejected") == 0, s
    assert a.running() and b.running()


def test_a_part_that_fails_fails_the_stream_naming_its_partitions(slow_pair):
    a, b = slow_pair
    at = int(time.time()) - 7200
    b.kill9()  # its leases stay for SLOW_TTL_MS: its partitions' parts fail UNAVAILABLE
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        stream(a, "IngestConversions",
               [conversion("ff-o%d" % i, "ff-v%d" % i, "p1", 100, at) for i in range(200)])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    assert "partitions " in e.value.details(), e.value.details()
    assert "send the stream again" in e.value.details(), e.value.details()
    assert time.monotonic() - t0 < 60
    assert a.running()


def test_a_message_that_does_not_parse_ends_the_stream_while_its_parts_wait(slow_pair):
    """The runtime fails the call itself (INVALID_ARGUMENT) while parts wait for a stopped
    owner: the front lets them go of the call and frees the stream once they answer (the
    node's exit status at SIGTERM says nothing leaked under the sanitizers)."""
    a, b = slow_pair
    at = int(time.time()) - 7200
    b.proc.send_signal(signal.SIGSTOP)
    try:
        pulled = [0]
        good = padded(a, "IngestExposures", events("fm", 600, at), pulled)

        def msgs():
            yield from good
            yield b"\xff\xff\xff"  # not a message: a truncated varint
        fut = start_stream(a, "IngestExposures", msgs())
        with pytest.raises(grpc.RpcError) as e:
            fut.result(timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert pulled[0] == 600
    finally:
        b.proc.send_signal(signal.SIGCONT)
    s = stream(a, "IngestExposures", events("fm2", 300, at))
    assert I(s, "accepted") == 300, s
    assert a.running() and b.running()
