"""Attribution service (issue 4), black box over gRPC via reflection.

The attribution binary runs as a real process (alone, with tier scoring unreachable,
or as the third of creator profile -> tier scoring -> attribution). Every expectation
below is computed by hand in the comments, from the rules in attribution.proto.

Needs: bazel build //services/attribution:attribution (and, for the three-service
tests, //services/creator_profile:creator_profile and //services/tier_scoring:tier_scoring).
"""

import math
import os
import threading
import time
import uuid

import grpc
import pytest

from conftest import ServerProcess, binary_path, free_port

ATTR_BIN = "services/attribution/attribution"
CREATOR_BIN = "services/creator_profile/creator_profile"
TIER_BIN = "services/tier_scoring/tier_scoring"
ATTR = "yaowei.attribution.v1.AttributionService"
CREATOR = "yaowei.creator.v1.CreatorProfileService"
TIER = "yaowei.tier.v1.TierScoringService"

DAY = 86400
NOW = int(time.time())
TODAY = NOW - NOW % DAY
T = NOW - 3600  # conversions of the hand-computed cases happen an hour ago
RANGE = None  # set below: [TODAY - 20 d, TODAY + 1 d)


def rfc3339(sec, nanos=0):
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return s + (".%09dZ" % nanos if nanos else "Z")


RANGE = {"start_time": rfc3339(TODAY - 20 * DAY), "end_time": rfc3339(TODAY + DAY)}


def I(d, key):
    """An int64 field of a JSON response (strings, absent when 0)."""
    return int(d.get(key, 0))


def uid(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# -- processes -------------------------------------------------------------------------


class Attr:
    """An attribution process and helpers to call it."""

    def __init__(self, tmp_path_factory, name, tier_addr=None, extra=()):
        base = tmp_path_factory.mktemp(name)
        data = base / "data"
        data.mkdir()
        if tier_addr is None:
            tier_addr = "127.0.0.1:%d" % free_port()  # nothing listens there
        self.srv = ServerProcess(binary_path(ATTR_BIN), str(data), str(base),
                                 ["--tier-scoring-addr", tier_addr, "--grace-ms", "2000"]
                                 + list(extra), name=name)

    def start(self):
        self.srv.start()
        return self

    def stop(self):
        """SIGTERM; the exit status must be 0 (under ASan, a leak or UB report is not)."""
        if self.srv.running():
            rc = self.srv.terminate()
            assert rc == 0, "attribution exited with %r on SIGTERM; log:\n%s" % (
                rc, self.srv.log_tail())
        self.srv.stop()

    def call(self, method, request=None, **kw):
        return self.srv.client.call("%s/%s" % (ATTR, method), request, **kw)

    def stream(self, method, events, timeout=30):
        """A client-streaming call with dict events; returns the summary dict."""
        c = self.srv.client
        md = c.method("%s/%s" % (ATTR, method))
        req_cls = c.message_class(md.input_type)
        resp_cls = c.message_class(md.output_type)
        from google.protobuf import json_format

        def msgs():  # lazily: a test may hold the stream open between events
            for e in events:
                m = req_cls()
                json_format.ParseDict(e, m)
                yield m
        stub = self.srv.channel.stream_unary(
            "/%s/%s" % (ATTR, method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_cls.FromString)
        return c.to_dict(stub(msgs(), timeout=timeout))

    def exposures(self, events, **kw):
        return self.call("RecordExposures", {"events": events}, **kw)

    def conversions(self, events, **kw):
        return self.call("RecordConversions", {"events": events}, **kw)

    def refunds(self, events, **kw):
        return self.call("RecordRefunds", {"events": events}, **kw)

    def explain(self, order_id, model="ATTRIBUTION_MODEL_UNSPECIFIED"):
        return self.call("ExplainConversion", {"order_id": order_id, "model": model})

    def creator(self, creator_id, model="ATTRIBUTION_MODEL_UNSPECIFIED", rng=None):
        req = dict(rng or RANGE)
        req.update({"creator_id": creator_id, "model": model})
        return self.call("GetCreatorReport", req)


def exposure(eid, viewer, creator, products, kind, at, watch_ms=0, note="n1"):
    return {"event_id": eid, "viewer_id": viewer, "creator_id": creator, "note_id": note,
            "product_ids": list(products), "kind": "EXPOSURE_KIND_" + kind,
            "watch_ms": str(watch_ms), "occur_time": rfc3339(at)}


def conversion(order, viewer, product, amount, at, currency=""):
    c = {"order_id": order, "viewer_id": viewer, "product_id": product, "quantity": "1",
         "amount_minor": str(amount), "occur_time": rfc3339(at)}
    if currency:
        c["currency"] = currency
    return c


def refund(rid, order, amount, at=None):
    return {"refund_id": rid, "order_id": order, "amount_minor": str(amount),
            "occur_time": rfc3339(at or NOW)}


def touches(expl):
    """[(creator_id, attributed_minor, credit)] of an explanation, in touch order."""
    return [(t["creator_id"], I(t, "attributed_minor"), t.get("credit", 0.0))
            for t in expl.get("touches", [])]


@pytest.fixture(scope="module")
def shared_attr(tmp_path_factory):
    """One attribution process (tier scoring unreachable) for tests that use their own
    ids and leave the settings alone."""
    a = Attr(tmp_path_factory, "attribution").start()
    yield a
    a.stop()


@pytest.fixture
def attr(shared_attr):
    if not shared_attr.srv.running():
        shared_attr.start()
    yield shared_attr
    shared_attr.srv.assert_alive()


@pytest.fixture
def fresh_attr(tmp_path_factory):
    """An attribution process of its own: settings changes, restarts, kill -9."""
    a = Attr(tmp_path_factory, "attribution_fresh").start()
    yield a
    a.stop()


# -- contract ------------------------------------------------------------------------------


def test_reflection_lists_the_service_and_health_serves(attr):
    names = attr.srv.client.reflection.list_services()
    assert ATTR in names
    assert "grpc.health.v1.Health" in names
    md = attr.srv.client.method(ATTR + "/IngestExposures")
    assert md.client_streaming and not md.server_streaming
    settings = attr.call("GetAttributionSettings")
    assert settings["click_window"] == "604800s"
    assert settings["view_window"] == "86400s"
    assert settings["time_decay_half_life"] == "604800s"
    assert settings["late_window"] == "604800s"
    assert I(settings, "engaged_view_ms") == 10000
    assert settings["default_model"] == "ATTRIBUTION_MODEL_LAST_TOUCH"
    assert settings["currency"] == "CNY"


# -- ingestion -----------------------------------------------------------------------------


def test_batch_counts_duplicates_and_rejects_with_indexes(attr):
    v, c, p = uid("v"), uid("c"), uid("p")
    e = [uid("e") for _ in range(4)]
    batch = [
        exposure(e[0], v, c, [p], "IMPRESSION", NOW - 60),                  # 0 ok
        exposure(e[0], v, c, [p], "CLICK", NOW - 60),                       # 1 dup (same batch)
        exposure("", v, c, [p], "CLICK", NOW - 60),                         # 2 no event_id
        exposure(e[1], "", c, [p], "CLICK", NOW - 60),                      # 3 no viewer
        exposure(e[1], v, "", [p], "CLICK", NOW - 60),                      # 4 no creator
        exposure(e[1], v, c, [], "CLICK", NOW - 60),                        # 5 no products
        dict(exposure(e[1], v, c, [p], "CLICK", NOW - 60), kind="EXPOSURE_KIND_UNSPECIFIED"),
        exposure(e[1], v, c, [p], "VIEW", NOW - 60, watch_ms=-5),           # 7 negative watch
        exposure(e[1], v, c, [p], "VIEW", NOW + 3600),                      # 8 future
        exposure(e[1], v, c, [p], "VIEW", NOW - 60, watch_ms=12000),        # 9 ok
        exposure(e[2], v, c, [p], "CLICK", NOW + 200),                      # 10 ok (< 5 min)
        {"event_id": e[3], "viewer_id": v, "creator_id": c, "product_ids": [p],
         "kind": "EXPOSURE_KIND_CLICK"},                                    # 11 no occur_time
    ]
    s = attr.exposures(batch)
    assert I(s, "accepted") == 3
    assert I(s, "duplicates") == 1
    assert I(s, "rejected") == 8
    errs = [(I(x, "index"), x["reason"]) for x in s["errors"]]
    assert [i for i, _ in errs] == [2, 3, 4, 5, 6, 7, 8, 11]
    reasons = dict(errs)
    assert reasons[2].startswith("event_id:")
    assert reasons[3].startswith("viewer_id:")
    assert reasons[4].startswith("creator_id:")
    assert reasons[5].startswith("product_ids:")
    assert reasons[6].startswith("kind:")
    assert reasons[7].startswith("watch_ms:")
    assert reasons[8].startswith("occur_time:") and "future" in reasons[8]
    assert reasons[11].startswith("occur_time:")
    # Resent as is: everything valid is a duplicate now, nothing counted twice.
    s2 = attr.exposures(batch)
    assert I(s2, "accepted") == 0
    assert I(s2, "duplicates") == 4
    assert I(s2, "rejected") == 8
    # Through tomorrow: the click 200 s ahead falls on the next UTC day near midnight.
    r = attr.creator(c, rng=dict(RANGE, end_time=rfc3339(TODAY + 2 * DAY)))
    assert I(r, "impressions") == 1 and I(r, "views") == 1 and I(r, "clicks") == 1


def test_conversion_and_refund_rejects(attr):
    v, p, o = uid("v"), uid("p"), uid("o")
    s = attr.conversions([
        conversion(o, v, p, 1000, NOW - 60),          # 0 ok
        conversion(o, v, p, 5, NOW - 60),             # 1 dup: other fields differ
        conversion("", v, p, 1000, NOW - 60),         # 2 no order_id
        conversion(uid("o"), "", p, 1000, NOW - 60),  # 3 no viewer
        conversion(uid("o"), v, "", 1000, NOW - 60),  # 4 no product
        conversion(uid("o"), v, p, 0, NOW - 60),      # 5 amount 0
        conversion(uid("o"), v, p, 10, NOW - 60, currency="USD"),  # 6 currency
        conversion(uid("o"), v, p, 10, NOW - 60, currency="CNY"),  # 7 ok: the deployment's
        conversion(uid("o"), v, p, 10, NOW + 3600),   # 8 future
    ])
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (2, 1, 6)
    errs = {I(x, "index"): x["reason"] for x in s["errors"]}
    assert sorted(errs) == [2, 3, 4, 5, 6, 8]
    assert errs[5].startswith("amount_minor:")
    assert errs[6].startswith("currency:") and "CNY" in errs[6]
    # Refunds, judged in order: 600 then 500 of 1000 -> the second is too large.
    r1, r2, r3 = uid("r"), uid("r"), uid("r")
    s = attr.refunds([
        refund(r1, o, 600),        # 0 ok, 400 left
        refund(r2, o, 500),        # 1 too large (400 left)
        refund(r1, o, 1),          # 2 duplicate
        refund(r3, uid("o"), 1),   # 3 unknown order
        refund(r3, o, 0),          # 4 amount 0
        refund("", o, 1),          # 5 no refund_id
        refund(r3, o, 400),        # 6 ok: exactly what is left
    ])
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (2, 1, 4)
    errs = {I(x, "index"): x["reason"] for x in s["errors"]}
    assert sorted(errs) == [1, 3, 4, 5]
    assert errs[1].startswith("amount_minor:") and "400" in errs[1]
    assert errs[3].startswith("order_id:")
    ex = attr.explain(o)
    assert I(ex, "amount_minor") == 0
    assert I(ex, "gross_amount_minor") == 1000 and I(ex, "refunded_minor") == 1000
    # Nothing is left to refund.
    s = attr.refunds([refund(uid("r"), o, 1)])
    assert I(s, "rejected") == 1


def test_oversized_batch_is_refused(attr):
    v, c, p = uid("v"), uid("c"), uid("p")
    batch = [exposure(uid("e"), v, c, [p], "IMPRESSION", NOW - 60) for _ in range(10001)]
    with pytest.raises(grpc.RpcError) as ei:
        attr.exposures(batch, timeout=60)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events" in ei.value.details()


def test_streams_ingest_with_stream_indexes(attr):
    v, c, p = uid("v"), uid("c"), uid("p")
    ids = [uid("e") for _ in range(5000)]
    events = [exposure(i, v, c, [p], "IMPRESSION", NOW - 120) for i in ids]
    events[10] = exposure(ids[9], v, c, [p], "IMPRESSION", NOW - 120)   # dup of 9
    events[4321] = exposure(ids[4321], v, c, [], "IMPRESSION", NOW - 120)  # no products
    s = attr.stream("IngestExposures", events)
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (4998, 1, 1)
    assert [I(x, "index") for x in s["errors"]] == [4321]
    assert I(attr.creator(c), "impressions") == 4998
    # The whole stream again: all duplicates.
    s = attr.stream("IngestExposures", events)
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (0, 4999, 1)
    # Conversions by stream; an empty stream is an empty summary.
    o1, o2 = uid("o"), uid("o")
    s = attr.stream("IngestConversions", [conversion(o1, v, p, 700, NOW - 60),
                                          conversion(o2, v, p, -1, NOW - 60),
                                          conversion(o1, v, p, 700, NOW - 60)])
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (1, 1, 1)
    assert [I(x, "index") for x in s["errors"]] == [1]
    assert attr.stream("IngestConversions", []) == {}
    # The conversion joined the impressions (last touch: the latest of 4998; every one
    # is at NOW - 120, so the largest event_id).
    ex = attr.explain(o1)
    assert ex["attributed"] is True
    assert len(ex["touches"]) == 4998
    assert ex["touches"][-1]["event_id"] == max(i for k, i in enumerate(ids)
                                                if k not in (10, 4321))


# -- the rules, by hand ----------------------------------------------------------------


def seed_three_clicks(a):
    """Viewer v buys p (1001) at T. Candidates:
         A click  T - 3 d     B click  T - 2 d     C click  T - 1 d
         D view   T - 1 h (engaged)   E impression T - 10 min   (clicks win: ignored)
         F click  T + 1 s (after the order)   G click of another product
    """
    v, p, o = uid("v"), uid("p"), uid("o")
    cr = {k: uid("cr" + k) for k in "ABCDEFG"}
    s = a.exposures([
        exposure(uid("e"), v, cr["A"], [p], "CLICK", T - 3 * DAY),
        exposure(uid("e"), v, cr["B"], [uid("x"), p], "CLICK", T - 2 * DAY),
        exposure(uid("e"), v, cr["C"], [p], "CLICK", T - DAY),
        exposure(uid("e"), v, cr["D"], [p], "VIEW", T - 3600, watch_ms=30000),
        exposure(uid("e"), v, cr["E"], [p], "IMPRESSION", T - 600),
        exposure(uid("e"), v, cr["F"], [p], "CLICK", T + 1),
        exposure(uid("e"), v, cr["G"], [uid("p")], "CLICK", T - 60),
    ])
    assert I(s, "accepted") == 7
    s = a.conversions([conversion(o, v, p, 1001, T)])
    assert I(s, "accepted") == 1
    return o, cr, v, p


def test_explain_hand_computed_under_each_model(attr):
    o, cr, _, _ = seed_three_clicks(attr)
    A, B, C = cr["A"], cr["B"], cr["C"]
    ex = attr.explain(o)  # UNSPECIFIED -> the default, LAST_TOUCH
    assert ex["model"] == "ATTRIBUTION_MODEL_LAST_TOUCH"
    assert ex["attributed"] is True and I(ex, "amount_minor") == 1001
    assert ex["currency"] == "CNY"
    assert [t["kind"] for t in ex["touches"]] == ["EXPOSURE_KIND_CLICK"] * 3
    assert touches(ex) == [(A, 0, 0.0), (B, 0, 0.0), (C, 1001, 1.0)]
    ex = attr.explain(o, "ATTRIBUTION_MODEL_FIRST_TOUCH")
    assert touches(ex) == [(A, 1001, 1.0), (B, 0, 0.0), (C, 0, 0.0)]
    # Linear: 1001 / 3 = 333.67 each -> 333 x 3 = 999, two units left, remainders tie:
    # the two later touches.
    ex = attr.explain(o, "ATTRIBUTION_MODEL_LINEAR")
    assert [m for _, m, _ in touches(ex)] == [333, 334, 334]
    assert all(abs(cr_ - 1 / 3) < 1e-12 for _, _, cr_ in touches(ex))
    # Position based: 40/20/40 -> 400.4, 200.2, 400.4 -> 400, 200, 400 + one unit to the
    # largest remainder (.4, tie between first and last: the later).
    ex = attr.explain(o, "ATTRIBUTION_MODEL_POSITION_BASED")
    assert touches(ex) == [(A, 400, 0.4), (B, 200, 0.2), (C, 401, 0.4)]
    # Time decay, half-life 7 d: weights 2^(-3/7), 2^(-2/7), 2^(-1/7) normalised =
    # 0.300924, 0.332247, 0.366830 -> 301.22, 332.58, 367.20 -> 301, 332, 367 + the
    # unit to the largest remainder (.58): 301, 333, 367.
    ex = attr.explain(o, "ATTRIBUTION_MODEL_TIME_DECAY")
    got = touches(ex)
    assert [m for _, m, _ in got] == [301, 333, 367]
    w = [2 ** (-3 / 7), 2 ** (-2 / 7), 2 ** (-1 / 7)]
    for (_, _, credit), wi in zip(got, w):
        assert abs(credit - wi / sum(w)) < 1e-9
    assert sum(m for _, m, _ in got) == 1001
    # Rollups agree: C has the order under last touch, A under first touch.
    assert I(attr.creator(C), "attributed_gmv_minor") == 1001
    assert I(attr.creator(A, "ATTRIBUTION_MODEL_FIRST_TOUCH"), "attributed_gmv_minor") == 1001
    assert I(attr.creator(cr["D"]), "attributed_gmv_minor") == 0
    with pytest.raises(grpc.RpcError) as ei:
        attr.explain(uid("o"))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_priority_engaged_views_then_impressions(attr):
    v, p = uid("v"), uid("p")
    cv, cs, ci = uid("cv"), uid("cs"), uid("ci")
    o1, o2 = uid("o"), uid("o")
    attr.exposures([
        exposure(uid("e"), v, cv, [p], "VIEW", T - 7200, watch_ms=10000),  # engaged (edge)
        exposure(uid("e"), v, cs, [p], "VIEW", T - 3600, watch_ms=9999),   # an impression
        exposure(uid("e"), v, ci, [p], "IMPRESSION", T - 60),
    ])
    attr.conversions([conversion(o1, v, p, 100, T)])
    # The engaged view wins, alone.
    assert touches(attr.explain(o1)) == [(cv, 100, 1.0)]
    # Another viewer with only a short view and an impression: both are impressions.
    v2 = uid("v")
    attr.exposures([
        exposure(uid("e"), v2, cs, [p], "VIEW", T - 3600, watch_ms=5),
        exposure(uid("e"), v2, ci, [p], "IMPRESSION", T - 60),
        # outside the view window (1 day + 1 s): not a candidate
        exposure(uid("e"), v2, cv, [p], "IMPRESSION", T - DAY - 1),
    ])
    attr.conversions([conversion(o2, v2, p, 100, T)])
    ex = attr.explain(o2, "ATTRIBUTION_MODEL_LINEAR")
    assert touches(ex) == [(cs, 50, 0.5), (ci, 50, 0.5)]
    assert [t["kind"] for t in ex["touches"]] == ["EXPOSURE_KIND_VIEW", "EXPOSURE_KIND_IMPRESSION"]


def test_window_edges_are_inclusive(attr):
    v, p, o = uid("v"), uid("p"), uid("o")
    cin, cout = uid("cin"), uid("cout")
    attr.exposures([
        exposure(uid("e"), v, cin, [p], "CLICK", T - 7 * DAY),       # exactly 7 d: in
        exposure(uid("e"), v, cout, [p], "CLICK", T - 7 * DAY - 1),  # 7 d + 1 s: out
    ])
    attr.conversions([conversion(o, v, p, 10, T)])
    assert touches(attr.explain(o)) == [(cin, 10, 1.0)]


def test_unattributed_is_reported_not_dropped(attr):
    v, p, o = uid("v"), uid("p"), uid("o")
    attr.conversions([conversion(o, v, p, 4242, T)])
    ex = attr.explain(o)
    assert ex.get("attributed", False) is False
    assert ex.get("touches", []) == []
    assert I(ex, "amount_minor") == 4242
    rep = attr.call("GetTierReport", RANGE)
    assert I(rep, "unattributed_conversions") >= 1
    assert I(rep, "unattributed_gmv_minor") >= 4242


def test_late_exposure_changes_the_explanation(attr):
    v, p, o = uid("v"), uid("p"), uid("o")
    first, late_click = uid("c1"), uid("c2")
    attr.exposures([exposure(uid("e"), v, first, [p], "IMPRESSION", T - 600)])
    attr.conversions([conversion(o, v, p, 900, T)])
    assert touches(attr.explain(o)) == [(first, 900, 1.0)]
    # A click from two days ago arrives after the order: clicks win, at once.
    s = attr.exposures([exposure(uid("e"), v, late_click, [p], "CLICK", T - 2 * DAY)])
    assert I(s, "accepted") == 1
    assert touches(attr.explain(o)) == [(late_click, 900, 1.0)]
    assert I(attr.creator(first), "attributed_gmv_minor") == 0
    assert I(attr.creator(late_click), "attributed_gmv_minor") == 900
    # A late exposure after the order changes nothing.
    attr.exposures([exposure(uid("e"), v, uid("c3"), [p], "CLICK", T + 5)])
    assert touches(attr.explain(o)) == [(late_click, 900, 1.0)]


def test_refunds_reduce_the_net_everywhere(attr):
    o, cr, _, _ = seed_three_clicks(attr)
    s = attr.refunds([refund(uid("r"), o, 301)])
    assert I(s, "accepted") == 1
    ex = attr.explain(o, "ATTRIBUTION_MODEL_LINEAR")
    # net 700: 233.33 each -> 233, 233, 234
    assert I(ex, "amount_minor") == 700 and I(ex, "refunded_minor") == 301
    assert [m for _, m, _ in touches(ex)] == [233, 233, 234]
    assert I(attr.creator(cr["C"]), "attributed_gmv_minor") == 700
    # Credits (conversions) do not shrink with money.
    assert attr.creator(cr["C"])["attributed_conversions"] == 1.0


def test_reports_sum_and_validate(attr):
    v, p, c = uid("v"), uid("p"), uid("c")
    ev = [exposure(uid("e"), v, c, [p], "IMPRESSION", T - 100 - k) for k in range(4)]
    ev.append(exposure(uid("e"), v, c, [p], "CLICK", T - 50))
    attr.exposures(ev)
    o = uid("o")
    attr.conversions([conversion(o, v, p, 2000, T)])
    r = attr.creator(c)
    assert I(r, "impressions") == 4 and I(r, "clicks") == 1
    assert r["attributed_conversions"] == 1.0
    assert I(r, "attributed_gmv_minor") == 2000
    assert r["gpm"] == pytest.approx(2000 * 1000 / 4)
    assert r["conversion_rate"] == pytest.approx(0.25)
    # A range without the order: no credit; exposure counts by their own day.
    r = attr.creator(c, rng={"start_time": rfc3339(TODAY + DAY),
                             "end_time": rfc3339(TODAY + 2 * DAY)})
    assert I(r, "impressions") == 0 and I(r, "attributed_gmv_minor") == 0
    for bad in ({"start_time": rfc3339(TODAY + 5), "end_time": rfc3339(TODAY + DAY)},
                {"start_time": rfc3339(TODAY), "end_time": rfc3339(TODAY)},
                {"start_time": rfc3339(TODAY)},
                {"start_time": rfc3339(TODAY - 500 * DAY), "end_time": rfc3339(TODAY)}):
        req = dict(bad, creator_id=c)
        with pytest.raises(grpc.RpcError) as ei:
            attr.call("GetCreatorReport", req)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as ei:
        attr.call("GetCreatorReport", dict(RANGE, creator_id=c, model=9))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tier_report_without_tier_scoring_says_so(attr):
    attr.exposures([exposure(uid("e"), uid("v"), uid("c"), [uid("p")], "IMPRESSION", NOW - 60)])
    rep = attr.call("GetTierReport", RANGE)
    rows = rep.get("rows", [])
    # Every creator is unlabelled: one row, TIER_UNSPECIFIED (the enum's 0 is omitted).
    assert len(rows) == 1 and rows[0].get("tier", "TIER_UNSPECIFIED") == "TIER_UNSPECIFIED"
    assert I(rep, "unlabeled_creators") == I(rows[0], "creators") > 0
    assert "tier scoring" in rep["tier_labels_error"]
    assert rows[0]["impression_share"] == 1.0


def test_list_top_creators_pages(attr):
    v, p = uid("v"), uid("p")
    cs = [uid("top") for _ in range(5)]
    for k, c in enumerate(cs):
        pk = "%s-%d" % (p, k)
        attr.exposures([exposure(uid("e"), v, c, [pk], "CLICK", T - 100)])
        # amounts far above the other tests' so these five lead
        attr.conversions([conversion(uid("o"), v, pk, 10 ** 12 * (k + 1), T)])
    got, token = [], ""
    for _ in range(10):
        r = attr.call("ListTopCreators", dict(RANGE, page_size=2, page_token=token))
        got += [x["creator_id"] for x in r.get("creators", [])]
        token = r.get("next_page_token", "")
        if len(got) >= 5 or not token:
            break
    assert got[:5] == list(reversed(cs))
    with pytest.raises(grpc.RpcError) as ei:
        attr.call("ListTopCreators", dict(RANGE, page_size=-1))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    r = attr.call("ListTopCreators", dict(RANGE, page_size=2))
    other = {"start_time": rfc3339(TODAY - 10 * DAY), "end_time": RANGE["end_time"]}
    with pytest.raises(grpc.RpcError) as ei:
        attr.call("ListTopCreators", dict(other, page_token=r["next_page_token"]))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- settings -------------------------------------------------------------------------------


def test_settings_change_restates_and_persists(fresh_attr):
    a = fresh_attr
    o, cr, _, _ = seed_three_clicks(a)
    assert touches(a.explain(o, "ATTRIBUTION_MODEL_FIRST_TOUCH"))[0] == (cr["A"], 1001, 1.0)
    # Clicks count 2 days only: A (3 d) falls out; B (exactly 2 d) stays (inclusive).
    s = a.call("UpdateAttributionSettings", {"settings": {"click_window": "172800s"},
                                             "update_mask": "clickWindow"})
    assert s["click_window"] == "172800s" and I(s, "version") == 2
    ex = a.explain(o, "ATTRIBUTION_MODEL_FIRST_TOUCH")
    assert touches(ex) == [(cr["B"], 1001, 1.0), (cr["C"], 0, 0.0)]
    assert I(ex, "settings_version") == 2
    assert I(a.creator(cr["A"], "ATTRIBUTION_MODEL_FIRST_TOUCH"), "attributed_gmv_minor") == 0
    assert I(a.creator(cr["B"], "ATTRIBUTION_MODEL_FIRST_TOUCH"), "attributed_gmv_minor") == 1001
    # The default model: UNSPECIFIED now means LINEAR.
    a.call("UpdateAttributionSettings", {"settings": {"default_model": "ATTRIBUTION_MODEL_LINEAR"}})
    ex = a.explain(o)
    assert ex["model"] == "ATTRIBUTION_MODEL_LINEAR"
    assert [m for _, m, _ in touches(ex)] == [500, 501]
    # No click window left at all (1 s): the engaged view of D wins.
    a.call("UpdateAttributionSettings", {"settings": {"click_window": "1s"},
                                         "update_mask": "clickWindow"})
    assert touches(a.explain(o)) == [(cr["D"], 1001, 1.0)]
    # Survives a restart: settings and the restated result.
    a.srv.restart()
    s = a.call("GetAttributionSettings")
    assert I(s, "version") == 4 and s["click_window"] == "1s"
    assert s["default_model"] == "ATTRIBUTION_MODEL_LINEAR"
    assert touches(a.explain(o)) == [(cr["D"], 1001, 1.0)]
    # Bad updates name the field.
    for req, field in (({"settings": {"click_window": "0s"}, "update_mask": "clickWindow"},
                        "click_window"),
                       ({"settings": {"currency": "cny"}, "update_mask": "currency"}, "currency"),
                       ({"settings": {}, "update_mask": "nope"}, "update_mask"),
                       ({"settings": {"engaged_view_ms": "-1"}, "update_mask": "engagedViewMs"},
                        "engaged_view_ms")):
        with pytest.raises(grpc.RpcError) as ei:
            a.call("UpdateAttributionSettings", req)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, req
        assert field in ei.value.details()
    # The currency cannot change under stored conversions.
    with pytest.raises(grpc.RpcError) as ei:
        a.call("UpdateAttributionSettings", {"settings": {"currency": "USD"}})
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# -- durability -----------------------------------------------------------------------------


def test_kill9_after_acknowledged_batches_keeps_each_exactly_once(fresh_attr):
    a = fresh_attr
    c, p = uid("c"), uid("p")
    batches = []
    for b in range(8):
        v = uid("v")
        batches.append([exposure("%s-%d-%d" % (c, b, k), v, c, [p, uid("q")],
                                 ["IMPRESSION", "VIEW", "CLICK"][k % 3], NOW - 600 - k,
                                 watch_ms=k)
                        for k in range(1000)])
    orders = []
    for b, batch in enumerate(batches):
        s = a.exposures(batch)
        assert I(s, "accepted") == 1000
        o = uid("o")
        s = a.conversions([conversion(o, batch[0]["viewer_id"], p, 1000 + b, NOW - 60)])
        assert I(s, "accepted") == 1
        orders.append(o)
    # The moment after the last acknowledgment: SIGKILL, no grace.
    assert a.srv.kill9() == -9
    a.srv.start()
    r = a.creator(c)
    # 8 x 1000, kinds k % 3: 334 impressions, 333 views, 333 clicks per batch.
    assert (I(r, "impressions"), I(r, "views"), I(r, "clicks")) == (8 * 334, 8 * 333, 8 * 333)
    assert I(r, "attributed_gmv_minor") == sum(1000 + b for b in range(8))
    for o in orders:
        assert a.explain(o)["attributed"] is True
    # Resending every batch after the restart: all duplicates, totals unchanged.
    for batch in batches:
        s = a.exposures(batch)
        assert I(s, "accepted") == 0 and I(s, "duplicates") == 1000
    s = a.conversions([conversion(o, "x", "y", 1, NOW) for o in orders])
    assert I(s, "duplicates") == len(orders)
    r = a.creator(c)
    assert I(r, "impressions") == 8 * 334


def test_kill9_under_load_loses_no_acknowledged_event(fresh_attr):
    """A writer keeps sending; SIGKILL lands at a random point. Every acknowledged
    batch is there after restart; an unacknowledged one is there whole or not at all."""
    a = fresh_attr
    c, p = uid("c"), uid("p")
    acked, sent = [], []
    stop = threading.Event()
    ch = a.srv.new_channel()
    from ywclient import DynamicClient
    cl = DynamicClient(ch)

    def writer():
        b = 0
        while not stop.is_set() and b < 200:
            batch = [exposure("%s-%d-%d" % (c, b, k), "v", c, [p], "IMPRESSION", NOW - 60)
                     for k in range(500)]
            sent.append(b)
            try:
                s = cl.call(ATTR + "/RecordExposures", {"events": batch}, timeout=10)
            except grpc.RpcError:
                return
            assert I(s, "accepted") == 500
            acked.append(b)
            b += 1

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    a.srv.kill9()
    stop.set()
    t.join(timeout=20)
    ch.close()
    assert len(acked) > 0
    a.srv.start()
    n = I(a.creator(c), "impressions")
    assert n % 500 == 0, n  # whole batches only (one frame each)
    assert len(acked) * 500 <= n <= len(sent) * 500


def test_sigterm_restart_replays_the_log(fresh_attr):
    a = fresh_attr
    o, cr, _, _ = seed_three_clicks(a)
    before = a.explain(o, "ATTRIBUTION_MODEL_TIME_DECAY")
    a.srv.restart()
    assert a.explain(o, "ATTRIBUTION_MODEL_TIME_DECAY") == before
    assert I(a.creator(cr["E"]), "impressions") == 1
    assert I(a.creator(cr["D"]), "views") == 1
    exp_dir = os.path.join(a.srv.data_dir, "exposures")
    assert len([f for f in os.listdir(exp_dir) if f.endswith(".log")]) >= 2


def test_torn_tail_is_cut_at_restart(fresh_attr):
    a = fresh_attr
    c = uid("c")
    a.exposures([exposure(uid("e"), "v", c, ["p"], "IMPRESSION", NOW - 60) for _ in range(10)])
    a.srv.kill9()
    exp_dir = os.path.join(a.srv.data_dir, "exposures")
    last = sorted(f for f in os.listdir(exp_dir) if f.endswith(".log"))[-1]
    with open(os.path.join(exp_dir, last), "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage-of-a-torn-write")
    a.srv.start()
    assert I(a.creator(c), "impressions") == 10
    assert any("torn" in r.get("msg", "") or "truncated" in r.get("msg", "")
               for r in a.srv.log_records())


# -- exposures on disk ------------------------------------------------------------------------


@pytest.fixture
def small_runs_attr(tmp_path_factory):
    """An attribution process whose exposures leave memory every 64 (runs of the exposure
    index), so that nearly all of them are found through the index files on disk."""
    a = Attr(tmp_path_factory, "attribution_small_runs",
             extra=["--index-run-exposures", "64"]).start()
    yield a
    a.stop()


def filler(c, n, tag):
    """n exposures of other viewers and products (they fill runs)."""
    return [exposure("%s-%s-%d" % (c, tag, k), uid("w"), c, [uid("q")], "IMPRESSION", NOW - 900)
            for k in range(n)]


def test_exposures_on_disk_join_dedup_and_survive_restarts(small_runs_attr):
    a = small_runs_attr
    c, v, p = uid("c"), uid("v"), uid("p")
    # The touches of (v, p) in the first batch, then 30 runs' worth of others after them:
    # by the time the order comes, the touches are in index files, not in memory.
    first = [exposure(uid("e"), v, uid("crA"), [p], "CLICK", T - 2 * DAY),
             exposure(uid("e"), v, uid("crB"), [uid("x"), p], "CLICK", T - DAY),
             exposure(uid("e"), v, uid("crI"), [p], "IMPRESSION", T - 60)]
    batches = [first + filler(c, 97, "b0")] + [filler(c, 100, "b%d" % b) for b in range(1, 20)]
    for batch in batches:
        assert I(a.exposures(batch), "accepted") == 100
    exp_dir = os.path.join(a.srv.data_dir, "exposures")
    files = [f for f in os.listdir(exp_dir) if f.endswith(".xidx")]
    assert files, "no index file was written"
    # Clicks win; last touch: B (a day before). Linear over the two clicks: 500 / 501.
    o = uid("o")
    assert I(a.conversions([conversion(o, v, p, 1001, T)]), "accepted") == 1
    A, B = first[0]["creator_id"], first[1]["creator_id"]
    assert touches(a.explain(o)) == [(A, 0, 0.0), (B, 1001, 1.0)]
    assert [m for _, m, _ in touches(a.explain(o, "ATTRIBUTION_MODEL_LINEAR"))] == [500, 501]
    # Resending: every id is found (memory or disk), nothing counted twice.
    for batch in batches[:3] + batches[-2:]:
        s = a.exposures(batch)
        assert I(s, "accepted") == 0 and I(s, "duplicates") == 100, s
    assert I(a.creator(c), "impressions") == 1997
    # A late click (after the order came, before its time): it joins at once.
    late = exposure(uid("e"), v, uid("crL"), [p], "CLICK", T - 30)
    assert I(a.exposures([late]), "accepted") == 1
    assert touches(a.explain(o))[-1] == (late["creator_id"], 1001, 1.0)
    before = a.explain(o, "ATTRIBUTION_MODEL_TIME_DECAY")
    # A restart loads the index files; a kill -9 reads the log's tail again.
    a.srv.restart()
    assert a.explain(o, "ATTRIBUTION_MODEL_TIME_DECAY") == before
    assert I(a.creator(c), "impressions") == 1997
    more = filler(c, 100, "b20")
    assert I(a.exposures(more), "accepted") == 100
    assert a.srv.kill9() == -9
    a.srv.start()
    assert I(a.creator(c), "impressions") == 2097
    for batch in (batches[0], batches[10], more):
        s = a.exposures(batch)
        assert I(s, "accepted") == 0 and I(s, "duplicates") == 100, s
    # An order after the restarts finds its touches on disk.
    o2 = uid("o")
    assert I(a.conversions([conversion(o2, v, p, 77, T + 10)]), "accepted") == 1
    assert touches(a.explain(o2))[-1] == (late["creator_id"], 77, 1.0)
    assert len(touches(a.explain(o2))) == 3


# -- three services -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """creator profile -> tier scoring -> attribution, three real processes."""
    base = tmp_path_factory.mktemp("stack")
    procs = {}
    for name, rel in (("creator_profile", CREATOR_BIN), ("tier_scoring", TIER_BIN)):
        d = base / name
        d.mkdir()
        (d / "data").mkdir()
        extra = []
        if name == "tier_scoring":
            extra = ["--creator-profile-addr", procs["creator_profile"].address,
                     "--refresh-interval-ms", "300"]
        procs[name] = ServerProcess(binary_path(rel), str(d / "data"), str(d), extra,
                                    name=name).start()
    a = Attr(tmp_path_factory, "stack_attribution", tier_addr=procs["tier_scoring"].address,
             extra=["--tier-label-ttl-s", "0"]).start()
    yield procs["creator_profile"], procs["tier_scoring"], a
    a.stop()
    procs["tier_scoring"].stop()
    procs["creator_profile"].stop()


def test_tier_report_with_three_services(stack):
    cp, ts, a = stack
    tag = uuid.uuid4().hex[:6]
    plan = {"TIER_HEAD": ("head", 2000000), "TIER_MID": ("mid", 100000),
            "TIER_TAIL": ("tail", 10000), "TIER_AMATEUR": ("amateur", 100)}
    ids = {}
    for tier, (name, followers) in plan.items():
        cid = "%s_%s" % (name, tag)
        ids[tier] = cid
        cp.client.call(CREATOR + "/CreateCreator",
                       {"creator": {"creator_id": cid, "display_name": cid,
                                    "followers": str(followers)}})
    unknown = "ghost_" + tag          # tier scoring does not know it
    odd = "奇怪的-" + tag              # not even a valid id there
    # Labels come from tier scoring's population: have it read the new creators now.
    ts.client.call(TIER + "/RefreshPopulation", {})
    v, p = uid("v"), uid("p")
    # Impressions: head 6, mid 2, tail 1, amateur 1, ghost 0 (a click only), odd 0.
    ev = []
    for tier, n in (("TIER_HEAD", 6), ("TIER_MID", 2), ("TIER_TAIL", 1), ("TIER_AMATEUR", 1)):
        ev += [exposure(uid("e"), uid("w"), ids[tier], [uid("z")], "IMPRESSION", T - 60)
               for _ in range(n)]
    # Orders: mid sells 3000, tail 1000, ghost 500 (last touch each).
    sales = ((ids["TIER_MID"], 3000), (ids["TIER_TAIL"], 1000), (unknown, 500), (odd, 250))
    convs = []
    for cid, amount in sales:
        vv, pp = uid("v"), uid("p")
        ev.append(exposure(uid("e"), vv, cid, [pp], "CLICK", T - 120))
        convs.append(conversion(uid("o"), vv, pp, amount, T))
    assert I(a.exposures(ev), "accepted") == len(ev)
    assert I(a.conversions(convs), "accepted") == len(convs)
    a.conversions([conversion(uid("o"), v, p, 77, T)])  # unattributed
    rep = a.call("GetTierReport", RANGE, timeout=20)
    assert rep.get("tier_labels_error", "") == ""
    rows = {r.get("tier", "TIER_UNSPECIFIED"): r for r in rep["rows"]}
    assert I(rows["TIER_HEAD"], "impressions") == 6
    assert I(rows["TIER_MID"], "impressions") == 2
    assert I(rows["TIER_MID"], "attributed_gmv_minor") == 3000
    assert I(rows["TIER_TAIL"], "attributed_gmv_minor") == 1000
    assert I(rows["TIER_UNSPECIFIED"], "attributed_gmv_minor") == 750
    assert I(rows["TIER_UNSPECIFIED"], "creators") == 2
    assert I(rep, "unlabeled_creators") == 2
    assert I(rep, "unattributed_conversions") == 1 and I(rep, "unattributed_gmv_minor") == 77
    # Shares and lift: 10 impressions, 4750 of GMV.
    assert rows["TIER_HEAD"]["impression_share"] == pytest.approx(0.6)
    assert rows["TIER_MID"]["gmv_share"] == pytest.approx(3000 / 4750)
    assert rows["TIER_MID"]["lift"] == pytest.approx((3000 / 4750) / 0.2)
    assert rows["TIER_MID"]["gpm"] == pytest.approx(3000 * 1000 / 2)
    assert rows["TIER_HEAD"].get("lift", 0) == 0  # no GMV
    assert sum(I(r, "attributed_gmv_minor") for r in rep["rows"]) == 4750
    # Top creators of the MID and TAIL tiers, by GMV.
    top = a.call("ListTopCreators", dict(RANGE, tiers=["TIER_MID", "TIER_TAIL"]), timeout=20)
    names = [(x["creator_id"], x["tier"]) for x in top["creators"]]
    assert names == [(ids["TIER_MID"], "TIER_MID"), (ids["TIER_TAIL"], "TIER_TAIL")]
    # Tier scoring down: the report still answers, says why, unlabelled as UNSPECIFIED.
    ts.terminate()
    try:
        rep = a.call("GetTierReport", RANGE, timeout=20)
        assert "tier scoring" in rep["tier_labels_error"]
        assert sum(I(r, "attributed_gmv_minor") for r in rep["rows"]) == 4750
    finally:
        ts.start()


# -- tier labels after a load ---------------------------------------------------------------

def scrape_counter(port, name, method):
    """A counter of a service's /metrics for one method (0 when absent)."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and 'grpc_method="%s"' % method in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.fixture
def load_stack(tmp_path_factory):
    """Three processes with metrics: tier scoring refreshes by itself only at start-up,
    attribution keeps labels for the default TTL."""
    base = tmp_path_factory.mktemp("load_stack")
    procs = {}
    for name, rel in (("creator_profile", CREATOR_BIN), ("tier_scoring", TIER_BIN)):
        d = base / name
        d.mkdir()
        (d / "data").mkdir()
        port = free_port()
        extra = ["--metrics-listen", "127.0.0.1:%d" % port]
        if name == "tier_scoring":
            extra += ["--creator-profile-addr", procs["creator_profile"].address,
                      "--refresh-interval-ms", "600000"]
        procs[name] = ServerProcess(binary_path(rel), str(d / "data"), str(d), extra,
                                    name=name)
        procs[name].metrics_port = port
        procs[name].start()
    a = Attr(tmp_path_factory, "load_attribution",
             tier_addr=procs["tier_scoring"].address).start()
    yield procs["creator_profile"], procs["tier_scoring"], a
    a.stop()
    procs["tier_scoring"].stop()
    procs["creator_profile"].stop()


def test_tier_report_labels_every_creator_after_a_load(load_stack):
    """4,100 creators (5 label batches: more than the 4 attribution keeps in flight) are
    created and seen by attribution; after one RefreshPopulation the first tier report
    labels every one of them, from tier scoring's memory: no score is computed and
    creator profile is not read for it."""
    cp, ts, a = load_stack
    n = 4100
    cut = [(0, "TIER_AMATEUR"), (5000, "TIER_TAIL"), (50000, "TIER_MID"), (500000, "TIER_HEAD")]

    def followers(i):
        return [0, 7000, 80000, 900000][i % 4] + i

    def create(i):
        cid = "load-%05d" % i
        cp.client.call(CREATOR + "/CreateCreator", {"creator": {
            "creator_id": cid, "display_name": cid, "followers": str(followers(i))}})

    create(0)  # loads the types once, before the threads share the client
    errors = []

    def worker(k):
        try:
            for i in range(1 + k, n, 8):
                create(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    ev = [exposure(uid("e"), uid("w"), "load-%05d" % i, [uid("p")], "IMPRESSION", T - 60)
          for i in range(n)]
    assert I(a.exposures(ev), "accepted") == n
    got = ts.client.call(TIER + "/RefreshPopulation", {}, timeout=30)
    assert I(got, "total_creators") == n
    cp_reads = scrape_counter(cp.metrics_port, "grpc_server_started_total", "BatchGetCreators")

    rep = a.call("GetTierReport", RANGE, timeout=20)
    assert rep.get("tier_labels_error", "") == "", rep["tier_labels_error"]
    assert I(rep, "unlabeled_creators") == 0
    want = {}
    for i in range(n):
        tier = [t for floor, t in cut if followers(i) >= floor][-1]
        want[tier] = want.get(tier, 0) + 1
    assert {r["tier"]: I(r, "creators") for r in rep["rows"]} == want
    # Five BatchGetCreatorTiers calls of at most 1,000 ids; no BatchScoreCreators; and
    # nothing read from creator profile on the report's behalf. A call is counted handled
    # once the server has finished it, which can be just after its caller had the reply:
    # the count is waited for (and must not go past 5).
    deadline = time.monotonic() + 5
    while (scrape_counter(ts.metrics_port, "grpc_server_handled_total",
                          "BatchGetCreatorTiers") < 5 and time.monotonic() < deadline):
        time.sleep(0.02)
    assert scrape_counter(ts.metrics_port, "grpc_server_handled_total",
                          "BatchGetCreatorTiers") == 5
    assert scrape_counter(ts.metrics_port, "grpc_server_started_total",
                          "BatchScoreCreators") == 0
    assert scrape_counter(cp.metrics_port, "grpc_server_started_total",
                          "BatchGetCreators") == cp_reads
    # Cached for the TTL: the next report asks nothing.
    rep = a.call("GetTierReport", RANGE, timeout=20)
    assert I(rep, "unlabeled_creators") == 0
    assert scrape_counter(ts.metrics_port, "grpc_server_handled_total",
                          "BatchGetCreatorTiers") == 5


def test_creators_tier_scoring_has_not_read_yet_are_unlabelled_then_labelled(load_stack):
    """A creator created after tier scoring's last refresh is not_found there: the report
    counts it unlabelled (no error), and labels it once a refresh read it and the short
    not_found cache (1 minute at most; here the refresh is forced and the label TTL is
    the default) has expired — shown with a second creator instead, asked for the first
    time after the refresh."""
    cp, ts, a = load_stack
    early, late = "early-" + uid("c"), "late-" + uid("c")
    for cid in (early, late):
        cp.client.call(CREATOR + "/CreateCreator", {"creator": {
            "creator_id": cid, "display_name": cid, "followers": "60000"}})
    # Only `early` has exposures before the first report.
    a.exposures([exposure(uid("e"), uid("w"), early, [uid("p")], "IMPRESSION", T - 60)])
    rep = a.call("GetTierReport", RANGE, timeout=20)
    assert rep.get("tier_labels_error", "") == ""
    assert I(rep, "unlabeled_creators") == 1
    ts.client.call(TIER + "/RefreshPopulation", {})
    a.exposures([exposure(uid("e"), uid("w"), late, [uid("p")], "IMPRESSION", T - 60)])
    rep = a.call("GetTierReport", RANGE, timeout=20)
    rows = {r.get("tier", "TIER_UNSPECIFIED"): I(r, "creators") for r in rep["rows"]}
    # `late` is labelled; `early` waits for its not_found to expire.
    assert rows == {"TIER_MID": 1, "TIER_UNSPECIFIED": 1}, rows
