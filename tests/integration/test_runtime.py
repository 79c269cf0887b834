"""Runtime behaviour every service shares: reflection, health, transport errors,
durability across kill -9, graceful shutdown. Black box over gRPC only."""

import signal
import subprocess
import threading
import uuid

import grpc
import pytest

import ywclient
from conftest import (ATTRIBUTION_BIN, CREATOR_PROFILE_BIN, CREATOR_SERVICE, TIER_SCORING_BIN,
                      binary_path)

REQUIRED_SERVICES = {
    CREATOR_SERVICE,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
WKT_DEPS = {
    "google/protobuf/timestamp.proto",
    "google/protobuf/field_mask.proto",
    "google/protobuf/empty.proto",
}
VERSIONS = ["v1", "v1alpha"]


def uid(prefix="rt"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def rpc_error(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as ei:
        fn(*a, **kw)
    return ei.value


# -- reflection -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_lists_services(server, version):
    rc = ywclient.ReflectionClient(server.channel, version)
    names = rc.list_services()
    missing = REQUIRED_SERVICES - set(names)
    assert not missing, "list_services %r lacks %r" % (names, missing)
    assert len(names) == len(set(names)), "duplicate service names: %r" % names


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_describes_every_method(server, version):
    rc = ywclient.ReflectionClient(server.channel, version)
    files = rc.file_containing_symbol(CREATOR_SERVICE)
    assert files, "no file for %s" % CREATOR_SERVICE
    main = files[0]
    names = [f.name for f in files]
    assert len(names) == len(set(names)), "file sent twice: %r" % names
    # The file defining the service comes with every (transitive) dependency.
    assert WKT_DEPS <= set(main.dependency), main.dependency
    assert set(main.dependency) <= set(names), (main.dependency, names)
    svc = [s for s in main.service if "%s.%s" % (main.package, s.name) == CREATOR_SERVICE]
    assert len(svc) == 1, [s.name for s in main.service]
    methods = [m.name for m in svc[0].method]
    assert len(methods) >= 9, methods

    # The whole set loads into a DescriptorPool and every method resolves.
    dc = ywclient.DynamicClient(server.channel, version)
    sd = dc.service(CREATOR_SERVICE)
    assert sorted(m.name for m in sd.methods) == sorted(methods)
    for m in sd.methods:
        # file_containing_symbol works for each method's full name ...
        mf = rc.file_containing_symbol("%s.%s" % (CREATOR_SERVICE, m.name))
        assert mf[0].name == main.name, (m.name, mf[0].name)
        # ... and for its request and response messages.
        for t in (m.input_type, m.output_type):
            tf = rc.file_containing_symbol(t.full_name)
            assert t.file.name == tf[0].name, (t.full_name, tf[0].name, t.file.name)
            dc.message_class(t)  # builds a class

    # file_by_filename returns the same file and its dependencies.
    by_name = rc.file_by_filename(main.name)
    assert by_name[0].name == main.name
    assert by_name[0] == main
    assert set(main.dependency) <= {f.name for f in by_name}

    # A well-known dependency can be fetched alone.
    ts = rc.file_by_filename("google/protobuf/timestamp.proto")
    assert ts[0].name == "google/protobuf/timestamp.proto"
    assert any(m.name == "Timestamp" for m in ts[0].message_type)


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_describes_health_and_reflection(server, version):
    rc = ywclient.ReflectionClient(server.channel, version)
    for svc in ("grpc.health.v1.Health", "grpc.reflection.%s.ServerReflection" % version):
        files = rc.file_containing_symbol(svc)
        pkg, name = svc.rsplit(".", 1)
        assert files[0].package == pkg
        assert any(s.name == name for s in files[0].service)
    dc = ywclient.DynamicClient(server.channel, version)
    # Health called through the reflected descriptors, like grpcurl would.
    assert dc.call("grpc.health.v1.Health/Check", {"service": ""}) == {"status": "SERVING"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("field,value", [
    ("file_containing_symbol", "no.such.Symbol"),
    ("file_containing_symbol", CREATOR_SERVICE + ".NoSuchMethod"),
    ("file_by_filename", "no/such/file.proto"),
])
def test_reflection_unknown_name_is_not_found(server, version, field, value):
    rc = ywclient.ReflectionClient(server.channel, version)
    resp = rc.request(**{field: value})
    assert resp.WhichOneof("message_response") == "error_response", resp
    assert resp.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    # The stream itself keeps working after an error response.
    ok = rc.exchange([{field: value}, {"list_services": ""}])
    assert len(ok) == 2
    assert ok[0].error_response.error_code == 5
    assert CREATOR_SERVICE in [s.name for s in ok[1].list_services_response.service]


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_many_requests_on_one_stream(server, version):
    rc = ywclient.ReflectionClient(server.channel, version)
    reqs = [{"list_services": ""},
            {"file_containing_symbol": CREATOR_SERVICE},
            {"file_by_filename": "google/protobuf/empty.proto"},
            {"file_containing_symbol": "google.protobuf.Timestamp"}]
    resps = rc.exchange(reqs)
    kinds = [r.WhichOneof("message_response") for r in resps]
    assert kinds == ["list_services_response", "file_descriptor_response",
                     "file_descriptor_response", "file_descriptor_response"], kinds
    # Each response echoes its request.
    for req, resp in zip(reqs, resps):
        (k, v), = req.items()
        assert getattr(resp.original_request, k) == v


@pytest.mark.parametrize("version", VERSIONS)
def test_reflection_extension_numbers(server, version):
    rc = ywclient.ReflectionClient(server.channel, version)
    resp = rc.request(all_extension_numbers_of_type="yaowei.creator.v1.Creator")
    kind = resp.WhichOneof("message_response")
    if kind == "error_response":
        pytest.fail("all_extension_numbers_of_type(Creator) -> error %d %s" % (
            resp.error_response.error_code, resp.error_response.error_message))
    assert kind == "all_extension_numbers_response"
    assert resp.all_extension_numbers_response.base_type_name == "yaowei.creator.v1.Creator"
    assert list(resp.all_extension_numbers_response.extension_number) == []
    bad = rc.request(all_extension_numbers_of_type="no.such.Type")
    assert bad.error_response.error_code == 5


# -- health -------------------------------------------------------------------------

def test_health_check(server):
    assert ywclient.health_check(server.channel, "") == "SERVING"
    assert ywclient.health_check(server.channel, CREATOR_SERVICE) == "SERVING"
    err = rpc_error(ywclient.health_check, server.channel, "no.such.Service")
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details())


def test_health_watch_serving_then_shutdown(fresh_server):
    srv = fresh_server
    ch = srv.new_channel()
    try:
        watches = [ywclient.health_watch(ch, "", timeout=30),
                   ywclient.health_watch(ch, CREATOR_SERVICE, timeout=30)]
        for w in watches:
            first = next(w)
            assert ywclient.status_name(first) == "SERVING"
        # An unknown service is watched as SERVICE_UNKNOWN (the stream stays open).
        unk = ywclient.health_watch(ch, "no.such.Service", timeout=30)
        assert ywclient.status_name(next(unk)) == "SERVICE_UNKNOWN"
        unk.cancel()

        results = [None, None]

        def drain(i, w):
            seen = []
            try:
                for msg in w:
                    seen.append(ywclient.status_name(msg))
                    if seen[-1] != "SERVING":
                        break
                results[i] = ("messages", seen)
            except grpc.RpcError as e:
                results[i] = ("error", seen, e.code())

        threads = [threading.Thread(target=drain, args=(i, w)) for i, w in enumerate(watches)]
        for t in threads:
            t.start()
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        for w in watches:
            w.cancel()
        for r in results:
            assert r is not None, "watch did not end or report NOT_SERVING after SIGTERM"
            # Either NOT_SERVING arrived, or the stream ended (cleanly or by an error),
            # but never because the client's own deadline ran out.
            if r[0] == "error":
                assert r[2] != grpc.StatusCode.DEADLINE_EXCEEDED, r
            else:
                assert r[1] == [] or r[1][-1] in ("NOT_SERVING", "SERVING"), r
        rc = srv.terminate(close_channel=True)
        assert rc == 0, "exit status %r after SIGTERM; log:\n%s" % (rc, srv.log_tail())
    finally:
        ch.close()


# -- transport-level bad input --------------------------------------------------

GET = "/%s/GetCreator" % CREATOR_SERVICE
CREATE = "/%s/CreateCreator" % CREATOR_SERVICE


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff",               # invalid tag/varint
    b"\x0a\x05ab",                 # length-delimited field truncated
    b"\x0a\xff\xff\xff\xff\x0f",   # length far beyond the message
], ids=["garbage", "truncated", "overlong-length"])
def test_malformed_bytes_invalid_argument(server, payload):
    err = rpc_error(ywclient.call_raw, server.channel, GET, payload, timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    server.assert_alive()


def test_wrong_wire_type_invalid_argument(server):
    # Field 1 (creator_id, a string) sent as a varint.
    err = rpc_error(ywclient.call_raw, server.channel, GET, b"\x08\x01", timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    # A nested message (CreateCreatorRequest.creator, field 2) sent as a varint.
    err = rpc_error(ywclient.call_raw, server.channel, CREATE, b"\x10\x01", timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    server.assert_alive()


def test_unknown_fields_are_ignored(server):
    # Proto3 keeps/ignores unknown fields: creator_id plus an unknown field 99.
    cid = uid("unk")
    server.call("CreateCreator", {"creator": {"creator_id": cid, "display_name": "x"}})
    payload = b"\x0a" + bytes([len(cid)]) + cid.encode() + b"\x98\x06\x01"
    raw = ywclient.call_raw(server.channel, GET, payload, timeout=5)
    cls = server.client.message_class(server.client.method(GET).output_type)
    msg = cls.FromString(raw)
    assert msg.creator_id == cid


def test_empty_request_names_required_field(server):
    err = rpc_error(ywclient.call_raw, server.channel, GET, b"", timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "creator_id" in err.details(), err.details()


def test_oversize_message_resource_exhausted(small_server):
    srv = small_server
    big = {"creator": {"creator_id": uid("big"), "display_name": "x" * 70000}}
    msg = srv.client.build("%s/CreateCreator" % CREATOR_SERVICE, big)
    payload = msg.SerializeToString()
    assert len(payload) > 65536
    err = rpc_error(ywclient.call_raw, srv.channel, CREATE, payload, timeout=5)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    srv.assert_alive()
    # Under the limit the same server parses and answers normally.
    err = rpc_error(srv.call, "GetCreator", {"creator_id": uid("missing")})
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details())
    small = {"creator": {"creator_id": uid("small"), "display_name": "x" * 100}}
    assert srv.call("CreateCreator", small)["display_name"] == "x" * 100


def test_oversize_default_limit(server):
    big = {"creator": {"creator_id": uid("big"), "display_name": "y" * (5 << 20)}}
    payload = server.client.build("%s/CreateCreator" % CREATOR_SERVICE, big).SerializeToString()
    assert len(payload) > 4 << 20
    err = rpc_error(ywclient.call_raw, server.channel, CREATE, payload, timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    server.assert_alive()


@pytest.mark.parametrize("path", [
    "/%s/NoSuchMethod" % CREATOR_SERVICE,
    "/no.such.Service/Method",
    "/grpc.health.v1.Health/NoSuchMethod",
])
def test_unknown_method_unimplemented(server, path):
    err = rpc_error(ywclient.call_raw, server.channel, path, b"", timeout=5)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (err.code(), err.details())
    server.assert_alive()


def test_many_errors_in_a_row_no_crash(server):
    payloads = [b"\xff", b"\x08\x01", b"\x0a\x05ab", b"", b"\x0a\x00"]
    for i in range(40):
        p = payloads[i % len(payloads)]
        with pytest.raises(grpc.RpcError):
            ywclient.call_raw(server.channel, GET, p, timeout=5)
    server.assert_alive()


# -- durability and shutdown ----------------------------------------------------

@pytest.mark.both_stores
def test_acknowledged_writes_survive_kill9(fresh_server):
    import datetime
    srv = fresh_server
    day = (datetime.datetime.now(datetime.timezone.utc).date()
           - datetime.timedelta(days=2)).isoformat()
    ids = ["dur-%03d" % i for i in range(30)]
    created = {}
    for i, cid in enumerate(ids):
        created[cid] = srv.call("CreateCreator", {
            "request_id": "req-" + cid,
            "creator": {"creator_id": cid, "display_name": "D %d" % i, "region": "CN-31",
                        "categories": ["food", "travel"], "followers": 1000 + i}})
    srv.call("RecordNoteStats", {"stats": [
        {"note_id": "n-%s-%d" % (cid, k), "creator_id": cid, "day": day, "is_video": k % 2 == 0,
         "impressions": 100 * (k + 1), "views": 10 * (k + 1), "likes": k}
        for cid in ids[:10] for k in range(3)]})
    updated = srv.call("UpdateCreator", {"creator": {"creator_id": ids[0], "display_name": "renamed"},
                                          "update_mask": "displayName"})
    srv.call("DeleteCreator", {"creator_id": ids[1]})
    stats_before = srv.call("BatchGetCreatorStats", {"creator_ids": ids[2:10], "end_day": day,
                                                      "window_days": 7})
    # The last acknowledged write, then kill -9 straight away.
    last = srv.call("CreateCreator", {"creator": {"creator_id": "dur-last", "followers": 7}})
    rc = srv.kill9()
    assert rc == -signal.SIGKILL

    srv.start()
    got = srv.call("BatchGetCreators", {"creator_ids": ids[2:]})
    assert [c["creator_id"] for c in got["creators"]] == ids[2:]
    for c in got["creators"]:
        assert c == created[c["creator_id"]]
    assert srv.call("GetCreator", {"creator_id": ids[0]}) == updated
    assert srv.call("GetCreator", {"creator_id": "dur-last"}) == last
    err = rpc_error(srv.call, "GetCreator", {"creator_id": ids[1]})
    assert err.code() == grpc.StatusCode.NOT_FOUND
    stats_after = srv.call("BatchGetCreatorStats", {"creator_ids": ids[2:10], "end_day": day,
                                                     "window_days": 7})
    assert stats_after == stats_before
    assert all(int(s["notes"]) == 3 for s in stats_after["stats"])
    # request_id idempotency survives the restart too.
    again = srv.call("CreateCreator", {
        "request_id": "req-" + ids[5],
        "creator": {"creator_id": ids[5], "display_name": "D 5", "region": "CN-31",
                    "categories": ["food", "travel"], "followers": 1005}})
    assert again == created[ids[5]]


@pytest.mark.both_stores
def test_graceful_sigterm_exits_zero_and_keeps_data(fresh_server):
    srv = fresh_server
    c = srv.call("CreateCreator", {"creator": {"creator_id": "graceful-1", "followers": 3}})
    rc = srv.terminate(timeout=10)
    assert rc == 0, "exit status %r after SIGTERM (None = still running after 10 s); log:\n%s" % (
        rc, srv.log_tail())
    srv.start()
    assert srv.call("GetCreator", {"creator_id": "graceful-1"}) == c
    # SIGINT is graceful too.
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(timeout=10) == 0


def test_logs_are_json_lines(fresh_server):
    srv = fresh_server
    srv.call("CreateCreator", {"creator": {"creator_id": "log-1"}})
    with pytest.raises(grpc.RpcError):
        srv.call("GetCreator", {"creator_id": "log-missing"})
    assert srv.terminate() == 0
    recs = srv.log_records()
    assert recs, "no log output"
    bad = [r["_unparsed"] for r in recs if "_unparsed" in r]
    assert not bad, "non-JSON log lines: %r" % bad[:5]
    for r in recs:
        assert "level" in r and "time" in r, r


def test_help_lists_common_flags():
    binary = binary_path(CREATOR_PROFILE_BIN)
    res = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, (res.returncode, res.stderr)
    text = res.stdout + res.stderr
    for flag in ("--listen", "--data-dir", "--log-level", "--max-message-bytes", "--grace-ms"):
        assert flag in text, "--help does not mention %s:\n%s" % (flag, text)


def test_unknown_flag_fails():
    binary = binary_path(CREATOR_PROFILE_BIN)
    res = subprocess.run([binary, "--no-such-flag", "1"], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode != 0
    assert "no-such-flag" in res.stdout + res.stderr


@pytest.mark.parametrize("binary,flags,needle", [
    (ATTRIBUTION_BIN, ["--store", "postgresql://127.0.0.1:1/x"],
     "--store: attribution keeps its data under --data-dir only"),
    (CREATOR_PROFILE_BIN, ["--store", "postgresql://127.0.0.1:1/x", "--store-pool", "0"],
     "--store-pool: must be within 1..64, got 0"),
    (TIER_SCORING_BIN, ["--store", "postgresql://127.0.0.1:1/x", "--store-pool", "65"],
     "--store-pool: must be within 1..64, got 65"),
    (CREATOR_PROFILE_BIN, ["--store-read", "postgresql://127.0.0.1:1/x"],
     "--store-read: needs --store"),
])
def test_bad_store_flags_are_refused_naming_the_flag(tmp_path, binary, flags, needle):
    """Refused at start, before any connection is tried (port 1 answers nothing), with
    a message that names the flag and the rule."""
    res = subprocess.run([binary_path(binary), "--listen", "127.0.0.1:0", "--data-dir",
                          str(tmp_path)] + flags, capture_output=True, text=True, timeout=20)
    assert res.returncode != 0
    assert needle in res.stderr, res.stderr


# -- concurrency, deadlines, cancellation ----------------------------------------

def test_many_calls_in_flight(server):
    dc = server.client
    create_m = dc.method("%s/CreateCreator" % CREATOR_SERVICE)
    get_m = dc.method("%s/GetCreator" % CREATOR_SERVICE)
    create_stub = server.channel.unary_unary(
        CREATE, request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=dc.message_class(create_m.output_type).FromString)
    get_stub = server.channel.unary_unary(
        GET, request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=dc.message_class(get_m.output_type).FromString)
    ids = [uid("conc") for _ in range(150)]
    futs = [create_stub.future(dc.build(CREATE, {"creator": {"creator_id": cid, "followers": i}}),
                               timeout=20) for i, cid in enumerate(ids)]
    assert [f.result().creator_id for f in futs] == ids
    futs = [get_stub.future(dc.build(GET, {"creator_id": cid}), timeout=20) for cid in ids * 2]
    got = [f.result() for f in futs]
    assert [g.creator_id for g in got] == ids * 2
    assert [g.followers for g in got[:150]] == list(range(150))


def test_short_deadlines_and_cancellation_no_crash(server):
    import datetime
    cid = uid("dl")
    server.call("CreateCreator", {"creator": {"creator_id": cid}})
    day = (datetime.datetime.now(datetime.timezone.utc).date()
           - datetime.timedelta(days=1)).isoformat()
    rows = [{"note_id": "%s-%d" % (cid, i), "creator_id": cid, "day": day, "views": 1}
            for i in range(3000)]
    payload = server.client.build("%s/RecordNoteStats" % CREATOR_SERVICE,
                                  {"stats": rows}).SerializeToString()
    path = "/%s/RecordNoteStats" % CREATOR_SERVICE
    for t in (0.0005, 0.002, 0.01):
        try:
            ywclient.call_raw(server.channel, path, payload, timeout=t)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED), \
                (e.code(), e.details())
    # Cancelled futures and abandoned streams.
    stub = server.channel.unary_unary(path, request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
    futs = [stub.future(payload, timeout=10) for _ in range(5)]
    for f in futs:
        f.cancel()
    w = ywclient.health_watch(server.channel, "", timeout=10)
    next(w)
    w.cancel()
    server.assert_alive()
    # Atomic batches: each note has all its rows or none.
    st = server.call("GetCreatorStats", {"creator_id": cid, "window_days": 1, "end_day": day})
    assert int(st.get("notes", 0)) in (0, 3000), st
    assert int(st.get("views", 0)) == int(st.get("notes", 0))
