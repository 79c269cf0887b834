"""The main job against an attribution cluster (`make run CLUSTER=1`, tools/demo/run.sh
--cluster) gives the same answer as against standalone attribution for the same seed.

run.sh runs twice at test_demo.py's tiny size, with the same seed and the same --now:
once as `make run` runs it, once with --cluster (three nats-server with JetStream, three
attribution nodes, the demo's attribution calls spread over the three). Both must pass
every check and stop every process with exit 0 (run.sh exits 4 otherwise), and print
the same report: every line of it but the services' addresses and the "Workload sent"
section (how long each step took) is compared.

Needs: bazel build //services/... //tools/demo //tools/health_probe, and nats-server.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import BIN_DIR, REPO
from test_demo import TINY, sections

RUN_SH = os.path.join(REPO, "tools", "demo", "run.sh")
SEED = "11"


# It checks the main job, not memory: `make test` runs it in the release pass only (the sanitizer pass runs
# the other cluster tests, which go through the same code), to stay within its time.
pytestmark = [pytest.mark.release,
              pytest.mark.skipif(os.environ.get("YW_SANITIZED") == "1",
                                reason="release pass only (make test runs both)")]

SANITIZED = os.environ.get("YW_SANITIZED") == "1"
# Start (three NATS servers and the nodes joining them), the tiny workload, the stop.
RUN_TIMEOUT_S = 300 if SANITIZED else 150


def run_main_job(tmp_path, now, cluster):
    """run.sh at the tiny size: (exit status, stdout, stderr)."""
    work = tmp_path / ("cluster" if cluster else "standalone")
    work.mkdir()
    args = [RUN_SH, "--bin-dir", BIN_DIR] + (["--cluster"] if cluster else []) + [
        "--", "--seed", SEED, "--now", str(now)] + TINY
    env = dict(os.environ, TMPDIR=str(work), KEEP_DATA="0")
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S, env=env)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"standalone": (rc, out, err), "cluster": (rc, out, err)}, the same seed and period."""
    tmp = tmp_path_factory.mktemp("demo_cluster")
    now = int(time.time())
    return {"standalone": run_main_job(tmp, now, cluster=False),
            "cluster": run_main_job(tmp, now, cluster=True)}


def report(out):
    """The report without what differs from run to run by design: the services'
    addresses and the steps' timings."""
    keep, skipping = [], False
    for line in out.splitlines():
        if line.startswith("== "):
            skipping = line == "== Workload sent =="
        if skipping or line.startswith("services: "):
            continue
        keep.append(line)
    return keep


def explain(kind, rc, out, err):
    return "%s run exited %d\nstdout:\n%s\nstderr (last lines):\n%s" % (
        kind, rc, out, "\n".join(err.splitlines()[-40:]))


def test_both_runs_pass_every_check_and_stop_cleanly(runs):
    for kind, (rc, out, err) in runs.items():
        assert rc == 0, explain(kind, rc, out, err)
        assert re.search(r"^PASS: (\d+) of \1 checks passed$", out, re.M), out
        assert "MISMATCH" not in out
    _, out, err = runs["cluster"]
    for i in (1, 2, 3):
        for name in ("nats-%d" % i, "attribution-%d" % i):
            assert re.search(r"^started %s on 127\.0\.0\.1:\d+ " % name, err, re.M), err
            assert "stopped %s (exit 0)" % name in err, err
    for name in ("creator_profile", "tier_scoring"):
        assert "stopped %s (exit 0)" % name in err, err


def assert_same_report(runs, first, second):
    """Both runs passed and their reports are equal line for line (timings and addresses
    aside), and the report has the parts that carry the answer (a run cut short would
    compare equal)."""
    (rc1, out1, err1), (rc2, out2, err2) = runs[first], runs[second]
    assert rc1 == 0, explain(first, rc1, out1, err1)
    assert rc2 == 0, explain(second, rc2, out2, err2)
    one, other = report(out1), report(out2)
    titles = list(sections(out2))
    for t in ("Creators by tier", "Tier report: LAST_TOUCH (the default model)",
              "Tier report: LINEAR (for comparison)", "Answer", "Checks"):
        assert t in titles, titles
    assert len(other) > 60, other
    if one != other:
        diff = [(a, b) for a, b in zip(one, other) if a != b]
        pytest.fail("the reports differ (%d lines %s, %d %s); first differences, %s then "
                    "%s:\n%s" % (len(one), first, len(other), second, first, second, "\n".join(
                        "  %s\n  %s" % ab for ab in diff[:10])), pytrace=False)


def test_the_cluster_gives_the_same_report_as_standalone(runs):
    assert_same_report(runs, "standalone", "cluster")


def test_the_demo_spreads_its_attribution_calls_over_the_three_nodes(runs):
    rc, out, err = runs["cluster"]
    assert rc == 0, explain("cluster", rc, out, err)
    nodes = re.search(r"^services: .* attribution ((?:127\.0\.0\.1:\d+(?:, )?){3}) "
                      r"\(a cluster of 3 nodes", out, re.M)
    assert nodes, out
    addrs = nodes.group(1).split(", ")
    spread = re.search(r"^  attribution calls by node: (.*)$", out, re.M)
    assert spread, out
    calls = dict(part.rsplit(" ", 1) for part in spread.group(1).split(", "))
    assert sorted(calls) == sorted(addrs), (calls, addrs)
    counts = [int(c) for c in calls.values()]
    # Each call to the next node: as even as the order of the calls makes it.
    assert min(counts) > 0 and max(counts) - min(counts) <= max(3, sum(counts) // 10), calls
    # Standalone: one address, no spread line.
    _, out1, _ = runs["standalone"]
    assert "attribution calls by node" not in out1
