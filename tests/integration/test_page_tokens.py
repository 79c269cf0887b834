"""Page tokens of every listing: ListCreators, ListCreatorsByTier and ListTopCreators
(common/page_token.h). A token is signed with HMAC-SHA256 under --data-dir/page_token.key
(on PostgreSQL, a key kept in the database) and bound to its query: an edited token, a forged one, one of another query, or one whose
position is out of range is INVALID_ARGUMENT naming page_token, and a token survives a
restart of the service.

Needs: bazel build of the three services.
"""

import base64
import struct
import time
import uuid

import grpc
import pytest

from conftest import CREATOR_SERVICE, TIER_SERVICE
from test_attribution import RANGE, T, Attr, conversion, exposure

INVALID = grpc.StatusCode.INVALID_ARGUMENT

# The creator profile and tier scoring tests run on SQLite and on PostgreSQL (conftest:
# the fixture `store`); attribution's on its own store.
BOTH_STORES = True
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HEX = "0123456789abcdef"


def uid(p):
    return "%s-%s" % (p, uuid.uuid4().hex[:10])


def refused(fn, *words):
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    e = ei.value
    assert e.code() == INVALID, "%s %r" % (e.code(), e.details())
    for w in ("page_token",) + words:
        assert w in (e.details() or ""), e.details()
    return e.details()


def edits(token):
    """Every one-character edit of `token` within its own alphabet (hex or base64url)."""
    alphabet = HEX if all(c in HEX for c in token) else B64URL
    for i, c in enumerate(token):
        k = alphabet.find(c)
        yield token[:i] + alphabet[(k + 1) % len(alphabet)] + token[i + 1:]


def accepted_edits(call, token):
    """The edits of `token` that a listing accepts (it must accept none)."""
    out = []
    for t in edits(token):
        try:
            call(t)
            out.append(t)
        except grpc.RpcError as e:
            assert e.code() == INVALID and "page_token" in (e.details() or ""), e
    return out


# -- ListCreators --------------------------------------------------------------------------

def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def fnv64(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv32(data):
    h = 0x811c9dc5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def forged_list_creators_token(after, category="", region="", min_f=0, max_f=0):
    """A token in the format ListCreators used before tokens were signed (version 1,
    FNV-1a of the filters and a public FNV checksum): anyone could write one."""
    h = 0xcbf29ce484222325
    for field in (b"yaowei.creator.v1.ListCreators", category.encode(), region.encode(),
                  struct.pack(">qq", min_f, max_f)):
        h = fnv64(fnv64(h, struct.pack(">Q", len(field))), field)
    head = bytes([1]) + struct.pack(">Q", h)
    check = fnv32(head + after.encode())
    return b64url(head + struct.pack(">I", check) + after.encode())


def test_list_creators_tokens_are_signed(fresh_server):
    srv = fresh_server
    region = uid("R")[:20]
    ids = ["lc-%02d" % i for i in range(6)]
    for cid in ids:
        srv.call("CreateCreator", {"creator": {"creator_id": cid, "display_name": cid,
                                               "region": region}})
    req = {"region": region, "page_size": 2}
    first = srv.call("ListCreators", req)
    token = first["next_page_token"]
    call = lambda t: srv.call("ListCreators", dict(req, page_token=t))  # noqa: E731
    assert [c["creator_id"] for c in call(token)["creators"]] == ids[2:4]

    # A token anyone can compute (the public checksum of the old format), moving the
    # cursor past lc-04: refused.
    forged = forged_list_creators_token("lc-04", region=region)
    refused(lambda: call(forged), "not a next_page_token")
    # Every one-character edit: refused.
    assert accepted_edits(call, token) == []
    # Another query's token: refused, naming what must stay the same.
    refused(lambda: srv.call("ListCreators", {"region": region + "x", "page_token": token}),
            "another query", "region")
    # The key is kept in the data dir: the token survives a restart.
    srv.stop()
    srv.start()
    assert [c["creator_id"] for c in call(token)["creators"]] == ids[2:4]


# -- ListCreatorsByTier --------------------------------------------------------------------

def test_list_creators_by_tier_tokens_are_signed(fresh_tier_stack):
    stack = fresh_tier_stack
    cat = uid("cat")[:20]
    ids = [uid("bt") for _ in range(6)]
    for k, cid in enumerate(ids):
        stack.cp("CreateCreator", {"creator": {"creator_id": cid, "display_name": cid,
                                               "categories": [cat],
                                               "followers": str(6000 + k)}})
    stack.ts("RefreshPopulation", {})
    deadline = time.monotonic() + 20
    while True:
        resp = stack.ts("ListCreatorsByTier", {"tier": "TIER_TAIL", "category": cat,
                                               "page_size": 2})
        if int(resp.get("total_size", 0)) == len(ids):
            break
        assert time.monotonic() < deadline, resp
        time.sleep(0.2)
    token = resp["next_page_token"]
    req = {"tier": "TIER_TAIL", "category": cat, "page_size": 2}
    call = lambda t: stack.ts("ListCreatorsByTier", dict(req, page_token=t))  # noqa: E731
    second = [s["creator_id"] for s in call(token)["scores"]]
    assert len(second) == 2

    # Before, a token was the hex of (tier hash, score, creator_id): rewriting the id
    # inside moved the cursor and was accepted. Every edit is refused now.
    assert accepted_edits(call, token) == []
    refused(lambda: stack.ts("ListCreatorsByTier", dict(req, tier="TIER_MID", page_token=token)),
            "another query", "tier and category")
    stack.tier.stop()
    stack.tier.start()
    stack.ts("RefreshPopulation", {})
    assert [s["creator_id"] for s in call(token)["scores"]] == second


# -- ListTopCreators -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def attr_top(tmp_path_factory):
    a = Attr(tmp_path_factory, "attribution_page_tokens").start()
    v, p = uid("v"), uid("p")
    for k in range(5):
        c, pk = uid("top"), "%s-%d" % (p, k)
        a.exposures([exposure(uid("e"), v, c, [pk], "CLICK", T - 100)])
        a.conversions([conversion(uid("o"), v, pk, 1000 * (k + 1), T)])
    yield a
    a.stop()


def test_list_top_creators_refuses_a_huge_offset(attr_top):
    r = attr_top.call("ListTopCreators", dict(RANGE, page_size=2))
    token = r["next_page_token"]
    call = lambda t: attr_top.call("ListTopCreators", dict(RANGE, page_size=2,  # noqa: E731
                                                          page_token=t))
    assert len(call(token)["creators"]) == 2
    # Before, a token was "%016x%08x" (offset, a check of the query): the offset could be
    # set to anything, 0x7fffffffffffffff included. Such a token is refused now, as is one
    # whose offset is past every creator.
    huge = "7fffffffffffffff" + token[16:]
    refused(lambda: call(huge))
    refused(lambda: call("%016x%s" % (10 ** 9, token[16:])))
    assert accepted_edits(call, token) == []


def test_list_top_creators_token_is_bound_to_its_query(attr_top):
    token = attr_top.call("ListTopCreators", dict(RANGE, page_size=1))["next_page_token"]
    refused(lambda: attr_top.call("ListTopCreators", dict(RANGE, page_size=1,
                                                          order_by="TOP_CREATORS_ORDER_GPM",
                                                          page_token=token)),
            "another query", "order_by")
    # page_size is not part of the query: it may change between pages.
    assert len(attr_top.call("ListTopCreators", dict(RANGE, page_size=3,
                                                     page_token=token))["creators"]) == 3
