"""Creator profile and tier scoring on PostgreSQL (--store postgresql://...) as several
replicas of one database, against a real PostgreSQL (pg_server.py):

- coherence: a creator created, updated or deleted through one replica is seen by
  GetCreator on another within 1 s; a tier policy update on one tier scoring replica is
  in force on another within 1 s;
- request_id and creator_id across replicas, one after the other and at the same time;
  a page token of one replica works on another (the key is in the database);
- the database stopped (and killed -9) under load: calls fail UNAVAILABLE within their
  deadline, health is NOT_SERVING, GetCreator answers from the cache, the service comes
  back by itself, and nothing acknowledged is lost;
- --store-read on a streaming standby: ListCreators reads there (paused replay hides a
  new creator from it, GetCreator still sees it), and sees writes once replayed;
- start-up: replicas started together on a new database migrate it once.

Needs: bazel build of creator profile and tier scoring; Debian's postgresql.
"""

import datetime
import threading
import time
import uuid

import grpc
import pytest

import ywclient
from conftest import (CREATOR_SERVICE, TIER_REFRESH_MS, TIER_SCORING_BIN, TIER_SERVICE,
                      ServerProcess, _make_server, binary_path, new_database, pg_server)
from pg_server import pg_bin_dir

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ABORTED = grpc.StatusCode.ABORTED

COHERENCE_BOUND_S = 1.0

# Always run where PostgreSQL is installed: YW_TEST_STORES picks the stores of the
# store-parametrized suites only (make test's release pass runs those on SQLite alone).
pytestmark = pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL is not installed")


def uid(prefix="pg"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def today():
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return OK
    except grpc.RpcError as e:
        return e.code()


# -- replicas -----------------------------------------------------------------------------

def creator_replica(tmp_path_factory, uri, name, extra=()):
    """A creator profile process (not started) on the database at `uri`."""
    return _make_server(tmp_path_factory, name, list(extra), store="postgres",
                        store_uri_args=["--store", uri])


def tier_replica(tmp_path_factory, uri, name, creator, extra=()):
    """A tier scoring process (not started) on `uri`, reading creators from `creator`."""
    base = tmp_path_factory.mktemp(name)
    (base / "data").mkdir()
    srv = ServerProcess(binary_path(TIER_SCORING_BIN), str(base / "data"), str(base),
                        ["--creator-profile-addr", creator.address, "--refresh-interval-ms",
                         str(TIER_REFRESH_MS), "--store", uri] + list(extra), name=name)
    srv.store = "postgres"
    return srv


class Replicas:
    """Processes started by a test, stopped (exit 0 asserted) at its end."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory
        self.procs = []

    def creator(self, uri, name="cp", extra=(), start=True):
        srv = creator_replica(self.tmp, uri, name, extra)
        self.procs.append(srv)
        return srv.start() if start else srv

    def tier(self, uri, creator, name="ts", extra=(), start=True):
        srv = tier_replica(self.tmp, uri, name, creator, extra)
        self.procs.append(srv)
        return srv.start() if start else srv

    def stop(self):
        for srv in reversed(self.procs):
            srv.stop()


@pytest.fixture
def replicas(tmp_path_factory):
    r = Replicas(tmp_path_factory)
    yield r
    r.stop()


def cp(srv, method, request=None, **kw):
    return srv.call("%s/%s" % (CREATOR_SERVICE, method), request, **kw)


def ts(srv, method, request=None, **kw):
    return srv.call("%s/%s" % (TIER_SERVICE, method), request, **kw)


def new_creator(cid, **kw):
    c = {"creator_id": cid, "display_name": "Creator " + cid, "region": "CN-31",
         "categories": ["food"], "followers": 1234}
    c.update(kw)
    return c


def wait_until(check, bound, what, step=0.02):
    """Polls check() until it returns a true value, at most `bound` seconds (asserted);
    returns (value, seconds taken)."""
    t0 = time.monotonic()
    while True:
        got = check()
        took = time.monotonic() - t0
        if got:
            return got, took
        assert took < bound, "%s: not within %.1f s" % (what, bound)
        time.sleep(step)


def get_or_code(srv, cid):
    try:
        return cp(srv, "GetCreator", {"creator_id": cid}, timeout=2)
    except grpc.RpcError as e:
        return e.code()


# -- replicas on one database ---------------------------------------------------------------

def test_creator_changes_seen_on_the_other_replica_within_1s(replicas):
    uri = new_database("coherence")
    a = replicas.creator(uri, "cp_a")
    b = replicas.creator(uri, "cp_b")
    for src, dst in ((a, b), (b, a)):
        cid = uid("coh")
        # dst asked first: a "not found" it may remember must not outlive the create.
        assert get_or_code(dst, cid) == NOT_FOUND
        made = cp(src, "CreateCreator", {"creator": new_creator(cid)})
        wait_until(lambda: get_or_code(dst, cid) == made, COHERENCE_BOUND_S,
                   "create of %s on %s seen on %s" % (cid, src.name, dst.name))
        # dst now holds it (cached): an update through src must replace it there.
        assert cp(dst, "GetCreator", {"creator_id": cid}) == made
        for k in range(3):
            upd = cp(src, "UpdateCreator", {
                "creator": {"creator_id": cid, "display_name": "renamed %d" % k,
                            "followers": 5000 + k},
                "update_mask": "displayName,followers"})
            assert upd["display_name"] == "renamed %d" % k
            wait_until(lambda: get_or_code(dst, cid) == upd, COHERENCE_BOUND_S,
                       "update %d of %s on %s seen on %s" % (k, cid, src.name, dst.name))
        cp(src, "DeleteCreator", {"creator_id": cid})
        wait_until(lambda: get_or_code(dst, cid) == NOT_FOUND, COHERENCE_BOUND_S,
                   "delete of %s on %s seen on %s" % (cid, src.name, dst.name))
        # And on the replica that deleted it, at once.
        assert get_or_code(src, cid) == NOT_FOUND


def test_request_id_across_replicas(replicas):
    uri = new_database("request_id")
    a = replicas.creator(uri, "cp_a")
    b = replicas.creator(uri, "cp_b")
    cid, rid = uid("rid"), uid("req")
    first = cp(a, "CreateCreator", {"request_id": rid, "creator": new_creator(cid)})
    again = cp(b, "CreateCreator", {"request_id": rid, "creator": new_creator(cid)})
    assert again == first
    # Another request_id for the same creator_id on B: ALREADY_EXISTS.
    assert code_of(cp, b, "CreateCreator", {"request_id": uid("req"),
                                            "creator": new_creator(cid)}) == ALREADY_EXISTS
    assert cp(b, "GetCreator", {"creator_id": cid}) == first


def _race(fns):
    """Runs the calls at the same moment (a barrier), each on a thread; returns their
    (code, reply or error details), in order."""
    barrier = threading.Barrier(len(fns))
    out = [None] * len(fns)

    def run(i):
        barrier.wait()
        try:
            out[i] = (OK, fns[i]())
        except grpc.RpcError as e:
            out[i] = (e.code(), e.details())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(o is not None for o in out), out
    return out


def listed_in_region(srv, region):
    resp = cp(srv, "ListCreators", {"region": region, "page_size": 100})
    return [c["creator_id"] for c in resp.get("creators", [])]


def test_concurrent_creates_on_two_replicas(replicas):
    uri = new_database("race")
    a = replicas.creator(uri, "cp_a")
    b = replicas.creator(uri, "cp_b")
    # Clients of their own per replica and thread side (channels are thread-safe; the
    # reflection client is warmed up here, before the threads).
    for srv in (a, b):
        cp(srv, "ListCreators", {"page_size": 1})
    rounds = 15
    for r in range(rounds):
        # One request_id on both: both answer the same creator, made once.
        cid, rid, region = uid("same"), uid("req"), uid("R")[:20]
        req = {"request_id": rid, "creator": new_creator(cid, region=region)}
        got = _race([lambda: cp(a, "CreateCreator", req), lambda: cp(b, "CreateCreator", req)])
        assert [g[0] for g in got] == [OK, OK], got
        assert got[0][1] == got[1][1], got
        assert listed_in_region(a, region) == [cid]
        assert listed_in_region(b, region) == [cid]

        # One creator_id under two request ids: one made, the other ALREADY_EXISTS.
        cid, region = uid("one"), uid("R")[:20]
        reqs = [{"request_id": uid("req"),
                 "creator": new_creator(cid, region=region, display_name="by %s" % who)}
                for who in ("a", "b")]
        got = _race([lambda: cp(a, "CreateCreator", reqs[0]),
                     lambda: cp(b, "CreateCreator", reqs[1])])
        codes = sorted(g[0].name for g in got)
        assert codes == ["ALREADY_EXISTS", "OK"], got
        winner = [g[1] for g in got if g[0] == OK][0]
        assert listed_in_region(a, region) == [cid]
        for srv in (a, b):
            wait_until(lambda: get_or_code(srv, cid) == winner, COHERENCE_BOUND_S,
                       "the created one on %s" % srv.name)


def test_page_token_of_one_replica_works_on_another(replicas):
    uri = new_database("tokens")
    a = replicas.creator(uri, "cp_a")
    b = replicas.creator(uri, "cp_b")
    region = uid("R")[:20]
    ids = ["tok-%s-%02d" % (region, i) for i in range(7)]
    for cid in ids:
        cp(a, "CreateCreator", {"creator": new_creator(cid, region=region)})
    seen, token, turn = [], "", 0
    while True:
        srv = (a, b)[turn % 2]  # A, B, A, B: each page on the other replica
        req = {"region": region, "page_size": 2}
        if token:
            req["page_token"] = token
        resp = cp(srv, "ListCreators", req)
        seen += [c["creator_id"] for c in resp.get("creators", [])]
        token = resp.get("next_page_token", "")
        turn += 1
        if not token:
            break
        assert turn < 20
    assert seen == ids
    assert turn == 4
    # A token of A after a restart of A, on B and on A: still valid (the key is the
    # database's, not a process's).
    first = cp(a, "ListCreators", {"region": region, "page_size": 3})
    a.restart()
    for srv in (b, a):
        nxt = cp(srv, "ListCreators", {"region": region, "page_size": 3,
                                        "page_token": first["next_page_token"]})
        assert [c["creator_id"] for c in nxt["creators"]] == ids[3:6]


def test_tier_policy_update_in_force_on_the_other_replica_within_1s(replicas):
    uri = new_database("policy")
    ca = replicas.creator(uri, "cp_a")
    cb = replicas.creator(uri, "cp_b")
    ta = replicas.tier(uri, ca, "ts_a")
    tb = replicas.tier(uri, cb, "ts_b")
    cid = uid("pol")
    cp(ca, "CreateCreator", {"creator": new_creator(cid, followers=60000)})
    for t in (ta, tb):
        wait_until(lambda: code_of(ts, t, "ScoreCreator", {"creator_id": cid}) == OK, 5,
                   "creator scored on %s" % t.name)
        assert ts(t, "ScoreCreator", {"creator_id": cid})["tier"] == "TIER_MID"
    # The default: the same on both (when each started is not asked).
    no_time = lambda p: {k: v for k, v in p.items() if k != "update_time"}  # noqa: E731
    assert no_time(ts(ta, "GetTierPolicy", {})) == no_time(ts(tb, "GetTierPolicy", {}))

    for k, (src, dst) in enumerate(((ta, tb), (tb, ta))):
        mid = 100000 + k
        upd = ts(src, "UpdateTierPolicy", {"policy": {"mid_min_followers": str(mid)},
                                           "update_mask": "midMinFollowers"})
        assert upd["mid_min_followers"] == str(mid)
        wait_until(lambda: ts(dst, "GetTierPolicy", {}) == upd, COHERENCE_BOUND_S,
                   "policy %s of %s in force on %s" % (upd["version"], src.name, dst.name))
        # In force: scored with it on the other replica too.
        s = ts(dst, "ScoreCreator", {"creator_id": cid})
        assert s["tier"] == "TIER_TAIL" and s["policy_version"] == upd["version"], s
        # A read-modify-write with the version before is refused on either replica.
        stale = dict({k: v for k, v in upd.items() if k != "update_time"},
                     version=str(int(upd["version"]) - 1), window_days=7)
        for t in (src, dst):
            assert code_of(ts, t, "UpdateTierPolicy", {"policy": stale}) == ABORTED
    assert ts(ta, "GetTierPolicy", {})["version"] == "3"


# -- the database stopped, or killed, under load ------------------------------------------

CALL_DEADLINE_S = 2.0
# Slack past a deadline for the reply to reach us and the thread to be scheduled.
DEADLINE_SLACK_S = 0.5


class Writer(threading.Thread):
    """Creates creators and records note stats through one replica until stopped; every
    call has a deadline, and is recorded: (start, end, kind, key, code)."""

    def __init__(self, srv, prefix):
        super().__init__(daemon=True)
        self.srv = srv
        self.prefix = prefix
        self.stat_cid = prefix + "-stats"
        self.calls = []
        self.halt = threading.Event()
        self.n = 0
        # Yesterday (UTC), fixed: the day does not change under the test.
        self.day = (datetime.datetime.now(datetime.timezone.utc).date()
                    - datetime.timedelta(days=1)).isoformat()

    def create_req(self, k):
        cid = "%s-%04d" % (self.prefix, k)
        return {"request_id": "req-" + cid, "creator": new_creator(cid, region=self.prefix)}

    def stats_req(self, k):
        return {"stats": [{"note_id": "%s-n%04d" % (self.prefix, k), "creator_id": self.stat_cid,
                           "day": self.day, "impressions": 10, "views": 1}]}

    def one(self, kind, k):
        t0 = time.monotonic()
        try:
            if kind == "create":
                cp(self.srv, "CreateCreator", self.create_req(k), timeout=CALL_DEADLINE_S)
            else:
                cp(self.srv, "RecordNoteStats", self.stats_req(k), timeout=CALL_DEADLINE_S)
            code, details = OK, ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        self.calls.append((t0, time.monotonic(), kind, k, code, details))

    def run(self):
        while not self.halt.is_set():
            self.one("create", self.n)
            self.one("stats", self.n)
            self.n += 1
            time.sleep(0.01)


def health(srv, service=""):
    try:
        return ywclient.health_check(srv.channel, service, timeout=1.0)
    except grpc.RpcError as e:
        return e.code().name


@pytest.fixture(scope="module")
def outage_pg():
    from pg_server import PgServer
    pg = PgServer("pg-outage").start()
    yield pg
    pg.destroy()


@pytest.fixture
def own_pg(outage_pg):
    """A PostgreSQL of these tests' own (not the session's): they stop it and kill it.
    Running at the start of each test."""
    if not outage_pg.running():
        outage_pg.start()
    yield outage_pg


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_database_away_under_load(replicas, own_pg, how):
    pg = own_pg
    uri = pg.create_database("outage_" + how)
    srv = replicas.creator(uri, "cp_outage")
    prefix = uid("w")
    cp(srv, "CreateCreator", {"creator": new_creator(prefix + "-stats")})
    known = [cp(srv, "CreateCreator", {"creator": new_creator(uid("known"))})
             for _ in range(5)]
    for c in known:  # read once: in the cache
        assert cp(srv, "GetCreator", {"creator_id": c["creator_id"]}) == c
    known_ids = [c["creator_id"] for c in known]

    writer = Writer(srv, prefix)
    # Every method the threads call loaded by the reflection client first.
    code_of(cp, srv, "RecordNoteStats", {"stats": []})
    cp(srv, "BatchGetCreators", {"creator_ids": known_ids})
    writer.start()
    time.sleep(1.0)
    if how == "stop":
        pg.stop()
    else:
        pg.kill9()
    t_down1 = time.monotonic()  # the database is away from here on

    # While it is away (3 s): health NOT_SERVING (once noticed, and noticed soon),
    # GetCreator and BatchGetCreators of known creators answered from the cache.
    healths, cache_reads = [], []
    while time.monotonic() < t_down1 + 3.0:
        healths.append((time.monotonic(), health(srv), health(srv, CREATOR_SERVICE)))
        for cid, c in zip(known_ids, known):
            t0 = time.monotonic()
            cache_reads.append((cid, get_or_code(srv, cid), time.monotonic() - t0))
        t0 = time.monotonic()
        try:
            batch = cp(srv, "BatchGetCreators", {"creator_ids": known_ids}, timeout=2)
            cache_reads.append(("batch", batch.get("creators"), time.monotonic() - t0))
        except grpc.RpcError as e:
            cache_reads.append(("batch", e.code(), time.monotonic() - t0))
        time.sleep(0.1)
    t_up0 = time.monotonic()
    pg.start()

    # Back: SERVING again by itself (no restart of the service), and writes succeed.
    _, took = wait_until(lambda: health(srv) == "SERVING", 15.0,
                         "SERVING again after the database came back", step=0.05)
    assert health(srv, CREATOR_SERVICE) == "SERVING"
    t_back = time.monotonic()
    time.sleep(1.0)
    writer.halt.set()
    writer.join(30)
    assert not writer.is_alive()
    assert srv.running(), srv.log_tail()

    # Health: NOT_SERVING within 2 s of the database going away, and from then on
    # until it came back.
    down = [(t, h0, h1) for t, h0, h1 in healths]
    noticed = [t for t, h0, h1 in down if h0 == "NOT_SERVING" and h1 == "NOT_SERVING"]
    assert noticed, "health never NOT_SERVING while the database was away: %r" % down[:5]
    assert noticed[0] - t_down1 < 2.0, noticed[0] - t_down1
    after = [(h0, h1) for t, h0, h1 in down if t >= noticed[0]]
    assert all(h == ("NOT_SERVING", "NOT_SERVING") for h in after), after

    # The cache answered every read of a known creator, at once.
    by_id = dict(zip(known_ids, known))
    for key, got, took_s in cache_reads:
        if key == "batch":
            assert got == known, got
        else:
            assert got == by_id[key], (key, got)
        assert took_s < 1.0, (key, took_s)

    # Every call: OK or UNAVAILABLE, never another code, never past its deadline; none
    # that started after the database went away and ended before it was back was OK;
    # some failed (the outage was seen).
    failed = []
    for t0, t1, kind, k, code, details in writer.calls:
        assert code in (OK, UNAVAILABLE), (kind, k, code, details)
        assert t1 - t0 < CALL_DEADLINE_S + DEADLINE_SLACK_S, (kind, k, code, t1 - t0)
        if t0 > t_down1 and t1 < t_up0:
            assert code == UNAVAILABLE, (kind, k, code, "acknowledged with the database away")
        if code != OK:
            failed.append((kind, k))
    assert failed, "no call failed while the database was away"
    assert any(t0 > t_back and code == OK for t0, _, _, _, code, _ in writer.calls), \
        "no write succeeded after the database came back"

    # Nothing acknowledged lost: read through a new replica (an empty cache) after the
    # failed calls were sent again (their request_id / note key make that safe).
    for kind, k in failed:
        if kind == "create":
            cp(srv, "CreateCreator", writer.create_req(k), timeout=10)
        else:
            cp(srv, "RecordNoteStats", writer.stats_req(k), timeout=10)
    fresh = replicas.creator(uri, "cp_after")
    acked = ["%s-%04d" % (prefix, k) for _, _, kind, k, code, _ in writer.calls
             if kind == "create" and code == OK]
    creates = sorted({k for _, _, kind, k, _, _ in writer.calls if kind == "create"})
    assert acked
    got = cp(fresh, "BatchGetCreators", {"creator_ids": acked})
    assert [c["creator_id"] for c in got["creators"]] == acked
    all_ids = ["%s-%04d" % (prefix, k) for k in creates]
    listed, token = [], ""
    while True:
        req = {"region": prefix, "page_size": 1000}
        if token:
            req["page_token"] = token
        resp = cp(fresh, "ListCreators", req)
        listed += [c["creator_id"] for c in resp.get("creators", [])]
        token = resp.get("next_page_token", "")
        if not token:
            break
    assert sorted(listed) == all_ids  # each once: a retried create did not make two
    stats_calls = {k for _, _, kind, k, _, _ in writer.calls if kind == "stats"}
    st = cp(fresh, "GetCreatorStats", {"creator_id": prefix + "-stats", "window_days": 1,
                                        "end_day": writer.day})
    assert int(st.get("notes", 0)) == len(stats_calls)
    assert int(st.get("impressions", 0)) == 10 * len(stats_calls)


def test_database_not_there_at_a_call_fails_fast_not_hangs(replicas, own_pg):
    """Calls that need the database, made while it is away, fail UNAVAILABLE well within
    their deadline; tier scoring on the same database says NOT_SERVING too."""
    pg = own_pg
    uri = pg.create_database("fast")
    c = replicas.creator(uri, "cp_fast")
    t = replicas.tier(uri, c, "ts_fast")
    cid = uid("fast")
    cp(c, "CreateCreator", {"creator": new_creator(cid)})
    pg.stop()
    calls = [
        (c, "%s/CreateCreator" % CREATOR_SERVICE, {"creator": new_creator(uid("x"))}),
        (c, "%s/UpdateCreator" % CREATOR_SERVICE,
         {"creator": {"creator_id": cid, "followers": 9}, "update_mask": "followers"}),
        (c, "%s/DeleteCreator" % CREATOR_SERVICE, {"creator_id": cid}),
        (c, "%s/ListCreators" % CREATOR_SERVICE, {"page_size": 10}),
        (c, "%s/GetCreatorStats" % CREATOR_SERVICE, {"creator_id": cid}),
        (t, "%s/UpdateTierPolicy" % TIER_SERVICE,
         {"policy": {"window_days": 7}, "update_mask": "windowDays"}),
    ]
    try:
        for deadline in (5.0, 1.0):
            for srv, method, req in calls:
                t0 = time.monotonic()
                code = code_of(srv.call, method, req, timeout=deadline)
                took = time.monotonic() - t0
                assert code == UNAVAILABLE, (method, code)
                assert took < deadline, (method, took)
        for srv in (c, t):
            wait_until(lambda: health(srv) == "NOT_SERVING", 2.0,
                       "%s NOT_SERVING with the database away" % srv.name)
    finally:
        pg.start()
    for srv in (c, t):
        wait_until(lambda: health(srv) == "SERVING", 15.0, "%s SERVING again" % srv.name,
                   step=0.05)
    # The refused update did not happen; the creator is as it was.
    assert cp(c, "GetCreator", {"creator_id": cid})["followers"] == "1234"
    assert ts(t, "GetTierPolicy", {})["version"] == "1"


# -- a streaming standby for the reads that may lag -----------------------------------------

@pytest.fixture
def standby():
    pg = pg_server()
    s = pg.standby().start()
    yield s
    s.destroy()


def test_store_read_on_a_streaming_standby(replicas, standby):
    pg = pg_server()
    db = "standby_%s" % uuid.uuid4().hex[:8]
    uri = pg.create_database(db)
    # The new database reaches the standby by replication too.
    wait_until(lambda: standby.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'"
                                   % db) == "1", 10, "database replicated")
    srv = replicas.creator(uri, "cp_standby", ["--store-read", standby.uri(db)])
    region = uid("R")[:20]
    first = cp(srv, "CreateCreator", {"creator": new_creator(uid("sb"), region=region)})
    wait_until(lambda: listed_in_region(srv, region) == [first["creator_id"]], 5.0,
               "a write listed through the standby")

    # Replay paused on the standby: a new creator is written (on the primary) and read
    # by GetCreator, but ListCreators, which reads on the standby, does not list it.
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        second = cp(srv, "CreateCreator", {"creator": new_creator(uid("sb"), region=region)})
        assert cp(srv, "GetCreator", {"creator_id": second["creator_id"]}) == second
        assert pg.sql("SELECT count(*) FROM pg_stat_replication") == "1"
        time.sleep(0.5)
        assert listed_in_region(srv, region) == [first["creator_id"]]
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: sorted(listed_in_region(srv, region)) ==
               sorted([first["creator_id"], second["creator_id"]]), 5.0,
               "the write listed once replayed")
    # The service works on: update, delete, stats.
    cid = first["creator_id"]
    upd = cp(srv, "UpdateCreator", {"creator": {"creator_id": cid, "followers": 77},
                                    "update_mask": "followers"})
    assert cp(srv, "GetCreator", {"creator_id": cid}) == upd
    cp(srv, "RecordNoteStats", {"stats": [{"note_id": uid("n"), "creator_id": cid,
                                           "day": today(), "impressions": 5}]})
    cp(srv, "DeleteCreator", {"creator_id": second["creator_id"]})
    assert get_or_code(srv, second["creator_id"]) == NOT_FOUND
    wait_until(lambda: listed_in_region(srv, region) == [cid], 5.0, "the delete listed")
    assert health(srv) == "SERVING"


# -- start-up --------------------------------------------------------------------------------

def schema_versions(pg, db):
    """yw_schema_versions: [(schema, version)] in schema order."""
    out = pg.sql("SELECT schema || ' ' || version FROM yw_schema_versions ORDER BY schema",
                 db=db)
    return [(r.split()[0], int(r.split()[1])) for r in out.splitlines()]


def test_replicas_started_together_migrate_once(replicas):
    pg = pg_server()
    # The reference: one of each, started alone on a database of its own.
    ref_db = "ref_%s" % uuid.uuid4().hex[:8]
    ref_uri = pg.create_database(ref_db)
    rc = replicas.creator(ref_uri, "cp_ref")
    replicas.tier(ref_uri, rc, "ts_ref")
    ref = schema_versions(pg, ref_db)
    # One row per service (kept under its program's name), at its latest version.
    assert [name for name, _ in ref] == ["creator_profile", "tier_scoring"], ref
    assert all(v >= 1 for _, v in ref), ref

    for attempt in range(3):
        db = "together_%d_%s" % (attempt, uuid.uuid4().hex[:8])
        uri = pg.create_database(db)
        cps = [replicas.creator(uri, "cp_t%d%s" % (attempt, x), start=False) for x in "ab"]
        tss = [replicas.tier(uri, cps[i], "ts_t%d%s" % (attempt, x), start=False)
               for i, x in enumerate("ab")]
        procs = cps + tss
        # All four at once: each start() (it waits for SERVING) on a thread of its own.
        errors = []

        def start(p):
            try:
                p.start()
            except BaseException as e:  # pytest.fail's Failed is a BaseException
                errors.append("%s: %s" % (p.name, e))

        threads = [threading.Thread(target=start, args=(p,)) for p in procs]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, "\n".join(errors)
        for p in procs:
            p.assert_alive()
        # Migrated once: a migration run twice at once would have failed a start (its
        # CREATE TABLE of a table the other made), or left another version.
        assert schema_versions(pg, db) == ref
        # Both serve, on one schema: a creator made on one is read on the other.
        cid = uid("mig")
        made = cp(cps[0], "CreateCreator", {"creator": new_creator(cid)})
        wait_until(lambda: get_or_code(cps[1], cid) == made, COHERENCE_BOUND_S,
                   "create seen on the other replica")
        assert ts(tss[1], "GetTierPolicy", {})["version"] == "1"
        for p in procs:
            p.stop()
