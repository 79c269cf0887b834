"""Strings are UTF-8 (issue 12, part 3): proto3 `string` fields must hold UTF-8, and a
generated client cannot parse a reply whose strings do not.

Before the fix attribution stored ids with bytes like \\xff\\xfe or \\xed\\xa0\\x80, its
replies then failed to parse in the client (ListTopCreators pages holding such a
creator, ExplainConversion), a rejected currency was quoted raw in the reason, and
some log lines were not valid UTF-8 JSON. Now the runtime checks every string field of
every request of the three services before the handler runs (INVALID_ARGUMENT naming
the field); attribution's batches and streams check each event (the bad one is
rejected alone, the valid ones beside it are stored); reasons quote values escaped;
every log line is UTF-8 JSON; and a reply built from data stored before (an old data
directory) goes out with U+FFFD in place of the bad bytes.

Requests with bad bytes cannot be written as JSON: they are the serialized valid message
with the bad field appended (for a singular field the last occurrence wins; for a
repeated one it adds an element).

Needs: bazel build //services/...
"""

import json
import os
import sqlite3
import time

import grpc
import pytest
from google.protobuf import json_format

from test_attribution import ATTR, CREATOR, NOW, RANGE, T, TIER, Attr, I, conversion, exposure
from test_attribution import refund, uid
from test_attribution import stack  # noqa: F401 (the fixture: the three services)

BAD = (b"\xff\xfe", b"\xed\xa0\x80")  # not UTF-8; a UTF-16 surrogate in UTF-8 form
SUMMARY = "yaowei.attribution.v1.IngestSummary"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_bytes(msg, field, raw):
    """`msg` serialized, with string field `field` (a singular one: replaced; a repeated
    one: one more element) set to the raw bytes `raw`."""
    num = msg.DESCRIPTOR.fields_by_name[field].number
    return msg.SerializeToString() + varint(num << 3 | 2) + varint(len(raw)) + raw


def message(client, type_name, d):
    m = client.message_class(type_name)()
    json_format.ParseDict(d, m)
    return m


def batch(events_raw):
    """A Record*Request (field 1: repeated events) of serialized events."""
    return b"".join(varint(1 << 3 | 2) + varint(len(e)) + e for e in events_raw)


def invalid(fn):
    """The details of the INVALID_ARGUMENT that fn() must raise."""
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
    return ei.value.details()


def attr_raw(a, method, payload, stream=False):
    """An attribution call with raw request bytes; the reply parsed as IngestSummary (a
    client that cannot parse it fails here, as generated clients do)."""
    resp_cls = a.srv.client.message_class(SUMMARY)
    path = "/%s/%s" % (ATTR, method)
    if stream:
        stub = a.srv.channel.stream_unary(path, request_serializer=lambda b: b,
                                          response_deserializer=resp_cls.FromString)
        return a.srv.client.to_dict(stub(iter(payload), timeout=30))
    stub = a.srv.channel.unary_unary(path, request_serializer=lambda b: b,
                                     response_deserializer=resp_cls.FromString)
    return a.srv.client.to_dict(stub(payload, timeout=30))


def errors(summary):
    return [(I(e, "index"), e["reason"]) for e in summary.get("errors", [])]


def all_top_creators(a):
    """Every page of ListTopCreators over RANGE (each must parse); the creator ids."""
    ids, token = [], ""
    for _ in range(1000):
        r = a.call("ListTopCreators", dict(RANGE, page_size=7, page_token=token))
        ids += [x["creator_id"] for x in r.get("creators", [])]
        token = r.get("next_page_token", "")
        if not token:
            return ids
    raise AssertionError("ListTopCreators does not end")


EXPOSURE_FIELDS = ("event_id", "viewer_id", "creator_id", "note_id", "product_ids")


@pytest.mark.parametrize("bad", BAD, ids=("ff_fe", "surrogate"))
@pytest.mark.parametrize("stream", (False, True), ids=("RecordExposures", "IngestExposures"))
def test_an_exposure_with_bad_bytes_is_rejected_alone(stack, bad, stream):
    _, _, a = stack
    c = a.srv.client
    goods, events, creators = [], [], []
    for k, field in enumerate(EXPOSURE_FIELDS):
        cid = uid("c")
        creators.append(cid)
        e = message(c, "yaowei.attribution.v1.ExposureEvent",
                    exposure(uid("e"), uid("v"), cid, [uid("p")], "CLICK", NOW - 60))
        events.append(with_bytes(e, field, bad))  # index 2k: bad
        good = message(c, "yaowei.attribution.v1.ExposureEvent",
                       exposure(uid("e"), uid("v"), uid("good"), [uid("p")], "CLICK", NOW - 60))
        goods.append(good.creator_id)
        events.append(good.SerializeToString())  # index 2k + 1: fine
    if stream:
        s = attr_raw(a, "IngestExposures", events, stream=True)
    else:
        s = attr_raw(a, "RecordExposures", batch(events))
    assert I(s, "accepted") == len(EXPOSURE_FIELDS)
    assert I(s, "rejected") == len(EXPOSURE_FIELDS)
    want = [(2 * k, "%s: must be valid UTF-8" % ("product_ids[1]" if f == "product_ids" else f))
            for k, f in enumerate(EXPOSURE_FIELDS)]
    assert errors(s) == want
    # Nothing of the bad ones was stored; the good ones were; every page parses.
    listed = all_top_creators(a)
    assert set(goods) <= set(listed)
    assert not set(creators) & set(listed)
    assert not any("\ufffd" in x for x in listed)


@pytest.mark.parametrize("stream", (False, True), ids=("RecordConversions", "IngestConversions"))
def test_a_conversion_with_bad_bytes_is_rejected_alone(stack, stream):
    _, _, a = stack
    c = a.srv.client
    fields = ("order_id", "viewer_id", "product_id", "currency")
    events, orders = [], []
    for k, field in enumerate(fields):
        o = uid("o")
        orders.append(o)
        conv = message(c, "yaowei.attribution.v1.ConversionEvent",
                       conversion(o, uid("v"), uid("p"), 100, NOW - 60))
        events.append(with_bytes(conv, field, BAD[k % 2]))
        good = conversion(uid("o"), uid("v"), uid("p"), 100, NOW - 60)
        orders.append(good["order_id"])
        events.append(message(c, "yaowei.attribution.v1.ConversionEvent",
                              good).SerializeToString())
    if stream:
        s = attr_raw(a, "IngestConversions", events, stream=True)
    else:
        s = attr_raw(a, "RecordConversions", batch(events))
    assert I(s, "accepted") == len(fields) and I(s, "rejected") == len(fields)
    assert errors(s) == [(2 * k, "%s: must be valid UTF-8" % f) for k, f in enumerate(fields)]
    for k, o in enumerate(orders):
        if k % 2 == 1:
            assert a.call("ExplainConversion", {"order_id": o})["order_id"] == o
        elif k != 0:  # (the bad order_id itself cannot be asked for)
            with pytest.raises(grpc.RpcError) as ei:
                a.call("ExplainConversion", {"order_id": o})
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_refund_with_bad_bytes_is_rejected_alone(stack):
    _, _, a = stack
    c = a.srv.client
    o = uid("o")
    assert I(a.conversions([conversion(o, uid("v"), uid("p"), 1000, NOW - 60)]), "accepted") == 1
    r1 = message(c, "yaowei.attribution.v1.RefundEvent", refund(uid("r"), o, 10))
    r2 = message(c, "yaowei.attribution.v1.RefundEvent", refund(uid("r"), o, 20))
    r3 = message(c, "yaowei.attribution.v1.RefundEvent", refund(uid("r"), o, 40))
    s = attr_raw(a, "RecordRefunds", batch([with_bytes(r1, "refund_id", BAD[0]),
                                            r2.SerializeToString(),
                                            with_bytes(r3, "order_id", BAD[1])]))
    assert I(s, "accepted") == 1 and I(s, "rejected") == 2
    assert [e["reason"] for e in s["errors"]] == ["refund_id: must be valid UTF-8",
                                                  "order_id: must be valid UTF-8"]
    assert I(a.call("ExplainConversion", {"order_id": o}), "refunded_minor") == 20


def test_every_other_request_string_is_checked_by_the_runtime(stack):
    cp, ts, a = stack

    def raw(srv, service, method, d, field, bad):
        c = srv.client
        md = c.method("%s/%s" % (service, method))
        m = message(c, md.input_type.full_name, d)
        payload = with_bytes(m, field, bad)
        return lambda: c.call_raw("/%s/%s" % (service, method), payload)

    cases = [
        (a.srv, ATTR, "GetCreatorReport", dict(RANGE, creator_id="c"), "creator_id", "creator_id"),
        (a.srv, ATTR, "ExplainConversion", {"order_id": "o"}, "order_id", "order_id"),
        (a.srv, ATTR, "ListTopCreators", dict(RANGE), "page_token", "page_token"),
        (cp, CREATOR, "GetCreator", {"creator_id": "c"}, "creator_id", "creator_id"),
        (cp, CREATOR, "BatchGetCreators", {"creator_ids": ["a", "b"]}, "creator_ids",
         "creator_ids[2]"),
        (ts, TIER, "BatchGetCreatorTiers", {"creator_ids": ["a"]}, "creator_ids",
         "creator_ids[1]"),
        (ts, TIER, "ScoreCreator", {"creator_id": "c"}, "creator_id", "creator_id"),
    ]
    for srv, service, method, d, field, path in cases:
        for bad in BAD:
            got = invalid(raw(srv, service, method, d, field, bad))
            assert got == "%s: must be valid UTF-8" % path, (method, got)
    # A nested field: its path.
    c = a.srv.client
    req = message(c, "yaowei.attribution.v1.UpdateAttributionSettingsRequest",
                  {"update_mask": "currency"})
    settings = with_bytes(message(c, "yaowei.attribution.v1.AttributionSettings", {}),
                          "currency", BAD[0])
    payload = req.SerializeToString() + varint(1 << 3 | 2) + varint(len(settings)) + settings
    got = invalid(lambda: c.call_raw("/%s/UpdateAttributionSettings" % ATTR, payload))
    assert got == "settings.currency: must be valid UTF-8"
    assert a.call("GetAttributionSettings", {})["currency"] == "CNY"


def test_values_quoted_in_reasons_are_escaped(stack):
    _, _, a = stack
    s = a.conversions([conversion(uid("o"), uid("v"), uid("p"), 100, NOW - 60,
                                  currency="U\x1b[31mSD")])
    assert s["errors"][0]["reason"] == (
        'currency: must be CNY (the deployment\'s) or empty, got "U\\x1b[31mSD"')
    got = invalid(lambda: a.call("UpdateAttributionSettings",
                                 {"settings": {"currency": "\u20ac\u20ac\u20ac"},
                                  "update_mask": "currency"}))
    assert got == ('settings.currency: must be an ISO 4217 code (3 capital letters), got '
                   '"\\xe2\\x82\\xac\\xe2\\x82\\xac\\xe2\\x82\\xac"')


def test_old_data_with_bad_bytes_still_gives_readable_replies(tmp_path_factory):
    """A data directory written before the check: a creator id and a viewer id with bytes
    that are not UTF-8 (put there with sqlite3, as an old binary would have stored them).
    Replies carry U+FFFD in their place and parse."""
    a = Attr(tmp_path_factory, "utf8_old").start()
    try:
        v, p, o = uid("v"), uid("p"), uid("o")
        a.exposures([exposure(uid("e"), v, uid("c"), [p], "CLICK", T - 60)])
        assert I(a.conversions([conversion(o, v, p, 500, T)]), "accepted") == 1
        assert a.srv.terminate() == 0  # a clean stop: everything is in the database
        data = a.srv.data_dir
        snap = os.path.join(data, "attribution.snapshot")
        if os.path.exists(snap):
            os.unlink(snap)  # the next start reads the database
        db = sqlite3.connect(os.path.join(data, "attribution.db"))
        day = T // 86400
        db.execute("INSERT INTO exposure_rollups VALUES (?, ?, 5, 0, 0)",
                   (b"old-\xff\xfe-creator", day))
        db.execute("UPDATE conversions SET viewer_id = ? WHERE order_id = ?",
                   (b"v-\xed\xa0\x80", o))
        db.commit()
        db.close()
        a.srv.start()
        listed = all_top_creators(a)
        assert "old-\ufffd\ufffd-creator" in listed
        rep = a.call("GetTierReport", RANGE)
        assert I(rep["rows"][0], "impressions") == 5 and I(rep["rows"][0], "clicks") == 1
        ex = a.call("ExplainConversion", {"order_id": o})
        assert ex["viewer_id"] == "v-\ufffd\ufffd\ufffd"
        assert I(ex, "amount_minor") == 500
    finally:
        a.stop()
    check_log_files([a.srv])


def check_log_files(procs):
    """Every line every start of these processes wrote is a JSON object, decoded as
    strict UTF-8."""
    n = 0
    for srv in procs:
        for name in sorted(os.listdir(srv.log_dir)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(srv.log_dir, name), "rb") as f:
                for k, line in enumerate(f):
                    try:
                        obj = json.loads(line.decode("utf-8", errors="strict"))
                    except (UnicodeDecodeError, ValueError) as e:
                        raise AssertionError("%s line %d is not UTF-8 JSON (%s): %r"
                                             % (name, k + 1, e, line[:300]))
                    assert isinstance(obj, dict) and "level" in obj
                    n += 1
    assert n > 0


def test_every_log_line_is_utf8_json(stack):
    """Last in this module: the calls above logged their failures (quoting fields and
    values); each line of the three services must parse."""
    cp, ts, a = stack
    # Failures that quote what was asked for: an order id with bad bytes (before the fix:
    # NOT_FOUND, its log line quoting them raw), and a valid but unusual one.
    c = a.srv.client
    for order_id in (b"o-\xff\xfe", b"o-\xed\xa0\x80"):
        payload = with_bytes(message(c, "yaowei.attribution.v1.ExplainConversionRequest", {}),
                             "order_id", order_id)
        with pytest.raises(grpc.RpcError):
            c.call_raw("/%s/ExplainConversion" % ATTR, payload)
    with pytest.raises(grpc.RpcError):
        a.call("ExplainConversion", {"order_id": "\u8170\u5c3e\x01\"\\"})
    time.sleep(0.2)
    check_log_files([cp, ts, a.srv])
