"""Money is bounded and its sums cannot overflow (issue 12, part 2).

Before the fix amount_minor had no upper bound: one order of 9223372036854775807 plus
one of 3000 joining the same creator gave GetCreatorReport.attributed_gmv_minor =
-9223372036854772809 and tier gmv_share outside [0, 1]. Now every amount is at most
10^15 (ATTR_AMOUNT_MAX), and every sum is exact (128-bit): a figure past int64 is
reported as 9223372036854775807 (INT64_MAX, "at least this much"), while shares, GPM
and the ranking are computed from the exact sums. 9,224 orders of 10^15 already pass
int64, so the tests below go there.

Needs: bazel build //services/... (three services: tier labels give the tiers).
"""

import os
import uuid

import pytest

from test_attribution import CREATOR, RANGE, T, TIER, I, conversion, exposure, refund, uid
from test_attribution import stack  # noqa: F401 (the fixture: the three services)

INT64_MAX = 2 ** 63 - 1
AMOUNT_MAX = 10 ** 15
BATCH = 10000


def labelled_creators(stack, **followers):
    """Creators known to tier scoring, {name: creator_id}; followers pick the tier."""
    cp, ts, _ = stack
    tag = uuid.uuid4().hex[:6]
    ids = {}
    for name, n in followers.items():
        cid = "%s_%s" % (name, tag)
        ids[name] = cid
        cp.client.call(CREATOR + "/CreateCreator",
                       {"creator": {"creator_id": cid, "display_name": cid, "followers": str(n)}})
    ts.client.call(TIER + "/RefreshPopulation", {})
    return ids


def orders_of(a, creator, amount, n, impressions=0):
    """A click of `creator` and `n` orders of `amount` that it alone touches."""
    v, p = uid("v"), uid("p")
    ev = [exposure(uid("e"), v, creator, [p], "CLICK", T - 120)]
    ev += [exposure(uid("e"), uid("w"), creator, [uid("z")], "IMPRESSION", T - 60)
           for _ in range(impressions)]
    assert I(a.exposures(ev), "accepted") == len(ev)
    for k in range(0, n, BATCH):
        m = min(BATCH, n - k)
        s = a.conversions([conversion(uid("o"), v, p, amount, T) for _ in range(m)], timeout=120)
        assert I(s, "accepted") == m, s


def rows_by_tier(rep):
    return {r.get("tier", "TIER_UNSPECIFIED"): r for r in rep["rows"]}


def test_the_issue_example_an_order_past_the_bound_is_rejected(stack):
    _, _, a = stack
    ids = labelled_creators(stack, mid=100000, tail=10000)
    v, p = uid("v"), uid("p")
    a.exposures([exposure(uid("e"), v, ids["mid"], [p], "CLICK", T - 120)])
    big = conversion(uid("o"), v, p, INT64_MAX, T)
    s = a.conversions([big, conversion(uid("o"), v, p, 3000, T)])
    assert I(s, "accepted") == 1 and I(s, "rejected") == 1
    assert s["errors"][0]["reason"] == (
        "amount_minor: must be at most 1000000000000000 (10^15), got 9223372036854775807")
    orders_of(a, ids["tail"], 1000, 1)
    assert I(a.creator(ids["mid"]), "attributed_gmv_minor") == 3000
    rows = rows_by_tier(a.call("GetTierReport", RANGE, timeout=20))
    assert I(rows["TIER_MID"], "attributed_gmv_minor") == 3000
    assert rows["TIER_MID"]["gmv_share"] == pytest.approx(0.75)
    assert rows["TIER_TAIL"]["gmv_share"] == pytest.approx(0.25)


def test_amounts_at_the_bound(stack):
    _, _, a = stack
    c = uid("c")
    v, p = uid("v"), uid("p")
    a.exposures([exposure(uid("e"), v, c, [p], "CLICK", T - 120)])
    o, o2 = uid("o"), uid("o")
    s = a.conversions([conversion(o, v, p, AMOUNT_MAX, T),
                       conversion(o2, v, p, AMOUNT_MAX + 1, T)])
    assert I(s, "accepted") == 1 and I(s, "rejected") == 1
    assert s["errors"][0]["reason"].startswith("amount_minor: must be at most 1000000000000000")
    s = a.refunds([refund(uid("r"), o, AMOUNT_MAX + 1), refund(uid("r"), o, AMOUNT_MAX - 1)])
    assert I(s, "accepted") == 1 and I(s, "rejected") == 1
    assert s["errors"][0]["reason"].startswith("amount_minor: must be at most 1000000000000000")
    ex = a.explain(o)
    assert I(ex, "gross_amount_minor") == AMOUNT_MAX and I(ex, "amount_minor") == 1
    assert I(a.creator(c), "attributed_gmv_minor") == 1


def test_sums_past_int64_are_exact_and_reported_at_int64_max(stack):
    """9,300 orders of 10^15 to one creator (9.3 x 10^18 > INT64_MAX), 9,250 to another,
    10 to a third, 9,300 unattributed: every report answers, figures past int64 read
    INT64_MAX, shares and the ranking come from the exact sums; the same after a restart
    from the snapshot and after one that recomputes from the database."""
    _, _, a = stack
    ids = labelled_creators(stack, mid=100000, mid2=100000, tail=10000)
    orders_of(a, ids["mid"], AMOUNT_MAX, 9300, impressions=4)
    orders_of(a, ids["mid2"], AMOUNT_MAX, 9250)
    orders_of(a, ids["tail"], AMOUNT_MAX, 10, impressions=4)
    v, p = uid("v"), uid("p")  # no exposure: unattributed
    s = a.conversions([conversion(uid("o"), v, p, AMOUNT_MAX, T) for _ in range(9300)],
                      timeout=120)
    assert I(s, "accepted") == 9300

    def check():
        r = a.creator(ids["mid"])
        assert I(r, "attributed_gmv_minor") == INT64_MAX
        assert r["attributed_conversions"] == 9300
        assert r["gpm"] == pytest.approx(9300 * AMOUNT_MAX * 1000 / 4)
        assert r["conversion_rate"] == pytest.approx(9300 / 4)
        assert I(a.creator(ids["tail"]), "attributed_gmv_minor") == 10 * AMOUNT_MAX
        rep = a.call("GetTierReport", RANGE, timeout=30)
        rows = rows_by_tier(rep)
        total = (9300 + 9250 + 10) * AMOUNT_MAX
        assert I(rows["TIER_MID"], "attributed_gmv_minor") == INT64_MAX
        assert rows["TIER_MID"]["gmv_share"] == pytest.approx((9300 + 9250) * AMOUNT_MAX / total)
        assert rows["TIER_TAIL"]["gmv_share"] == pytest.approx(10 * AMOUNT_MAX / total)
        for row in rep["rows"]:
            assert 0.0 <= row.get("gmv_share", 0.0) <= 1.0
            assert I(row, "attributed_gmv_minor") >= 0
        assert sum(r.get("gmv_share", 0.0) for r in rep["rows"]) == pytest.approx(1.0)
        assert I(rep, "unattributed_gmv_minor") == INT64_MAX
        assert I(rep, "unattributed_conversions") >= 9300
        top = a.call("ListTopCreators", dict(RANGE, page_size=3), timeout=30)["creators"]
        assert [x["creator_id"] for x in top] == [ids["mid"], ids["mid2"], ids["tail"]]
        assert [I(x, "attributed_gmv_minor") for x in top] == [INT64_MAX, INT64_MAX,
                                                                10 * AMOUNT_MAX]
    check()
    a.srv.restart()  # a clean stop: the snapshot (its totals checked) at the next start
    with open(a.srv.log_path, "rb") as f:
        assert b"snapshot loaded and checked" in f.read()
    check()
    a.srv.terminate()
    snap = os.path.join(a.srv.data_dir, "attribution.snapshot")
    if os.path.exists(snap):
        os.unlink(snap)  # recomputed from the database (its sums past int64 too)
    a.srv.start()
    check()
