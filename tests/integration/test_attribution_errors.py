"""IngestSummary.errors (issue 11 A): "the first 100 rejected events, in order" for every
ingest method. Events are rejected at validation as they arrive and, for refunds, later,
once the refunded orders have been looked up (unknown order, more than what is left);
whatever the stage, the errors come back ascending by index, and past 100 they are the
100 lowest rejected indexes.

Needs: bazel build //services/attribution:attribution.
"""

import grpc
import pytest

from test_attribution import NOW, Attr, I, conversion, exposure, refund, uid


@pytest.fixture(scope="module")
def attr(tmp_path_factory):
    # Exposures leave memory every 64 (index runs): duplicates are found on disk.
    a = Attr(tmp_path_factory, "attribution_errors", extra=["--index-run-exposures", "64"]).start()
    yield a
    a.stop()


def indexes(summary):
    return [I(x, "index") for x in summary.get("errors", [])]


def reasons(summary):
    return {I(x, "index"): x["reason"] for x in summary.get("errors", [])}


def bad_exposure(k, v, c, p):
    """An exposure broken in one of four ways, by k."""
    e = exposure(uid("e"), v, c, [p], "CLICK", NOW - 60)
    if k % 4 == 0:
        e["viewer_id"] = ""
    elif k % 4 == 1:
        e["product_ids"] = []
    elif k % 4 == 2:
        e["watch_ms"] = "-1"
    else:
        e["occur_time"] = exposure("x", v, c, [p], "CLICK", NOW + 3600)["occur_time"]
    return e


def bad_conversion(k, v, p):
    c = conversion(uid("o"), v, p, 100, NOW - 60)
    if k % 3 == 0:
        c["amount_minor"] = "0"
    elif k % 3 == 1:
        c["currency"] = "USD"
    else:
        c["product_id"] = ""
    return c


def store_then_bury(attr, v, c, p):
    """8 exposures stored, then 200 others, so that the 8 are looked up on disk."""
    stored = [exposure(uid("e"), v, c, [p], "VIEW", NOW - 90) for _ in range(8)]
    assert I(attr.exposures(stored), "accepted") == 8
    others = [exposure(uid("e"), uid("w"), c, [uid("q")], "IMPRESSION", NOW - 90)
              for _ in range(200)]
    assert I(attr.exposures(others), "accepted") == 200
    return stored


def mixed_exposures(v, c, p, stored):
    """Ok, duplicate (of `stored`: looked up) and rejected exposures; returns the events
    and the rejected indexes."""
    events, bad = [], []
    for k in range(40):
        if k % 5 in (1, 3):
            events.append(bad_exposure(k, v, c, p))
            bad.append(k)
        elif k % 5 == 2 and stored:
            events.append(stored.pop())
        else:
            events.append(exposure(uid("e"), v, c, [p], "IMPRESSION", NOW - 60))
    return events, bad


def test_record_exposures_errors_ascend_past_duplicates(attr):
    v, c, p = uid("v"), uid("c"), uid("p")
    stored = store_then_bury(attr, v, c, p)
    events, bad = mixed_exposures(v, c, p, list(stored))
    s = attr.exposures(events)
    assert I(s, "duplicates") == 8 and I(s, "rejected") == len(bad)
    assert indexes(s) == bad
    r = reasons(s)
    assert r[1].startswith("product_ids:") and r[3].startswith("occur_time:")


def test_ingest_exposures_stream_errors_ascend(attr):
    v, c, p = uid("v"), uid("c"), uid("p")
    stored = store_then_bury(attr, v, c, p)
    events, bad = mixed_exposures(v, c, p, list(stored))
    s = attr.stream("IngestExposures", events)
    assert I(s, "duplicates") == 8 and I(s, "rejected") == len(bad)
    assert indexes(s) == bad


def mixed_conversions(v, p, stored):
    events, bad = [], []
    for k in range(30):
        if k % 4 in (0, 3):
            events.append(bad_conversion(k, v, p))
            bad.append(k)
        elif k % 4 == 1 and stored:
            events.append(stored.pop())
        else:
            events.append(conversion(uid("o"), v, p, 100 + k, NOW - 60))
    return events, bad


def test_record_conversions_errors_ascend(attr):
    v, p = uid("v"), uid("p")
    stored = [conversion(uid("o"), v, p, 50, NOW - 90) for _ in range(7)]
    assert I(attr.conversions(stored), "accepted") == 7
    events, bad = mixed_conversions(v, p, list(stored))
    s = attr.conversions(events)
    assert I(s, "duplicates") == 7 and I(s, "rejected") == len(bad)
    assert indexes(s) == bad


def test_ingest_conversions_stream_errors_ascend(attr):
    v, p = uid("v"), uid("p")
    stored = [conversion(uid("o"), v, p, 50, NOW - 90) for _ in range(7)]
    assert I(attr.conversions(stored), "accepted") == 7
    events, bad = mixed_conversions(v, p, list(stored))
    s = attr.stream("IngestConversions", events)
    assert I(s, "duplicates") == 7 and I(s, "rejected") == len(bad)
    assert indexes(s) == bad


def test_record_refunds_errors_ascend_across_stages(attr):
    """The case of the issue: five bad refunds, rejected at validation (1, 3) and after
    the order lookup (0: unknown order, 2: more than is left, 4: unknown order)."""
    v, p, o = uid("v"), uid("p"), uid("o")
    assert I(attr.conversions([conversion(o, v, p, 1000, NOW - 60)]), "accepted") == 1
    s = attr.refunds([
        refund(uid("r"), uid("o"), 10),     # 0 unknown order (after the lookup)
        refund(uid("r"), o, 0),             # 1 amount 0 (validation)
        refund(uid("r"), o, 5000),          # 2 more than is left (after the lookup)
        refund("", o, 10),                  # 3 no refund_id (validation)
        refund(uid("r"), uid("o"), 10),     # 4 unknown order
    ])
    assert (I(s, "accepted"), I(s, "rejected")) == (0, 5)
    assert indexes(s) == [0, 1, 2, 3, 4]
    r = reasons(s)
    assert r[0].startswith("order_id:") and r[4].startswith("order_id:")
    assert r[1].startswith("amount_minor:") and r[3].startswith("refund_id:")
    assert r[2].startswith("amount_minor:") and "1000" in r[2]
    # With good and duplicate refunds between them, and an earlier refund of the batch
    # counting against what is left.
    r1 = uid("r")
    s = attr.refunds([
        refund(r1, o, 600),                 # 0 ok, 400 left
        refund(uid("r"), o, -1),            # 1 validation
        refund(uid("r"), o, 401),           # 2 more than is left
        refund(r1, o, 600),                 # 3 duplicate
        refund(uid("r"), uid("o"), 1),      # 4 unknown order
        refund(uid("r"), o, 400),           # 5 ok
        refund(uid("r"), "", 1),            # 6 validation
        refund(uid("r"), o, 1),             # 7 nothing left
    ])
    assert (I(s, "accepted"), I(s, "duplicates"), I(s, "rejected")) == (2, 1, 5)
    assert indexes(s) == [1, 2, 4, 6, 7]


def test_more_than_100_rejects_list_the_lowest_100(attr):
    """250 rejects in each method. Refunds: the even indexes fail only after the order
    lookup, the odd ones at validation, so the first 100 discovered would be the odd
    ones; the summary lists indexes 0..99."""
    v, c, p, o = uid("v"), uid("c"), uid("p"), uid("o")
    assert I(attr.conversions([conversion(o, v, p, 10**9, NOW - 60)]), "accepted") == 1
    refunds = [refund(uid("r"), uid("o"), 1) if k % 2 == 0 else refund(uid("r"), o, 0)
               for k in range(250)]
    s = attr.refunds(refunds)
    assert I(s, "rejected") == 250
    assert indexes(s) == list(range(100))
    # Every other method: rejects at 0, 2, 4, ... among good events.
    ex = [bad_exposure(k, v, c, p) if k % 2 == 0 else
          exposure(uid("e"), v, c, [p], "IMPRESSION", NOW - 60) for k in range(500)]
    want = list(range(0, 200, 2))
    for s in (attr.exposures(ex), attr.stream("IngestExposures",
                                               [dict(e, event_id=uid("e")) for e in ex])):
        assert I(s, "rejected") == 250 and I(s, "accepted") == 250
        assert indexes(s) == want
    cv = [bad_conversion(k, v, p) if k % 2 == 0 else conversion(uid("o"), v, p, 5, NOW - 60)
          for k in range(500)]
    for s in (attr.conversions(cv), attr.stream("IngestConversions",
                                                 [dict(x, order_id=uid("o")) for x in cv])):
        assert I(s, "rejected") == 250 and I(s, "accepted") == 250
        assert indexes(s) == want


@pytest.mark.parametrize("method", ["IngestExposures", "IngestConversions"])
def test_a_stream_whose_message_does_not_parse_fails_and_keeps_what_came_before(attr, method):
    """A client stream with a message that is not protobuf after many good ones: the
    runtime fails the call INVALID_ARGUMENT; the events admitted before are written (sent
    again, they are duplicates); nothing of the call is left behind (the sanitizer build
    catches a leak at SIGTERM) and the service serves on."""
    from google.protobuf import json_format

    c = attr.srv.client
    cls = c.message_class(c.method("yaowei.attribution.v1.AttributionService/" + method)
                          .input_type)
    tag = uid("bad-stream")
    if method == "IngestExposures":
        good = [exposure("%s-e%d" % (tag, i), "%s-v%d" % (tag, i), "c", ["p"], "CLICK", NOW - 60)
                for i in range(3000)]
    else:
        good = [conversion("%s-o%d" % (tag, i), "%s-v%d" % (tag, i), "p", 100, NOW - 60)
                for i in range(3000)]

    def frames():
        for e in good:
            m = cls()
            json_format.ParseDict(e, m)
            yield m.SerializeToString()
        yield b"\xff\xff\xff"

    stub = attr.srv.channel.stream_unary(
        "/yaowei.attribution.v1.AttributionService/" + method,
        request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        stub(frames(), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    record = "RecordExposures" if method == "IngestExposures" else "RecordConversions"
    s = attr.call(record, {"events": good[:1000]})
    assert I(s, "duplicates") + I(s, "accepted") == 1000, s
    assert I(s, "duplicates") > 0, s  # what came before the bad message was written
    attr.srv.assert_alive()
