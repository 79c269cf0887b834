"""The reference model (attr_model.py) against numbers computed by hand from README.md's
rules, with no service: if the model is wrong, the differential test blames the service
for the model's mistakes. The cases are README's grpcurl walk-through and the
hand-computed cases of test_attribution.py."""

import attr_model as M

D = M.DAY_NS
H = 3600 * M.NS
T = 20000 * D + 10 * H  # an order's time; the absolute date does not matter
S = M.Settings()


def world_with(*exposures, amount=1001, t=T):
    w = M.World()
    for e in exposures:
        assert w.add_exposure(e) == "accepted"
    w.add_conversion(M.Conversion("o", "v", "p", amount, t))
    return w


def ex(eid, creator, kind, t, watch_ms=0, products=("p",), viewer="v"):
    return M.Exposure(eid, viewer, creator, "n", tuple(products), kind, watch_ms, t)


def split_of(w, model, settings=S):
    return [(t.creator, t.minor) for t in w.explain("o", model, settings).touches]


def test_readme_walkthrough():
    # README: clicks at 03-01 10:00 and 03-03 10:00 (3 days and 1 day before the order at
    # 03-04 10:00), an engaged view an hour before it: clicks win.
    w = world_with(ex("e-1", "c-lily", M.CLICK, T - 3 * D),
                   ex("e-2", "c-bo", M.CLICK, T - D, products=("p", "sku-3")),
                   ex("e-3", "c-mei", M.VIEW, T - H, watch_ms=30000), amount=10001)
    assert split_of(w, M.LAST_TOUCH) == [("c-lily", 0), ("c-bo", 10001)]
    assert split_of(w, M.LINEAR) == [("c-lily", 5000), ("c-bo", 5001)]
    # 2^(-2/7) : 1 -> 4506.95 and 5494.05 -> the unit to the larger remainder.
    assert split_of(w, M.TIME_DECAY) == [("c-lily", 4507), ("c-bo", 5494)]
    w.add_refund(M.Refund("r-1", "o", 1, T + D))
    assert split_of(w, M.LINEAR) == [("c-lily", 5000), ("c-bo", 5000)]
    assert w.explain("o", 0, S).model == M.LAST_TOUCH


def three_clicks():
    return world_with(ex("a", "A", M.CLICK, T - 3 * D), ex("b", "B", M.CLICK, T - 2 * D),
                      ex("c", "C", M.CLICK, T - D), ex("d", "D", M.VIEW, T - H, 30000),
                      ex("i", "E", M.IMPRESSION, T - 600 * M.NS),
                      ex("f", "F", M.CLICK, T + M.NS),                  # after the order
                      ex("g", "G", M.CLICK, T - 60 * M.NS, products=("q",)))


def test_hand_computed_models():
    w = three_clicks()
    assert split_of(w, M.FIRST_TOUCH) == [("A", 1001), ("B", 0), ("C", 0)]
    assert [m for _, m in split_of(w, M.LINEAR)] == [333, 334, 334]
    assert split_of(w, M.POSITION_BASED) == [("A", 400), ("B", 200), ("C", 401)]
    assert [m for _, m in split_of(w, M.TIME_DECAY)] == [301, 333, 367]
    credits = [t.credit for t in w.explain("o", M.POSITION_BASED, S).touches]
    assert credits == [0.4, 0.2, 0.4]
    # Credits in fixed point add up to one conversion exactly.
    for m in M.MODELS:
        assert sum(t.credit_units for t in w.explain("o", m, S).touches) == M.CREDIT_ONE
    w.add_refund(M.Refund("r", "o", 301, T))
    assert [m for _, m in split_of(w, M.LINEAR)] == [233, 233, 234]
    assert w.creator_report("C", 0, 10 ** 6, M.LAST_TOUCH, S).gmv == 700
    assert w.creator_report("C", 0, 10 ** 6, M.LAST_TOUCH, S).attributed_conversions == 1.0


def test_windows_priority_and_short_views():
    # Exactly 7 days: in; 7 days and a second: out.
    w = world_with(ex("in", "IN", M.CLICK, T - 7 * D), ex("out", "OUT", M.CLICK, T - 7 * D - M.NS))
    assert split_of(w, M.LAST_TOUCH) == [("IN", 1001)]
    # An engaged view (exactly 10 s) beats a short view and an impression.
    w = world_with(ex("v", "V", M.VIEW, T - 2 * H, 10000), ex("s", "S", M.VIEW, T - H, 9999),
                   ex("i", "I", M.IMPRESSION, T - 60 * M.NS), amount=100)
    assert split_of(w, M.LINEAR) == [("V", 100)]
    # Without it the short view is an impression (still a VIEW in the touch and the
    # reports); an impression a day and a second before is out of the view window.
    w = world_with(ex("s", "S", M.VIEW, T - H, 5), ex("i", "I", M.IMPRESSION, T - 60 * M.NS),
                   ex("x", "X", M.IMPRESSION, T - D - M.NS), amount=100)
    got = w.explain("o", M.LINEAR, S).touches
    assert [(t.creator, t.minor, t.kind) for t in got] == [("S", 50, M.VIEW), ("I", 50, M.IMPRESSION)]
    assert w.creator_report("S", 0, 10 ** 6, M.LINEAR, S).views == 1
    # A narrower click window drops the oldest click, exactly at the edge it stays.
    w = three_clicks()
    s2 = M.Settings(click_window_ns=2 * D)
    assert split_of(w, M.FIRST_TOUCH, s2) == [("B", 1001), ("C", 0)]


def test_ties_order_and_unattributed():
    # Same time: event ids decide (bytewise); the odd unit goes to the later touch.
    w = world_with(ex("e2", "X", M.CLICK, T - H), ex("e10", "Y", M.CLICK, T - H), amount=3)
    assert split_of(w, M.LINEAR) == [("Y", 1), ("X", 2)]  # "e10" < "e2"
    w = M.World()
    w.add_conversion(M.Conversion("o", "v", "p", 4242, T))
    e = w.explain("o", M.LAST_TOUCH, S)
    assert not e.attributed and e.net == 4242
    rep = w.tier_report(0, 10 ** 6, M.LAST_TOUCH, S)
    assert rep["unattributed_conversions"] == 1 and rep["unattributed_gmv_minor"] == 4242


def test_duplicates_and_refund_rules():
    w = M.World()
    e = ex("e", "A", M.CLICK, T - H)
    assert w.add_exposure(e) == "accepted"
    assert w.add_exposure(ex("e", "B", M.IMPRESSION, T - 2 * H)) == "duplicate"
    w.add_conversion(M.Conversion("o", "v", "p", 1000, T))
    assert w.add_conversion(M.Conversion("o", "v", "p", 5, T)) == "duplicate"
    assert w.judge_refund(M.Refund("r1", "o", 600, T)) == ("accepted", 1000)
    w.add_refund(M.Refund("r1", "o", 600, T))
    assert w.judge_refund(M.Refund("r2", "o", 500, T)) == ("too_large", 400)
    assert w.judge_refund(M.Refund("r1", "o", 1, T))[0] == "duplicate"
    assert w.judge_refund(M.Refund("r3", "nope", 1, T))[0] == "unknown_order"
    assert w.judge_refund(M.Refund("r3", "o", 400, T)) == ("accepted", 400)
    # An exposure past the join horizon when it arrived counts, never joins.
    w = M.World()
    old = ex("old", "OLD", M.CLICK, T - H)
    w.add_exposure(old, arrived_ns=T + 15 * D, settings=S)
    w.add_conversion(M.Conversion("o", "v", "p", 10, T))
    assert not w.explain("o", M.LAST_TOUCH, S).attributed
    assert w.creator_report("OLD", 0, 10 ** 6, M.LAST_TOUCH, S).clicks == 1
