"""The differential test of the attribution rules (test_attribution_differential.py, the
model in attr_model.py) against a cluster: three nats-server and three attribution nodes.

The workload of a seed is the standalone test's (but an id used again with other fields
keeps its first viewer: a cluster dedups ids within a viewer's partition, README "Running a
cluster"): several client threads (batches and
streams of exposures, orders, refunds), settings changes in the middle, duplicates,
refunds racing their orders, `--conversion-cache-mb 0` and tiny index runs on every node.
The calls go to one node (the front splits and forwards them); the planned restarts are
restarts of another node (`kill -9` and start, or SIGTERM and start), so that partitions
move between nodes in the middle of the workload: built again from their logs on the
node that takes them, and again when the restarted node takes its share back. Then every
order's explanation under every model and every report are compared with the model, on
each node, and again after one more node is killed. Snapshots are made every few KiB of a
partition's log (--snapshot-kb 4), so partitions are built from a snapshot and the log
after it, and the log before each snapshot is purged, all through the workload.

YW_DIFF_CLUSTER_SEEDS (how many seeds, 1), YW_DIFF_SEED_BASE, YW_DIFF_EVENTS as the
standalone test's.
"""

import math
import os
import re
import time

import pytest

import attr_model as M
from test_attribution_cluster import Node, PARTITIONS, balanced, wait_for
from test_attribution_differential import (HOUR, N_EVENTS, SEED_BASE, Runner, WireHolder,
                                           compare, generate, ground_truth)
from nats_cluster import NatsCluster


# It checks the rules, not memory: `make test` runs it in the release pass only (the sanitizer pass runs
# the other cluster tests, which go through the same code), to stay within its time.
pytestmark = [pytest.mark.release,
              pytest.mark.skipif(os.environ.get("YW_SANITIZED") == "1",
                                reason="release pass only (make test runs both)")]

# KiB of a partition's log between its snapshots: small, so that there are many.
SNAPSHOT_KB = 4
N_SEEDS = int(os.environ.get("YW_DIFF_CLUSTER_SEEDS", "1"))
SEEDS = list(range(SEED_BASE, SEED_BASE + N_SEEDS))


class ClusterSrv:
    """What the differential runner drives as its `srv`: calls go to the first node; its
    restarts are the last node's."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.victim = nodes[-1]
        # [from, to] (monotonic): the victim killed or stopping, until every partition is
        # served again.
        self.gone = []

    @property
    def address(self):
        return self.nodes[0].address

    @property
    def client(self):
        return self.nodes[0].client

    def _all_serving(self):
        live = [n for n in self.nodes if n.running()]
        wait_for(lambda: balanced(live) and all(n.health() == "SERVING" for n in live), 60,
                 "the cluster serves every partition")

    def kill9(self):
        self.gone.append([time.monotonic(), math.inf])
        self.victim.kill9()

    def start(self):
        self.victim.start()
        self._all_serving()
        if self.gone and self.gone[-1][1] == math.inf:
            self.gone[-1][1] = time.monotonic()

    def restart(self):
        self.gone.append([time.monotonic(), math.inf])
        rc = self.victim.terminate()
        assert rc == 0, "SIGTERM exit status %r; log:\n%s" % (rc, self.victim.log_tail())
        self.start()

    def log_text(self):
        return "\n".join(n.log_text() for n in self.nodes)

    def log_tail(self, n=40):
        return "\n".join("%s: %s" % (x.name, x.log_tail(n // 3)) for x in self.nodes)

    def log_records(self):
        out = []
        for n in self.nodes:
            out += n.log_records()
        return out


class ClusterAttr:
    def __init__(self, nodes):
        self.srv = ClusterSrv(nodes)


@pytest.mark.parametrize("seed", SEEDS, ids=["seed%d" % s for s in SEEDS])
def test_the_cluster_agrees_with_the_model(seed, tmp_path_factory):
    now = int(time.time())
    now_h = now - now % HOUR
    plan = generate(seed, N_EVENTS, now_h, same_viewer=True)
    nats = NatsCluster(str(tmp_path_factory.mktemp("nats-diff")), n=3).start()
    nodes = []
    try:
        for i in range(3):
            n = Node(tmp_path_factory, "attr-d%d" % i, nats.urls,
                     list(plan.flags) + ["--snapshot-kb", str(SNAPSHOT_KB)])
            nodes.append(n)
            n.start()
        a = ClusterAttr(nodes)
        a.srv._all_serving()
        wire = WireHolder().get(a)
        runner = Runner(plan, a, wire)
        errors = runner.run()
        head = "seed %d (%d events; %s)" % (seed, len(plan.events),
                                            "; ".join(runner.log) or "no restart")
        assert not errors, "%s\nclient threads failed: %s\n%s" % (head, errors,
                                                                   a.srv.log_tail())
        # A call in flight while the victim died or stopped may have had a part sent
        # again by the front (README "Running a cluster": a forwarded part that fails
        # UNAVAILABLE is tried again); what its first attempt stored before the node went
        # then comes back as duplicates, as when a client sends a call again.
        for calls in plan.threads.values():
            for call in calls:
                if call.t_start is not None and any(call.t_start < until and call.t_end > since
                                                    for since, until in a.srv.gone):
                    call.retried = True
        world, problems = ground_truth(plan)
        invalid = [e.js["order_id"] for e in plan.events
                   if e.kind == "conversion" and not e.valid]
        report = []
        for n in nodes:
            d = compare(n.address, wire, world, plan.settings, plan, invalid)
            if d:
                report.append("asked of %s: %d differences" % (n.name, len(d.lines)))
                report += ["  " + x for x in d.lines[:10]]
        # One more node gone: the others build its partitions from their logs.
        nodes[1].kill9()
        live = [nodes[0], nodes[2]]
        wait_for(lambda: balanced(live) and all(n.health() == "SERVING" for n in live), 60,
                 "two nodes serve every partition")
        d = compare(nodes[0].address, wire, world, plan.settings, plan, invalid)
        if d:
            report.append("after kill -9 of %s: %d differences" % (nodes[1].name, len(d.lines)))
            report += ["  " + x for x in d.lines[:10]]
        # Snapshots were made, and partitions were built from them (not only from logs).
        logs = "\n".join(n.log_text() for n in nodes)
        assert "snapshot covering" in logs and "published" in logs, head
        assert re.search(r"serving \(the snapshot covering [1-9]", logs), head
        ages = [v for k, v in nodes[0].metrics().items()
                if k.startswith("yaowei_attribution_cluster_partition_snapshot_age_seconds")]
        assert any(a >= 0 for a in ages), (head, ages)
        if problems or report:
            pytest.fail("\n".join([head, "model: %d exposures, %d orders, %d refunds"
                                   % (len(world.exposures), len(world.conversions),
                                      len(world.refunds))] + problems[:10] + report),
                        pytrace=False)
        assert len(world.conversions) > 0 and M.LAST_TOUCH
    finally:
        for n in nodes:
            if n.running():
                n.stop()
        nats.stop()
