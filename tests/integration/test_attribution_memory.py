"""Attribution's memory is bounded by its configuration (issue 5), black box over gRPC.

The service runs with `--conversion-cache-mb 0` (every conversion goes back to the
database as soon as nothing needs it in memory) and `--index-run-exposures 64` (the
exposures leave memory every 64), so that every path reads back what is not in memory:
ExplainConversion, refunds, a late exposure that joins an order no longer in memory
(through the conversion filter and the conversion key index), a settings change that
restates them, a restart; and the results are the ones the rules give by hand. The
memory gauges (`yaowei_attribution_memory_bytes`) show the cache within its budget.

Needs: bazel build //services/attribution:attribution.
"""

import os
import urllib.request

import pytest

from conftest import free_port
from test_attribution import (DAY, RANGE, T, Attr, I, conversion, exposure, refund, touches,
                              uid)


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("yaowei_attribution_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def memory(m, part):
    return m['yaowei_attribution_memory_bytes{part="%s"}' % part]


@pytest.fixture
def lean_attr(tmp_path_factory):
    """Attribution keeping as little as it may in memory, with metrics."""
    port = free_port()
    a = Attr(tmp_path_factory, "attribution_lean",
             extra=["--conversion-cache-mb", "0", "--index-run-exposures", "64",
                    "--metrics-listen", "127.0.0.1:%d" % port,
                    # The rollups checked against the orders all the time (each check
                    # holds the gate as a restatement does): any drift fails the test.
                    "--audit-rollups-ms", "20"])
    a.metrics_port = port
    a.start()
    yield a
    a.stop()


def three_clicks(a, v, p):
    """Clicks of A (3 d), B (2 d), C (1 d) before T on (v, p); creator ids by letter."""
    cr = {k: uid("cr" + k) for k in "ABC"}
    s = a.exposures([exposure(uid("e"), v, cr["A"], [p], "CLICK", T - 3 * DAY),
                     exposure(uid("e"), v, cr["B"], [p], "CLICK", T - 2 * DAY),
                     exposure(uid("e"), v, cr["C"], [p], "CLICK", T - DAY)])
    assert I(s, "accepted") == 3
    return cr


def others(n, tag):
    """n orders of other viewers and products (they push ours out of the cache)."""
    return [conversion("%s-%d" % (tag, k), uid("w"), uid("q"), 10, T) for k in range(n)]


def test_orders_out_of_memory_are_explained_refunded_and_joined_late(lean_attr):
    a = lean_attr
    v, p, o = uid("v"), uid("p"), uid("o")
    cr = three_clicks(a, v, p)
    assert I(a.conversions([conversion(o, v, p, 900, T)]), "accepted") == 1
    # Many more orders: ours leaves memory once its touches are stored.
    tag = uid("x")
    for b in range(5):
        assert I(a.conversions(others(200, "%s-%d" % (tag, b))), "accepted") == 200
    m = scrape(a.metrics_port)
    assert m['yaowei_attribution_conversion_cache_total{event="evicted"}'] > 0
    # Explained from the database: linear over three clicks, 300 each.
    ex = a.explain(o, "ATTRIBUTION_MODEL_LINEAR")
    assert touches(ex) == [(cr["A"], 300, 1 / 3), (cr["B"], 300, 1 / 3), (cr["C"], 300, 1 / 3)]
    # The same order again is a duplicate (the database says so), and changes nothing.
    s = a.conversions([conversion(o, v, p, 1, T)])
    assert I(s, "duplicates") == 1 and I(s, "accepted") == 0
    # A refund of it: read back into memory, judged, restated (net 600: 200 each).
    s = a.refunds([refund(uid("r"), o, 300), refund(uid("r"), o, 700)])
    assert I(s, "accepted") == 1 and I(s, "rejected") == 1, s
    assert "is more than what is left" in s["errors"][0]["reason"]
    ex = a.explain(o, "ATTRIBUTION_MODEL_LINEAR")
    assert [m for _, m, _ in touches(ex)] == [200, 200, 200]
    assert I(a.creator(cr["C"]), "attributed_gmv_minor") == 600  # last touch
    # Out of memory again; a late click (12 h before the order) joins it at once:
    # the newest click wins under last touch.
    for b in range(5, 8):
        assert I(a.conversions(others(200, "%s-%d" % (tag, b))), "accepted") == 200
    loaded = scrape(a.metrics_port)['yaowei_attribution_conversion_cache_total{event="loaded"}']
    late = uid("crL")
    s = a.exposures([exposure(uid("e"), v, late, [p], "CLICK", T - DAY // 2)])
    assert I(s, "accepted") == 1
    # (It was read back for the exposure: found through the conversion key index.)
    m = scrape(a.metrics_port)
    assert m['yaowei_attribution_conversion_cache_total{event="loaded"}'] == loaded + 1
    assert touches(a.explain(o))[-1] == (late, 600, 1.0)
    assert I(a.creator(late), "attributed_gmv_minor") == 600
    assert I(a.creator(cr["C"]), "attributed_gmv_minor") == 0
    # An exposure after the order does not join it.
    a.exposures([exposure(uid("e"), v, uid("crZ"), [p], "CLICK", T + 60)])
    assert len(touches(a.explain(o))) == 4
    # The cache stayed within what must stay in memory.
    m = scrape(a.metrics_port)
    assert memory(m, "conversion_cache") < 256 * 1024
    assert memory(m, "resident") > 0


def test_settings_restate_orders_out_of_memory_and_survive_restarts(lean_attr):
    a = lean_attr
    v, p, o = uid("v"), uid("p"), uid("o")
    cr = three_clicks(a, v, p)
    assert I(a.conversions([conversion(o, v, p, 1001, T)]), "accepted") == 1
    tag = uid("y")
    for b in range(4):
        assert I(a.conversions(others(250, "%s-%d" % (tag, b))), "accepted") == 250
    # Clicks count 2 days only: A falls out, under first touch B takes it all.
    s = a.call("UpdateAttributionSettings", {"settings": {"click_window": "172800s"},
                                             "update_mask": "clickWindow"})
    assert I(s, "version") == 2
    assert I(a.creator(cr["A"], "ATTRIBUTION_MODEL_FIRST_TOUCH"), "attributed_gmv_minor") == 0
    assert I(a.creator(cr["B"], "ATTRIBUTION_MODEL_FIRST_TOUCH"), "attributed_gmv_minor") == 1001
    ex = a.explain(o, "ATTRIBUTION_MODEL_FIRST_TOUCH")
    assert touches(ex) == [(cr["B"], 1001, 1.0), (cr["C"], 0, 0.0)]
    assert I(ex, "settings_version") == 2
    # The other orders (one to each of their own viewers, no touch): unattributed.
    rep = a.call("GetTierReport", RANGE)
    assert I(rep, "unattributed_conversions") == 1000
    before = [a.explain(o, m) for m in ("ATTRIBUTION_MODEL_LINEAR", "ATTRIBUTION_MODEL_TIME_DECAY")]
    gmv_before = I(a.creator(cr["B"], "ATTRIBUTION_MODEL_LINEAR"), "attributed_gmv_minor")
    # SIGTERM and kill -9: the same answers, from the database and the index files.
    a.srv.restart()
    assert [a.explain(o, m) for m in ("ATTRIBUTION_MODEL_LINEAR",
                                      "ATTRIBUTION_MODEL_TIME_DECAY")] == before
    assert I(a.creator(cr["B"], "ATTRIBUTION_MODEL_LINEAR"), "attributed_gmv_minor") == gmv_before
    assert a.srv.kill9() == -9
    a.srv.start()
    assert [a.explain(o, m) for m in ("ATTRIBUTION_MODEL_LINEAR",
                                      "ATTRIBUTION_MODEL_TIME_DECAY")] == before
    # After the restarts a late click still finds the order (the key index came back).
    late = uid("crL")
    assert I(a.exposures([exposure(uid("e"), v, late, [p], "CLICK", T - 3600)]), "accepted") == 1
    assert touches(a.explain(o)) == [(cr["B"], 0, 0.0), (cr["C"], 0, 0.0), (late, 1001, 1.0)]
    keys = os.path.join(a.srv.data_dir, "conversion-keys")
    assert os.path.isdir(keys)


def snapshot(a, creators, orders):
    """What the reports and explanations say, under every model."""
    models = ["ATTRIBUTION_MODEL_LAST_TOUCH", "ATTRIBUTION_MODEL_FIRST_TOUCH",
              "ATTRIBUTION_MODEL_LINEAR", "ATTRIBUTION_MODEL_TIME_DECAY",
              "ATTRIBUTION_MODEL_POSITION_BASED"]
    out = {}
    for m in models:
        req = dict(RANGE)
        req["model"] = m
        rep = a.call("GetTierReport", req)
        out[("tier", m)] = (sorted((r.get("tier"), r.get("impressions"), r.get("clicks"),
                                    r.get("attributed_conversions"),
                                    r.get("attributed_gmv_minor"))
                                   for r in rep.get("rows", [])),
                            rep.get("unattributed_conversions"),
                            rep.get("unattributed_gmv_minor"))
        for c in creators:
            rep = a.creator(c, m)
            out[("creator", c, m)] = (rep.get("attributed_conversions"),
                                      rep.get("attributed_gmv_minor"), rep.get("impressions"))
    for o in orders:
        ex = a.explain(o, "ATTRIBUTION_MODEL_LINEAR")
        out[("order", o)] = (touches(ex), ex.get("amount_minor"))
    return out


def test_memory_and_the_database_agree_after_a_storm(lean_attr):
    """Exposures (many of them late), orders, refunds and settings changes at once, with
    orders going in and out of memory: what memory built up is what a restart rebuilds
    from the database and the index files (SIGTERM and kill -9)."""
    import random
    import threading
    a = lean_attr
    tag = uid("s")
    viewers = ["%s-v%d" % (tag, i) for i in range(40)]
    products = ["%s-p%d" % (tag, i) for i in range(8)]
    creators = ["%s-c%d" % (tag, i) for i in range(12)]
    orders, errors, lock = [], [], threading.Lock()
    stop = threading.Event()

    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    def exposures(seed):
        r = random.Random(seed)
        for b in range(25):
            evs = [exposure("%s-e%d-%d-%d" % (tag, seed, b, k), r.choice(viewers),
                            r.choice(creators), [r.choice(products)],
                            r.choice(["CLICK", "VIEW", "IMPRESSION"]),
                            T - r.randrange(0, 9 * DAY), watch_ms=r.choice([0, 5000, 20000]))
                   for k in range(40)]
            assert I(a.exposures(evs), "accepted") == 40

    def conversions():
        r = random.Random(7)
        for b in range(20):
            batch = [conversion("%s-o%d-%d" % (tag, b, k), r.choice(viewers), r.choice(products),
                                r.randrange(100, 10000), T - r.randrange(0, 2 * DAY))
                     for k in range(25)]
            assert I(a.conversions(batch), "accepted") == 25
            with lock:
                orders.extend(c["order_id"] for c in batch)

    def refunds():
        r = random.Random(11)
        k = 0
        while not stop.is_set():
            with lock:
                some = r.sample(orders, min(5, len(orders))) if orders else []
            if some:
                a.refunds([refund("%s-r%d" % (tag, k + i), o, r.randrange(1, 60))
                           for i, o in enumerate(some)])
                k += len(some)

    workers = [threading.Thread(target=run, args=(lambda s=s: exposures(s),)) for s in range(2)]
    workers.append(threading.Thread(target=run, args=(conversions,)))
    rt = threading.Thread(target=run, args=(refunds,))
    for t in workers + [rt]:
        t.start()
    for body in ({"settings": {"click_window": "259200s"}, "update_mask": "clickWindow"},
                 {"settings": {"default_model": "ATTRIBUTION_MODEL_LINEAR"}},
                 {"settings": {"click_window": "604800s"}, "update_mask": "clickWindow"}):
        a.call("UpdateAttributionSettings", body)
    for t in workers:
        t.join()
    stop.set()
    rt.join()
    assert not errors, errors
    m = scrape(a.metrics_port)
    assert m['yaowei_attribution_conversion_cache_total{event="evicted"}'] > 0
    # The rollup audit ran all along, and never found the rollups apart from the orders.
    assert m["yaowei_attribution_audit_differences_total"] == 0, [
        line for line in a.srv.log_text().splitlines() if "audit" in line][:20]
    sample = orders[::7]
    before = snapshot(a, creators, sample)
    a.srv.restart()
    assert snapshot(a, creators, sample) == before
    assert a.srv.kill9() == -9
    a.srv.start()
    assert snapshot(a, creators, sample) == before


def test_a_duplicate_on_its_way_does_not_hide_the_stored_order(lean_attr):
    """A duplicate of a stored order, admitted and not yet written (it sits in an open
    IngestConversions stream), must not hide the stored order: a late exposure joins
    it, ExplainConversion and a refund find it, and restarts agree (issue 11; found by
    the differential test)."""
    import threading
    import time
    a = lean_attr
    v, p, o = uid("v"), uid("p"), uid("o")
    ca, cb = uid("crA"), uid("crB")
    assert I(a.exposures([exposure(uid("e"), v, ca, [p], "CLICK", T - 2 * DAY)]), "accepted") == 1
    assert I(a.conversions([conversion(o, v, p, 1000, T)]), "accepted") == 1
    tag = uid("x")
    assert I(a.conversions(others(200, tag)), "accepted") == 200  # o leaves memory

    go, out = threading.Event(), {}

    def dup_stream():
        def events():
            yield conversion(o, v, p, 999, T)  # the same order_id: a duplicate
            go.wait(30)
        out["summary"] = a.stream("IngestConversions", events())

    t = threading.Thread(target=dup_stream)
    t.start()
    time.sleep(0.5)  # the duplicate is admitted, its job waits for more of the stream
    try:
        late = exposure(uid("e"), v, cb, [p], "CLICK", T - DAY)
        assert I(a.exposures([late]), "accepted") == 1
        ex = a.explain(o, "ATTRIBUTION_MODEL_LINEAR")
        assert touches(ex) == [(ca, 500, 0.5), (cb, 500, 0.5)]
        assert I(a.refunds([refund(uid("r"), o, 100)]), "accepted") == 1
    finally:
        go.set()
        t.join()
    assert I(out["summary"], "duplicates") == 1
    want = [(ca, 450, 0.5), (cb, 450, 0.5)]
    assert touches(a.explain(o, "ATTRIBUTION_MODEL_LINEAR")) == want
    a.srv.restart()
    assert touches(a.explain(o, "ATTRIBUTION_MODEL_LINEAR")) == want
    assert a.srv.kill9() == -9
    a.srv.start()
    assert touches(a.explain(o, "ATTRIBUTION_MODEL_LINEAR")) == want
