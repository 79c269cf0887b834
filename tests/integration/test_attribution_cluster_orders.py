"""RecordRefunds and ExplainConversion on an attribution cluster (--cluster): three real
nats-server processes and three nodes, against a standalone attribution given the same
events.

Refunds and explanations carry an order id and no viewer: the node a client called asks
every partition which of the orders it holds (PartitionService.FindOrders) and sends each
refund, or the explanation, to the partition that holds the order; what nobody holds goes
to the order id's own partition, whose engine rejects it with standalone's words. Whatever
node is called, the answers are standalone's: the same explanations (touches, credits,
amounts), the same summaries (counts, rejected indexes and reasons), also after a node is
killed; while partitions of a killed node are not served yet, the calls fail UNAVAILABLE
naming partitions rather than answering without them.
"""

import random
import re
import time

import grpc
import pytest

from test_attribution import Attr, I, conversion, exposure, refund, touches
from test_attribution_cluster import ATTR, LEASE_TTL_MS, PARTITIONS, balanced, shares, wait_for
from test_attribution_cluster import nats, nodes  # noqa: F401 (fixtures, used by name)

MODELS = ["ATTRIBUTION_MODEL_UNSPECIFIED", "ATTRIBUTION_MODEL_LAST_TOUCH",
          "ATTRIBUTION_MODEL_FIRST_TOUCH", "ATTRIBUTION_MODEL_LINEAR",
          "ATTRIBUTION_MODEL_TIME_DECAY", "ATTRIBUTION_MODEL_POSITION_BASED"]


@pytest.fixture
def standalone(tmp_path_factory):
    a = Attr(tmp_path_factory, "attr-standalone").start()
    yield a
    a.stop()


def history(rng, tag, n_viewers, at):
    """Exposures and orders of n_viewers viewers (spread over the partitions): each viewer
    sees 0..4 notes of creators c0..c5 in the five days before `at`, and buys 1..2 times
    at `at`. Returns (exposures, orders)."""
    xs, orders = [], []
    for v in range(n_viewers):
        viewer = "%s-v%d" % (tag, v)
        product = "p%d" % (v % 3)
        for k in range(rng.randint(0, 4)):
            kind = rng.choice(["CLICK", "VIEW", "IMPRESSION"])
            xs.append(exposure("%s-e%d-%d" % (tag, v, k), viewer, "c%d" % rng.randrange(6),
                               [product], kind, at - rng.randint(60, 5 * 86400),
                               watch_ms=rng.choice([0, 3000, 30000]) if kind == "VIEW" else 0))
        for k in range(rng.randint(1, 2)):
            orders.append(conversion("%s-o%d-%d" % (tag, v, k), viewer, product,
                                     rng.randint(100, 99999), at + k))
    return xs, orders


def call(node, method, request, timeout=60):
    """A unary call to a cluster node or to the standalone alike."""
    if isinstance(node, Attr):
        return node.call(method, request, timeout=timeout)
    return node.client.call(ATTR + "/" + method, request, timeout=timeout)


def record(node, method, events):
    return call(node, method, {"events": events})


def explain(node, order, model):
    """("OK", the explanation) or (the status code's name, its details)."""
    try:
        return "OK", call(node, "ExplainConversion", {"order_id": order, "model": model})
    except grpc.RpcError as e:
        return e.code().name, e.details()


def future_blurred(summary):
    for e in summary.get("errors", []):
        e["reason"] = re.sub(r"is \d+ s in the future", "is N s in the future", e["reason"])
    return summary


class Both:
    """The cluster's nodes and the standalone: each call to a random live node and to the
    standalone, the two answers compared."""

    def __init__(self, rng, trio, standalone):
        self.rng, self.trio, self.alone = rng, trio, standalone

    def node(self):
        return self.rng.choice([n for n in self.trio if n.running()])

    def record(self, method, events, batch=200):
        """Sends the events in batches to random nodes and in one call to the standalone;
        the summaries added up must be the standalone's counts."""
        got = {"accepted": 0, "duplicates": 0, "rejected": 0}
        for i in range(0, len(events), batch):
            s = record(self.node(), method, events[i:i + batch])
            for k in got:
                got[k] += I(s, k)
        s = record(self.alone, method, events)
        assert got == {k: I(s, k) for k in got}, (method, got, s)

    def same_summary(self, events):
        """RecordRefunds of one batch on a random node: the standalone's summary, whole (but
        for how many seconds in the future a refund is, judged a moment apart)."""
        node = self.node()
        mine = record(node, "RecordRefunds", events)
        theirs = record(self.alone, "RecordRefunds", events)
        assert future_blurred(mine) == future_blurred(theirs), (node.name, mine, theirs)
        return mine

    def same_explanations(self, order_ids, nodes=None):
        for o in order_ids:
            node = self.rng.choice(nodes or [n for n in self.trio if n.running()])
            model = self.rng.choice(MODELS)
            mine, theirs = explain(node, o, model), explain(self.alone, o, model)
            assert mine == theirs, (node.name, o, model, mine, theirs)


def serving(trio):
    live = [n for n in trio if n.running()]
    return balanced(live) and all(n.health() == "SERVING" for n in live)


def test_refunds_and_explanations_equal_standalone_and_survive_a_node_killed(nodes, standalone):
    seed = int(time.time())
    rng = random.Random(seed)
    print("seed", seed)
    a, b, c = nodes("attr-ra"), nodes("attr-rb"), nodes("attr-rc")
    trio = [a, b, c]
    wait_for(lambda: serving(trio), 30, "three nodes serve their partitions")
    both = Both(rng, trio, standalone)
    at = int(time.time()) - 3 * 3600
    xs, orders = history(rng, "h", 90, at)
    both.record("RecordExposures", xs)
    both.record("RecordConversions", orders)
    ids = [o["order_id"] for o in orders]
    amount = {o["order_id"]: int(o["amount_minor"]) for o in orders}

    # Every order explained by any node as standalone explains it (touches, credits,
    # amounts, settings version), under any model; attributed ones among them.
    both.same_explanations(ids)
    assert any(touches(explain(standalone, o, MODELS[0])[1]) for o in ids)
    # What is not an order: the same refusal, in the same words.
    for o, model in [("ghost-order", MODELS[0]), ("", MODELS[0]), (ids[0], 9),
                     ("x" * 300, MODELS[1])]:
        mine, theirs = explain(b, o, model), explain(standalone, o, model)
        assert mine == theirs and mine[0] != "OK", (o, mine, theirs)

    # A batch of refunds of orders all over the partitions, with every way to fail.
    o = ids
    batch = [
        refund("r-a", o[0], 100),                 # 0 admitted
        refund("r-b", o[1], 50),                  # 1 admitted
        refund("r-a", o[0], 100),                 # 2 duplicate of 0
        refund("r-c", "ghost-order", 10),         # 3 no such order
        refund("r-d", o[2], 0),                   # 4 amount 0
        refund("", o[3], 5),                      # 5 no refund id
        refund("r-e", o[4], amount[o[4]] + 1),    # 6 more than the order
        refund("r-f", o[5], amount[o[5]]),        # 7 all of it
        refund("r-g", o[6], 1),                   # 8 two of one order...
        refund("r-h", o[6], amount[o[6]]),        # 9 ...the second more than is left
        refund("r-b", o[7], 5),                   # 10 refund id of 1, another order: duplicate
        refund("r-i", "ghost-2", 1),              # 11 no such order
        refund("r-j", o[8], 3, at=int(time.time()) + 3600),  # 12 in the future
    ] + [refund("r-k%d" % i, o[9 + i], 1 + i) for i in range(40)]  # 13.. admitted
    s = both.same_summary(batch)
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (44, 2, 7), s
    assert [I(e, "index") for e in s["errors"]] == [3, 4, 5, 6, 9, 11, 12], s
    # Sent again: what was recorded is a duplicate, the rest is judged again. A refund id
    # recorded with one order, sent with another: a duplicate too.
    both.same_summary(batch)
    both.same_summary([refund("r-a", o[50], 1), refund("r-k0", "ghost-order", 1),
                       refund("r-new", o[0], 1)])
    both.same_summary([])
    # Explanations show the refunds.
    both.same_explanations(o[:60])
    # A batch past the limit is refused whole, as standalone refuses it.
    big = [refund("r-big%d" % i, o[0], 1) for i in range(10001)]
    with pytest.raises(grpc.RpcError) as mine:
        record(a, "RecordRefunds", big)
    with pytest.raises(grpc.RpcError) as theirs:
        record(standalone, "RecordRefunds", big)
    assert (mine.value.code(), mine.value.details()) == \
        (theirs.value.code(), theirs.value.details()) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "events: at most 10000 per call, got 10001")

    # kill -9 of a node: until its partitions are taken and built again, a call that needs
    # every partition fails UNAVAILABLE naming partitions (nothing recorded), never a
    # partial answer.
    c.kill9()
    for method, req in [("ExplainConversion", {"order_id": o[0]}),
                        ("RecordRefunds", {"events": [refund("r-z", "ghost-order", 1)]})]:
        with pytest.raises(grpc.RpcError) as e:
            a.client.call(ATTR + "/" + method, req, timeout=1.2)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, (method, e.value.details())
        assert "partition" in e.value.details(), e.value.details()
    wait_for(lambda: shares([a, b]) == [PARTITIONS // 2, PARTITIONS // 2] and serving([a, b]),
             LEASE_TTL_MS / 1000 * 2 + 20, "the survivors serve every partition")
    # Built again from their logs: the same explanations, and refunds go on as standalone.
    both.same_explanations(ids, nodes=[a, b])
    both.same_summary(batch)
    both.same_summary([refund("r-after%d" % i, o[60 + i], 2) for i in range(20)]
                      + [refund("r-a", o[1], 1)])
    both.same_explanations(o[55:85], nodes=[a, b])
