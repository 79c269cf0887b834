"""yaowei.creator.v1.CreatorProfileService end to end, requests built from JSON over
types discovered by reflection. Black box: no generated stubs, no .proto files."""

import datetime
import statistics
import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2

from conftest import CREATOR_SERVICE

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS

# Every test here runs on SQLite and on PostgreSQL (conftest: the fixture `store`).
BOTH_STORES = True


def uid(prefix="c"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def iso(d):
    return d.isoformat()


def err_of(srv, method, request):
    with pytest.raises(grpc.RpcError) as ei:
        srv.call(method, request)
    return ei.value


def expect_error(srv, method, request, code, *words):
    e = err_of(srv, method, request)
    assert e.code() == code, "%s(%r) -> %s %r, want %s" % (method, request, e.code(), e.details(), code)
    for w in words:
        assert w in (e.details() or ""), "%s(%r) -> %s %r does not mention %r" % (
            method, request, e.code(), e.details(), w)
    return e


def ts(s):
    """RFC 3339 JSON timestamp -> nanoseconds since the epoch."""
    t = timestamp_pb2.Timestamp()
    t.FromJsonString(s)
    return t.ToNanoseconds()


def I(d, k):
    """int64 field of a JSON dict (int64 is a string in JSON; zero is omitted)."""
    return int(d.get(k, 0))


def F(d, k):
    return float(d.get(k, 0.0))


def make_creator(cid, **kw):
    c = {"creator_id": cid, "display_name": "Creator " + cid, "region": "CN-31",
         "categories": ["food"], "followers": 1234}
    c.update(kw)
    return c


def create(srv, cid=None, request_id=None, **kw):
    cid = cid or uid()
    req = {"creator": make_creator(cid, **kw)}
    if request_id:
        req["request_id"] = request_id
    return srv.call("CreateCreator", req)


# -- CreateCreator ----------------------------------------------------------------

def test_create_and_get(server):
    cid = uid()
    got = server.call("CreateCreator", {"creator": make_creator(
        cid, categories=["food", "travel"], followers=56789)})
    assert got["creator_id"] == cid
    assert got["display_name"] == "Creator " + cid
    assert got["region"] == "CN-31"
    assert got["categories"] == ["food", "travel"]
    assert I(got, "followers") == 56789
    # UNSPECIFIED on create means ACTIVE; create_time filled in by the server.
    assert got["status"] == "CREATOR_STATUS_ACTIVE"
    assert got.get("create_time"), got
    assert got.get("update_time"), got
    assert server.call("GetCreator", {"creator_id": cid}) == got


def test_create_keeps_caller_create_time_and_status(server):
    cid = uid()
    got = server.call("CreateCreator", {"creator": make_creator(
        cid, create_time="2023-05-06T07:08:09Z", status="CREATOR_STATUS_SUSPENDED")})
    assert got["create_time"] == "2023-05-06T07:08:09Z"
    assert got["status"] == "CREATOR_STATUS_SUSPENDED"


def test_create_request_id_retry_returns_same_creator(server):
    cid, rid = uid(), uid("req")
    first = create(server, cid, request_id=rid)
    again = create(server, cid, request_id=rid)
    assert again == first
    # Same creator_id under another request_id, or with none: ALREADY_EXISTS.
    expect_error(server, "CreateCreator",
                 {"request_id": uid("req"), "creator": make_creator(cid)}, ALREADY_EXISTS)
    expect_error(server, "CreateCreator", {"creator": make_creator(cid)}, ALREADY_EXISTS)
    # The original is unchanged.
    assert server.call("GetCreator", {"creator_id": cid}) == first


@pytest.mark.parametrize("cid", ["", "has space", "slash/no", "x" * 129, "ünïcode"])
def test_create_rejects_bad_creator_id(server, cid):
    expect_error(server, "CreateCreator", {"creator": make_creator(cid)}, INVALID, "creator_id")


def test_create_accepts_edge_creator_ids(server):
    long_id = (uid("z") + "z" * 128)[:128]
    for cid in ("a", "A.b-c_9" + uuid.uuid4().hex[:6], long_id):
        if cid == "a":
            try:
                server.call("DeleteCreator", {"creator_id": cid})
            except grpc.RpcError:
                pass
        assert create(server, cid)["creator_id"] == cid
        assert server.call("GetCreator", {"creator_id": cid})["creator_id"] == cid


def test_create_missing_creator(server):
    expect_error(server, "CreateCreator", {"request_id": uid("req")}, INVALID, "creator")


def test_create_negative_followers(server):
    expect_error(server, "CreateCreator", {"creator": make_creator(uid(), followers=-1)},
                 INVALID, "followers")


# -- GetCreator / BatchGetCreators ---------------------------------------------------

def test_get_not_found_names_id(server):
    cid = uid("missing")
    expect_error(server, "GetCreator", {"creator_id": cid}, NOT_FOUND, cid)


def test_get_empty_id(server):
    expect_error(server, "GetCreator", {"creator_id": ""}, INVALID, "creator_id")
    expect_error(server, "GetCreator", {}, INVALID, "creator_id")


def test_batch_get_keeps_order(server):
    ids = [uid("b") for _ in range(5)]
    made = {cid: create(server, cid, followers=i) for i, cid in enumerate(ids)}
    order = [ids[3], ids[0], ids[4], ids[1], ids[2]]
    got = server.call("BatchGetCreators", {"creator_ids": order})
    assert [c["creator_id"] for c in got["creators"]] == order
    assert got["creators"] == [made[c] for c in order]


def test_batch_get_missing_names_every_missing_id(server):
    have = create(server)["creator_id"]
    m1, m2 = uid("miss"), uid("miss")
    expect_error(server, "BatchGetCreators", {"creator_ids": [m1, have, m2]}, NOT_FOUND, m1, m2)


def test_batch_get_limit(server):
    have = create(server)["creator_id"]
    expect_error(server, "BatchGetCreators", {"creator_ids": [have] * 1001}, INVALID,
                 "creator_ids")
    # Exactly 1000 ids is allowed.
    got = server.call("BatchGetCreators", {"creator_ids": [have] * 1000})
    assert len(got["creators"]) == 1000


# -- UpdateCreator -------------------------------------------------------------

def test_update_only_masked_fields(server):
    cid = uid("u")
    orig = create(server, cid, categories=["food"], followers=100)
    upd = server.call("UpdateCreator", {
        "creator": {"creator_id": cid, "display_name": "New name", "region": "US-CA",
                    "followers": 999, "categories": ["beauty", "tech"]},
        "update_mask": "displayName,followers"})
    assert upd["display_name"] == "New name"
    assert I(upd, "followers") == 999
    assert upd["region"] == orig["region"]
    assert upd["categories"] == orig["categories"]
    assert upd["status"] == orig["status"]
    assert upd["create_time"] == orig["create_time"]
    assert ts(upd["update_time"]) >= ts(orig["update_time"])
    assert server.call("GetCreator", {"creator_id": cid}) == upd

    upd2 = server.call("UpdateCreator", {
        "creator": {"creator_id": cid, "categories": ["beauty", "tech"],
                    "status": "CREATOR_STATUS_SUSPENDED", "region": "ignored"},
        "update_mask": "categories,status"})
    assert upd2["categories"] == ["beauty", "tech"]
    assert upd2["status"] == "CREATOR_STATUS_SUSPENDED"
    assert upd2["region"] == orig["region"]
    assert upd2["display_name"] == "New name"


def test_update_empty_mask_updates_all_mutable_fields(server):
    cid = uid("u")
    orig = create(server, cid)
    new = {"creator_id": cid, "display_name": "All", "region": "JP-13",
           "categories": ["music"], "followers": 7, "status": "CREATOR_STATUS_ACTIVE"}
    upd = server.call("UpdateCreator", {"creator": new})
    for k in ("display_name", "region", "categories", "status"):
        assert upd[k] == new[k], k
    assert I(upd, "followers") == 7
    assert upd["create_time"] == orig["create_time"]


def test_update_errors(server):
    cid = uid("u")
    orig = create(server, cid)
    expect_error(server, "UpdateCreator", {"creator": {"creator_id": cid, "region": "x"},
                                           "update_mask": "noSuchField"}, INVALID, "update_mask")
    expect_error(server, "UpdateCreator", {"creator": {"creator_id": cid, "region": "x"},
                                           "update_mask": "region,noSuchField"},
                 INVALID, "update_mask")
    # Nothing changed by the rejected calls.
    assert server.call("GetCreator", {"creator_id": cid}) == orig
    missing = uid("missing")
    expect_error(server, "UpdateCreator", {"creator": {"creator_id": missing, "region": "x"},
                                           "update_mask": "region"}, NOT_FOUND, missing)
    expect_error(server, "UpdateCreator", {"creator": {"creator_id": "", "region": "x"},
                                           "update_mask": "region"}, INVALID, "creator_id")
    expect_error(server, "UpdateCreator", {"creator": {"creator_id": cid, "followers": -5},
                                           "update_mask": "followers"}, INVALID, "followers")


# -- DeleteCreator ---------------------------------------------------------------

def test_delete(server):
    cid = uid("d")
    create(server, cid)
    d = iso(today() - datetime.timedelta(days=1))
    server.call("RecordNoteStats", {"stats": [{"note_id": uid("n"), "creator_id": cid, "day": d,
                                               "views": 5}]})
    assert server.call("DeleteCreator", {"creator_id": cid}) == {}
    expect_error(server, "GetCreator", {"creator_id": cid}, NOT_FOUND, cid)
    expect_error(server, "DeleteCreator", {"creator_id": cid}, NOT_FOUND, cid)
    expect_error(server, "GetCreatorStats", {"creator_id": cid}, NOT_FOUND, cid)
    expect_error(server, "DeleteCreator", {"creator_id": ""}, INVALID, "creator_id")
    # The id can be used again; the old stats are gone with the old creator.
    create(server, cid)
    st = server.call("GetCreatorStats", {"creator_id": cid, "end_day": d})
    assert I(st, "notes") == 0 and I(st, "views") == 0, st


# -- ListCreators ---------------------------------------------------------------

LIST_CREATORS = [
    # id, region, categories, followers
    ("l-%02d" % i,
     ["CN-31", "CN-11", "US-CA"][i % 3],
     [["food"], ["travel", "food"], ["beauty"], ["tech", "travel"]][i % 4],
     i * 1000)
    for i in range(57)
]


def list_all(srv, page_size, **filters):
    seen, pages, token = [], 0, ""
    while True:
        req = dict(filters, page_size=page_size)
        if token:
            req["page_token"] = token
        resp = srv.call("ListCreators", req)
        page = resp.get("creators", [])
        if page_size > 0:
            assert len(page) <= page_size
        seen.extend(page)
        pages += 1
        token = resp.get("next_page_token", "")
        if not token:
            return seen, pages
        assert page, "empty page with a next_page_token"
        assert pages < 1000, "paging does not end"


@pytest.fixture
def listed(fresh_server):
    # Created out of order on purpose.
    for cid, region, cats, fol in sorted(LIST_CREATORS, key=lambda r: r[0][::-1]):
        create(fresh_server, cid, region=region, categories=cats, followers=fol)
    return fresh_server


@pytest.mark.parametrize("page_size", [1, 7, 50, 1000])
def test_list_pages_cover_everything_once_in_order(listed, page_size):
    got, pages = list_all(listed, page_size)
    ids = [c["creator_id"] for c in got]
    assert ids == sorted(r[0] for r in LIST_CREATORS)
    full = -(-len(LIST_CREATORS) // page_size)
    assert pages in (full, full + 1), pages  # + 1: an empty last page is allowed


def test_list_default_and_clamped_page_size(listed):
    resp = listed.call("ListCreators", {})
    assert len(resp["creators"]) == 50  # 0 means 50
    assert resp.get("next_page_token")
    resp = listed.call("ListCreators", {"page_size": 5000})  # clamped to 1000: all fit
    assert len(resp["creators"]) == len(LIST_CREATORS)
    assert not resp.get("next_page_token")


@pytest.mark.parametrize("filters", [
    {"category": "food"},
    {"category": "travel"},
    {"region": "CN-31"},
    {"min_followers": 20000},
    {"max_followers": 15000},
    {"min_followers": 10000, "max_followers": 30000},
    {"category": "travel", "region": "US-CA", "min_followers": 5000, "max_followers": 50000},
    {"category": "nothing-here"},
], ids=lambda f: ",".join("%s=%s" % kv for kv in f.items()))
def test_list_filters_with_paging(listed, filters):
    def match(r):
        cid, region, cats, fol = r
        if filters.get("category") and filters["category"] not in cats:
            return False
        if filters.get("region") and filters["region"] != region:
            return False
        if fol < filters.get("min_followers", 0):
            return False
        if filters.get("max_followers") and fol > filters["max_followers"]:
            return False
        return True

    want = sorted(r[0] for r in LIST_CREATORS if match(r))
    got, _ = list_all(listed, 4, **filters)
    assert [c["creator_id"] for c in got] == want


def test_list_page_stable_under_concurrent_insert(listed):
    # Insert before the cursor and after it between pages: each original creator is
    # still seen exactly once, order by creator_id.
    resp = listed.call("ListCreators", {"page_size": 10})
    seen = [c["creator_id"] for c in resp["creators"]]
    create(listed, "l-00a")  # sorts before the cursor
    create(listed, "l-99")   # sorts after it
    token = resp["next_page_token"]
    while token:
        resp = listed.call("ListCreators", {"page_size": 10, "page_token": token})
        seen += [c["creator_id"] for c in resp.get("creators", [])]
        token = resp.get("next_page_token", "")
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert set(r[0] for r in LIST_CREATORS) <= set(seen)


def test_list_bad_input(server):
    expect_error(server, "ListCreators", {"page_token": "not-a-token"}, INVALID, "page_token")
    expect_error(server, "ListCreators", {"page_token": "AAAA"}, INVALID, "page_token")
    expect_error(server, "ListCreators", {"page_token": "%%%"}, INVALID, "page_token")
    expect_error(server, "ListCreators", {"page_size": -1}, INVALID, "page_size")


# -- RecordNoteStats / GetCreatorStats ---------------------------------------

def row(note, creator, day, video=False, imp=0, views=0, plays=0, watch=0, cr=0.0,
        likes=0, collects=0, comments=0, shares=0, follows=0):
    r = {"note_id": note, "creator_id": creator, "day": iso(day), "is_video": video,
         "impressions": imp, "views": views, "video_plays": plays, "avg_watch_ms": watch,
         "completion_rate": cr, "likes": likes, "collects": collects, "comments": comments,
         "shares": shares, "follows_gained": follows}
    return r


def expected_stats(rows, end, window):
    """The aggregates computed by hand from the rows, per the contract's comments."""
    start = end - datetime.timedelta(days=window - 1)
    # Upsert by (note_id, day): the last row wins.
    latest = {}
    for r in rows:
        latest[(r["note_id"], r["day"])] = r
    inw = [r for r in latest.values() if iso(start) <= r["day"] <= iso(end)]
    notes = {}
    for r in inw:
        notes.setdefault(r["note_id"], []).append(r)
    video = {n for n, rs in notes.items() if any(x["is_video"] for x in rs)}
    s = lambda k, rs=inw: sum(r[k] for r in rs)
    eng = s("likes") + s("collects") + s("comments") + s("shares")
    imp = s("impressions")
    vrows = [r for r in inw if r["is_video"]]
    vimp = s("impressions", vrows)
    last7 = iso(end - datetime.timedelta(days=6))
    prev7 = iso(end - datetime.timedelta(days=13))
    return {
        "window_days": window,
        "start_day": iso(start),
        "end_day": iso(end),
        "notes": len(notes),
        "video_notes": len(video),
        "impressions": imp,
        "views": s("views"),
        "video_plays": s("video_plays"),
        "engagements": eng,
        "engagement_rate": eng / imp if imp else 0.0,
        "median_views_per_note": (statistics.median(sum(x["views"] for x in rs)
                                                    for rs in notes.values()) if notes else 0.0),
        "video_share": len(video) / len(notes) if notes else 0.0,
        "follower_gain": s("follows_gained"),
        "likes": s("likes"),
        "collects": s("collects"),
        "comments": s("comments"),
        "shares": s("shares"),
        "avg_completion_rate": (sum(r["completion_rate"] * r["impressions"] for r in vrows) / vimp
                                if vimp else 0.0),
        "views_last_7d": sum(r["views"] for r in inw if r["day"] >= last7),
        "views_prev_7d": sum(r["views"] for r in inw if prev7 <= r["day"] < last7),
        "active_days": len({r["day"] for r in inw}),
    }


FLOATS = ("engagement_rate", "median_views_per_note", "video_share", "avg_completion_rate")
INTS = ("notes", "video_notes", "impressions", "views", "video_plays", "engagements",
        "follower_gain", "likes", "collects", "comments", "shares", "views_last_7d",
        "views_prev_7d", "active_days")


def assert_stats(got, want, cid, skip=()):
    assert got["creator_id"] == cid
    assert int(got.get("window_days", 0)) == want["window_days"]
    assert got.get("start_day") == want["start_day"], (got, want)
    assert got.get("end_day") == want["end_day"], (got, want)
    for k in INTS:
        if k not in skip:
            assert I(got, k) == want[k], "%s: got %s want %s (%r)" % (k, got.get(k), want[k], got)
    for k in FLOATS:
        if k not in skip:
            assert F(got, k) == pytest.approx(want[k], rel=1e-9, abs=1e-12), \
                "%s: got %s want %s (%r)" % (k, got.get(k), want[k], got)


@pytest.fixture
def stats_creator(server):
    """A creator with a known set of daily rows around E = today - 5."""
    cid = uid("s")
    create(server, cid)
    E = today() - datetime.timedelta(days=5)
    d = lambda k: E + datetime.timedelta(days=k)
    n = lambda s: "%s-%s" % (cid, s)
    rows = [
        # note A, video: E, E-1, E-8
        row(n("A"), cid, d(0), True, 1000, 400, 380, 15000, 0.50, 40, 10, 5, 2, 3),
        row(n("A"), cid, d(-1), True, 2000, 900, 850, 14000, 0.40, 70, 20, 8, 4, 6),
        row(n("A"), cid, d(-8), True, 500, 100, 90, 12000, 0.30, 9, 1, 1, 0, 1),
        # note B, text: E-2, E-10
        row(n("B"), cid, d(-2), False, 800, 120, 0, 0, 0.0, 11, 6, 2, 1, 2),
        row(n("B"), cid, d(-10), False, 300, 60, 0, 0, 0.0, 3, 2, 0, 0, 0),
        # note G, text: E-4
        row(n("G"), cid, d(-4), False, 250, 50, 0, 0, 0.0, 5, 0, 1, 0, 0),
        # note C, video: E-20
        row(n("C"), cid, d(-20), True, 3000, 1500, 1400, 20000, 0.70, 100, 30, 12, 9, 15),
        # note H, video: E-25
        row(n("H"), cid, d(-25), True, 700, 210, 200, 9000, 0.25, 14, 3, 2, 1, 1),
        # note D, text: E-40 (only in longer windows)
        row(n("D"), cid, d(-40), False, 900, 300, 0, 0, 0.0, 20, 4, 3, 2, 4),
        # note I, video: E-50
        row(n("I"), cid, d(-50), True, 1200, 600, 550, 11000, 0.55, 30, 8, 4, 3, 5),
        # note F, text: E+2 (after E, before today)
        row(n("F"), cid, d(2), False, 400, 90, 0, 0, 0.0, 6, 1, 0, 1, 1),
    ]
    resp = server.call("RecordNoteStats", {"stats": rows})
    assert int(resp.get("upserted", 0)) == len(rows)
    return server, cid, rows, E


@pytest.mark.parametrize("window", [7, 14, 30, 60])
def test_creator_stats_match_hand_computed(stats_creator, window):
    srv, cid, rows, E = stats_creator
    got = srv.call("GetCreatorStats", {"creator_id": cid, "window_days": window,
                                       "end_day": iso(E)})
    want = expected_stats(rows, E, window)
    assert_stats(got, want, cid, skip=("views_last_7d", "views_prev_7d") if window < 14 else ())


def test_creator_stats_literal_values(stats_creator):
    """The 30-day window ending E, computed by hand once more, literally."""
    srv, cid, rows, E = stats_creator
    got = srv.call("GetCreatorStats", {"creator_id": cid, "window_days": 30, "end_day": iso(E)})
    # Notes in E-29..E: A (3 rows), B (2), G, C, H -> 5 notes, 3 of them video.
    assert I(got, "notes") == 5
    assert I(got, "video_notes") == 3
    assert I(got, "impressions") == 1000 + 2000 + 500 + 800 + 300 + 250 + 3000 + 700
    assert I(got, "views") == 400 + 900 + 100 + 120 + 60 + 50 + 1500 + 210
    eng = (40 + 10 + 5 + 2) + (70 + 20 + 8 + 4) + (9 + 1 + 1 + 0) + (11 + 6 + 2 + 1) \
        + (3 + 2 + 0 + 0) + (5 + 0 + 1 + 0) + (100 + 30 + 12 + 9) + (14 + 3 + 2 + 1)
    assert I(got, "engagements") == eng
    assert F(got, "engagement_rate") == pytest.approx(eng / 8550)
    # Per-note views: A 1400, B 180, G 50, C 1500, H 210 -> median 210.
    assert F(got, "median_views_per_note") == pytest.approx(210)
    assert F(got, "video_share") == pytest.approx(3 / 5)
    assert I(got, "follower_gain") == 3 + 6 + 1 + 2 + 0 + 0 + 15 + 1
    # Last 7 days E-6..E: A@E, A@E-1, B@E-2, G@E-4; the 7 before: A@E-8, B@E-10.
    assert I(got, "views_last_7d") == 400 + 900 + 120 + 50
    assert I(got, "views_prev_7d") == 100 + 60
    assert I(got, "active_days") == 8


def test_creator_stats_defaults(stats_creator):
    srv, cid, rows, E = stats_creator
    t0 = today()
    got = srv.call("GetCreatorStats", {"creator_id": cid})
    if today() != t0:
        pytest.skip("UTC day changed during the call")
    # window 0 means 30; empty end_day means today (UTC): F at E+2 is in, H at E-25 is out.
    assert_stats(got, expected_stats(rows, t0, 30), cid)
    assert int(got["window_days"]) == 30


def test_creator_stats_no_rows(server):
    cid = create(server)["creator_id"]
    end = today() - datetime.timedelta(days=1)
    got = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 10,
                                          "end_day": iso(end)})
    assert_stats(got, expected_stats([], end, 10), cid)


def test_creator_stats_bad_input(server):
    cid = create(server)["creator_id"]
    missing = uid("missing")
    expect_error(server, "GetCreatorStats", {"creator_id": missing}, NOT_FOUND, missing)
    expect_error(server, "GetCreatorStats", {"creator_id": ""}, INVALID, "creator_id")
    expect_error(server, "GetCreatorStats", {"creator_id": cid, "window_days": 367}, INVALID,
                 "window_days")
    expect_error(server, "GetCreatorStats", {"creator_id": cid, "window_days": -1}, INVALID,
                 "window_days")
    for bad in ("2024-13-01", "2024-02-30", "20240101", "yesterday"):
        expect_error(server, "GetCreatorStats", {"creator_id": cid, "end_day": bad}, INVALID,
                     "end_day")
    got = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 366,
                                          "end_day": "2024-02-29"})
    assert got["start_day"] == "2023-03-01" and got["end_day"] == "2024-02-29"


def test_record_upsert_by_note_and_day(server):
    cid = create(server)["creator_id"]
    E = today() - datetime.timedelta(days=3)
    note = uid("n")
    r1 = row(note, cid, E, False, 100, 10, likes=1)
    r2 = row(note, cid, E - datetime.timedelta(days=1), False, 50, 5)
    assert int(server.call("RecordNoteStats", {"stats": [r1, r2]}).get("upserted", 0)) == 2
    r1b = row(note, cid, E, False, 300, 30, likes=7)  # replaces r1
    assert int(server.call("RecordNoteStats", {"stats": [r1b]}).get("upserted", 0)) == 1
    got = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 7, "end_day": iso(E)})
    assert_stats(got, expected_stats([r1, r2, r1b], E, 7), cid)
    assert I(got, "views") == 35 and I(got, "notes") == 1 and I(got, "likes") == 7
    # The same (note, day) twice in one batch: the later row wins.
    r1c = dict(r1b, views=77)
    r1d = dict(r1b, views=88)
    server.call("RecordNoteStats", {"stats": [r1c, r1d]})
    got = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 7, "end_day": iso(E)})
    assert I(got, "views") == 88 + 5


BAD_ROWS = [
    ("negative likes", {"likes": -1}, "likes"),
    ("negative impressions", {"impressions": -5}, "impressions"),
    ("completion_rate 1.5", {"completion_rate": 1.5}, "completion_rate"),
    ("completion_rate -0.1", {"completion_rate": -0.1}, "completion_rate"),
    ("future day", {"day": "FUTURE"}, "day"),
    ("bad day format", {"day": "2024/01/02"}, "day"),
    ("impossible date", {"day": "2023-02-29"}, "day"),
    ("empty note_id", {"note_id": ""}, "note_id"),
    ("unknown creator", {"creator_id": "UNKNOWN"}, "creator"),
    ("empty creator", {"creator_id": ""}, "creator_id"),
]


@pytest.mark.parametrize("name,change,word", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_record_bad_row_rejects_whole_batch(server, name, change, word):
    cid = create(server)["creator_id"]
    E = today() - datetime.timedelta(days=2)
    existing = row(cid + "-old", cid, E, True, 100, 50, 40, 1000, 0.5, likes=5)
    server.call("RecordNoteStats", {"stats": [existing]})
    before = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 7, "end_day": iso(E)})

    good0 = dict(existing, views=999, likes=99)  # would overwrite the existing row
    bad = row(cid + "-new1", cid, E, False, 10, 5)
    change = dict(change)
    if change.get("day") == "FUTURE":
        change["day"] = iso(today() + datetime.timedelta(days=2))
    if change.get("creator_id") == "UNKNOWN":
        change["creator_id"] = uid("nobody")
    bad.update(change)
    good2 = row(cid + "-new2", cid, E, False, 10, 5)
    batch = [good0, bad, good2]
    e = expect_error(server, "RecordNoteStats", {"stats": batch}, INVALID, "stats[1]", word)
    # Nothing of the batch was stored.
    after = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 7, "end_day": iso(E)})
    assert after == before, (name, e.details())
    assert I(after, "notes") == 1 and I(after, "views") == 50


def test_record_reports_first_bad_row(server):
    cid = create(server)["creator_id"]
    E = today() - datetime.timedelta(days=2)
    rows = [row(uid("n"), cid, E, views=1) for _ in range(5)]
    rows[2]["likes"] = -1
    rows[4]["completion_rate"] = 2.0
    e = expect_error(server, "RecordNoteStats", {"stats": rows}, INVALID, "stats[2]")
    assert "stats[4]" not in e.details()


def test_record_batch_limit(server):
    cid = create(server)["creator_id"]
    E = iso(today() - datetime.timedelta(days=1))
    rows = [{"note_id": "n%d" % i, "creator_id": cid, "day": E} for i in range(10001)]
    expect_error(server, "RecordNoteStats", {"stats": rows}, INVALID, "stats")
    st = server.call("GetCreatorStats", {"creator_id": cid, "end_day": E})
    assert I(st, "notes") == 0


def test_record_large_batch_and_window_edges(server):
    cid = create(server)["creator_id"]
    E = today() - datetime.timedelta(days=1)
    rows = [row("%s-n%d" % (cid, i % 50), cid, E - datetime.timedelta(days=i // 50),
                i % 3 == 0, imp=10 + i, views=i, likes=i % 7)
            for i in range(2000)]
    # Notes alternate video/non-video per row; keep is_video stable per note.
    for r in rows:
        r["is_video"] = int(r["note_id"].rsplit("n", 1)[1]) % 3 == 0
    resp = server.call("RecordNoteStats", {"stats": rows})
    assert int(resp["upserted"]) == 2000
    for window in (1, 2, 39, 40, 41, 366):
        got = server.call("GetCreatorStats", {"creator_id": cid, "window_days": window,
                                              "end_day": iso(E)})
        assert_stats(got, expected_stats(rows, E, window), cid,
                     skip=("views_last_7d", "views_prev_7d") if window < 14 else ())


# -- BatchGetCreatorStats ----------------------------------------------------------

def test_batch_get_creator_stats(stats_creator):
    srv, cid, rows, E = stats_creator
    other = create(srv)["creator_id"]
    orow = row(other + "-x", other, E, True, 50, 20, 18, 500, 0.9, likes=2)
    srv.call("RecordNoteStats", {"stats": [orow]})
    req = {"creator_ids": [other, cid, other], "window_days": 30, "end_day": iso(E)}
    got = srv.call("BatchGetCreatorStats", req)["stats"]
    assert [s["creator_id"] for s in got] == [other, cid, other]
    assert_stats(got[1], expected_stats(rows, E, 30), cid)
    assert_stats(got[0], expected_stats([orow], E, 30), other)
    assert got[0] == got[2]
    # The same as asking one by one.
    one = srv.call("GetCreatorStats", {"creator_id": cid, "window_days": 30, "end_day": iso(E)})
    assert got[1] == one

    missing = uid("missing")
    expect_error(srv, "BatchGetCreatorStats", {"creator_ids": [cid, missing]}, NOT_FOUND, missing)
    expect_error(srv, "BatchGetCreatorStats", {"creator_ids": [cid] * 1001}, INVALID,
                 "creator_ids")
    expect_error(srv, "BatchGetCreatorStats", {"creator_ids": [cid], "window_days": 400},
                 INVALID, "window_days")
    expect_error(srv, "BatchGetCreatorStats", {"creator_ids": [cid], "end_day": "nope"},
                 INVALID, "end_day")


# -- every method, discovered by reflection ---------------------------------------

def test_every_method_is_covered(server):
    sd = server.client.service(CREATOR_SERVICE)
    covered = {"CreateCreator", "GetCreator", "BatchGetCreators", "UpdateCreator",
               "DeleteCreator", "ListCreators", "RecordNoteStats", "GetCreatorStats",
               "BatchGetCreatorStats"}
    assert {m.name for m in sd.methods} == covered
