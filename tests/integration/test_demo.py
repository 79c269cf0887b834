"""The main job (tools/demo, `make run`) end to end, at its smallest size.

Three real services (creator profile -> tier scoring -> attribution), fresh data dirs,
free loopback ports; the demo binary drives its workload through their gRPC APIs and
prints its report. The test parses that report: the tier shares add up, the events
attribution acknowledged (accepted + duplicate + rejected) equal what the demo sent and
match the generator's ground truth, and every check line passed. The services must
still exit 0 at SIGTERM (under the sanitizer build too).

Needs: bazel build //services/... //tools/demo
"""

import os
import re
import subprocess
import time

import pytest

from conftest import ServiceStack, binary_path, free_port

pytestmark = pytest.mark.release  # conftest.py RELEASE_PASS

DEMO_BIN = "tools/demo/demo"

SANITIZED = os.environ.get("YW_SANITIZED") == "1"
DEMO_TIMEOUT_S = 120 if SANITIZED else 60

# The smallest size that still has some of everything (duplicates, broken events, late
# exposures, refunds, rising creators).
TINY = ["--creators", "2000", "--impressions", "60000", "--viewers", "5000",
        "--products", "800", "--dup-rate", "0.02", "--invalid-rate", "0.02",
        "--refund-rate", "0.2", "--progress", "lines"]

TIERS = ("HEAD", "MID", "TAIL", "AMATEUR", "UNLABELED")


def n(s):
    return int(s.replace(",", ""))


def sections(text):
    """{title: [lines]} for each '== title ==' block of the report."""
    out, title = {}, None
    for line in text.splitlines():
        m = re.match(r"^== (.+) ==$", line)
        if m:
            title = m.group(1)
            out[title] = []
        elif title is not None:
            out[title].append(line)
    return out


TIER_ROW = re.compile(
    r"^(%s)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)%%\s+([\d,]+)\s+([\d.]+)\s+([\d,]+\.\d\d)\s+"
    r"([\d.]+)%%\s+([\d.]+)\s+([\d.]+)$" % "|".join(TIERS))

EVENT_ROW = re.compile(
    r"^(exposures|conversions|refunds|total)\s+([\d,]+) \|\s+([\d,]+)\s+([\d,]+)\s+([\d,]+) \|"
    r"\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+(\S+)$")


def tier_rows(lines):
    rows = {}
    for line in lines:
        m = TIER_ROW.match(line)
        if m:
            rows[m.group(1)] = {
                "creators": n(m.group(2)), "impressions": n(m.group(3)),
                "imp_share": float(m.group(4)), "clicks": n(m.group(5)),
                "orders": float(m.group(6)), "gmv": n(m.group(7).replace(".", "")),
                "gmv_share": float(m.group(8)), "gpm": float(m.group(9)),
                "lift": float(m.group(10))}
    return rows


class Stack(ServiceStack):
    """Creator profile, tier scoring and attribution, wired together. Tier scoring
    refreshes by itself only at start-up (before any creator exists): the demo gets its
    creators scored by asking (RefreshPopulation)."""

    def __init__(self, tmp_path_factory):
        super().__init__(tmp_path_factory, "demo", refresh_ms=600000)

    def demo_args(self):
        return ["--creator-profile-addr", self.creator.address,
                "--tier-scoring-addr", self.tier.address,
                "--attribution-addr", self.attr.address]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run against a fresh stack: (exit status, stdout, stderr, seconds)."""
    demo = binary_path(DEMO_BIN)
    stack = Stack(tmp_path_factory).start()
    try:
        t0 = time.monotonic()
        proc = subprocess.run([demo] + stack.demo_args() + TINY, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
        took = time.monotonic() - t0
    finally:
        stack.stop()
    return proc.returncode, proc.stdout, proc.stderr, took


def test_demo_passes_its_checks(demo_run):
    rc, out, err, _ = demo_run
    assert rc == 0, "demo exited %d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    assert re.search(r"^PASS: (\d+) of \1 checks passed$", out, re.M), out
    assert "MISMATCH" not in out
    # Every creator labelled by the first tier report: it was not asked again.
    assert "(asked " not in out, out


def test_tier_reports_parse_and_shares_sum_to_one(demo_run):
    _, out, err, _ = demo_run
    secs = sections(out)
    reports = [t for t in secs if t.startswith("Tier report: ")]
    assert len(reports) == 2, list(secs)
    assert "LAST_TOUCH" in reports[0] and "LINEAR" in reports[1]
    for title in reports:
        rows = tier_rows(secs[title])
        assert set(rows) <= {"HEAD", "MID", "TAIL", "AMATEUR"}, (title, rows)
        assert {"HEAD", "MID", "TAIL"} <= set(rows), (title, secs[title])
        imp = sum(r["imp_share"] for r in rows.values())
        gmv = sum(r["gmv_share"] for r in rows.values())
        # Shares are printed to 0.1 %: four rows round to within 0.2 of 100.
        assert abs(imp - 100.0) < 0.25, (title, imp)
        assert abs(gmv - 100.0) < 0.25, (title, gmv)
        for r in rows.values():
            if r["imp_share"] > 0:
                assert abs(r["lift"] - r["gmv_share"] / r["imp_share"]) < 0.02, r
    # Both models split the same orders and money, differently.
    a, b = (tier_rows(secs[t]) for t in reports)
    assert sum(r["gmv"] for r in a.values()) == sum(r["gmv"] for r in b.values())
    assert abs(sum(r["orders"] for r in a.values()) - sum(r["orders"] for r in b.values())) < 0.2
    assert sum(r["impressions"] for r in a.values()) == sum(r["impressions"] for r in b.values())


def test_events_add_up_and_match_the_ground_truth(demo_run):
    _, out, _, _ = demo_run
    lines = sections(out)["Events: acknowledged by attribution vs the generator's ground truth"]
    rows = {}
    for line in lines:
        m = EVENT_ROW.match(line)
        if m:
            rows[m.group(1)] = [n(x) for x in m.groups()[1:8]] + [m.group(9)]
    assert set(rows) == {"exposures", "conversions", "refunds", "total"}, lines
    for kind, (sent, acc, dup, rej, want_acc, want_dup, want_rej, check) in rows.items():
        assert acc + dup + rej == sent, (kind, rows[kind])
        assert (acc, dup, rej) == (want_acc, want_dup, want_rej), (kind, rows[kind])
        assert check == "ok", (kind, rows[kind])
    # The tiny size still has some of every kind of untidiness.
    assert rows["exposures"][2] > 0 and rows["exposures"][3] > 0, rows
    assert rows["refunds"][1] > 0, rows
    assert re.search(r"late exposures \(sent after the conversions\): [1-9]", "\n".join(lines))


def test_rising_creators_are_mid_or_tail(demo_run):
    _, out, _, _ = demo_run
    title = [t for t in sections(out) if t.startswith("Top rising MID/TAIL creators by GPM")]
    assert len(title) == 1, list(sections(out))
    listed = 0
    for line in sections(out)[title[0]]:
        m = re.match(r"^\s*\d+ (c-\d+)\s+(\S+)\s+", line)
        if m:
            assert m.group(2) in ("MID", "TAIL"), line
            listed += 1
    assert listed > 0, sections(out)[title[0]]


def test_progress_goes_to_stderr_in_lines(demo_run):
    _, out, err, took = demo_run
    assert "\r" not in err
    for step in ("creators", "note stats", "exposures", "conversions", "refunds"):
        assert re.search(r"^%s\s+[\d,]+ \w+ in [\d.]+ s \([\d,]+/s\)$" % step, err, re.M), \
            (step, err)
    assert " in 0." not in out and "/s)" not in out
    assert took < DEMO_TIMEOUT_S


def test_bad_flags_exit_2_naming_the_flag():
    demo = binary_path(DEMO_BIN)
    p = subprocess.run([demo, "--ctr", "0.1,0.2"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "--ctr" in p.stderr
    p = subprocess.run([demo, "--cvr", "0.1,0.2,0.3,1.5"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "cvr" in p.stderr


def test_bad_attribution_addresses_exit_2_naming_the_flag():
    demo = binary_path(DEMO_BIN)
    for addrs, says in (("127.0.0.1:1,,127.0.0.1:2", "an empty address"),
                        ("127.0.0.1:1,127.0.0.1:1", "127.0.0.1:1 is given twice")):
        p = subprocess.run([demo, "--attribution-addr", addrs], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 2, (addrs, p.stdout, p.stderr)
        assert "--attribution-addr" in p.stderr and says in p.stderr, p.stderr


def test_unreachable_services_exit_3_quickly():
    demo = binary_path(DEMO_BIN)
    addr = "127.0.0.1:%d" % free_port()  # nothing listens there
    t0 = time.monotonic()
    p = subprocess.run([demo, "--creator-profile-addr", addr, "--tier-scoring-addr", addr,
                        "--attribution-addr", addr, "--ready-wait-s", "1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "creator profile at %s is not SERVING" % addr in p.stderr
    assert time.monotonic() - t0 < 15
