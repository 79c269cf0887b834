"""Attribution as a cluster on NATS JetStream (--cluster): real nats-server processes on
loopback (nats_cluster.py), real attribution nodes.

What this build does in cluster mode, and what these tests hold it to: membership,
partition leases, and the write path of exposures and orders. Every node computes the same assignment of the partitions over the
live nodes and holds the leases of its share in a replicated KV bucket; a node that dies
loses its partitions to the others within the lease TTL; a node paused past its TTL
finds its leases gone; a node that comes back gets its share back; a node started with
another partition count refuses to start; a node that cannot reach NATS keeps trying
with health NOT_SERVING. RecordExposures and RecordConversions sent to any node reach
their viewers' partitions, are in the replicated log before they are acknowledged, and
survive the node that held them (RecordRefunds and ExplainConversion:
test_attribution_cluster_orders.py; the client streams: test_attribution_cluster_streams.py).
"""

import contextlib
import os
import re
import signal
import time

import grpc
import pytest

import ywclient
from conftest import ATTRIBUTION_BIN, ServerProcess, binary_path, free_port
from nats_cluster import NatsCluster, NatsServer
from test_attribution import RANGE, Attr, I, conversion, exposure
from test_attribution_memory import scrape
from tier_stub import TierStub

PARTITIONS = 16
LEASE_TTL_MS = 2000
ATTR = "yaowei.attribution.v1.AttributionService"


class Node(ServerProcess):
    """An attribution node: its own data dir and metrics port, --cluster flags."""

    def __init__(self, tmp_path_factory, name, urls, extra=()):
        base = tmp_path_factory.mktemp(name)
        data = base / "data"
        data.mkdir()
        self.mport = free_port()
        args = ["--cluster", urls, "--node-id", name, "--partitions", str(PARTITIONS),
                "--lease-ttl-ms", str(LEASE_TTL_MS), "--metrics-listen",
                "127.0.0.1:%d" % self.mport] + list(extra)
        super().__init__(binary_path(ATTRIBUTION_BIN), str(data), str(base), args, name=name)

    def metrics(self):
        return scrape(self.mport)

    def owned(self):
        return int(self.metrics()['yaowei_attribution_cluster_partitions{state="owned"}'])

    def health(self):
        ch = grpc.insecure_channel(self.address)
        try:
            return ywclient.health_check(ch, "", timeout=2.0)
        except grpc.RpcError as e:
            return "error: %s" % e.code()
        finally:
            ch.close()

    def start_nowait(self):
        """Starts without waiting for SERVING (a node that cannot reach NATS never is)."""
        real = self._wait_serving
        self._wait_serving = lambda: None
        try:
            return self.start()
        finally:
            self._wait_serving = real


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, KeyError, grpc.RpcError) as e:
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError("%s: not within %.1f s (last: %r)" % (what, timeout, last))


def per_partition_ready(node):
    """The node's metrics once its per-partition series agree with what it serves."""
    m = node.metrics()
    n = sum(m.get('yaowei_attribution_cluster_partition_serving{partition="%d"}' % p, 0)
            for p in range(PARTITIONS))
    return m if n == m['yaowei_attribution_cluster_partitions{state="serving"}'] else None


def shares(nodes):
    return sorted(n.owned() for n in nodes if n.running())


def balanced(nodes):
    """Every partition owned once, each live node within its fair share."""
    live = [n for n in nodes if n.running()]
    owned = [n.owned() for n in live]
    cap = -(-PARTITIONS // len(live))
    return sum(owned) == PARTITIONS and all(PARTITIONS // len(live) - 1 <= o <= cap
                                            for o in owned) and owned


@contextlib.contextmanager
def pair_on_own_nats(tmp_path_factory, names, lease_ttl_ms):
    """Two nodes (names) on a one-server NATS of their own, --replicas 1 and the lease
    given, both serving their share; everything stopped after (SIGCONT first: a test
    may leave one paused)."""
    nats1 = NatsCluster(str(tmp_path_factory.mktemp("nats-" + names[0])), n=1).start()
    made = []
    try:
        for name in names:
            n = Node(tmp_path_factory, name, nats1.urls,
                     ["--replicas", "1", "--lease-ttl-ms", str(lease_ttl_ms)])
            made.append(n)
            n.start()
        wait_for(lambda: balanced(made) and all(n.health() == "SERVING" for n in made), 60,
                 "two nodes serve their partitions")
        yield made
    finally:
        for n in made:
            if n.proc is not None and n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGCONT)
                n.stop()
        nats1.stop()


@pytest.fixture(scope="module")
def nats(tmp_path_factory):
    cluster = NatsCluster(str(tmp_path_factory.mktemp("nats")), n=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def nodes(tmp_path_factory, nats, request):
    made = []

    def make(name, extra=(), start=True):
        n = Node(tmp_path_factory, name, nats.urls, extra)
        made.append(n)
        if start:
            n.start()
        return n

    yield make
    for n in made:
        if n.proc is not None and n.proc.poll() is None:
            try:
                os.kill(n.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            n.stop()


def test_three_nodes_share_the_partitions_and_take_over_from_a_dead_one(nodes):
    a, b, c = nodes("attr-a"), nodes("attr-b"), nodes("attr-c")
    trio = [a, b, c]
    wait_for(lambda: balanced(trio), 15, "three nodes share %d partitions" % PARTITIONS)
    wait_for(lambda: all(n.health() == "SERVING" for n in trio), 15, "SERVING")
    served = {}
    for n in trio:
        m = wait_for(lambda: per_partition_ready(n), 5, "the per-partition series")
        assert m["yaowei_attribution_cluster_connected"] == 1
        assert m["yaowei_attribution_cluster_nodes"] == 3
        # Per partition: served here or not, its log since a snapshot (none yet: -1 age).
        mine = [p for p in range(PARTITIONS)
                if m['yaowei_attribution_cluster_partition_serving{partition="%d"}' % p] == 1]
        assert len(mine) == m['yaowei_attribution_cluster_partitions{state="serving"}']
        for p in mine:
            assert m['yaowei_attribution_cluster_partition_snapshot_age_seconds{partition="%d"}'
                     % p] == -1
            assert m['yaowei_attribution_cluster_partition_log_kib{partition="%d"}' % p] >= 0
            served[p] = served.get(p, 0) + 1
    assert served == {p: 1 for p in range(PARTITIONS)}  # each served once, by one node
    # kill -9: its leases expire after the TTL and the two others take them all.
    t0 = time.monotonic()
    c.kill9()
    wait_for(lambda: shares([a, b]) == [PARTITIONS // 2, PARTITIONS // 2],
             LEASE_TTL_MS / 1000 * 2 + 5, "the two survivors hold every partition")
    took = time.monotonic() - t0
    assert took >= LEASE_TTL_MS / 1000 * 0.5, "taken before the dead node's leases expired?"
    # It comes back and gets its share back; nobody holds a partition twice.
    c.start()
    wait_for(lambda: balanced(trio), 15, "the restarted node gets its share back")
    assert all(n.health() == "SERVING" for n in trio)


def test_a_stopped_node_lets_its_partitions_go_at_once(nodes):
    a, b = nodes("attr-d"), nodes("attr-e")
    wait_for(lambda: balanced([a, b]), 15, "two nodes share the partitions")
    t0 = time.monotonic()
    b.stop()  # SIGTERM: leases deleted, not left to expire
    wait_for(lambda: a.owned() == PARTITIONS, 10, "the survivor holds every partition")
    assert time.monotonic() - t0 < LEASE_TTL_MS / 1000 + 2.5


def test_a_node_paused_past_its_lease_finds_it_gone(nodes):
    a, b = nodes("attr-f"), nodes("attr-g")
    wait_for(lambda: balanced([a, b]), 15, "two nodes share the partitions")
    b.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: a.owned() == PARTITIONS, LEASE_TTL_MS / 1000 * 2 + 5,
                 "the running node takes the paused node's partitions")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # Resumed: its renewals are refused (the leases are another node's), it counts them
    # lost, rejoins, and the two share again with every partition held once.
    wait_for(lambda: b.metrics()["yaowei_attribution_cluster_leases_lost_total"] >= 1, 10,
             "the paused node counts its leases lost")
    wait_for(lambda: balanced([a, b]), 15, "the two share again")
    assert any("lost the lease of partition" in str(r.get("msg", "")) for r in b.log_records()), \
        b.log_tail()


def test_a_node_with_another_partition_count_refuses_to_start(nodes):
    nodes("attr-h")  # creates the cluster's meta with PARTITIONS (or finds it)
    bad = nodes("attr-i", ["--partitions", str(PARTITIONS // 2)], start=False)
    bad.start_nowait()
    rc = bad.proc.wait(timeout=20)
    assert rc == 1, bad.log_tail()
    log = bad.log_text()
    assert "--partitions %d" % (PARTITIONS // 2) in log and "%d partitions" % PARTITIONS in log, log


def test_a_forwarded_call_naming_no_partition_is_refused(nodes):
    a = nodes("attr-j")
    wait_for(lambda: a.health() == "SERVING", 20, "SERVING")
    # A forwarded part naming a partition that does not exist is refused as such.
    with pytest.raises(grpc.RpcError) as e:
        a.client.call(ATTR + "/RecordExposures", {"events": []},
                      metadata=[("yw-partition", "999")])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "yw-partition" in e.value.details()


def events(tag, n, at):
    """n exposures of n viewers (spread over the partitions), each of one product."""
    return [exposure("%s-e%d" % (tag, i), "%s-v%d" % (tag, i), "c%d" % (i % 7), ["p%d" % (i % 5)],
                     "CLICK", at) for i in range(n)]


def log_streams(nats):
    """The cluster's streams in NATS (server 0's view): name -> its subjects, sorted."""
    out = {}
    for acc in nats.jsz(0, streams="true", config="true").get("account_details") or []:
        for st in acc.get("stream_detail") or []:
            if st["name"].startswith("yw-attr-"):
                out[st["name"]] = sorted((st.get("config") or {}).get("subjects") or [])
    return out


def test_events_go_to_their_partitions_and_survive_a_node_killed(nodes, nats):
    """Exposures and orders sent to any node land once in their viewers' partitions, in
    the replicated log: after kill -9 of a node, the partitions it held are built again
    from their logs by the others, and every event sent before comes back a duplicate."""
    a, b, c = nodes("attr-k"), nodes("attr-l"), nodes("attr-m")
    trio = [a, b, c]
    wait_for(lambda: balanced(trio) and all(n.health() == "SERVING" for n in trio), 30,
             "three nodes serve their partitions")
    at = int(time.time()) - 7200
    xs = events("k", 240, at)
    s = a.client.call(ATTR + "/RecordExposures", {"events": xs})
    assert I(s, "accepted") == 240, s
    # The same events through another node: the partitions' engines know them.
    s = b.client.call(ATTR + "/RecordExposures", {"events": xs})
    assert I(s, "duplicates") == 240 and I(s, "accepted") == 0, s
    # Bad events beside good ones: rejected with the caller's indexes, ascending.
    mixed = events("k2", 30, at)
    bad = sorted([3, 11, 17, 29])
    for i in bad:
        mixed[i]["event_id"] = ""
    s = c.client.call(ATTR + "/RecordExposures", {"events": mixed})
    assert I(s, "accepted") == 26 and I(s, "rejected") == 4, s
    assert [I(e, "index") for e in s["errors"]] == bad, s
    assert all("event_id" in e["reason"] for e in s["errors"]), s
    orders = [conversion("k-o%d" % i, "k-v%d" % i, "p%d" % (i % 5), 1000 + i, at + 600)
              for i in range(0, 240, 3)]
    s = c.client.call(ATTR + "/RecordConversions", {"events": orders})
    assert I(s, "accepted") == len(orders), s
    # The logs: a stream per 8 partitions in a row, named by the first and the last.
    logs = {k: v for k, v in log_streams(nats).items() if k.startswith("yw-attr-log-")}
    assert logs == {"yw-attr-log-%d-%d" % (g, g + 7): sorted("yw.attr.p.%d" % p
                                                             for p in range(g, g + 8))
                    for g in range(0, PARTITIONS, 8)}, logs
    assert "yw-attr-events" not in log_streams(nats)

    # kill -9 of one node: its partitions are built from their logs by the two others.
    retries = a.metrics().get("yaowei_attribution_cluster_part_retries_total", 0)
    dead = c.owned()
    c.kill9()
    # A call at once, while the dead node still holds its leases: its parts for them fail
    # UNAVAILABLE and are tried again (counted), until the others took them or the tries
    # ran out.
    try:
        s = a.client.call(ATTR + "/RecordExposures", {"events": xs}, timeout=30)
        assert I(s, "duplicates") == 240, s
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, e
    assert a.metrics()["yaowei_attribution_cluster_part_retries_total"] > retries
    wait_for(lambda: shares([a, b]) == [PARTITIONS // 2, PARTITIONS // 2] and
             all(n.health() == "SERVING" for n in (a, b)),
             LEASE_TTL_MS / 1000 * 2 + 20, "the survivors serve every partition")
    builds = sum(n.metrics()["yaowei_attribution_cluster_partition_builds_total"]
                 for n in (a, b))
    assert builds >= PARTITIONS + 1  # the first builds, then the dead node's again
    # The dead node's partitions were built while its leases ran out (NATS told the
    # survivors at once that its process was gone: no responders to their probes), and
    # served as soon as the leases were theirs, each from that build.
    ahead = sum(n.metrics()['yaowei_attribution_cluster_partition_builds_ahead_total'
                            '{result="served"}'] for n in (a, b))
    assert ahead == dead, (ahead, dead)
    assert all(n.metrics()["yaowei_attribution_cluster_nodes_not_answering"] == 0
               for n in (a, b))
    # Each build's engine opening on the loop is timed apart.
    opens = sum(n.metrics()["yaowei_attribution_cluster_partition_open_seconds_count"]
                for n in (a, b))
    assert opens == builds
    # The builds index the exposures on the pool: no engine's opening on the loop reads
    # the log, each loads the index files the build wrote.
    ready = re.findall(r"(\d+) exposures in \d+ index files \(\d+ dropped\), (\d+) read from "
                       r"the log's tail", a.log_text() + b.log_text())
    assert len(ready) >= builds and all(int(tail) == 0 for _, tail in ready), ready
    assert sum(int(indexed) for indexed, _ in ready) > 0, ready
    s = a.client.call(ATTR + "/RecordExposures", {"events": xs + mixed})
    assert I(s, "duplicates") == 266 and I(s, "accepted") == 0, s
    assert [I(e, "index") for e in s["errors"]] == [240 + i for i in bad], s
    s = b.client.call(ATTR + "/RecordConversions", {"events": orders})
    assert I(s, "duplicates") == len(orders) and I(s, "accepted") == 0, s


def log_messages(nats):
    """Messages in the partitions' logs: per stream, the most any server holds (a follower
    may be a little behind what its leader acknowledged)."""
    most = {}
    for i in range(3):
        for acc in nats.jsz(i, streams="true").get("account_details") or []:
            for st in acc.get("stream_detail") or []:
                if st["name"].startswith("yw-attr-log-"):
                    most[st["name"]] = max(most.get(st["name"], 0), st["state"]["messages"])
    return sum(most.values())


def settled_log_messages(nats):
    """log_messages() once two readings 0.3 s apart agree (appends in flight landed)."""
    def settled():
        first = log_messages(nats)
        time.sleep(0.3)
        return first if log_messages(nats) == first else None
    return wait_for(settled, 10, "the logs settled")


def test_parts_of_concurrent_calls_share_log_messages_a_lone_callers_do_not(nodes, nats):
    """--log-linger-ms: parts of RecordExposures calls a node splits while it has others
    in flight wait in their partitions' logs for each other (one message for several
    calls); a caller that sends one call at a time has its parts appended at once, each
    its own message, never held."""
    from concurrent.futures import ThreadPoolExecutor
    a, b = nodes("attr-w"), nodes("attr-x")
    wait_for(lambda: balanced([a, b]) and all(n.health() == "SERVING" for n in (a, b)), 30,
             "two nodes serve their partitions")
    at = int(time.time()) - 3600

    def batch(tag):  # the same 64 viewers in every batch: the same partitions
        return [exposure("%s-e%d" % (tag, i), "lw-v%d" % i, "c%d" % (i % 7), ["p1"], "VIEW", at)
                for i in range(64)]

    def lingering():
        return sum(n.metrics().get("yaowei_attribution_cluster_parts_lingering_total", 0)
                   for n in (a, b))

    calls = 6
    m0, l0 = settled_log_messages(nats), lingering()
    for k in range(calls):  # one at a time: each acknowledged before the next is sent
        s = a.client.call(ATTR + "/RecordExposures", {"events": batch("lw-s%d" % k)})
        assert I(s, "accepted") == 64, s
    parts = settled_log_messages(nats) - m0
    assert parts % calls == 0 and parts >= calls, parts  # every call: a message a partition
    assert lingering() == l0  # no part of a lone call is held

    with ThreadPoolExecutor(calls) as ex:
        done = list(ex.map(lambda k: a.client.call(ATTR + "/RecordExposures",
                                                   {"events": batch("lw-c%d" % k)}),
                           range(calls)))
    assert all(I(s, "accepted") == 64 for s in done), done
    together = settled_log_messages(nats) - m0 - parts
    assert lingering() > l0
    assert together < parts, (together, parts)  # parts of several calls in one message


def test_a_part_sent_to_linger_waits_for_the_next_one(nodes, nats):
    """The engine's side of --log-linger-ms: a part carrying yw-linger wakes its
    partition's log writer, which waits the linger before it appends, so a part that
    comes meanwhile goes in the same log message; parts without it are appended at once,
    a message each."""
    from concurrent.futures import ThreadPoolExecutor
    a = nodes("attr-y", ["--log-linger-ms", "1000"])
    wait_for(lambda: a.owned() == PARTITIONS and a.health() == "SERVING", 30,
             "one node serves every partition")
    at = int(time.time()) - 3600

    def two_parts(tag, md):
        """Two parts for partition 3, the second 0.2 s after the first; the log messages
        they made."""
        m0 = settled_log_messages(nats)
        with ThreadPoolExecutor(2) as ex:
            sent = []
            for k in range(2):
                xs = [exposure("%s%d-e%d" % (tag, k, i), "ly-v%d" % i, "c1", ["p1"], "VIEW", at)
                      for i in range(5)]
                sent.append(ex.submit(a.client.call, ATTR + "/RecordExposures",
                                      {"events": xs}, metadata=md))
                time.sleep(0.2)
            assert all(I(f.result(), "accepted") == 5 for f in sent)
        return settled_log_messages(nats) - m0

    assert two_parts("ly-a", [("yw-partition", "3"), ("yw-linger", "1")]) == 1
    assert two_parts("ly-b", [("yw-partition", "3")]) == 2


@pytest.mark.parametrize("flags,needle", [
    (["--node-id", "bad id!"], "--node-id"),
    (["--replicas", "7"], "--replicas"),
    (["--lease-ttl-ms", "10"], "--lease-ttl-ms"),
    (["--partitions", "0"], "--partitions"),
    (["--log-linger-ms", "1001"], "--log-linger-ms"),
])
def test_bad_cluster_flags_are_refused_naming_the_flag(nodes, flags, needle):
    n = nodes("attr-bad", flags, start=False)
    n.start_nowait()
    rc = n.proc.wait(timeout=20)
    assert rc != 0
    assert needle in n.log_text(), n.log_tail()


def test_nats_unreachable_at_start_keeps_trying_not_serving(tmp_path_factory):
    """A node whose NATS is not up yet: it serves health (NOT_SERVING), logs why, keeps
    trying with backoff, and is SERVING once a NATS server appears at that address."""
    base = str(tmp_path_factory.mktemp("late-nats"))
    srv = NatsServer(base, "late")
    srv.write_conf([srv])
    node = Node(tmp_path_factory, "attr-late", srv.url, ["--replicas", "1"])
    node.start_nowait()
    try:
        wait_for(lambda: node.health() == "NOT_SERVING", 10, "health NOT_SERVING")
        wait_for(lambda: "cannot connect to NATS" in node.log_text(), 10, "the reason logged")
        time.sleep(1.0)
        assert node.running() and node.health() == "NOT_SERVING"
        srv.start()
        wait_for(lambda: node.health() == "SERVING", 20, "SERVING once NATS is up")
        assert node.owned() == PARTITIONS
    finally:
        node.stop()
        srv.stop()


MODELS = ["ATTRIBUTION_MODEL_LAST_TOUCH", "ATTRIBUTION_MODEL_FIRST_TOUCH",
          "ATTRIBUTION_MODEL_LINEAR", "ATTRIBUTION_MODEL_TIME_DECAY",
          "ATTRIBUTION_MODEL_POSITION_BASED"]


def workload(tag, at):
    """Exposures of 90 viewers to 7 creators' notes (clicks and views at spread times,
    products shared), then orders of two thirds of the viewers: many creators share
    credits, every model differs."""
    xs, orders = [], []
    for v in range(90):
        viewer = "%s-v%d" % (tag, v)
        for k in range(3):
            kind = "CLICK" if (v + k) % 3 else "VIEW"
            xs.append(exposure("%s-e%d-%d" % (tag, v, k), viewer, "%s-c%d" % (tag, (v + 2 * k) % 7),
                               ["%s-p%d" % (tag, v % 4)], kind, at - 3600 * (k + 1) - v,
                               watch_ms=8000 if kind == "VIEW" else 0))
        if v % 3:
            orders.append(conversion("%s-o%d" % (tag, v), viewer, "%s-p%d" % (tag, v % 4),
                                     1999 + 7 * v, at))
    return xs, orders


def reports(node_call, tag):
    out = {}
    for m in MODELS:
        out[("tier", m)] = node_call("GetTierReport", dict(RANGE, model=m))
        for c in range(7):
            out[("creator", c, m)] = node_call("GetCreatorReport",
                                               dict(RANGE, model=m, creator_id="%s-c%d" % (tag, c)))
    return out


@pytest.fixture
def own_nodes(tmp_path_factory):
    """Like `nodes`, on a NATS cluster of the test's own: reports span every event the
    cluster ever took, so a comparison with standalone needs a cluster of its own."""
    cluster = NatsCluster(str(tmp_path_factory.mktemp("nats-own")), n=3).start()
    made = []

    def make(name, extra=()):
        n = Node(tmp_path_factory, name, cluster.urls, extra)
        made.append(n)
        n.start()
        return n

    make.nats = cluster
    yield make
    for n in made:
        if n.running():
            n.stop()
    cluster.stop()


def test_reports_equal_standalone_for_the_same_events(own_nodes, tmp_path_factory):
    """The same events sent to a standalone attribution and to a cluster (spread over its
    nodes): every report of every model, asked of any node, equals standalone's, also
    after kill -9 of a node; ListTopCreators pages go on from a token on another node."""
    nodes = own_nodes
    tag = "rep"
    tiers = {"%s-c%d" % (tag, c): ["TIER_HEAD", "TIER_MID", "TIER_TAIL", "TIER_AMATEUR"][c % 4]
             for c in range(7)}
    stub = TierStub(tiers).start()
    alone = Attr(tmp_path_factory, "attr-alone", tier_addr=stub.address)
    alone.start()
    try:
        extra = ["--tier-scoring-addr", stub.address]
        trio = [nodes("attr-r%d" % i, extra) for i in range(3)]
        wait_for(lambda: balanced(trio) and all(n.health() == "SERVING" for n in trio), 30,
                 "three nodes serve")
        xs, orders = workload(tag, int(time.time()) - 600)
        for i in range(0, len(xs), 100):
            assert I(alone.call("RecordExposures", {"events": xs[i:i + 100]}), "accepted") > 0
            s = trio[(i // 100) % 3].client.call(ATTR + "/RecordExposures",
                                                 {"events": xs[i:i + 100]})
            assert I(s, "accepted") == len(xs[i:i + 100]), s
        s = alone.call("RecordConversions", {"events": orders})
        assert I(s, "accepted") == len(orders), s
        s = trio[1].client.call(ATTR + "/RecordConversions", {"events": orders})
        assert I(s, "accepted") == len(orders), s

        want = reports(lambda m, r: alone.call(m, r), tag)
        assert want[("tier", MODELS[0])].get("rows"), want[("tier", MODELS[0])]
        for n in trio:
            got = reports(lambda m, r: n.client.call(ATTR + "/" + m, r), tag)
            assert got == want
        # The same settings (update_time: when the partitions were first made, not when
        # standalone's database was).
        gs = trio[2].client.call(ATTR + "/GetAttributionSettings", {})
        ws = alone.call("GetAttributionSettings", {})
        gs.pop("update_time")
        ws.pop("update_time")
        assert gs == ws
        # Top creators, two pages: the token of one node works on another.
        q = dict(RANGE, model=MODELS[2], page_size=3)
        w1 = alone.call("ListTopCreators", q)
        g1 = trio[0].client.call(ATTR + "/ListTopCreators", q)
        assert g1["creators"] == w1["creators"]
        g2 = trio[1].client.call(ATTR + "/ListTopCreators",
                                 dict(q, page_token=g1["next_page_token"]))
        w2 = alone.call("ListTopCreators", dict(q, page_token=w1["next_page_token"]))
        assert g2["creators"] == w2["creators"]

        # A settings change through one node: every partition restates under it, every
        # node answers the same settings and the same reports as standalone after it.
        upd = {"settings": {"click_window": "259200s",
                            "default_model": "ATTRIBUTION_MODEL_POSITION_BASED"},
               "update_mask": "clickWindow,defaultModel"}
        w = alone.call("UpdateAttributionSettings", upd)
        g = trio[1].client.call(ATTR + "/UpdateAttributionSettings", upd)
        for x in (w, g):
            x.pop("update_time")
        assert g == w
        for n in trio:
            gs = n.client.call(ATTR + "/GetAttributionSettings", {})
            gs.pop("update_time")
            assert gs == w
        want = reports(lambda m, r: alone.call(m, r), tag)
        for n in trio:
            assert reports(lambda m, r: n.client.call(ATTR + "/" + m, r), tag) == want
        # The default model resolves to the new one on a cluster too.
        assert (trio[0].client.call(ATTR + "/GetTierReport", dict(RANGE)) ==
                alone.call("GetTierReport", dict(RANGE)))
        # A bad update is refused as standalone refuses it.
        bad = {"settings": {"click_window": "0s"}, "update_mask": "clickWindow"}
        with pytest.raises(grpc.RpcError) as ew:
            alone.call("UpdateAttributionSettings", bad)
        with pytest.raises(grpc.RpcError) as eg:
            trio[2].client.call(ATTR + "/UpdateAttributionSettings", bad)
        assert (eg.value.code(), eg.value.details()) == (ew.value.code(), ew.value.details())

        # A join horizon wider than the defaults' (a late window of 30 days), then
        # exposures 18 days old (past the default horizon, within this one). The
        # partitions rebuilt after the kill index them under their database's settings,
        # so orders sent after the failover still join them.
        wide = {"settings": {"late_window": "2592000s"}, "update_mask": "lateWindow"}
        alone.call("UpdateAttributionSettings", wide)
        trio[0].client.call(ATTR + "/UpdateAttributionSettings", wide)
        old = int(time.time()) - 18 * 86400
        oxs = [exposure("%s-old-e%d" % (tag, v), "%s-old-v%d" % (tag, v), "%s-c%d" % (tag, v % 7),
                        ["%s-p%d" % (tag, v % 4)], "CLICK", old - v) for v in range(60)]
        oorders = [conversion("%s-old-o%d" % (tag, v), "%s-old-v%d" % (tag, v),
                              "%s-p%d" % (tag, v % 4), 2999 + v, old + 600)
                   for v in range(0, 60, 2)]
        assert I(alone.call("RecordExposures", {"events": oxs}), "accepted") == len(oxs)
        s = trio[1].client.call(ATTR + "/RecordExposures", {"events": oxs})
        assert I(s, "accepted") == len(oxs), s
        want = reports(lambda m, r: alone.call(m, r), tag)

        trio[2].kill9()
        wait_for(lambda: shares(trio[:2]) == [PARTITIONS // 2, PARTITIONS // 2] and
                 all(n.health() == "SERVING" for n in trio[:2]),
                 LEASE_TTL_MS / 1000 * 2 + 20, "the survivors serve every partition")
        got = reports(lambda m, r: trio[0].client.call(ATTR + "/" + m, r), tag)
        assert got == want
        assert I(alone.call("RecordConversions", {"events": oorders}), "accepted") == len(oorders)
        s = trio[0].client.call(ATTR + "/RecordConversions", {"events": oorders})
        assert I(s, "accepted") == len(oorders), s
        after = reports(lambda m, r: alone.call(m, r), tag)
        assert after != want  # the old orders joined their exposures (standalone)
        got = reports(lambda m, r: trio[1].client.call(ATTR + "/" + m, r), tag)
        assert got == after
    finally:
        alone.stop()
        stub.stop()


def test_nothing_acknowledged_is_lost_when_a_nats_server_dies(own_nodes, tmp_path_factory):
    """Batches sent in a loop while one of the three NATS servers is killed (-9): every
    batch a node acknowledged is in the replicated logs, once — the clicks reported
    are exactly the events sent, and sent again after, through the other node, all of
    it comes back as duplicates; batches that failed meanwhile are sent again until
    acknowledged.

    The nodes may lose their leases while the killed server's streams elect new leaders
    (renewals time out past the 2 s TTL): they then build their partitions again, and
    calls fail UNAVAILABLE meanwhile. The checks wait for every partition to be served,
    and try a call again on UNAVAILABLE; the report is asked before and after the
    re-sending, so a retried part that stored a lost event cannot hide it."""
    import threading

    nodes = own_nodes
    a, b = nodes("attr-n1"), nodes("attr-n2")
    wait_for(lambda: balanced([a, b]) and a.health() == "SERVING" and b.health() == "SERVING",
             30, "two nodes serve")
    at = int(time.time()) - 600
    acked, failures = [], []
    stop = threading.Event()

    def send():
        ch = a.new_channel()
        client = ywclient.DynamicClient(ch, "v1")
        i, pending = 0, False
        # A batch that failed is sent again until acknowledged, also after the stop: part
        # of it may be stored, and the report must count exactly what was acknowledged.
        while not stop.is_set() or i < 40 or pending:
            batch = events("nk%d" % i, 50, at)
            try:
                s = client.call(ATTR + "/RecordExposures", {"events": batch}, timeout=20)
                assert I(s, "accepted") + I(s, "duplicates") == 50, s
                acked.append(batch)
                i, pending = i + 1, False
            except grpc.RpcError as e:
                failures.append(e.code())  # sent again: the same batch next round
                pending = True
                time.sleep(0.2)
        ch.close()

    t = threading.Thread(target=send, daemon=True)  # a failed check must not hang the run
    t.start()
    time.sleep(1.0)
    nodes.nats.kill9(0)
    time.sleep(3.0)
    stop.set()
    t.join(timeout=120)
    assert not t.is_alive()
    assert len(acked) >= 40
    every = [e for batch in acked for e in batch]
    wait_for(lambda: balanced([a, b]) and a.health() == "SERVING" and b.health() == "SERVING",
             LEASE_TTL_MS / 1000 * 2 + 30, "the two nodes serve every partition again")

    def until_served(method, request):
        return wait_for(lambda: b.client.call(ATTR + "/" + method, request, timeout=30),
                        60, "%s answers" % method)

    def clicks():  # every event is a click
        report = until_served("GetTierReport", RANGE)
        return sum(I(row, "clicks") for row in report.get("rows", []))

    assert clicks() == len(every)
    for i in range(0, len(every), 500):
        s = until_served("RecordExposures", {"events": every[i:i + 500]})
        assert I(s, "accepted") + I(s, "duplicates") == len(every[i:i + 500]), s
    assert clicks() == len(every)


def test_a_node_paused_past_its_lease_serves_nothing_stale(nodes):
    """SIGSTOP a node past its lease: the other takes its partitions (built from their
    logs) and accepts events for them; SIGCONT: the paused node does not answer from its
    stale engines (it no longer holds the leases), it gets its share back built from the
    logs, and the events accepted meanwhile come back duplicates through it."""
    a, b = nodes("attr-p1"), nodes("attr-p2")
    wait_for(lambda: balanced([a, b]) and a.health() == "SERVING" and b.health() == "SERVING",
             30, "two nodes serve")
    at = int(time.time()) - 600
    before = events("ps0", 200, at)
    assert I(b.client.call(ATTR + "/RecordExposures", {"events": before}), "accepted") == 200
    b.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: a.owned() == PARTITIONS and a.health() == "SERVING",
                 LEASE_TTL_MS / 1000 * 2 + 20, "the running node serves every partition")
        meanwhile = events("ps1", 200, at)
        s = a.client.call(ATTR + "/RecordExposures", {"events": before + meanwhile})
        assert I(s, "duplicates") == 200 and I(s, "accepted") == 200, s
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: balanced([a, b]) and b.health() == "SERVING" and a.health() == "SERVING",
             30, "the two share again")
    s = b.client.call(ATTR + "/RecordExposures", {"events": before + meanwhile}, timeout=30)
    assert I(s, "duplicates") == 400 and I(s, "accepted") == 0, s
    # It counts the leases it lost while it slept (once it was seen handing them over, as
    # though the assignment had moved them, when a read of the nodes bucket missed its own
    # key), and it deletes none of the leases the other took meanwhile: the other keeps
    # every partition it holds until it hands it back.
    wait_for(lambda: b.metrics()["yaowei_attribution_cluster_leases_lost_total"] >= 1, 10,
             "the paused node counts its leases lost")
    assert a.metrics()["yaowei_attribution_cluster_leases_lost_total"] == 0


def test_a_paused_node_s_partitions_are_built_ahead_and_dropped_when_it_answers(
        tmp_path_factory):
    """A node that stops answering (SIGSTOP: two probes in a row time out) while its
    leases still run: the other builds its partitions ahead, takes none of them, and
    drops those builds (directories removed) once the node answers again."""
    with pair_on_own_nats(tmp_path_factory, ("attr-ah1", "attr-ah2"), 30000) as (a, b):
        at = int(time.time()) - 600
        xs = events("ah", 200, at)
        assert I(b.client.call(ATTR + "/RecordExposures", {"events": xs}), "accepted") == 200
        theirs = b.owned()
        parts_dir = os.path.join(a.data_dir, "partitions")
        mine = sorted(os.listdir(parts_dir))
        assert len(mine) == a.owned()
        b.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: a.metrics()["yaowei_attribution_cluster_nodes_not_answering"] == 1,
                     20, "the running node finds the paused one not answering")
            wait_for(lambda: len(re.findall(r"built ahead of its lease", a.log_text())) == theirs,
                     20, "its partitions built ahead")
            assert len(os.listdir(parts_dir)) == a.owned() + theirs
            assert a.owned() == PARTITIONS - theirs  # its leases still run: none taken
        finally:
            b.proc.send_signal(signal.SIGCONT)
        dropped = 'yaowei_attribution_cluster_partition_builds_ahead_total{result="dropped"}'
        m = wait_for(lambda: (lambda m: m if m[dropped] == theirs else None)(a.metrics()), 20,
                     "the builds ahead dropped")
        assert m["yaowei_attribution_cluster_nodes_not_answering"] == 0
        assert m['yaowei_attribution_cluster_partition_builds_ahead_total{result="served"}'] == 0
        assert sorted(os.listdir(parts_dir)) == mine
        assert b.owned() == theirs
        assert b.metrics()["yaowei_attribution_cluster_leases_lost_total"] == 0
        s = a.client.call(ATTR + "/RecordExposures", {"events": xs})
        assert I(s, "duplicates") == 200, s


def test_a_node_stops_quickly_when_nats_is_gone(own_nodes):
    """SIGTERM of a node whose NATS servers are all gone: it does not wait out a NATS
    timeout per lease (its leases expire by their TTL), it exits 0 within seconds."""
    a = own_nodes("attr-q1")
    wait_for(lambda: a.health() == "SERVING", 30, "SERVING")
    # Some data in every partition: closing engines write (touches, snapshots), and what
    # cannot be shipped fails at once instead of waiting for NATS.
    xs = events("q", 300, int(time.time()) - 600)
    assert I(a.client.call(ATTR + "/RecordExposures", {"events": xs}), "accepted") == 300
    orders = [conversion("q-o%d" % i, "q-v%d" % i, "p%d" % (i % 5), 100, int(time.time()) - 60)
              for i in range(0, 300, 2)]
    assert I(a.client.call(ATTR + "/RecordConversions", {"events": orders}), "accepted") == 150
    own_nodes.nats.stop()
    wait_for(lambda: a.metrics()["yaowei_attribution_cluster_connected"] == 0, 20,
             "the node sees NATS gone")
    t0 = time.monotonic()
    assert a.terminate(timeout=30) == 0, a.log_tail()
    assert time.monotonic() - t0 < 15
