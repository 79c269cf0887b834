"""A reference model of attribution's rules, in plain Python, for the differential test.

Written from README.md ("## Attribution": "The rules, in plain words", "Late data",
"Reports") and the comments of attribution.proto, independently of the service's code:
nothing here is imported from, or generated out of, services/attribution/. Where the README
leaves a detail open, the choice is written down beside the code that makes it.

Given the events the service acknowledged (exposures, conversions, refunds) and the final
settings, it says what every ExplainConversion, GetCreatorReport, GetTierReport and
ListTopCreators must answer. Times are integer nanoseconds since the epoch; days are UTC
days since 1970-01-01 (floor).

    w = World()
    w.add_exposure(Exposure(...)); w.add_conversion(Conversion(...))
    w.judge_refund(Refund(...))     # -> ("accepted", left) / ("duplicate", ..) / ...
    w.explain("o-1", LINEAR, settings)
    w.creator_report("c-1", d0, d1, LINEAR, settings)
"""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

NS = 10 ** 9
DAY_NS = 86400 * NS

# Proto enum numbers.
IMPRESSION, VIEW, CLICK = 1, 2, 3
KIND_NAMES = {IMPRESSION: "IMPRESSION", VIEW: "VIEW", CLICK: "CLICK"}
KIND_BY_NAME = {v: k for k, v in KIND_NAMES.items()}

LAST_TOUCH, FIRST_TOUCH, LINEAR, TIME_DECAY, POSITION_BASED = 1, 2, 3, 4, 5
MODELS = (LAST_TOUCH, FIRST_TOUCH, LINEAR, TIME_DECAY, POSITION_BASED)
MODEL_NAMES = {LAST_TOUCH: "LAST_TOUCH", FIRST_TOUCH: "FIRST_TOUCH", LINEAR: "LINEAR",
               TIME_DECAY: "TIME_DECAY", POSITION_BASED: "POSITION_BASED"}
MODEL_BY_NAME = {v: k for k, v in MODEL_NAMES.items()}

# Priority classes (rule 2): higher wins.
_NONE, _IMPRESSION, _ENGAGED, _CLICK = 0, 1, 2, 3

# Credits (attributed conversions) in reports: the README says reports sum the credits;
# attr_credit.h says they are kept in fixed point, a conversion being 10^9 units split the
# same way as money (largest remainders). The model does the same, so sums are exact.
CREDIT_ONE = 10 ** 9
# Time-decay weights are doubles quantised to integers, the latest touch at 2^40.
DECAY_SCALE_LOG2 = 40

# Money (README "Limits", attribution.proto): an order's or a refund's amount_minor is
# 1 .. 10^15; anything else is rejected. Sums are exact; a report's int64 figure past
# int64 reads INT64_MAX, while shares, GPM and the ranking come from the exact sums.
AMOUNT_MAX = 10 ** 15
INT64_MAX = 2 ** 63 - 1


def amount_ok(amount):
    return 1 <= amount <= AMOUNT_MAX


def reported(v):
    """An exact sum as a report's int64 field shows it."""
    return max(-INT64_MAX - 1, min(INT64_MAX, v))


def day_of(t_ns):
    return t_ns // DAY_NS


@dataclass(frozen=True)
class Settings:
    click_window_ns: int = 7 * DAY_NS
    view_window_ns: int = 1 * DAY_NS
    half_life_ns: int = 7 * DAY_NS
    engaged_view_ms: int = 10000
    late_window_ns: int = 7 * DAY_NS
    default_model: int = LAST_TOUCH

    def horizon_ns(self):
        return max(self.click_window_ns, self.view_window_ns) + self.late_window_ns

    def resolve(self, model):
        return self.default_model if model == 0 else model


@dataclass(frozen=True)
class Exposure:
    event_id: str
    viewer: str
    creator: str
    note: str
    products: Tuple[str, ...]
    kind: int
    watch_ms: int
    t_ns: int


@dataclass(frozen=True)
class Conversion:
    order_id: str
    viewer: str
    product: str
    amount: int
    t_ns: int
    quantity: int = 1


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    amount: int
    t_ns: int


@dataclass
class Touch:
    event_id: str
    creator: str
    note: str
    kind: int
    t_ns: int
    watch_ms: int
    num: int           # the model's share is num / den
    credit: float      # num / den as a double
    credit_units: int  # this touch's part of CREDIT_ONE
    minor: int         # this touch's part of the net amount


@dataclass
class Explanation:
    order_id: str
    model: int
    viewer: str
    product: str
    t_ns: int
    gross: int
    refunded: int
    net: int
    touches: List[Touch] = field(default_factory=list)

    @property
    def attributed(self):
        return bool(self.touches)


@dataclass
class Sums:
    impressions: int = 0
    views: int = 0
    clicks: int = 0
    credit_units: int = 0
    gmv: int = 0

    @property
    def attributed_conversions(self):
        return self.credit_units / CREDIT_ONE

    @property
    def gpm(self):
        return self.gmv * 1000.0 / self.impressions if self.impressions else 0.0

    @property
    def conversion_rate(self):
        return self.attributed_conversions / self.impressions if self.impressions else 0.0

    def any(self):
        return bool(self.impressions or self.views or self.clicks or self.credit_units
                    or self.gmv)


# -- the rules, one function each ---------------------------------------------------------


def touch_class(settings, e):
    """Rule 1's downgrade: a view shorter than engaged_view_ms ranks as an impression."""
    if e.kind == CLICK:
        return _CLICK
    if e.kind == VIEW:
        return _ENGAGED if e.watch_ms >= settings.engaged_view_ms else _IMPRESSION
    return _IMPRESSION


def is_candidate(settings, conv_t_ns, e):
    """Rule 1: at or before the order, within its kind's window, both ends inclusive.
    A short view keeps the view window (it is a VIEW, only ranked as an impression)."""
    if e.t_ns > conv_t_ns:
        return False
    window = settings.click_window_ns if e.kind == CLICK else settings.view_window_ns
    return conv_t_ns - e.t_ns <= window


def eligible(settings, conv, exposures):
    """Rules 1-3: the eligible touches of `conv` among `exposures` (those of its viewer
    tagging its product), in touch order (time, then event id compared bytewise: Python
    compares str by code point, which is UTF-8's byte order)."""
    cands = [e for e in exposures if is_candidate(settings, conv.t_ns, e)]
    if not cands:
        return []
    best = max(touch_class(settings, e) for e in cands)
    elig = [e for e in cands if touch_class(settings, e) == best]
    elig.sort(key=lambda e: (e.t_ns, e.event_id))
    return elig


def _llround(x):
    """C's llround for x >= 0: halves away from zero."""
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


def shares(settings, model, times_ns):
    """Rule 4: integer numerators over one denominator, so that shares are exact."""
    n = len(times_ns)
    if model in (LAST_TOUCH, FIRST_TOUCH):
        num = [0] * n
        num[n - 1 if model == LAST_TOUCH else 0] = 1
        return num, 1
    if model == LINEAR:
        return [1] * n, n
    if model == POSITION_BASED:
        if n <= 2:
            return [1] * n, n
        # 40 % : 20 % / (n - 2) each : 40 %, over 5 (n - 2).
        num = [1] * n
        num[0] = num[-1] = 2 * (n - 2)
        return num, 5 * (n - 2)
    if model == TIME_DECAY:
        # 2^(-(T - t)/h) normalised: T cancels out, so weigh against the latest touch,
        # which gets exactly 2^40; each weight is a double rounded to an integer.
        tmax = max(times_ns)
        num = []
        for t in times_ns:
            age = float(tmax - t) / float(settings.half_life_ns)
            num.append(_llround(math.ldexp(math.exp2(-age), DECAY_SCALE_LOG2)))
        return num, sum(num)
    raise ValueError("model %r" % (model,))


def split(total, num, den):
    """Rule 5: floor of each share, then the units left one each to the largest
    remainders (exact: compared as integers over den), a tie to the later touch."""
    out = [total * x // den for x in num]
    rem = [total * x % den for x in num]
    left = total - sum(out)
    assert 0 <= left <= len(num), (total, num, den)
    order = sorted(range(len(num)), key=lambda i: (-rem[i], -i))
    for i in order[:left]:
        out[i] += 1
    return out


# -- the world: what was acknowledged -------------------------------------------------------


class World:
    """Acknowledged events. Duplicates by id: the first one added wins."""

    def __init__(self):
        self.exposures: Dict[str, Exposure] = {}
        self.conversions: Dict[str, Conversion] = {}
        self.refunds: Dict[str, Refund] = {}
        self._by_vp: Dict[Tuple[str, str], List[Exposure]] = {}
        self._refunded: Dict[str, int] = {}
        self._cache = {}
        self.past_horizon = set()  # event ids that arrived past the join horizon

    # ingestion (each returns "accepted" or "duplicate")

    def add_exposure(self, e, arrived_ns=None, settings=None):
        """An exposure that arrived (was acknowledged) at `arrived_ns` under `settings`:
        older than the join horizon then, it is counted in the reports of its day but can
        never join an order (README "Late data"). Without arrived_ns, it can join."""
        if e.event_id in self.exposures:
            return "duplicate"
        self.exposures[e.event_id] = e
        if arrived_ns is not None and e.t_ns < arrived_ns - settings.horizon_ns():
            self.past_horizon.add(e.event_id)
        else:
            for p in set(e.products):
                self._by_vp.setdefault((e.viewer, p), []).append(e)
        self._cache.clear()
        return "accepted"

    def add_conversion(self, c):
        if c.order_id in self.conversions:
            return "duplicate"
        self.conversions[c.order_id] = c
        self._cache.clear()
        return "accepted"

    def left(self, order_id):
        c = self.conversions.get(order_id)
        return None if c is None else c.amount - self._refunded.get(order_id, 0)

    def judge_refund(self, r, order_known=None):
        """How the service must judge refund r now: (verdict, left) with verdict one of
        "duplicate" (refund_id stored before: checked first, so a resent batch is all
        duplicates), "unknown_order", "too_large" (more than what is left), "accepted".
        Nothing changes; add_refund() stores an accepted one. `order_known` overrides
        whether the order counts as known (the service judges against acknowledged
        orders only)."""
        if r.refund_id in self.refunds:
            return "duplicate", None
        known = r.order_id in self.conversions if order_known is None else order_known
        if not known:
            return "unknown_order", None
        left = self.left(r.order_id)
        if r.amount > left:
            return "too_large", left
        return "accepted", left

    def add_refund(self, r):
        assert r.refund_id not in self.refunds
        self.refunds[r.refund_id] = r
        self._refunded[r.order_id] = self._refunded.get(r.order_id, 0) + r.amount
        self._cache.clear()

    # reading

    def exposures_of(self, viewer, product):
        return self._by_vp.get((viewer, product), [])

    def explain(self, order_id, model, settings):
        """ExplainConversion; None for an unknown order (NOT_FOUND)."""
        c = self.conversions.get(order_id)
        if c is None:
            return None
        model = settings.resolve(model)
        key = (order_id, model, settings)
        if key in self._cache:
            return self._cache[key]
        refunded = self._refunded.get(order_id, 0)
        net = c.amount - refunded
        ex = Explanation(order_id, model, c.viewer, c.product, c.t_ns, c.amount, refunded, net)
        elig = eligible(settings, c, self.exposures_of(c.viewer, c.product))
        if elig:
            num, den = shares(settings, model, [e.t_ns for e in elig])
            minor = split(net, num, den)
            units = split(CREDIT_ONE, num, den)
            for e, n_, m_, u_ in zip(elig, num, minor, units):
                ex.touches.append(Touch(e.event_id, e.creator, e.note, e.kind, e.t_ns,
                                        e.watch_ms, n_, n_ / den, u_, m_))
        self._cache[key] = ex
        return ex

    def creators(self):
        return sorted({e.creator for e in self.exposures.values()})

    def creator_sums(self, d0, d1, model, settings):
        """{creator: Sums} over the whole UTC days [d0, d1): exposures by their own day
        (kind as sent), credits and net GMV by the order's day."""
        out = {}
        for e in self.exposures.values():
            if d0 <= day_of(e.t_ns) < d1:
                s = out.setdefault(e.creator, Sums())
                if e.kind == IMPRESSION:
                    s.impressions += 1
                elif e.kind == VIEW:
                    s.views += 1
                else:
                    s.clicks += 1
        for oid, c in self.conversions.items():
            if not d0 <= day_of(c.t_ns) < d1:
                continue
            for t in self.explain(oid, model, settings).touches:
                s = out.setdefault(t.creator, Sums())
                s.credit_units += t.credit_units
                s.gmv += t.minor
        return out

    def creator_report(self, creator, d0, d1, model, settings):
        return self.creator_sums(d0, d1, model, settings).get(creator, Sums())

    def tier_report(self, d0, d1, model, settings):
        """GetTierReport without tier labels: one row (TIER_UNSPECIFIED) holding every
        creator with an exposure or a credit in range, and the unattributed orders."""
        sums = {c: s for c, s in self.creator_sums(d0, d1, model, settings).items() if s.any()}
        row = Sums()
        for s in sums.values():
            row.impressions += s.impressions
            row.views += s.views
            row.clicks += s.clicks
            row.credit_units += s.credit_units
            row.gmv += s.gmv
        un_n = un_gmv = 0
        for oid, c in self.conversions.items():
            if d0 <= day_of(c.t_ns) < d1 and not self.explain(oid, model, settings).attributed:
                un_n += 1
                un_gmv += c.amount - self._refunded.get(oid, 0)
        return {"creators": len(sums), "row": row, "unattributed_conversions": un_n,
                "unattributed_gmv_minor": un_gmv}

    def top_creators(self, d0, d1, model, settings, by_gpm=False):
        """ListTopCreators over every tier: [(creator_id, Sums)], best first, ties by
        creator_id (bytewise)."""
        sums = [(c, s) for c, s in self.creator_sums(d0, d1, model, settings).items() if s.any()]
        if by_gpm:
            sums.sort(key=lambda cs: (-cs[1].gpm, cs[0].encode()))
        else:
            sums.sort(key=lambda cs: (-cs[1].gmv, cs[0].encode()))
        return sums


def relevant(world_events, order_ids, creator_ids):
    """The events that can matter to some orders and creators: for an order, itself, every
    exposure of its viewer tagging its product, its refunds; for a creator, its exposures
    and the orders it touched (with theirs). `world_events` is a list of
    (kind, object) with kind in "exposure", "conversion", "refund"."""
    orders = set(order_ids)
    creators = set(creator_ids)
    convs = {}
    for k, o in world_events:
        if k == "conversion":
            convs.setdefault(o.order_id, o)  # the first wins
    # A creator's orders: those whose (viewer, product) it has an exposure of.
    vps_of_creator = set()
    for k, o in world_events:
        if k == "exposure" and o.creator in creators:
            for p in o.products:
                vps_of_creator.add((o.viewer, p))
    for oid, c in convs.items():
        if (c.viewer, c.product) in vps_of_creator:
            orders.add(oid)
    vps = {(convs[o].viewer, convs[o].product) for o in orders if o in convs}
    out = []
    for k, o in world_events:
        if k == "exposure":
            keep = o.creator in creators or any((o.viewer, p) in vps for p in o.products)
        elif k == "conversion":
            keep = o.order_id in orders
        else:
            keep = o.order_id in orders
        if keep:
            out.append((k, o))
    return out
