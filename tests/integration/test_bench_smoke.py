"""Keeps bench/ from rotting: each load generator of `make bench` runs for about a
second against the real services (creator profile -> tier scoring -> attribution, tiny
data), and its output must parse with bench/bench.py's own parser and count what it
sent. No timing is asserted: benchmarks are never part of `make test`.

Needs: bazel build //... (the services and //bench:loadgen, :ingest_exposures,
:ingest_conversions, :fsync_ceiling). The C++ peer and the PostgreSQL loader are built
only by `make bench` and are not run here.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, ServiceStack, binary_path

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench  # noqa: E402  bench/bench.py: parse_line, the report writer
import load_creators  # noqa: E402

pytestmark = pytest.mark.release  # conftest.py RELEASE_PASS

CREATORS = 40
STORED = 3000
# Under the sanitizer build everything is several times slower; a run still ends
# within its duration plus the time to drain the calls in flight.
TIMEOUT_S = 120


def run_tool(program, *args):
    path = binary_path("bench/" + program)
    p = subprocess.run([path] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    assert p.returncode == 0, "%s exited %d:\n%s%s" % (program, p.returncode, p.stdout, p.stderr)
    return bench.parse_line(p.stdout, program)


class Stack(ServiceStack):
    """The three services, wired as in production, with a few creators."""

    def __init__(self, tmp_path_factory):
        super().__init__(tmp_path_factory, "bench")
        self.anchor = int(time.time())

    def population(self):
        return ["--viewers", 500, "--creators", CREATORS, "--products", 200, "--notes", 1000,
                "--anchor", self.anchor, "--spread-s", 3 * 86400]

    def pid(self, srv):
        return srv.proc.pid


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory)
    s.creator.start()
    load_creators.load(s.creator.address, CREATORS, notes_per_creator=1, stats_days=2, inflight=8)
    s.tier.start()
    s.attr.start()
    yield s
    for srv in (s.attr, s.tier, s.creator):
        srv.stop()


def test_loadgen_get_creator_and_score_creator(stack):
    r = run_tool("loadgen", "--addr", stack.creator.address, "--method", "get_creator", "--ids",
                 CREATORS, "--inflight", 4, "--seconds", 1, "--warmup", 0, "--server-pids",
                 stack.pid(stack.creator))
    assert r["method"] == "get_creator" and r["ok"] > 0 and r["errors"] == 0
    for k in ("qps", "p50_us", "p99_us", "max_us", "server_cpu_us_per_call",
              "client_cpu_us_per_call", "seconds"):
        assert k in r, k
    assert r["server_cpu_us_per_call"] > 0 and r["client_cpu_us_per_call"] > 0
    r = run_tool("loadgen", "--addr", stack.tier.address, "--method", "score_creator", "--ids",
                 CREATORS, "--inflight", 2, "--seconds", 1, "--warmup", 0, "--server-pids",
                 "%d,%d" % (stack.pid(stack.tier), stack.pid(stack.creator)))
    assert r["method"] == "score_creator" and r["ok"] > 0 and r["errors"] == 0


def test_ingest_preload_unary_stream_then_conversions_explain_report(stack):
    pop = stack.population()
    r = run_tool("ingest_exposures", "--addr", stack.attr.address, "--count", STORED, "--seed",
                 1, "--batch", 500, *pop)
    assert r["mode"] == "unary" and r["sent"] == STORED and r["accepted"] == STORED
    # The same events again are all duplicates: the generator is deterministic.
    r = run_tool("ingest_exposures", "--addr", stack.attr.address, "--count", 1000, "--seed", 1,
                 *pop)
    assert r["accepted"] == 0 and r["duplicates"] == 1000
    r = run_tool("ingest_exposures", "--addr", stack.attr.address, "--seconds", 1, "--warmup", 0,
                 "--seed", 2, "--batch", 100, "--server-pids", stack.pid(stack.attr), *pop)
    assert r["accepted"] > 0 and r["errors"] == 0 and r["rejected"] == 0
    assert "server_cpu_us_per_exposure" in r and "p99_ms" in r
    r = run_tool("ingest_exposures", "--addr", stack.attr.address, "--stream", 1, "--seconds", 1,
                 "--seed", 3, "--server-pids", stack.pid(stack.attr), *pop)
    assert r["mode"] == "stream" and r["accepted"] == r["sent"] > 0

    r = run_tool("ingest_conversions", "--addr", stack.attr.address, "--count", 500, "--seed", 9,
                 "--exposure-seed", 1, "--stored", STORED, "--batch", 100, *pop)
    assert r["sent"] == 500 and r["accepted"] == 500 and r["rejected"] == 0
    r = run_tool("ingest_conversions", "--addr", stack.attr.address, "--seconds", 1, "--warmup",
                 0, "--seed", 10, "--exposure-seed", 1, "--stored", STORED, "--batch", 100,
                 "--server-pids", stack.pid(stack.attr), *pop)
    assert r["accepted"] > 0 and r["errors"] == 0 and "conversions_per_s" in r

    r = run_tool("loadgen", "--addr", stack.attr.address, "--method", "explain_conversion",
                 "--seed", 9, "--ids", 500, "--inflight", 4, "--seconds", 1, "--warmup", 0)
    assert r["ok"] > 0 and r["errors"] == 0
    r = run_tool("loadgen", "--addr", stack.attr.address, "--method", "tier_report",
                 "--inflight", 1, "--seconds", 1, "--warmup", 0, "--days", 30)
    assert r["ok"] > 0 and r["errors"] == 0 and r["degraded"] == 0


def test_ingest_spread_over_several_addresses(stack, tmp_path_factory):
    """--addr A,B (bench.py --cluster sends to both nodes of a cluster so): one channel per
    address, call slot i on address i mod 2. Two standalone attributions here: each holds
    part of the events, and the two parts add up to all of them."""
    from test_attribution import Attr

    other = Attr(tmp_path_factory, "bench_attr_b").start()
    try:
        pop = stack.population()
        both = "%s,%s" % (stack.attr.address, other.srv.address)
        r = run_tool("ingest_exposures", "--addr", both, "--count", 4000, "--seed", 21,
                     "--batch", 100, "--inflight", 4, *pop)
        assert r["accepted"] == 4000 and r["errors"] == 0
        again = [run_tool("ingest_exposures", "--addr", addr, "--count", 4000, "--seed", 21,
                          "--batch", 100, *pop)
                 for addr in (stack.attr.address, other.srv.address)]
        assert all(0 < a["duplicates"] < 4000 for a in again), again
        assert sum(a["duplicates"] for a in again) == 4000
        r = run_tool("ingest_conversions", "--addr", both, "--count", 400, "--seed", 22,
                     "--exposure-seed", 21, "--stored", 4000, "--batch", 50, *pop)
        assert r["accepted"] == 400 and r["errors"] == 0
        for bad in (stack.attr.address + ",", ",".join([stack.attr.address] * 9)):
            p = subprocess.run([binary_path("bench/ingest_exposures"), "--addr", bad, "--count",
                                "10", "--seed", "23"] + [str(x) for x in pop],
                               capture_output=True, text=True, timeout=TIMEOUT_S)
            assert p.returncode != 0 and "bad address list" in p.stderr, p.stderr
        p = subprocess.run([binary_path("bench/ingest_exposures"), "--addr", both, "--stream",
                            "1", "--seconds", "1"] + [str(x) for x in pop], capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        assert p.returncode == 2 and "takes one address" in p.stderr, p.stderr
    finally:
        other.stop()


def test_fsync_ceiling(tmp_path):
    r = run_tool("fsync_ceiling", "--dir", tmp_path, "--seconds", 1, "--count", 5000, "--seed",
                 4)
    assert r["events"] == 5000 and r["batches"] == 5 and r["exposures_per_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the file is removed


def test_parse_line_rejects_what_is_not_a_result():
    assert bench.parse_line("noise\nloadgen a=1 b=2.5 c=x\n", "loadgen") == {
        "a": 1, "b": 2.5, "c": "x"}
    with pytest.raises(ValueError):
        bench.parse_line("ingest_exposures a=1\n", "loadgen")
    with pytest.raises(ValueError):
        bench.parse_line("loadgen a=1 oops\n", "loadgen")


def test_report_writer_on_made_up_figures(tmp_path, monkeypatch):
    """The Markdown and CSV writer runs on figures of the right shape, and states the
    targets with met/missed."""
    monkeypatch.setattr(bench, "RESULTS", str(tmp_path))

    class Args:
        quick = True

    b = bench.Bench.__new__(bench.Bench)
    b.a, b.p, b.runs = Args(), bench.PROFILES["quick"], 3
    b.machine, b.elapsed, b.work = "test machine", 60.0, str(tmp_path)
    b.load_start, b.date = "0.00 0.00 0.00", "2026-01-01 00:00 UTC"
    b.report_rows = [(1, 3, 300), (4, 30, 3000)]
    F = {}
    for who in ("yaowei", "cpp", "cpp2", "score"):
        for n in bench.INFLIGHT:
            for k in ("qps", "p50_us", "p99_us", "server_cpu_us_per_call",
                      "client_cpu_us_per_call"):
                F[("rpc", who, n, k)] = [1.0, 2.0, 3.0]
    for n in bench.INFLIGHT:
        for key in ("ratio", "ratio2"):
            F[("rpc", key, n, "qps")] = F[("rpc", key, n, "cpu")] = [1.0, 1.1, 1.2]
    for who in ("yaowei", "cpp", "ratio"):
        F[("h2load", who, "qps")] = F[("h2load", who, "cpu")] = [1.0, 1.1, 1.2]
    for who in ("unary", "stream", "ceiling", "pg", "pg_wide"):
        for k in ("rate", "p50_ms", "p99_ms", "cpu"):
            F[("ingest", who, k)] = [100.0, 200.0, 300.0]
    for who in ("unary", "stream"):
        for k in ("vs_pg", "vs_pg_wide", "vs_ceiling"):
            F[("ingest", who, k)] = [2.0, 3.0, 4.0]
    for k in ("rate", "p50_ms", "p99_ms", "cpu"):
        F[("conv", k)] = [1.0, 2.0, 3.0]
    for k in ("qps", "p50_us", "p99_us", "server_cpu_us_per_call"):
        F[("explain", k)] = [1.0, 2.0, 3.0]
    for k in ("p50_ms", "p99_ms", "qps"):
        F[("report", k)] = [10.0, 20.0, 30.0]
    F[("report", "degraded")] = [0, 0, 0]
    F[("restart", "term_s")] = [1.5, 2.0, 2.5]
    F[("restart", "kill_s")] = [14.0, 16.0, 18.0]
    b.fig = F
    b.single = {"preload_rate": 1.0, "attr_rss_at_n_kib": 1024, "stored_after_ingest": 5,
                "report_cold_ms": 9.0, "report_cold_unlabeled": 0, "report_calls_to_labels": 1,
                "report_labels_s": 0.1, "rss_creator_profile": 1024, "rss_tier_scoring": 1024,
                "rss_attribution": 1024 * 1024, "rss_cpp": 1024}
    bench.write_report(b)
    md = (tmp_path / "bench-quick.md").read_text()
    assert "| GetCreator | creator profile | 64 | 2 [1–3] |" in md
    assert "| server CPU µs/call | loadgen CPU µs/call |" in md
    assert "| GetCreator | C++ async peer, 2 threads | 64 | 2 [1–3] |" in md
    assert "C++ async peer (one thread) | 1.10× (1.10× the 2-thread peer) | **missed** |" in md
    assert "after SIGTERM (5 exposures stored) | 2.0 s | met |" in md
    assert "… and within 15 s after kill -9 | 16.0 s | **missed** |" in md
    assert any(line.startswith("rpc,GetCreator yaowei 64 in flight client_cpu_us_per_call,")
               for line in (tmp_path / "bench-quick.csv").read_text().splitlines())
    assert "| attribution peak RSS < 200 MB at 1,000,000 exposures | 1 MB at 1,000,000 stored, " \
        "1,024 MB peak (5 stored at the end) | **missed** |" in md
    assert "GetTierReport p99 < 100 ms | 20.0 ms | met |" in md
    lines = (tmp_path / "bench-quick.csv").read_text().splitlines()
    assert lines[0].startswith("section,figure,unit,median,min,max")
    assert any(line.startswith("ingest,unary exposures/s,exposures/s,200,100,300,3")
               for line in lines)


def test_cluster_report_writer_on_made_up_figures(tmp_path, monkeypatch):
    """--cluster-only: section 6 alone (cluster-quick.md, .csv, .json), the ratio line
    cluster ÷ standalone, and the targets of issue 14 with met/missed."""
    monkeypatch.setattr(bench, "RESULTS", str(tmp_path))

    class Args:
        quick, cluster, cluster_only = True, False, True

    b = bench.Bench.__new__(bench.Bench)
    b.a, b.p, b.runs = Args(), bench.PROFILES["quick"], 3
    b.machine, b.elapsed, b.work = "test machine", 60.0, str(tmp_path)
    b.load_start, b.date = "0.00 0.00 0.00", "2026-01-01 00:00 UTC"
    F = {}
    for who in ("standalone", "r3", "r1"):
        for k in ("rate", "p50_ms", "p99_ms", "cpu", "nats_share", "log_bytes"):
            F[("cluster", who, k)] = [1.0, 2.0, 3.0]
        for k in ("rate", "p99_ms", "cpu"):
            F[("cluster_conv", who, k)] = [1.0, 2.0, 3.0]
    F[("cluster", "r3_vs_standalone")] = [0.4, 0.6, 0.7]
    F[("cluster", "r1_vs_standalone")] = F[("cluster", "r3_vs_r1")] = [0.5, 0.6, 0.7]
    F[("cluster_conv", "r3_vs_standalone")] = [0.2, 0.3, 0.4]
    # Calls that failed while a partition changed hands: counted, reported, not fatal.
    F[("cluster", "r3", "errors")] = [0, 7, 0]
    F[("cluster", "r3", "leases_lost")] = [0, 1, 0]
    F[("failover", 4000000, "write_failed")] = [0, 0, 2]
    F[("failover", 4000000, "grow_sends")] = [2]
    b.failover_sizes = [1000000, 4000000]
    for stored, secs in ((1000000, [9.0, 10.0, 11.0]), (4000000, [20.0, 21.0, 22.0])):
        F[("failover", stored, "s")] = secs
        for k in ("rejoin_s", "survivor_rss_kib", "rss_per_partition_kib", "nats_bytes",
                  "log_bytes", "node_bytes"):
            F[("failover", stored, k)] = [1.0, 2.0, 3.0]
    b.fig = F
    b.single = {"cluster_log_msgs_per_call_r3": 63.0, "cluster_log_msgs_per_call_r1": 63.0}
    for who in ("standalone", "r3", "r1"):
        for k in ("preload_rate", "data_bytes", "nats_bytes", "log_bytes"):
            b.single["cluster_%s_%s" % (k, who)] = 100.0
    bench.write_report(b)
    md = (tmp_path / "cluster-quick.md").read_text()
    assert "## 1. Unary RPC" not in md and "## 6. Attribution cluster" in md
    assert "Ratios (per round, then median): cluster R3 ÷ standalone 0.60× [0.40–0.70]" in md
    assert "| durable exposures/s ≥ 0.5× standalone's, in one run | 0.60× (2 vs 2/s) | met |" \
        in md.replace("cluster (R3, 2 nodes) ", "")
    assert "≤ 15 s, 1,000,000 exposures stored | 10.0 s | met |" in md
    assert "≤ 15 s, 4,000,000 exposures stored | 21.0 s | **missed** |" in md
    assert "all rounds: RecordExposures R3 7, R1 0; RecordConversions R3 0, R1 0. Leases " \
        "the nodes lost meanwhile: R3 1, R1 0." in md
    assert "right after each failover: failed for 2 calls of the batch at 4,000,000 stored. " \
        "Growing the cluster took more than one send" in md and ": 2 to 4,000,000." in md
    j = json.loads((tmp_path / "cluster-quick.json").read_text())
    assert j["figures"]["cluster/r3_vs_standalone"] == {"median": 0.6, "runs": [0.4, 0.6, 0.7]}
    assert j["failover_sizes"] == [1000000, 4000000] and j["partitions"] == 64
    lines = (tmp_path / "cluster-quick.csv").read_text().splitlines()
    assert any(line.startswith("cluster,failover at 4000000 stored,s,21.00,20.00,22.00,3")
               for line in lines)
    # --cluster-batch: the rounds' batch is named in the text, the results are apart.
    Args.cluster_batch = 10000
    bench.write_report(b)
    md = (tmp_path / "cluster-quick-batch10000.md").read_text()
    assert "back to back: RecordExposures of 10,000, 4 in flight" in md
    j = json.loads((tmp_path / "cluster-quick-batch10000.json").read_text())
    assert j["cluster_batch"] == 10000
    assert "RecordExposures of 1,000, 4 in flight" in (tmp_path / "cluster-quick.md").read_text()
