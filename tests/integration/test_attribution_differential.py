"""Attribution against a reference model, on random workloads (issue 11).

Each seed generates a workload (tests/integration/attr_model.py holds the model): small
pools of viewers, products and creators so that orders collide; exposures on the edges of
the windows and arriving after the orders they join; duplicates inside a batch and across
batches (the same id with other fields inside one thread's own stream; identical copies
across threads, where "first" is a race); refunds racing their orders (all refunds of one
order in one thread: what is left depends on their order); settings changes in the middle
(windows, half-life, engaged-view threshold, default model); a server with
`--conversion-cache-mb 0` and a tiny `--index-run-exposures`, so that orders and exposures
leave memory all the time; several client threads (two of exposures, one or two of
conversions, one of refunds; unary batches and client streams), paced loosely along one
global order so that they race within a window; SIGTERM and kill -9 restarts at random
points (calls that fail then are sent again: ingestion is idempotent).

Then every order's ExplainConversion under every model, every creator's GetCreatorReport
(a whole range and a sub-range of days), GetTierReport and ListTopCreators are compared
with the model fed the acknowledged events and the final settings; again after a SIGTERM
restart, and after a kill -9 and a start; and, for some seeds, at a checkpoint midway
(the threads pause, what was acknowledged so far is compared, the server restarts,
compared again, and the threads go on). Which refunds exist is the service's answer (a
refund of an order not yet acknowledged is rejected), checked for sense: a refund may be
rejected only when its order was not acknowledged before the call started, or for more
than what was left.

On a mismatch the failure names the seed, what differs, and the events that matter (those
of the differing orders' viewer and product, their refunds, the differing creators',
the settings changes; for a creator whose report differs while no explanation does, its
report day by day, taken before the restart repairs it, and the orders of those days),
replayed one call at a time on a fresh process with no restart: when that replay
disagrees too, the bug needs no client concurrency (the service's background threads
still run, so it may not show every time), and the events are shrunk (ddmin, within
YW_DIFF_SHRINK_S seconds) to a small list that still fails.

Cases it found are kept below it, shrunk, as plain tests (they run whatever the seeds).

Environment: YW_DIFF_SEEDS (how many seeds, 3), YW_DIFF_SEED_BASE (the first, 1),
YW_DIFF_EVENTS (events per seed, 800), YW_DIFF_SHRINK_S (30; 0: no shrinking),
YW_DIFF_VERBOSE=1 (print each seed's workload and the model's totals, with -s),
YW_DIFF_HOUR (a unix time: the workload of that hour instead of the current one),
YW_DIFF_AUDIT_MS (250: the server checks its rollups against its conversions that often,
--audit-rollups-ms, and any difference it logs fails the seed: the log's time tells when
the rollups went wrong; 0: no audit).
`make stress SEEDS=500` runs many. One seed again:
  YW_DIFF_SEED_BASE=17 YW_DIFF_SEEDS=1 YW_DIFF_EVENTS=1500 YW_BIN_DIR=$PWD/bazel-bin \
    python3 -m pytest -q -p no:cacheprovider tests/integration/test_attribution_differential.py
The workload is a function of the seed, the event count and the current UTC hour (times
are offsets from its start: they must stay within the join horizon of the wall clock);
only the threads' interleaving and the restarts' exact moments vary between runs.
"""

import dataclasses
import json
import math
import os
import random
import threading
import time

import grpc
import pytest
from google.protobuf import json_format

import attr_model as M
from test_attribution import ATTR, Attr, conversion, exposure, refund, rfc3339

N_SEEDS = int(os.environ.get("YW_DIFF_SEEDS", "3"))
SEED_BASE = int(os.environ.get("YW_DIFF_SEED_BASE", "1"))
N_EVENTS = int(os.environ.get("YW_DIFF_EVENTS", "800"))
SHRINK_S = float(os.environ.get("YW_DIFF_SHRINK_S", "30"))
VERBOSE = os.environ.get("YW_DIFF_VERBOSE", "") not in ("", "0")
HOUR_OF = int(os.environ.get("YW_DIFF_HOUR", "0"))  # unix time: that hour's workload
AUDIT_MS = int(os.environ.get("YW_DIFF_AUDIT_MS", "250"))

NS = M.NS
DAY = 86400
HOUR = 3600
CALL_TIMEOUT_S = 60
RETRY_FOR_S = 60
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
               grpc.StatusCode.DEADLINE_EXCEEDED)
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 50),
                   ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 300)]
KIND_JSON = {M.IMPRESSION: "IMPRESSION", M.VIEW: "VIEW", M.CLICK: "CLICK"}
MODEL_ENUM = {m: "ATTRIBUTION_MODEL_" + n for m, n in M.MODEL_NAMES.items()}

# -- the workload ----------------------------------------------------------------------------


class Ev:
    """One event as sent: its place in the global order, the model's object (None when
    invalid: the service must reject it) and its JSON form."""

    __slots__ = ("gi", "pos", "kind", "obj", "js", "valid", "thread")

    def __init__(self, kind, obj, js, pos, valid=True, thread=None):
        self.kind, self.obj, self.js, self.pos = kind, obj, js, pos
        self.valid, self.thread, self.gi = valid, thread, None


class Call:
    """One RPC of one thread: RecordX (unary) or IngestX (client stream)."""

    def __init__(self, method, events):
        self.method = method
        self.events = events
        self.t_start = self.t_end = None
        self.wall_end_ns = None  # time.time_ns() when it was answered
        self.retried = False
        self.summary = None


class Plan:
    """A seed's workload (generate() sets its fields): events, threads' calls, settings
    changes, restarts, checkpoints, the flags of the server, the report ranges."""


def _settings_json(s):
    return {"click_window": "%ds" % (s.click_window_ns // NS),
            "view_window": "%ds" % (s.view_window_ns // NS),
            "time_decay_half_life": "%ds" % (s.half_life_ns // NS),
            "engaged_view_ms": str(s.engaged_view_ms),
            "default_model": MODEL_ENUM[s.default_model]}


_SETTINGS_FIELD = {"click_window": "click_window_ns", "view_window": "view_window_ns",
                   "time_decay_half_life": "half_life_ns", "engaged_view_ms": "engaged_view_ms",
                   "default_model": "default_model"}


def _apply_update(s, fields):
    """The settings after an UpdateAttributionSettings of `fields` (mask paths -> values)."""
    return dataclasses.replace(s, **{_SETTINGS_FIELD[f]: v for f, v in fields.items()})


def generate(seed, n_events, now_h, same_viewer=False):
    """The workload of a seed: events, threads, calls, settings changes, restarts.
    `same_viewer`: a duplicate id with other fields keeps the first's viewer (a cluster
    dedups ids within a viewer's partition: an id reused by another viewer is another
    event there; README "Running a cluster")."""
    rnd = random.Random(seed)
    p = Plan()
    p.seed, p.n_events, p.now_h = seed, n_events, now_h
    nv, npr, nc = rnd.randint(3, 30), rnd.randint(2, 6), rnd.randint(3, 10)
    viewers = ["v%02d" % i for i in range(nv)]
    products = ["p%d" % i for i in range(npr)]
    creators = ["c%02d" % i for i in range(nc)]
    if rnd.random() < 0.3:
        creators[-1] = "创作者-%d" % (seed % 100)  # bytewise order != ASCII-only order
    p.pools = (nv, npr, nc)
    p.index_run = rnd.choice([16, 24, 32, 64])
    p.flags = ["--conversion-cache-mb", "0", "--index-run-exposures", str(p.index_run)]

    # Settings changes; the model uses the final settings.
    s = M.Settings()
    p.updates = []  # (fraction of the workload, fields {name: model value})
    for _ in range(rnd.choice([0, 1, 1, 2, 3])):
        names = rnd.sample(["click_window", "view_window", "time_decay_half_life",
                            "engaged_view_ms", "default_model"], rnd.randint(1, 3))
        fields = {}
        for f in names:
            if f == "click_window":
                fields[f] = rnd.choice([2, 3, 5, 7, 8]) * DAY * NS
            elif f == "view_window":
                fields[f] = rnd.choice([HOUR, 6 * HOUR, DAY, 2 * DAY]) * NS
            elif f == "time_decay_half_life":
                fields[f] = rnd.choice([DAY, 3 * DAY, 7 * DAY, 12 * HOUR + 1]) * NS
            elif f == "engaged_view_ms":
                fields[f] = rnd.choice([0, 5000, 10000, 15000])
            else:
                fields[f] = rnd.choice(M.MODELS)
        p.updates.append((rnd.uniform(0.05, 0.95), fields))
    p.updates.sort(key=lambda u: u[0])  # the order they are made in
    for _, fields in p.updates:
        s = _apply_update(s, fields)
    p.settings = s
    # The join horizon is max(click, view) + 7 days >= 9 days: every event stays inside.
    assert s.horizon_ns() >= 9 * DAY * NS
    p.restarts = [(rnd.uniform(0.1, 0.9), rnd.random() < 0.5)
                  for _ in range(rnd.choice([0, 1, 1, 2]))]
    p.window = rnd.choice([4, 16, 64])  # how far threads may run ahead of one another
    p.conv_threads = rnd.choice([1, 1, 2])

    lo, hi = now_h - int(8.5 * DAY), now_h - 2 * HOUR
    coarse = rnd.random() < 0.5

    def when(a, b):
        t = rnd.randint(a, b)
        return t - t % 600 if coarse and rnd.random() < 0.5 else t

    ids = set()

    def new_id(prefix):
        while True:
            i = "%s%06x" % (prefix, rnd.getrandbits(24))
            if i not in ids:
                ids.add(i)
                return i

    evs = []
    n_orders = max(1, int(n_events * 0.2))
    orders = []
    for k in range(n_orders):
        amount = rnd.choice([rnd.randint(1, 9), rnd.randint(10, 1000), rnd.randint(1000, 10 ** 6)])
        if k % 25 == 24:
            amount = M.AMOUNT_MAX - k % 10  # at the bound: rollup figures past 32 bits
        c = M.Conversion(new_id("o"), rnd.choice(viewers), rnd.choice(products), amount,
                         when(now_h - 7 * DAY, hi) * NS)
        js = conversion(c.order_id, c.viewer, c.product, c.amount, c.t_ns // NS)
        ev = Ev("conversion", c, js, rnd.random(), thread="conv%d" % rnd.randrange(p.conv_threads))
        orders.append(ev)
        evs.append(ev)
    # Invalid conversions: an amount of 0, or one past the bound (rejected; the id stays
    # free).
    for k in range(max(0, n_orders // 60)):
        oid = new_id("o")
        amount = 0 if k % 2 == 0 else M.AMOUNT_MAX + 1
        assert not M.amount_ok(amount)
        js = conversion(oid, rnd.choice(viewers), rnd.choice(products), amount, hi)
        evs.append(Ev("conversion", None, js, rnd.random(), valid=False,
                      thread="conv%d" % rnd.randrange(p.conv_threads)))

    edges = [s.click_window_ns // NS, s.click_window_ns // NS + 1, s.click_window_ns // NS - 1,
             s.view_window_ns // NS, s.view_window_ns // NS + 1, s.view_window_ns // NS - 1,
             7 * DAY, 7 * DAY + 1, DAY, DAY + 1, 0, 0, -1, -600]
    n_exp = max(1, int(n_events * 0.66))
    by_vp = {}
    exps = []
    for _ in range(n_exp):
        if orders and rnd.random() < 0.75:
            o = rnd.choice(orders).obj
            v, prods = o.viewer, {o.product}
            if rnd.random() < 0.3:
                t = o.t_ns // NS - rnd.choice(edges)
            else:
                t = o.t_ns // NS - rnd.randint(-HOUR, 8 * DAY)
            if not lo <= t <= hi:
                t = when(lo, hi)
        else:
            v, prods, t = rnd.choice(viewers), {rnd.choice(products)}, when(lo, hi)
        while rnd.random() < 0.3 and len(prods) < len(products):
            prods.add(rnd.choice(products))
        prods = sorted(prods)
        rnd.shuffle(prods)
        same = by_vp.get((v, prods[0]))
        if same and rnd.random() < 0.15:
            t = rnd.choice(same)  # a tie in time: event ids decide the order
        kind = rnd.choices([M.IMPRESSION, M.VIEW, M.CLICK], [35, 35, 30])[0]
        if kind == M.VIEW:
            eng = s.engaged_view_ms
            watch = max(0, rnd.choice([0, eng - 1, eng, eng + 1, 9999, 10000,
                                       rnd.randint(0, 60000)]))
        else:
            watch = rnd.choice([0, 0, 0, rnd.randint(0, 60000)])
        e = M.Exposure(new_id("e"), v, rnd.choice(creators), "n%d" % rnd.randrange(5),
                       tuple(prods), kind, watch, t * NS)
        by_vp.setdefault((v, prods[0]), []).append(t)
        js = exposure(e.event_id, e.viewer, e.creator, e.products, KIND_JSON[kind], t,
                      watch_ms=watch, note=e.note)
        ev = Ev("exposure", e, js, rnd.random(), thread=rnd.choice(["expA", "expB"]))
        exps.append(ev)
        evs.append(ev)
    # Exposures 16 to 20 days old: past any join horizon (at most 8 + 7 days here) when
    # they arrive, counted in the reports of their days, never joined.
    for _ in range(n_exp // 100):
        o = rnd.choice(orders).obj
        t = now_h - rnd.randint(16 * DAY, 20 * DAY)
        e = M.Exposure(new_id("e"), o.viewer, rnd.choice(creators), "n0", (o.product,),
                       M.CLICK, 0, t * NS)
        js = exposure(e.event_id, e.viewer, e.creator, e.products, "CLICK", t, note="n0")
        evs.append(Ev("exposure", e, js, rnd.random(), thread=rnd.choice(["expA", "expB"])))
    # Invalid exposures (no product): rejected, counted nowhere.
    for _ in range(n_exp // 100):
        js = exposure(new_id("e"), rnd.choice(viewers), rnd.choice(creators), [], "CLICK", hi)
        evs.append(Ev("exposure", None, js, rnd.random(), valid=False,
                      thread=rnd.choice(["expA", "expB"])))

    def later(pos):
        """After pos: often right after it (the same call, mostly), else anywhere later."""
        if rnd.random() < 0.4:
            return pos + 1e-9
        return pos + rnd.random() * (1.0 - pos)

    # Duplicates. The same id with other fields: later in the same thread (the first
    # wins). Identical copies: anywhere in the other thread of the kind.
    for ev in list(exps):
        r = rnd.random()
        if r < 0.04:
            e = ev.obj
            v2 = rnd.choice(viewers)
            e2 = M.Exposure(e.event_id, e.viewer if same_viewer else v2, rnd.choice(creators), "n9",
                            (rnd.choice(products),), rnd.choice([M.CLICK, M.VIEW]), 99999,
                            when(lo, hi) * NS)
            js = exposure(e2.event_id, e2.viewer, e2.creator, e2.products, KIND_JSON[e2.kind],
                          e2.t_ns // NS, watch_ms=e2.watch_ms, note=e2.note)
            evs.append(Ev("exposure", e2, js, later(ev.pos), thread=ev.thread))
        elif r < 0.08:
            other = "expB" if ev.thread == "expA" else "expA"
            evs.append(Ev("exposure", ev.obj, dict(ev.js), rnd.random(), thread=other))
    for ev in list(orders):
        r = rnd.random()
        if r < 0.05:
            c = ev.obj
            other_amount = c.amount + 7 if M.amount_ok(c.amount + 7) else c.amount - 7
            v2 = rnd.choice(viewers)
            c2 = M.Conversion(c.order_id, c.viewer if same_viewer else v2, rnd.choice(products),
                              other_amount, c.t_ns)
            js = conversion(c2.order_id, c2.viewer, c2.product, c2.amount, c2.t_ns // NS)
            evs.append(Ev("conversion", c2, js, later(ev.pos), thread=ev.thread))
        elif r < 0.1 and p.conv_threads == 2:
            other = "conv1" if ev.thread == "conv0" else "conv0"
            evs.append(Ev("conversion", ev.obj, dict(ev.js), rnd.random(), thread=other))

    # Refunds: near their order in the global order, some before it (they race it).
    for ev in orders:
        if rnd.random() >= 0.3:
            continue
        c = ev.obj
        planned = 0
        pos = ev.pos
        for _ in range(rnd.randint(1, 3)):
            choice = rnd.random()
            if choice < 0.5:
                amount = rnd.randint(1, max(1, c.amount // 3))
            elif choice < 0.8:
                amount = max(1, c.amount - planned)  # exactly what is left (if all went in)
            else:
                amount = c.amount + 1  # too much
            planned += amount
            pos = min(1.0, max(0.0, pos + rnd.uniform(-0.02, 0.05)))
            t = min(hi, c.t_ns // NS + rnd.randint(0, DAY))
            r = M.Refund(new_id("r"), c.order_id, amount, t * NS)
            rev = Ev("refund", r, refund(r.refund_id, r.order_id, amount, t), pos, thread="ref")
            evs.append(rev)
            if rnd.random() < 0.1:  # the same refund_id with another amount, later
                r2 = M.Refund(r.refund_id, r.order_id, max(1, amount // 2), t * NS)
                evs.append(Ev("refund", r2, refund(r2.refund_id, r2.order_id, r2.amount, t),
                              later(pos), thread="ref"))
    for _ in range(max(1, n_orders // 50)):  # refunds of orders that never exist
        r = M.Refund(new_id("r"), new_id("o"), 1, hi * NS)
        evs.append(Ev("refund", r, refund(r.refund_id, r.order_id, 1, hi), rnd.random(),
                      thread="ref"))

    evs.sort(key=lambda e: e.pos)
    for gi, ev in enumerate(evs):
        ev.gi = gi
    p.events = evs
    p.threads = {}
    for name in ["expA", "expB", "ref"] + ["conv%d" % i for i in range(p.conv_threads)]:
        mine = [e for e in evs if e.thread == name]
        calls = []
        i = 0
        big = max(8, n_events // 25)
        while i < len(mine):
            if name.startswith("exp"):
                n, method = rnd.randint(1, big), rnd.choice(["RecordExposures", "IngestExposures"])
            elif name.startswith("conv"):
                n, method = rnd.randint(1, 15), rnd.choice(["RecordConversions",
                                                            "IngestConversions"])
            else:
                n, method = rnd.randint(1, 6), "RecordRefunds"
            calls.append(Call(method, mine[i:i + n]))
            i += n
        p.threads[name] = calls
    # The report ranges: every day of the workload, and one sub-range per creator.
    d_lo, d_hi = (now_h - 21 * DAY) // DAY, (now_h + DAY) // DAY + 1
    p.full_days = (d_lo, d_hi)
    p.sub_days = {}
    for c in creators:
        a = rnd.randint(d_lo, d_hi - 1)
        p.sub_days[c] = (a, rnd.randint(a + 1, d_hi))
    p.creators = creators
    # A checkpoint: the threads pause, everything acknowledged so far is compared with the
    # model, the server restarts (SIGTERM or kill -9), compared again, and they go on.
    p.checkpoints = [(rnd.uniform(0.2, 0.8), rnd.random() < 0.5)
                     for _ in range(rnd.choice([0, 1]))]
    return p


# -- talking to the service -------------------------------------------------------------------

METHODS = ("RecordExposures", "RecordConversions", "RecordRefunds", "IngestExposures",
           "IngestConversions", "ExplainConversion", "GetCreatorReport", "GetTierReport",
           "ListTopCreators", "GetAttributionSettings", "UpdateAttributionSettings")


class Wire:
    """Message classes (found once through reflection) and stubs on a channel."""

    def __init__(self, dyn):
        self.md = {m: dyn.method("%s/%s" % (ATTR, m)) for m in METHODS}
        self.req = {m: dyn.message_class(md.input_type) for m, md in self.md.items()}
        self.resp = {m: dyn.message_class(md.output_type) for m, md in self.md.items()}

    def stubs(self, channel):
        out = {}
        for m, md in self.md.items():
            path = "/%s/%s" % (ATTR, m)
            mk = channel.stream_unary if md.client_streaming else channel.unary_unary
            out[m] = mk(path, request_serializer=lambda x: x.SerializeToString(),
                        response_deserializer=self.resp[m].FromString)
        return out

    def build(self, method, js):
        msg = self.req[method]()
        json_format.ParseDict(js, msg)
        return msg

    def request_of(self, call):
        """The unary request, or the list of stream messages, of a Call."""
        if self.md[call.method].client_streaming:
            return [self.build(call.method, e.js) for e in call.events]
        return self.build(call.method, {"events": [e.js for e in call.events]})

    def settings_update(self, fields):
        msg = self.req["UpdateAttributionSettings"]()
        js = {}
        for f, v in fields.items():
            if f in ("click_window", "view_window", "time_decay_half_life"):
                js[f] = "%ds" % (v // NS)
            elif f == "engaged_view_ms":
                js[f] = str(v)
            else:
                js[f] = MODEL_ENUM[v]
        json_format.ParseDict({"settings": js}, msg)
        msg.update_mask.paths.extend(sorted(fields))
        return msg


def send(stubs, method, request, streaming, record=None):
    """One call, sent again while the service is restarting (ingestion is idempotent).
    `record` (a Call) gets the start of the attempt that answered, its end, retried."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        t0 = time.monotonic()
        try:
            resp = stubs[method](iter(request) if streaming else request,
                                 timeout=CALL_TIMEOUT_S)
            if record is not None:
                record.t_start, record.t_end = t0, time.monotonic()
                record.wall_end_ns = time.time_ns()
            return resp
        except grpc.RpcError as e:
            if e.code() not in RETRY_CODES or time.monotonic() > deadline:
                raise
            if record is not None:
                record.retried = True
            time.sleep(0.05)


class Runner:
    """Runs a plan's threads against one server; the main thread changes the settings and
    restarts the server at the planned points."""

    def __init__(self, plan, attr, wire):
        self.plan, self.attr, self.wire = plan, attr, wire
        self.cv = threading.Condition()
        self.done = 0
        self.errors = []
        self.log = []  # what the controller did, for the failure message
        self.settings_calls = []  # (t_end, fields)
        self.settings = M.Settings()  # as updated so far
        self.paused = False
        self.busy = 0  # calls in flight
        self.checkpoints = []  # (what, Diffs in memory, Diffs after the restart, problems)

    def _worker(self, name, calls, requests):
        ch = grpc.insecure_channel(self.attr.srv.address, options=CHANNEL_OPTIONS)
        stubs = self.wire.stubs(ch)
        try:
            for call, req in zip(calls, requests):
                with self.cv:
                    while ((self.paused or self.done < call.events[0].gi - self.plan.window)
                           and not self.errors):
                        self.cv.wait(0.5)
                    if self.errors:
                        return
                    self.busy += 1
                streaming = self.wire.md[call.method].client_streaming
                try:
                    call.summary = send(stubs, call.method, req, streaming, record=call)
                finally:
                    with self.cv:
                        self.busy -= 1
                        self.done += len(call.events)
                        self.cv.notify_all()
        except Exception as e:  # noqa: BLE001 - reported by run()
            with self.cv:
                self.errors.append("%s: %r" % (name, e))
                self.cv.notify_all()
        finally:
            ch.close()

    def run(self):
        p = self.plan
        total = len(p.events)
        threads = []
        for name, calls in p.threads.items():
            reqs = [self.wire.request_of(c) for c in calls]
            threads.append(threading.Thread(target=self._worker, args=(name, calls, reqs),
                                            name=name, daemon=True))
        actions = sorted([(f, "settings", fields) for f, fields in p.updates]
                         + [(f, "restart", hard) for f, hard in p.restarts]
                         + [(f, "checkpoint", hard) for f, hard in p.checkpoints],
                         key=lambda a: a[0])
        t0 = time.monotonic()
        for t in threads:
            t.start()
        ch = grpc.insecure_channel(self.attr.srv.address, options=CHANNEL_OPTIONS)
        stubs = self.wire.stubs(ch)
        try:
            for frac, what, arg in actions:
                with self.cv:
                    while (self.done < frac * total and not self.errors
                           and any(t.is_alive() for t in threads)):
                        self.cv.wait(0.05)
                at = self.done
                if what == "settings":
                    rec = Call("UpdateAttributionSettings", [])
                    send(stubs, "UpdateAttributionSettings", self.wire.settings_update(arg),
                         False, record=rec)
                    self.settings_calls.append((rec.t_end, arg))
                    self.settings = _apply_update(self.settings, arg)
                    self.log.append("settings %s after %d events" % (_fields_text(arg), at))
                elif what == "checkpoint":
                    self._checkpoint(threads, arg)
                elif arg:
                    self.attr.srv.kill9()
                    self.attr.srv.start()
                    self.log.append("kill -9 + start after %d events" % at)
                else:
                    self.attr.srv.restart()
                    self.log.append("SIGTERM restart after %d events" % at)
            for t in threads:
                t.join(timeout=600)
        finally:
            ch.close()
        self.elapsed = time.monotonic() - t0
        return self.errors


    def _checkpoint(self, threads, hard):
        """Pauses the threads, compares what was acknowledged so far, restarts, compares
        again, and lets them go on."""
        with self.cv:
            self.paused = True
            while self.busy > 0 and not self.errors:
                self.cv.wait(0.05)
            at = self.done
        try:
            if self.errors:
                return
            world, problems = ground_truth(self.plan, done_only=True)
            srv = self.attr.srv
            mem = compare(srv.address, self.wire, world, self.settings, self.plan)
            if mem.creator_models and not mem.orders:  # before the restart repairs it
                loc_lines, loc_orders = localize(srv.address, self.wire, world, self.settings,
                                                 self.plan, mem)
                mem.lines += ["day by day: " + x for x in loc_lines]
                mem.orders |= loc_orders
            if hard:
                srv.kill9()
                srv.start()
            else:
                srv.restart()
            after = compare(srv.address, self.wire, world, self.settings, self.plan)
            what = "checkpoint after %d events: compared, %s, compared" % (
                at, "kill -9 + start" if hard else "SIGTERM restart")
            self.log.append(what)
            self.checkpoints.append((what, mem, after, problems))
        finally:
            with self.cv:
                self.paused = False
                self.cv.notify_all()


def _fields_text(fields):
    out = []
    for f, v in sorted(fields.items()):
        if f.endswith("window") or f == "time_decay_half_life":
            out.append("%s=%ds" % (f, v // NS))
        elif f == "default_model":
            out.append("%s=%s" % (f, M.MODEL_NAMES[v]))
        else:
            out.append("%s=%s" % (f, v))
    return ",".join(out)


# -- what the service acknowledged, as the model sees it -----------------------------------


def ground_truth(plan, done_only=False):
    """Feeds the model what the service acknowledged; returns (world, problems), problems
    being acknowledgements that make no sense (the service's fault). done_only: only the
    calls answered so far (the others must not be in flight)."""
    world = M.World()
    problems = []
    # order_id -> the earliest end of a call that surely stored it: a call of the only
    # thread that sends it, or one that reported no duplicate (an identical copy sent by
    # another thread may be reported a duplicate while the first is still being written).
    conv_ack = {}
    threads_of = {}
    for name, calls in plan.threads.items():
        for call in calls:
            for e in call.events:
                if e.kind == "conversion" and e.valid:
                    threads_of.setdefault(e.obj.order_id, set()).add(name)
    for name, calls in sorted(plan.threads.items()):
        if name == "ref":
            continue
        for call in calls:
            s = call.summary
            if s is None and done_only:
                continue
            bad = [i for i, e in enumerate(call.events) if not e.valid]
            got_bad = sorted(int(x.index) for x in s.errors)
            if got_bad != bad or s.accepted + s.duplicates + s.rejected != len(call.events):
                problems.append("%s %s of %d events: accepted %d, duplicates %d, rejected %d "
                                "at %s; expected rejected at %s"
                                % (name, call.method, len(call.events), s.accepted,
                                   s.duplicates, s.rejected, got_bad, bad))
            old = sum(1 for e in call.events if e.valid and e.kind == "exposure"
                      and e.obj.t_ns < call.wall_end_ns - plan.settings.horizon_ns())
            if (name.startswith("exp") and not call.retried and s.duplicates == 0
                    and s.past_join_horizon != old):
                problems.append("%s %s: past_join_horizon %d, expected %d"
                                % (name, call.method, s.past_join_horizon, old))
            for e in call.events:
                if not e.valid:
                    continue
                if e.kind == "exposure":
                    world.add_exposure(e.obj, call.wall_end_ns, plan.settings)
                else:
                    world.add_conversion(e.obj)
                    oid = e.obj.order_id
                    if len(threads_of[oid]) == 1 or s.duplicates == 0:
                        conv_ack[oid] = min(conv_ack.get(oid, math.inf), call.t_end)
    for call in plan.threads.get("ref", []):
        s = call.summary
        if s is None and done_only:
            continue
        rejected = {int(x.index): x.reason for x in s.errors}
        accepted = 0
        # A call sent again may find the refund_id stored by a later item of its own
        # first attempt: then an earlier item of that id is a duplicate, not stored.
        stored_here = set()
        maybe_dup = []  # (refund_id, problem)
        for i, e in enumerate(call.events):
            r = e.obj
            verdict, left = world.judge_refund(r)
            if i in rejected:
                reason = rejected[i]
                if reason.startswith("order_id:"):
                    ok = verdict == "unknown_order" or (
                        verdict != "duplicate" and conv_ack.get(r.order_id, math.inf) > call.t_start)
                elif reason.startswith("amount_minor:"):
                    # What is left is in the reason; a call sent again may find a later
                    # refund of its own stored by the first attempt (less is left then).
                    ok = verdict == "too_large" and (call.retried
                                                     or reason.endswith("(%d)" % left))
                else:
                    ok = False
                if not ok:
                    acked = conv_ack.get(r.order_id, math.inf)
                    problems.append("refund %s (order %s, %d) rejected: %r; the model: %s%s "
                                    "(order acknowledged %s the call started)"
                                    % (r.refund_id, r.order_id, r.amount, reason, verdict,
                                       "" if left is None else " (left %d)" % left,
                                       "%.3f s before" % (call.t_start - acked)
                                       if acked < call.t_start else "not before"))
                continue
            if verdict == "accepted":
                world.add_refund(r)
                stored_here.add(r.refund_id)
                accepted += 1
            elif verdict != "duplicate":
                problem = ("refund %s (order %s, %d) stored, but the model says %s%s"
                           % (r.refund_id, r.order_id, r.amount, verdict,
                              "" if left is None else " (left %d)" % left))
                if call.retried:
                    maybe_dup.append((r.refund_id, problem))
                else:
                    problems.append(problem)
        problems.extend(p for rid, p in maybe_dup if rid not in stored_here)
        if not call.retried and accepted != s.accepted:
            problems.append("RecordRefunds %s: accepted %d, the model %d"
                            % ([e.obj.refund_id for e in call.events], s.accepted, accepted))
    return world, problems


# -- comparing ------------------------------------------------------------------------------


def _day_range(d0, d1):
    return rfc3339(d0 * DAY), rfc3339(d1 * DAY)


class Diffs:
    def __init__(self):
        self.lines = []
        self.orders = set()
        self.creators = set()
        self.explain = {}  # order_id -> {model name: what differs, "want": Explanation}
        self.creator_models = set()  # (creator, model) whose report differs

    def finish(self):
        lines = explain_lines(self)
        self.orders |= {o for o, slot in self.explain.items() if set(slot) - {"want"}}
        self.lines = lines + self.lines
        return self

    def add(self, text, order=None, creator=None):
        self.lines.append(text)
        if order is not None:
            self.orders.add(order)
        if creator is not None:
            self.creators.add(creator)

    def __bool__(self):
        return bool(self.lines)


def _pipeline(calls, depth=64):
    """[(stub, request, key)] -> [(key, response or RpcError)], `depth` in flight."""
    out = []
    pending = []
    for stub, req, key in calls:
        pending.append((key, stub.future(req, timeout=CALL_TIMEOUT_S)))
        if len(pending) >= depth:
            k, f = pending.pop(0)
            out.append((k, _result(f)))
    for k, f in pending:
        out.append((k, _result(f)))
    return out


def _result(f):
    try:
        return f.result()
    except grpc.RpcError as e:
        return e


def compare(address, wire, world, settings, plan, extra_orders=()):
    """Every explanation and report against the model; returns Diffs."""
    d = Diffs()
    ch = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    st = wire.stubs(ch)
    try:
        got = send(st, "GetAttributionSettings", wire.req["GetAttributionSettings"](), False)
        want = _settings_json(settings)
        have = json_format.MessageToDict(got, preserving_proto_field_name=True)
        for k, v in want.items():
            if str(have.get(k, "0" if k == "engaged_view_ms" else "")) != str(v):
                d.add("settings %s: want %s, got %s" % (k, v, have.get(k)))
        calls = []
        oids = sorted(set(world.conversions) | set(extra_orders))
        for oid in oids:
            for m in (0,) + M.MODELS:
                req = wire.req["ExplainConversion"](order_id=oid, model=m)
                calls.append((st["ExplainConversion"], req, ("x", oid, m)))
        creators = sorted(set(plan.creators) | set(world.creators()))
        for c in creators:
            ranges = [plan.full_days]
            if c in plan.sub_days:
                ranges.append(plan.sub_days[c])
            for rng in ranges:
                a, b = _day_range(*rng)
                for m in (0,) + M.MODELS:
                    req = wire.build("GetCreatorReport", {"creator_id": c, "start_time": a,
                                                          "end_time": b, "model": m})
                    calls.append((st["GetCreatorReport"], req, ("c", c, m, rng)))
        a, b = _day_range(*plan.full_days)
        for m in M.MODELS:
            req = wire.build("GetTierReport", {"start_time": a, "end_time": b, "model": m})
            calls.append((st["GetTierReport"], req, ("t", m)))
            for order in (1, 2):
                req = wire.build("ListTopCreators", {"start_time": a, "end_time": b, "model": m,
                                                     "order_by": order, "page_size": 1000})
                calls.append((st["ListTopCreators"], req, ("l", m, order)))
        for key, resp in _pipeline(calls):
            if key[0] == "x":
                _cmp_explain(d, world, settings, key[1], key[2], resp)
            elif key[0] == "c":
                _cmp_creator(d, world, settings, key[1], key[2], key[3], resp)
            elif key[0] == "t":
                _cmp_tier(d, world, settings, plan, key[1], resp)
            else:
                _cmp_top(d, world, settings, plan, key[1], key[2], resp)
    finally:
        ch.close()
    return d.finish()


def _cmp_explain(d, world, settings, oid, m, resp):
    """Collects what differs of one explanation in d.explain[oid][m]; explain_lines()
    turns them into one line per order."""
    want = world.explain(oid, m, settings)
    name = M.MODEL_NAMES.get(m, "UNSPECIFIED") if m else "UNSPECIFIED"
    slot = d.explain.setdefault(oid, {})
    if isinstance(resp, grpc.RpcError):
        if want is None and resp.code() == grpc.StatusCode.NOT_FOUND:
            return
        slot[name] = "%s %s" % (resp.code(), resp.details())
        return
    if want is None:
        slot[name] = "the service knows it, the model does not (its conversion was rejected)"
        return
    head_w = (want.model, want.net, want.gross, want.refunded, want.attributed, want.viewer,
              want.product, want.t_ns // NS, "CNY")
    head_g = (resp.model, resp.amount_minor, resp.gross_amount_minor, resp.refunded_minor,
              resp.attributed, resp.viewer_id, resp.product_id, resp.occur_time.seconds,
              resp.currency)
    tw = [(t.event_id, t.creator, M.KIND_NAMES[t.kind], t.t_ns // NS, t.minor, t.credit, t.note,
           t.watch_ms) for t in want.touches]
    tg = [(t.event_id, t.creator_id, M.KIND_NAMES.get(t.kind, t.kind), t.occur_time.seconds,
           t.attributed_minor, t.credit, t.note_id, t.watch_ms) for t in resp.touches]
    same = head_w == head_g and len(tw) == len(tg) and all(
        a[:5] == b[:5] and a[6:] == b[6:] and abs(a[5] - b[5]) <= 1e-12 for a, b in zip(tw, tg))
    if same:
        return
    slot["want"] = want
    slot[name] = (head_w, head_g, tw, tg)


def _touch_short(t):
    return "%s(%s %s %s)" % (t[0], t[1], t[2], rfc3339(t[3]))


def explain_lines(d):
    """One line per order whose explanations differ."""
    out = []
    for oid in sorted(d.explain):
        slot = d.explain[oid]
        models = [k for k in slot if k != "want"]
        if not models:
            continue
        want = slot.get("want")
        texts = []
        for k in models:
            v = slot[k]
            if isinstance(v, str):
                texts.append("%s: %s" % (k, v))
                continue
            head_w, head_g, tw, tg = v
            ids_w, ids_g = [t[0] for t in tw], [t[0] for t in tg]
            if ids_w != ids_g:
                lack = [t for t in tw if t[0] not in set(ids_g)]
                extra = [t for t in tg if t[0] not in set(ids_w)]
                texts.append("touches differ: the service lacks [%s], has extra [%s]%s"
                             % (", ".join(map(_touch_short, lack)),
                                ", ".join(map(_touch_short, extra)),
                                "" if lack or extra else " (other order)"))
                break  # the same under every model
            if head_w != head_g:
                texts.append("%s: (model, net, gross, refunded, attributed, viewer, product, "
                             "time, currency) want %s got %s" % (k, head_w, head_g))
            else:
                texts.append("%s: touches (id, minor, credit) want %s got %s"
                             % (k, [(t[0], t[4], round(t[5], 9)) for t in tw],
                                [(t[0], t[4], round(t[5], 9)) for t in tg]))
        where = ""
        if want is not None:
            where = " (%s/%s at %s, net %d, %d touch(es) in the model)" % (
                want.viewer, want.product, rfc3339(want.t_ns // NS), want.net, len(want.touches))
        out.append("order %s%s: %s [models: %s]" % (oid, where, "; ".join(texts), ",".join(models)))
    return out


def _sums_of(resp):
    return (resp.impressions, resp.views, resp.clicks,
            int(round(resp.attributed_conversions * M.CREDIT_ONE)), resp.attributed_gmv_minor)


def _sums_want(s):
    return (s.impressions, s.views, s.clicks, s.credit_units, M.reported(s.gmv))


SUMS_TEXT = "impressions, views, clicks, credit units (10^-9 conversion), gmv"


def _close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _cmp_creator(d, world, settings, c, m, rng, resp):
    name = "creator %s %s days %d..%d" % (c, M.MODEL_NAMES.get(m, "UNSPECIFIED"), rng[0], rng[1])
    if isinstance(resp, grpc.RpcError):
        d.add("%s: %s %s" % (name, resp.code(), resp.details()), creator=c)
        return
    s = world.creator_report(c, rng[0], rng[1], m, settings)
    got, want = _sums_of(resp), _sums_want(s)
    if got != want or not (_close(resp.gpm, s.gpm) and _close(resp.conversion_rate,
                                                                  s.conversion_rate)):
        d.creator_models.add((c, m))
        d.add("%s (%s): want %s gpm %.6g cr %.6g; got %s gpm %.6g cr %.6g"
              % (name, SUMS_TEXT, want, s.gpm, s.conversion_rate, got, resp.gpm,
                 resp.conversion_rate), creator=c)


def _cmp_tier(d, world, settings, plan, m, resp):
    name = "tier report %s" % M.MODEL_NAMES[m]
    if isinstance(resp, grpc.RpcError):
        d.add("%s: %s %s" % (name, resp.code(), resp.details()))
        return
    want = world.tier_report(plan.full_days[0], plan.full_days[1], m, settings)
    rows = [r for r in resp.rows]
    got_row = None
    for r in rows:
        if r.tier == 0:
            got_row = r
    w = (want["creators"],) + _sums_want(want["row"]) + (
        want["unattributed_conversions"], M.reported(want["unattributed_gmv_minor"]))
    g = ((got_row.creators,) + _sums_of(got_row) if got_row is not None
         else (0, 0, 0, 0, 0, 0)) + (resp.unattributed_conversions, resp.unattributed_gmv_minor)
    if w != g or len(rows) > 1:
        d.add("%s (creators, %s, unattributed conversions, unattributed gmv): want %s, got %s%s"
              % (name, SUMS_TEXT, w, g, "" if len(rows) <= 1 else " (%d rows)" % len(rows)))


def _cmp_top(d, world, settings, plan, m, order, resp):
    name = "top creators %s by %s" % (M.MODEL_NAMES[m], "GPM" if order == 2 else "GMV")
    if isinstance(resp, grpc.RpcError):
        d.add("%s: %s %s" % (name, resp.code(), resp.details()))
        return
    want = world.top_creators(plan.full_days[0], plan.full_days[1], m, settings,
                              by_gpm=order == 2)
    w = [(c, M.reported(s.gmv), s.impressions) for c, s in want]
    g = [(r.creator_id, r.attributed_gmv_minor, r.impressions) for r in resp.creators]
    if w != g:
        d.add("%s (creator, gmv, impressions): want %s, got %s" % (name, w[:12], g[:12]))


def localize(address, wire, world, settings, plan, d, max_pairs=4):
    """Where a creator's report differs although no explanation does: its report day by
    day (on the running process: a restart may repair it), and the orders of the differing
    days it has a touch in. Returns (lines, order ids)."""
    pairs = []
    for c, m in sorted(d.creator_models, key=lambda cm: (cm[0], cm[1])):
        if m and c not in {p[0] for p in pairs}:
            pairs.append((c, m))
    lines, orders = [], set()
    ch = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    st = wire.stubs(ch)
    try:
        for c, m in pairs[:max_pairs]:
            calls = []
            for day in range(*plan.full_days):
                a, b = _day_range(day, day + 1)
                req = wire.build("GetCreatorReport", {"creator_id": c, "start_time": a,
                                                      "end_time": b, "model": m})
                calls.append((st["GetCreatorReport"], req, day))
            for day, resp in _pipeline(calls):
                if isinstance(resp, grpc.RpcError):
                    continue
                want = _sums_want(world.creator_report(c, day, day + 1, m, settings))
                got = _sums_of(resp)
                if want == got:
                    continue
                mine, exact, whole = [], [], []
                lost = (want[3] - got[3], want[4] - got[4])  # credit units, gmv
                for oid, conv in sorted(world.conversions.items()):
                    if M.day_of(conv.t_ns) != day:
                        continue
                    ex_ = world.explain(oid, m, settings)
                    part = [(t.credit_units, t.minor) for t in ex_.touches if t.creator == c]
                    if part:
                        mine.append(oid)
                        if (sum(u for u, _ in part), sum(g for _, g in part)) in (
                                lost, (-lost[0], -lost[1])):
                            exact.append(oid)
                    if abs(lost[0]) == M.CREDIT_ONE and ex_.net == abs(lost[1]):
                        whole.append(oid)  # a whole order's credit, stale or missing
                orders.update(exact or whole or mine)
                lines.append("creator %s %s on %s (%s): want %s, got %s; %s" % (
                    c, M.MODEL_NAMES[m], rfc3339(day * DAY)[:10], SUMS_TEXT, want, got,
                    "exactly this creator's part of order(s) %s" % " ".join(exact) if exact
                    else "a whole order of that net amount: %s" % " ".join(whole) if whole
                    else "its orders that day: %s" % " ".join(mine[:12])))
    finally:
        ch.close()
    return lines, orders


# -- replaying events one call at a time ------------------------------------------------------


def replay_ops(plan, runner, keep=None):
    """The acknowledged calls' events in the order they were acknowledged (a refund after
    its order's conversion), as [(key, kind, Ev)] and settings [(key, fields)]; `keep`
    (a set of Ev ids) limits the events."""
    conv_key = {}
    ops = []
    for name, calls in plan.threads.items():
        for call in calls:
            for k, e in enumerate(call.events):
                ops.append([call.t_end, k, e])
                if e.kind == "conversion" and e.valid:
                    oid = e.obj.order_id
                    conv_key[oid] = min(conv_key.get(oid, math.inf), call.t_end)
    for op in ops:
        e = op[2]
        if e.kind == "refund" and e.obj.order_id in conv_key:
            op[0] = max(op[0], conv_key[e.obj.order_id] + 1e-6)
    ops.sort(key=lambda o: (o[0], o[1]))
    evs = [o[2] for o in ops if keep is None or id(o[2]) in keep]
    return evs


def replay(tmp_path_factory, plan, wire_holder, evs, settings_pos):
    """Sends `evs` one call per run of one kind, in order, and the settings changes before
    the run they preceded (settings_pos: [(run index, fields)]), on a fresh process with the
    plan's flags; compares in memory and after a SIGTERM restart. Returns (Diffs in memory,
    Diffs after the restart, refund verdicts that differ)."""
    a = Attr(tmp_path_factory, "attribution_replay", extra=plan.flags).start()
    try:
        wire = wire_holder.get(a)
        ch = grpc.insecure_channel(a.srv.address, options=CHANNEL_OPTIONS)
        st = wire.stubs(ch)
        world = M.World()
        settings = M.Settings()
        problems = []
        runs = _runs(evs)
        before = {}
        for idx, fields in settings_pos:
            before.setdefault(min(idx, len(runs)), []).append(fields)
        for i in range(len(runs) + 1):
            for fields in before.get(i, []):
                send(st, "UpdateAttributionSettings", wire.settings_update(fields), False)
                settings = _apply_update(settings, fields)
            if i == len(runs):
                break
            kind, group = runs[i]
            method = {"exposure": "RecordExposures", "conversion": "RecordConversions",
                      "refund": "RecordRefunds"}[kind]
            resp = send(st, method, wire.build(method, {"events": [e.js for e in group]}), False)
            rejected = {int(x.index) for x in resp.errors}
            for k, e in enumerate(group):
                if kind == "refund":
                    verdict, _ = world.judge_refund(e.obj)
                    if (verdict in ("unknown_order", "too_large")) != (k in rejected):
                        problems.append("refund %s (order %s, %d): the model says %s, the "
                                        "service %s" % (e.obj.refund_id, e.obj.order_id,
                                                        e.obj.amount, verdict,
                                                        "rejected it" if k in rejected
                                                        else "took it"))
                    if verdict == "accepted":
                        world.add_refund(e.obj)
                elif e.valid and kind == "exposure":
                    world.add_exposure(e.obj, time.time_ns(), settings)
                elif e.valid:
                    world.add_conversion(e.obj)
        ch.close()
        mem = compare(a.srv.address, wire, world, settings, plan)
        a.srv.restart()
        after = compare(a.srv.address, wire, world, settings, plan)
        return mem, after, problems
    finally:
        a.stop()


def _runs(evs):
    """Consecutive events of one kind: [(kind, [Ev])], one call each in a replay."""
    runs = []
    for e in evs:
        if runs and runs[-1][0] == e.kind:
            runs[-1][1].append(e)
        else:
            runs.append((e.kind, [e]))
    return runs


class WireHolder:
    """Reflection once per test: every process serves the same contract."""

    def __init__(self):
        self.wire = None

    def get(self, attr):
        if self.wire is None:
            self.wire = Wire(attr.srv.client)
        return self.wire


def settings_positions(evs_in_order, runner, plan):
    """Maps each settings change to the index of the first run of events acknowledged after
    it (see replay)."""
    ends = {}
    for calls in plan.threads.values():
        for call in calls:
            for e in call.events:
                ends[id(e)] = call.t_end
    runs = _runs(evs_in_order)
    out = []
    for t, fields in runner.settings_calls:
        idx = len(runs)
        for i, (_, group) in enumerate(runs):
            if min(ends[id(e)] for e in group) > t:
                idx = i
                break
        out.append((idx, fields))
    return out


def ddmin(items, fails, budget_s):
    """Zeller's delta debugging: a smaller list for which fails() still holds, within the
    time budget (the best found so far when it runs out)."""
    t_end = time.monotonic() + budget_s
    n = 2
    tests = 0
    while len(items) >= 2 and time.monotonic() < t_end:
        chunk = int(math.ceil(len(items) / n))
        subsets = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        reduced = False
        for i, sub in enumerate(subsets):
            if time.monotonic() >= t_end:
                break
            complement = [x for j, s in enumerate(subsets) if j != i for x in s]
            tests += 1
            if fails(sub):
                items, n, reduced = sub, 2, True
                break
            tests += 1
            if len(subsets) > 2 and fails(complement):
                items, n, reduced = complement, max(n - 1, 2), True
                break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return items, tests


def _problem_orders(problems):
    out = set()
    for p in problems:
        if p.startswith("refund ") and "(order " in p:
            out.add(p.split("(order ", 1)[1].split(",", 1)[0])
    return out


def annotate(plan):
    """{id(Ev): "thread#call method[, sent again]"}: where each event went."""
    out = {}
    for name, calls in plan.threads.items():
        for k, call in enumerate(calls):
            for e in call.events:
                out[id(e)] = "%s#%d %s%s" % (name, k, call.method,
                                             ", sent again" if call.retried else "")
    return out


MAX_LINES = 80


def race_lines(plan, *diffs):
    """For each order whose touches differ: when its conversion and the touches the
    service lacks (or has extra) were acknowledged, relative to each other."""
    where = annotate(plan)
    ends = {}
    by_id = {}
    for calls in plan.threads.values():
        for call in calls:
            for e in call.events:
                ends[id(e)] = (call.t_start, call.t_end)
                key = e.js.get("event_id") or e.js.get("order_id")
                if e.kind != "refund":
                    by_id.setdefault((e.kind, key), []).append(e)
    out = []
    seen = set()
    for d in diffs:
        for oid, slot in sorted(d.explain.items()):
            for k, v in slot.items():
                if k == "want" or isinstance(v, str) or oid in seen:
                    continue
                _, _, tw, tg = v
                ids_w, ids_g = {t[0] for t in tw}, {t[0] for t in tg}
                odd = sorted(ids_w ^ ids_g)
                if not odd:
                    continue
                seen.add(oid)
                convs = by_id.get(("conversion", oid), [])
                if not convs:
                    continue
                c0 = min(ends[id(c)][1] for c in convs)
                out.append("order %s acknowledged [%s]; %s:" % (
                    oid, where[id(convs[0])], "the touches that differ"))
                for eid in odd:
                    for e in by_id.get(("exposure", eid), []):
                        t0, t1 = ends[id(e)]
                        out.append("  %s %s: call %+.3f s .. %+.3f s from the order's "
                                   "acknowledgement [%s]" % (
                                       "lacks" if eid in ids_w else "extra", eid, t0 - c0,
                                       t1 - c0, where[id(e)]))
    return out[:40]


def describe_events(evs, settings_pos, where=None):
    lines = []
    pos = {}
    for idx, fields in settings_pos:
        pos.setdefault(idx, []).append(fields)
    run = -1
    last = None
    for e in evs:
        if e.kind != last:
            run += 1
            last = e.kind
            for fields in pos.get(run, []):
                lines.append("  settings %s" % _fields_text(fields))
        lines.append("  %s%s %s%s" % (e.kind, "" if e.valid else " (invalid)",
                                      json.dumps(e.js, ensure_ascii=False),
                                      "  [%s]" % where[id(e)] if where else ""))
    for idx, fields_list in pos.items():
        if idx > run:
            for fields in fields_list:
                lines.append("  settings %s" % _fields_text(fields))
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + ["  ... (%d more)" % (len(lines) - MAX_LINES)]
    return lines


# -- the test -------------------------------------------------------------------------------


def audit_errors(srv):
    """The rollup audit's error lines in every log of the server (each start has its own)."""
    out = []
    base = os.path.join(srv.log_dir, srv.name + ".")
    for i in range(1, 1000):
        try:
            with open("%s%d.log" % (base, i), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            break
        for line in text.splitlines():
            if "audit" in line and '"error"' in line:
                out.append("start %d: %s" % (i, line))
    return out


SEEDS = list(range(SEED_BASE, SEED_BASE + N_SEEDS))


@pytest.mark.parametrize("seed", SEEDS, ids=["seed%d" % s for s in SEEDS])
def test_attribution_agrees_with_the_model(seed, tmp_path_factory):
    now = int(time.time())
    now_h = now - now % HOUR
    if HOUR_OF:
        # Another hour's workload (a failure's header names it): fine while its events
        # stay inside the join horizon, i.e. for a few hours after it.
        now_h = HOUR_OF - HOUR_OF % HOUR
    plan = generate(seed, N_EVENTS, now_h)
    audit = ["--audit-rollups-ms", str(AUDIT_MS)] if AUDIT_MS > 0 else []
    a = Attr(tmp_path_factory, "attribution_diff", extra=plan.flags + audit).start()
    holder = WireHolder()
    report = []
    try:
        wire = holder.get(a)
        runner = Runner(plan, a, wire)
        errors = runner.run()
        head = ("seed %d (YW_DIFF_SEED_BASE=%d YW_DIFF_SEEDS=1 YW_DIFF_EVENTS=%d "
                "YW_DIFF_HOUR=%d; times from %s; %d events; pools %d viewers %d products %d creators; flags %s; %d "
                "conversion thread(s); pacing window %d; %s)"
                % (seed, seed, plan.n_events, now_h, rfc3339(now_h), len(plan.events),
                   *plan.pools,
                   " ".join(plan.flags), plan.conv_threads, plan.window,
                   "; ".join(runner.log) or "no settings change, no restart"))
        assert not errors, "%s\nclient threads failed: %s\nlog:\n%s" % (
            head, errors, a.srv.log_tail())
        world, problems = ground_truth(plan)
        invalid_orders = [e.js["order_id"] for e in plan.events
                          if e.kind == "conversion" and not e.valid]
        mem = compare(a.srv.address, wire, world, plan.settings, plan, invalid_orders)
        loc_lines, loc_orders = [], set()
        if mem.creator_models and not mem.orders:  # reports differ, explanations do not
            loc_lines, loc_orders = localize(a.srv.address, wire, world, plan.settings, plan,
                                             mem)
        a.srv.restart()
        after = compare(a.srv.address, wire, world, plan.settings, plan, invalid_orders)
        a.srv.kill9()
        a.srv.start()
        after9 = compare(a.srv.address, wire, world, plan.settings, plan, invalid_orders)
        if VERBOSE:
            n_attr = sum(1 for o in world.conversions
                         if world.explain(o, M.LAST_TOUCH, plan.settings).attributed)
            print("\n%s\nmodel: %d exposures, %d orders (%d attributed), %d refunds; workload "
                  "%.1f s" % (head, len(world.exposures), len(world.conversions), n_attr,
                              len(world.refunds), runner.elapsed))
        cps = [cp for cp in runner.checkpoints if cp[1] or cp[2] or cp[3]]
        audits = audit_errors(a.srv)
        if not (problems or mem or after or after9 or cps or audits):
            return
        report.append(head)
        report.append("model: %d exposures, %d orders, %d refunds stored"
                      % (len(world.exposures), len(world.conversions), len(world.refunds)))
        for title, lines in (("ingestion answers that make no sense", problems),
                             ("differences after the workload (in memory)", mem.lines),
                             ("differences after a SIGTERM restart", after.lines),
                             ("differences after a kill -9 and a start", after9.lines),
                             ("the server's own rollup audit (--audit-rollups-ms)", audits)):
            if lines:
                report.append("%s: %d" % (title, len(lines)))
                report += ["  " + x for x in lines[:15]]
                if len(lines) > 15:
                    report.append("  ...")
        for what, cm, ca, cp in cps:
            report.append("at the %s: %d ingestion problems, %d differences before the "
                          "restart, %d after" % (what, len(cp), len(cm.lines), len(ca.lines)))
            report += ["  " + x for x in (cp + cm.lines[:8] + [x for x in cm.lines
                                                          if x.startswith("day by day")]
                                          + ca.lines)[:14]]
        if len({tuple(d.lines) for d in (mem, after, after9)}) > 1:
            report.append("(memory and the restarts disagree with each other too)")
        # The events that matter, replayed one call at a time on a fresh process.
        # Creators' figures differ mostly because their orders do: the orders alone, when
        # some differ, keep the list short.
        if loc_lines:
            report.append("reports day by day, in memory:")
            report += ["  " + x for x in loc_lines]
        orders = (mem.orders | after.orders | after9.orders | _problem_orders(problems)
                  | loc_orders)
        creators = mem.creators | after.creators | after9.creators
        for _, cm, ca, cp in cps:
            orders |= cm.orders | ca.orders | _problem_orders(cp)
            creators |= cm.creators | ca.creators
        if orders:
            creators = set()
        pairs = M.relevant([(e.kind, e.obj) for e in plan.events if e.obj is not None],
                           orders, creators)
        keep_objs = {id(o) for _, o in pairs}
        keep = {id(e) for e in plan.events if e.obj is not None and id(e.obj) in keep_objs}
        evs = replay_ops(plan, runner, keep)
        spos = settings_positions(evs, runner, plan)
        report += race_lines(plan, mem, after, after9)
        report.append("relevant events: %d" % len(evs))
        if orders or creators:
            rm, ra, rp = replay(tmp_path_factory, plan, holder, evs, spos)
            if not (rm or ra or rp):
                report.append("replayed alone, sequentially (one thread, no restart): the "
                              "service agrees with the model, so the disagreement needs "
                              "concurrency or restarts; the events, in the order they were "
                              "acknowledged [thread#call]:")
                report += describe_events(evs, spos, annotate(plan))
            else:
                report.append("replayed alone, sequentially (one thread, no restart): still "
                              "wrong (%d in memory, %d after a restart, %d ingestion): no "
                              "client concurrency needed (the service's own background "
                              "threads still run)" % (len(rm.lines), len(ra.lines), len(rp)))
                report += ["  " + x for x in (rp + rm.lines + ra.lines)[:10]]
                if SHRINK_S > 0:
                    def fails(sub):
                        # Twice: the service's background threads can make a failure
                        # come and go.
                        sp = settings_positions(sub, runner, plan)
                        for _ in range(2):
                            m2, a2, p2 = replay(tmp_path_factory, plan, holder, sub, sp)
                            if m2 or a2 or p2:
                                return True
                        return False

                    small, tests = ddmin(evs, fails, SHRINK_S)
                    sp = settings_positions(small, runner, plan)
                    m2, a2, p2 = replay(tmp_path_factory, plan, holder, small, sp)
                    report.append("shrunk by %d replays to %d events%s:"
                                  % (tests, len(small), "" if (m2 or a2 or p2) else
                                     " (which passed the last time: flaky?)"))
                    report += describe_events(small, sp)
                    report += ["  => " + x for x in (p2 + m2.lines + a2.lines)[:10]]
                else:
                    report += describe_events(evs, spos)
        pytest.fail("\n".join(report), pytrace=False)
    finally:
        a.stop()


# -- a case the differential test found, shrunk ---------------------------------------------


def test_an_order_right_after_the_first_full_run_has_every_touch(tmp_path_factory):
    """Found by the differential test (seed 109 of 1,500 events, shrunk to 22 events that
    failed with one client thread, then by hand): with --index-run-exposures 16, a batch of
    16 exposures fills the first run, whose index file a background thread writes and
    publishes; an order sent right after must still find all 16. Before the fix, in memory
    it found none of them in about one process of five (a restart joined them), so: 16
    fresh processes, about 1 s."""
    now = int(time.time())
    t = now - now % HOUR - 2 * HOUR
    lacking = []
    for i in range(16):
        a = Attr(tmp_path_factory, "attribution_first_run",
                 extra=["--conversion-cache-mb", "0", "--index-run-exposures", "16"]).start()
        try:
            ev = [exposure("e%02d" % k, "v", "c%d" % (k % 4), ["p"], "CLICK", t - DAY - k * HOUR)
                  for k in range(16)]
            assert int(a.exposures(ev).get("accepted", 0)) == 16
            assert int(a.conversions([conversion("o", "v", "p", 100, t)]).get("accepted", 0)) == 1
            n = len(a.explain("o", "ATTRIBUTION_MODEL_LINEAR").get("touches", []))
            if n != 16:
                lacking.append((i, n))
        finally:
            a.stop()
    assert not lacking, ("processes (number, touches found) whose order lacks some of its 16 "
                         "clicks: %s of 16" % (lacking,))
