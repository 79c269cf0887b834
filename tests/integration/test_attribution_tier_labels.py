"""Tier labels of attribution's reports against a stub tier scoring (issue 11 B and C):
concurrent cold reports share one fetch (single flight), a caller whose deadline comes
first answers from the cache without cancelling the fetch the others wait for, and an
older tier scoring (BatchGetCreatorTiers UNIMPLEMENTED) is asked with BatchScoreCreators,
said once in the log.

Needs: bazel build //services/attribution:attribution.
"""

import threading
import time

import grpc
import pytest

import ywclient
from test_attribution import ATTR, NOW, RANGE, Attr, I, exposure, uid
from tier_stub import GET_TIERS, SCORE, TierStub

TIERS = ["TIER_HEAD", "TIER_MID", "TIER_TAIL", "TIER_AMATEUR"]


@pytest.fixture
def stubbed(tmp_path_factory):
    """make(tiers, delay, old, extra) -> (stub, attribution); both stopped at the end."""
    made = []

    def make(tiers, delay=0.0, old=False, extra=()):
        stub = TierStub(tiers, delay=delay, old=old).start()
        made.append(stub)
        a = Attr(tmp_path_factory, "attribution_tier_stub", tier_addr=stub.address,
                 extra=list(extra))
        made.append(a)
        a.start()
        return stub, a

    yield make
    for x in reversed(made):
        x.stop()


def creators_of(n):
    """n creators, tiers in turn; {creator_id: tier}."""
    tag = uid("c")
    return {"%s-%d" % (tag, i): TIERS[i % 4] for i in range(n)}


def expose(a, ids):
    """One impression per creator, in batches of 5,000."""
    ids = list(ids)
    for k in range(0, len(ids), 5000):
        ev = [exposure(uid("e"), uid("v"), c, [uid("p")], "IMPRESSION", NOW - 60)
              for c in ids[k:k + 5000]]
        assert I(a.exposures(ev, timeout=60), "accepted") == len(ev)


def rows_by_tier(rep):
    return {r.get("tier", "TIER_UNSPECIFIED"): I(r, "creators") for r in rep.get("rows", [])}


def concurrently(fns):
    """Runs each fn in a thread at once; returns [(result or exception, seconds)]."""
    out = [None] * len(fns)
    go = threading.Barrier(len(fns))

    def run(i):
        go.wait()
        t0 = time.monotonic()
        try:
            r = fns[i]()
        except grpc.RpcError as e:
            r = e
        out[i] = (r, time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


N_REPORTS = 8


def test_concurrent_cold_reports_share_one_fetch(stubbed):
    """2,500 creators (three calls of at most 1,000 ids), tier scoring slow (0.5 s a call):
    eight cold GetTierReport calls at once cost one fetch, three calls, and every report
    has every label."""
    tiers = creators_of(2500)
    stub, a = stubbed(tiers, delay=0.5)
    expose(a, tiers)
    res = concurrently([lambda: a.call("GetTierReport", RANGE, timeout=20)] * N_REPORTS)
    for rep, _ in res:
        assert not isinstance(rep, Exception), rep
        assert rep.get("tier_labels_error", "") == ""
        assert rows_by_tier(rep) == {t: 625 for t in TIERS}
        assert I(rep, "unlabeled_creators") == 0
    assert stub.calls[GET_TIERS] == 3, stub.calls
    assert stub.ids[GET_TIERS] == 2500
    # Cached: the next reports ask nothing; ListTopCreators neither.
    assert rows_by_tier(a.call("GetTierReport", RANGE)) == {t: 625 for t in TIERS}
    top = a.call("ListTopCreators", dict(RANGE, tiers=["TIER_MID"], page_size=1000))
    assert len(top["creators"]) == 625
    assert stub.calls[GET_TIERS] == 3, stub.calls


def test_a_caller_whose_deadline_comes_first_does_not_cancel_the_fetch(stubbed):
    """The first caller (1 s deadline) starts the fetch; tier scoring takes 2.5 s. It
    answers before its deadline from the cache (no labels: all under TIER_UNSPECIFIED)
    with tier_labels_error; the fetch goes on and the two callers that joined it (10 s
    deadlines) get every label; tier scoring saw one call."""
    tiers = creators_of(40)
    stub, a = stubbed(tiers, delay=2.5)
    expose(a, tiers)

    def late_joiner():
        time.sleep(0.2)
        return a.call("GetTierReport", RANGE, timeout=10)

    res = concurrently([lambda: a.call("GetTierReport", RANGE, timeout=1.0),
                        late_joiner, late_joiner])
    (first, took), others = res[0], res[1:]
    assert not isinstance(first, Exception), first
    assert took < 1.0
    assert "tier scoring" in first["tier_labels_error"]
    assert rows_by_tier(first) == {"TIER_UNSPECIFIED": 40}
    assert I(first, "unlabeled_creators") == 40
    for rep, took in others:
        assert not isinstance(rep, Exception), rep
        assert rep.get("tier_labels_error", "") == ""
        assert rows_by_tier(rep) == {t: 10 for t in TIERS}
        assert took >= 2.0  # they waited for the one fetch
    assert stub.calls[GET_TIERS] == 1, stub.calls
    assert stub.ids[GET_TIERS] == 40


def test_an_older_tier_scoring_is_asked_with_batch_score_creators(stubbed):
    """Tier scoring without BatchGetCreatorTiers: labels come from BatchScoreCreators;
    one creator it does not know is under TIER_UNSPECIFIED; the log says so once over
    several reports (--tier-label-ttl-s 0: every report asks again)."""
    tiers = creators_of(12)
    ghost = uid("ghost")
    stub, a = stubbed(tiers, old=True, extra=["--tier-label-ttl-s", "0"])
    expose(a, list(tiers) + [ghost])
    want = {t: 3 for t in TIERS}
    want["TIER_UNSPECIFIED"] = 1
    for _ in range(4):
        rep = a.call("GetTierReport", RANGE, timeout=10)
        assert rep.get("tier_labels_error", "") == ""
        assert rows_by_tier(rep) == want
        assert I(rep, "unlabeled_creators") == 1
    top = a.call("ListTopCreators", dict(RANGE, tiers=["TIER_HEAD"]), timeout=10)
    assert sorted(x["creator_id"] for x in top["creators"]) == \
        sorted(c for c, t in tiers.items() if t == "TIER_HEAD")
    # BatchGetCreatorTiers was tried once (UNIMPLEMENTED); then two BatchScoreCreators a
    # report: the batch with the ghost (NOT_FOUND names it), then the batch without it.
    assert stub.calls[GET_TIERS] == 1, stub.calls
    assert stub.calls[SCORE] == 2 * 5, stub.calls
    warned = [r for r in a.srv.log_records()
              if "fall back to BatchScoreCreators" in r.get("msg", "")]
    assert len(warned) == 1, warned
    assert warned[0]["level"] == "warn"
    assert "BatchGetCreatorTiers" in warned[0]["msg"]


def test_sigterm_while_a_fetch_is_in_flight(stubbed):
    """Tier scoring holds the fetch 5 s; SIGTERM meanwhile: the report waiting for it ends
    by the end of the grace period (2 s; its call is cancelled then, and the wait with it)
    and the process exits 0, nothing leaked (under ASan)."""
    tiers = creators_of(10)
    stub, a = stubbed(tiers, delay=5.0)
    expose(a, tiers)
    ch = a.srv.new_channel()  # not the harness's: stop() closes that one
    cl = ywclient.DynamicClient(ch)
    box = []
    t = threading.Thread(target=lambda: box.append(concurrently(
        [lambda: cl.call(ATTR + "/GetTierReport", RANGE, timeout=20)])[0]))
    t.start()
    deadline = time.monotonic() + 5
    while stub.calls[GET_TIERS] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    a.stop()  # SIGTERM; asserts exit status 0
    assert time.monotonic() - t0 < 4.0
    t.join(10)
    ch.close()
    rep, took = box[0]
    assert took < 4.0
    if not isinstance(rep, Exception):
        assert rows_by_tier(rep) == {"TIER_UNSPECIFIED": 10}
        assert "tier scoring" in rep["tier_labels_error"]


def test_top_creators_by_tier_while_tier_scoring_is_down(stubbed):
    """ListTopCreators with a tiers filter cannot be answered for creators tier scoring
    never labelled: while it is down that is UNAVAILABLE naming tier scoring (it was OK
    with an empty list), not an answer that says there are no such creators. Without a
    filter the list is answered, with tier_labels_error as GetTierReport has it. Labels
    given before, however old (--tier-label-ttl-s 0), still answer a filter."""
    tiers = creators_of(8)
    stub, a = stubbed(tiers, extra=["--tier-label-ttl-s", "0"])
    expose(a, tiers)
    mid = sorted(c for c, t in tiers.items() if t == "TIER_MID")
    top = a.call("ListTopCreators", dict(RANGE, tiers=["TIER_MID"], page_size=1000))
    assert sorted(x["creator_id"] for x in top["creators"]) == mid
    assert top.get("tier_labels_error", "") == ""
    stub.stop()
    # Known labels, tier scoring down: answered from them, the error said.
    top = a.call("ListTopCreators", dict(RANGE, tiers=["TIER_MID"], page_size=1000), timeout=10)
    assert sorted(x["creator_id"] for x in top["creators"]) == mid
    assert "tier scoring" in top["tier_labels_error"]
    # A creator never labelled: the filter cannot be judged.
    expose(a, [uid("new")])
    with pytest.raises(grpc.RpcError) as ei:
        a.call("ListTopCreators", dict(RANGE, tiers=["TIER_MID"]), timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    assert "tiers" in ei.value.details() and "tier scoring" in ei.value.details()
    assert "1 of the 9 creators" in ei.value.details()
    # Without a filter: every creator, the error said.
    top = a.call("ListTopCreators", dict(RANGE, page_size=1000), timeout=10)
    assert len(top["creators"]) == 9
    assert "tier scoring" in top["tier_labels_error"]


def test_top_creators_by_tier_with_tier_scoring_never_up(tmp_path_factory):
    """Attribution alone (nothing listens at --tier-scoring-addr): a tiers filter is
    UNAVAILABLE, not OK with an empty list."""
    a = Attr(tmp_path_factory, "attribution_no_tier").start()
    try:
        expose(a, [uid("c") for _ in range(3)])
        with pytest.raises(grpc.RpcError) as ei:
            a.call("ListTopCreators", dict(RANGE, tiers=["TIER_TAIL"]), timeout=15)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
        assert "tier scoring" in ei.value.details()
    finally:
        a.stop()
