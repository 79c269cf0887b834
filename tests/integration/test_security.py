"""Trust (issue 7): TLS, mutual TLS, the loopback rule, caller authentication and
per-method permissions, reflection on/off — for all three services, which get all of
it from common/ (app.c flags, tls.c, auth.c, server.c dispatch).

A CA, a rogue CA and certificates are made at test time with the openssl CLI (pki.py).
Each certificate has the URI SAN spiffe://yaowei.test/<name>, DNS SAN localhost and IP
SAN 127.0.0.1, and serves both as server and as client certificate.
"""

import hashlib
import os
import subprocess
import time
import uuid

import grpc
import pytest

import ywclient
from conftest import binary_path, free_port, ServerProcess
from pki import Pki
from secure import SecureServerProcess, tls_channel, write_auth_config

CREATOR_BIN = "services/creator_profile/creator_profile"
TIER_BIN = "services/tier_scoring/tier_scoring"
ATTR_BIN = "services/attribution/attribution"
CP = "yaowei.creator.v1.CreatorProfileService"
TS = "yaowei.tier.v1.TierScoringService"
AT = "yaowei.attribution.v1.AttributionService"
SPIFFE = "spiffe://yaowei.test/"

TOKENS = {"admin": "tok-admin-" + uuid.uuid4().hex, "reader": "tok-reader-" + uuid.uuid4().hex,
          "ingest": "tok-ingest-" + uuid.uuid4().hex}

OK_CODES = (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()


def uid(p):
    return "%s-%s" % (p, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = Pki(str(d / "ca"))
    leaves = {n: ca.leaf(n) for n in ("creator-profile", "tier-scoring", "attribution", "admin",
                                      "reader", "ingest", "stranger")}
    rogue = Pki(str(d / "rogue"), "rogue-ca")
    leaves["rogue-admin"] = rogue.leaf("admin")  # same SAN as admin, wrong CA
    leaves["rogue-ca-pem"] = rogue.ca_pem
    return ca, leaves


def callers():
    """The same callers for every service's --auth-config."""
    return [
        {"name": "admin", "san": SPIFFE + "admin", "token_sha256": sha256(TOKENS["admin"]),
         "roles": ["admin", "reader"]},
        {"name": "reader", "san": [SPIFFE + "reader"], "token_sha256": [sha256(TOKENS["reader"])],
         "roles": ["reader"]},
        {"name": "ingest", "san": SPIFFE + "ingest", "token_sha256": sha256(TOKENS["ingest"]),
         "roles": ["ingest"]},
        {"name": "tier-scoring", "san": SPIFFE + "tier-scoring", "roles": ["reader", "peer"]},
        {"name": "attribution", "san": SPIFFE + "attribution", "roles": ["reader", "peer"]},
    ]


REFLECTION_OPEN = {"/grpc.reflection.v1.ServerReflection/*": ["*"],
                   "/grpc.reflection.v1alpha.ServerReflection/*": ["*"]}

CP_METHODS = dict(REFLECTION_OPEN, **{
    "/%s/*" % CP: ["reader", "admin"],
    "/%s/CreateCreator" % CP: ["admin"],
    "/%s/UpdateCreator" % CP: ["admin"],
    "/%s/DeleteCreator" % CP: ["admin"],
    "/%s/RecordNoteStats" % CP: ["ingest", "admin"],
})
TS_METHODS = dict(REFLECTION_OPEN, **{
    "/%s/*" % TS: ["reader"],
    "/%s/UpdateTierPolicy" % TS: ["admin"],
    # A refresh reads all of creator profile: for the operator, and for the job that
    # loaded creators and wants them scored now.
    "/%s/RefreshPopulation" % TS: ["admin", "ingest"],
})
AT_METHODS = dict(REFLECTION_OPEN, **{
    "/%s/*" % AT: ["reader"],
    "/%s/UpdateAttributionSettings" % AT: ["admin"],
    "/%s/RecordExposures" % AT: ["ingest"],
    "/%s/RecordConversions" % AT: ["ingest"],
    "/%s/RecordRefunds" % AT: ["ingest"],
    "/%s/IngestExposures" % AT: ["ingest"],
    "/%s/IngestConversions" % AT: ["ingest"],
})


def tls_args(leaf, ca, mutual=True, peer=False):
    a = ["--tls-cert", leaf.cert, "--tls-key", leaf.key]
    if mutual:
        a += ["--tls-client-ca", ca.ca_cert]
    if peer:
        a += ["--peer-tls-ca", ca.ca_cert]
    return a


def make(tmp_path_factory, rel, name, extra, ca=None, client_cert=None):
    base = tmp_path_factory.mktemp(name)
    data = base / "data"
    data.mkdir()
    if ca is None:
        return ServerProcess(binary_path(rel), str(data), str(base), extra, name=name)
    return SecureServerProcess(binary_path(rel), str(data), str(base), extra, name=name,
                               ca_pem=ca.ca_pem, client_cert=client_cert)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Typed:
    """Message types from one reflection pass; calls on any channel."""

    def __init__(self, channel):
        self.c = ywclient.DynamicClient(channel)

    def call(self, channel, method, req=None, metadata=None, timeout=10):
        md = self.c.method(method)
        req_cls = self.c.message_class(md.input_type)
        resp_cls = self.c.message_class(md.output_type)
        from google.protobuf import json_format
        msg = req_cls()
        json_format.ParseDict(req or {}, msg)
        stub = channel.unary_unary("/%s/%s" % (md.containing_service.full_name, md.name),
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=resp_cls.FromString)
        return self.c.to_dict(stub(msg, metadata=metadata, timeout=timeout))

    def code(self, channel, method, req=None, metadata=None):
        return code_of(lambda: self.call(channel, method, req, metadata))


# -- the loopback rule and start-up checks ------------------------------------------------

def run_fail(args, timeout=20):
    """Runs the binary with args; returns (exit status, stderr) — it must not serve."""
    res = subprocess.run([binary_path(CREATOR_BIN)] + args, capture_output=True, text=True,
                         timeout=timeout, env={k: v for k, v in os.environ.items()
                                               if not k.startswith("YW_")})
    return res.returncode, res.stderr


def test_plaintext_off_loopback_is_refused_and_says_why(tmp_path):
    rc, err = run_fail(["--listen", "0.0.0.0:%d" % free_port(), "--data-dir", str(tmp_path)])
    assert rc == 1
    assert "only on loopback" in err and "--insecure" in err and "--tls-cert" in err, err


def test_insecure_serves_plaintext_off_loopback_and_logs_it(tmp_path_factory):
    port = free_port()
    srv = make(tmp_path_factory, CREATOR_BIN, "insecure",
               ["--listen", "0.0.0.0:%d" % port, "--insecure"])
    srv.port, srv.address = port, "127.0.0.1:%d" % port
    srv.start()
    try:
        assert ywclient.health_check(srv.channel) == "SERVING"
        warn = [r for r in srv.log_records() if r.get("level") == "warn"
                and "PLAINTEXT" in r.get("msg", "")]
        assert warn and "0.0.0.0" in warn[0]["msg"], srv.log_tail()
    finally:
        srv.stop()


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.2", "localhost", "[::1]"])
def test_loopback_needs_no_flag(tmp_path_factory, listen):
    port = free_port()
    srv = make(tmp_path_factory, CREATOR_BIN, "loopback", ["--listen", "%s:%d" % (listen, port)])
    if listen == "[::1]":
        srv.address = "[::1]:%d" % port
    elif listen != "localhost":
        srv.address = "%s:%d" % (listen, port)
    else:
        srv.address = "127.0.0.1:%d" % port
    try:
        srv.start()
    except BaseException:
        if listen == "[::1]" and "cannot bind" in srv.log_text():
            pytest.skip("no IPv6 loopback here")
        raise
    srv.stop()


# The same rule for --metrics-listen: metrics are plain HTTP whatever gRPC serves.

def metrics_refused(rel, args, port):
    res = subprocess.run([binary_path(rel)] + args, capture_output=True, text=True, timeout=20,
                         env={k: v for k, v in os.environ.items() if not k.startswith("YW_")})
    assert res.returncode == 1, res
    err = res.stderr
    assert "--metrics-listen 0.0.0.0:%d" % port in err, err
    assert "only on loopback" in err and "--insecure" in err, err


@pytest.mark.parametrize("rel", [CREATOR_BIN, TIER_BIN, ATTR_BIN])
def test_metrics_off_loopback_is_refused_without_insecure(tmp_path, rel):
    port = free_port()
    metrics_refused(rel, ["--listen", "127.0.0.1:%d" % free_port(), "--data-dir", str(tmp_path),
                          "--metrics-listen", "0.0.0.0:%d" % port], port)


def test_metrics_off_loopback_is_refused_when_grpc_is_mutual_tls(tmp_path, pki):
    ca, leaves = pki
    port = free_port()
    metrics_refused(CREATOR_BIN, ["--listen", "0.0.0.0:%d" % free_port(), "--data-dir",
                                  str(tmp_path), "--metrics-listen", "0.0.0.0:%d" % port]
                    + tls_args(leaves["creator-profile"], ca), port)


def test_insecure_serves_metrics_off_loopback_and_logs_it(tmp_path_factory):
    port = free_port()
    srv = make(tmp_path_factory, CREATOR_BIN, "metrics_insecure",
               ["--metrics-listen", "0.0.0.0:%d" % port, "--insecure"])
    srv.start()
    try:
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            assert b"yaowei_service_info" in r.read()
        warn = [r for r in srv.log_records() if r.get("level") == "warn"
                and "PLAINTEXT metrics" in r.get("msg", "")]
        assert warn and "0.0.0.0:%d" % port in warn[0]["msg"], srv.log_tail()
    finally:
        srv.stop()


def test_bad_tls_and_auth_configs_refuse_to_start(tmp_path, pki):
    ca, leaves = pki
    d = str(tmp_path)
    bad_json = os.path.join(d, "bad.json")
    with open(bad_json, "w") as f:
        f.write('{"callers": [}')
    typo = write_auth_config(os.path.join(d, "typo.json"), callers(),
                             {"/%s/DeleteCreatr" % CP: ["admin"]})
    unknown_role = write_auth_config(os.path.join(d, "role.json"), callers(),
                                     {"/%s/*" % CP: ["admins"]})
    short_hash = write_auth_config(os.path.join(d, "hash.json"),
                                   [{"name": "x", "token_sha256": "abc", "roles": ["r"]}],
                                   {"*": ["r"]})
    cases = [
        (["--tls-cert", leaves["admin"].cert], "--tls-key"),
        (["--tls-cert", leaves["admin"].cert, "--tls-key", leaves["reader"].key],
         "does not match"),
        (["--tls-cert", os.path.join(d, "missing.crt"), "--tls-key", leaves["admin"].key],
         "cannot open"),
        (["--tls-cert", leaves["admin"].key, "--tls-key", leaves["admin"].key],
         "no PEM certificate"),
        (["--tls-client-ca", ca.ca_cert], "--tls-client-ca needs"),
        (["--auth-config", bad_json], "line 1"),
        (["--auth-config", typo], "DeleteCreatr"),
        (["--auth-config", unknown_role], "admins"),
        (["--auth-config", short_hash], "64 hex digits"),
        (["--reflection", "maybe"], "--reflection"),
        (["--max-streams-per-connection", "0"], "--max-streams-per-connection"),
    ]
    for args, needle in cases:
        rc, err = run_fail(["--listen", "127.0.0.1:%d" % free_port(), "--data-dir", d] + args)
        assert rc != 0, args
        assert needle in err, (args, err)


# -- TLS and mutual TLS -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    """Creator profile with TLS (no client certificates asked for)."""
    ca, leaves = pki
    srv = make(tmp_path_factory, CREATOR_BIN, "tls", tls_args(leaves["creator-profile"], ca,
                                                                 mutual=False), ca=ca)
    srv.start()
    yield srv
    srv.stop()


def test_tls_works_and_plaintext_is_refused(tls_server):
    srv = tls_server
    assert ywclient.health_check(srv.channel) == "SERVING"
    cid = uid("c")
    srv.call("CreateCreator", {"request_id": uid("r"), "creator": {"creator_id": cid,
                                                                   "display_name": "x"}})
    assert srv.call("GetCreator", {"creator_id": cid})["creator_id"] == cid
    plain = grpc.insecure_channel(srv.address)
    with pytest.raises(grpc.RpcError) as ei:
        ywclient.health_check(plain, timeout=3)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()
    assert any("port %d, TLS," % srv.port in r.get("msg", "") for r in srv.log_records())


def test_tls_client_must_trust_the_server(tls_server, pki):
    """A client that trusts another CA refuses the server's certificate."""
    _, leaves = pki
    ch = grpc.secure_channel(tls_server.address,
                             grpc.ssl_channel_credentials(leaves["rogue-ca-pem"]))
    assert code_of(lambda: ywclient.health_check(ch, timeout=3)) == grpc.StatusCode.UNAVAILABLE
    ch.close()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    """Creator profile with mutual TLS and an --auth-config."""
    ca, leaves = pki
    auth = write_auth_config(tmp_path_factory.mktemp("auth") / "cp.json", callers(), CP_METHODS)
    srv = make(tmp_path_factory, CREATOR_BIN, "mtls",
               tls_args(leaves["creator-profile"], ca) + ["--auth-config", auth],
               ca=ca, client_cert=leaves["admin"])
    srv.start()
    yield srv
    srv.stop()


def test_mtls_refuses_no_certificate_and_a_wrong_one(mtls_server, pki):
    _, leaves = pki
    for cert in (None, leaves["rogue-admin"]):
        ch = mtls_server.tls_channel(cert)
        with pytest.raises(grpc.RpcError) as ei:
            ywclient.health_check(ch, timeout=3)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, cert
        ch.close()
    plain = grpc.insecure_channel(mtls_server.address)
    assert code_of(lambda: ywclient.health_check(plain, timeout=3)) == grpc.StatusCode.UNAVAILABLE
    plain.close()
    assert mtls_server.running()


def test_health_is_open_to_any_verified_certificate(mtls_server, pki):
    _, leaves = pki
    ch = mtls_server.tls_channel(leaves["stranger"])
    assert ywclient.health_check(ch, "", timeout=3) == "SERVING"
    assert ywclient.health_check(ch, CP, timeout=3) == "SERVING"
    ch.close()


# (certificate, method, expected) on creator profile with mTLS + auth
MTLS_MATRIX = [
    ("admin", "DeleteCreator", "OK"),
    ("admin", "CreateCreator", "OK"),
    ("admin", "GetCreator", "OK"),
    ("reader", "GetCreator", "OK"),
    ("reader", "ListCreators", "OK"),
    ("reader", "DeleteCreator", "PERMISSION_DENIED"),
    ("reader", "CreateCreator", "PERMISSION_DENIED"),
    ("reader", "RecordNoteStats", "PERMISSION_DENIED"),
    ("ingest", "RecordNoteStats", "OK"),
    ("ingest", "GetCreator", "PERMISSION_DENIED"),
    ("ingest", "DeleteCreator", "PERMISSION_DENIED"),
    ("stranger", "GetCreator", "PERMISSION_DENIED"),
    ("tier-scoring", "ListCreators", "OK"),
    ("tier-scoring", "UpdateCreator", "PERMISSION_DENIED"),
]


def _request(method, cid):
    return {
        "DeleteCreator": {"creator_id": cid},
        "CreateCreator": {"request_id": uid("r"), "creator": {"creator_id": uid("c"),
                                                              "display_name": "n"}},
        "GetCreator": {"creator_id": cid},
        "ListCreators": {},
        "UpdateCreator": {"creator": {"creator_id": cid, "followers": "5"},
                          "update_mask": "followers"},
        "RecordNoteStats": {"stats": [{"note_id": uid("n"), "creator_id": cid,
                                       "day": "2026-01-02", "impressions": "5"}]},
    }[method]


@pytest.mark.parametrize("who,method,expected", MTLS_MATRIX)
def test_mtls_permissions(mtls_server, pki, who, method, expected):
    _, leaves = pki
    t = Typed(mtls_server.channel)
    cid = uid("c")
    t.call(mtls_server.channel, "%s/CreateCreator" % CP,
           {"request_id": uid("r"), "creator": {"creator_id": cid, "display_name": "n"}})
    ch = mtls_server.tls_channel(leaves[who])
    try:
        code = t.code(ch, "%s/%s" % (CP, method), _request(method, cid))
    finally:
        ch.close()
    if expected == "OK":
        assert code == grpc.StatusCode.OK, code
    else:
        assert code == getattr(grpc.StatusCode, expected), code


def test_denials_name_the_method_and_the_caller_and_are_logged(mtls_server, pki):
    _, leaves = pki
    t = Typed(mtls_server.channel)
    ch = mtls_server.tls_channel(leaves["reader"])
    with pytest.raises(grpc.RpcError) as ei:
        t.call(ch, "%s/DeleteCreator" % CP, {"creator_id": "c-x"},
               metadata=[("x-request-id", "deny-4711")])
    ch.close()
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "DeleteCreator" in ei.value.details() and '"reader"' in ei.value.details()
    time.sleep(0.2)
    lines = [r for r in mtls_server.log_records() if r.get("request_id") == "deny-4711"]
    assert lines and lines[0]["status"] == "PERMISSION_DENIED", lines


def test_token_and_certificate_together(mtls_server, pki):
    """A reader certificate with the admin token: the roles add up. A wrong token is
    UNAUTHENTICATED even with a good certificate (a bad credential is never ignored)."""
    _, leaves = pki
    t = Typed(mtls_server.channel)
    ch = mtls_server.tls_channel(leaves["reader"])
    cid = uid("c")
    t.call(mtls_server.channel, "%s/CreateCreator" % CP,
           {"request_id": uid("r"), "creator": {"creator_id": cid, "display_name": "n"}})
    assert t.code(ch, "%s/DeleteCreator" % CP, {"creator_id": cid},
                  [("authorization", "Bearer " + TOKENS["admin"])]) == grpc.StatusCode.OK
    assert t.code(ch, "%s/GetCreator" % CP, {"creator_id": cid},
                  [("authorization", "Bearer nope")]) == grpc.StatusCode.UNAUTHENTICATED
    ch.close()


# -- bearer tokens on a plaintext loopback server ----------------------------------------

@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    auth = write_auth_config(tmp_path_factory.mktemp("auth") / "cp.json", callers(), CP_METHODS)
    srv = make(tmp_path_factory, CREATOR_BIN, "tokens", ["--auth-config", auth])
    srv.start()
    yield srv
    srv.stop()


def bearer(who):
    return [("authorization", "Bearer " + TOKENS[who])]


def test_tokens(token_server):
    srv = token_server
    ch = srv.channel
    # Reflection needs a caller too ("*": any recognised one).
    with pytest.raises(grpc.RpcError) as ei:
        ywclient.ReflectionClient(ch).list_services()
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ywclient.health_check(ch) == "SERVING"  # health is open

    # A reflection client that sends the reader token.
    class Authed(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def intercept_unary_unary(self, cont, d, req):
            return cont(_Details(d, bearer("reader")), req)

        def intercept_stream_stream(self, cont, d, reqs):
            return cont(_Details(d, bearer("reader")), reqs)

    t = Typed(grpc.intercept_channel(ch, Authed()))
    cid = uid("c")
    m = "%s/GetCreator" % CP
    assert t.code(ch, m, {"creator_id": cid}) == grpc.StatusCode.UNAUTHENTICATED
    assert t.code(ch, m, {"creator_id": cid}, [("authorization", "Bearer wrong")]) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert t.code(ch, m, {"creator_id": cid}, [("authorization", "Basic abc")]) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert t.code(ch, m, {"creator_id": cid}, [("authorization", "Bearer " + TOKENS["admin"]
                                                + "x")]) == grpc.StatusCode.UNAUTHENTICATED
    assert t.code(ch, m, {"creator_id": cid}, bearer("reader")) == grpc.StatusCode.NOT_FOUND
    assert t.code(ch, "%s/CreateCreator" % CP, _request("CreateCreator", cid), bearer("reader")) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert t.code(ch, "%s/CreateCreator" % CP,
                  {"request_id": uid("r"), "creator": {"creator_id": cid, "display_name": "n"}},
                  bearer("admin")) == grpc.StatusCode.OK
    assert t.code(ch, "%s/DeleteCreator" % CP, {"creator_id": cid}, bearer("ingest")) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert t.code(ch, "%s/DeleteCreator" % CP, {"creator_id": cid},
                  [("authorization", "bearer  " + TOKENS["admin"])]) == grpc.StatusCode.OK
    # Unknown methods stay UNIMPLEMENTED (auth runs for registered methods only).
    assert code_of(lambda: ywclient.call_raw(ch, "/%s/Nope" % CP, b"", timeout=5)) == \
        grpc.StatusCode.UNIMPLEMENTED


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, extra):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = list(d.metadata or []) + extra
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def test_streaming_methods_are_checked_before_the_handler(tmp_path_factory):
    """A client stream (IngestExposures) without the ingest role is refused at once,
    before any message is read."""
    auth = write_auth_config(tmp_path_factory.mktemp("auth") / "at.json", callers(), AT_METHODS)
    srv = make(tmp_path_factory, ATTR_BIN, "attr_tokens",
               ["--auth-config", auth, "--tier-scoring-addr", "127.0.0.1:%d" % free_port()])
    srv.start()
    try:
        stub = srv.channel.stream_unary("/%s/IngestExposures" % AT,
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        for md, want in ((None, grpc.StatusCode.UNAUTHENTICATED),
                         (bearer("reader"), grpc.StatusCode.PERMISSION_DENIED),
                         (bearer("ingest"), grpc.StatusCode.OK)):
            assert code_of(lambda: stub(iter([b""] * 3), metadata=md, timeout=10)) == want, md
    finally:
        srv.stop()


# -- reflection off --------------------------------------------------------------------------

def test_reflection_off(tmp_path_factory):
    srv = make(tmp_path_factory, CREATOR_BIN, "norefl", ["--reflection", "off"])
    srv.start()
    try:
        for v in ("v1", "v1alpha"):
            with pytest.raises(grpc.RpcError) as ei:
                ywclient.ReflectionClient(srv.channel, v).list_services()
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert ywclient.health_check(srv.channel, CP) == "SERVING"
        # The service still answers (a raw GetCreatorRequest{creator_id: "x"}).
        assert code_of(lambda: ywclient.call_raw(srv.channel, "/%s/GetCreator" % CP,
                                                 b"\x0a\x01x")) == grpc.StatusCode.NOT_FOUND
        assert any("reflection off" in r.get("msg", "") for r in srv.log_records())
    finally:
        srv.stop()


# -- three services over mutual TLS, service-to-service with --peer-tls-ca ---------------------

@pytest.fixture(scope="module")
def mtls_stack(tmp_path_factory, pki):
    """creator profile <- tier scoring <- attribution, every hop mutual TLS with auth."""
    ca, leaves = pki
    d = tmp_path_factory.mktemp("stack_auth")
    cp_auth = write_auth_config(d / "cp.json", callers(), CP_METHODS)
    ts_auth = write_auth_config(d / "ts.json", callers(), TS_METHODS)
    at_auth = write_auth_config(d / "at.json", callers(), AT_METHODS)
    cp = make(tmp_path_factory, CREATOR_BIN, "m_cp",
              tls_args(leaves["creator-profile"], ca) + ["--auth-config", cp_auth],
              ca=ca, client_cert=leaves["admin"]).start()
    ts = make(tmp_path_factory, TIER_BIN, "m_ts",
              tls_args(leaves["tier-scoring"], ca, peer=True) +
              ["--auth-config", ts_auth, "--creator-profile-addr", cp.address,
               "--refresh-interval-ms", "300"],
              ca=ca, client_cert=leaves["reader"]).start()
    at = make(tmp_path_factory, ATTR_BIN, "m_at",
              tls_args(leaves["attribution"], ca, peer=True) +
              ["--auth-config", at_auth, "--tier-scoring-addr", ts.address,
               "--tier-label-ttl-s", "0"],
              ca=ca, client_cert=leaves["ingest"]).start()
    yield cp, ts, at
    at.stop()
    ts.stop()
    cp.stop()


def test_tier_scoring_reads_creator_profile_over_mtls(mtls_stack, pki):
    cp, ts, _ = mtls_stack
    _, leaves = pki
    cid = uid("c")
    cp.call("%s/CreateCreator" % CP, {"request_id": uid("r"), "creator": {
        "creator_id": cid, "display_name": "n", "categories": ["food"], "followers": "120000"}})
    s = ts.call("%s/ScoreCreator" % TS, {"creator_id": cid})
    assert s["tier"] == "TIER_MID", s
    # Only admin may change the policy: the reader certificate may not.
    t = Typed(ts.channel)
    assert t.code(ts.channel, "%s/UpdateTierPolicy" % TS,
                  {"policy": {"rising_top_fraction": 0.2}, "update_mask": "risingTopFraction"}) \
        == grpc.StatusCode.PERMISSION_DENIED
    admin = ts.tls_channel(leaves["admin"])
    assert t.code(admin, "%s/UpdateTierPolicy" % TS,
                  {"policy": {"rising_top_fraction": 0.2}, "update_mask": "risingTopFraction"}) \
        == grpc.StatusCode.OK
    # RefreshPopulation: admin and ingest, not the reader; tiers: the reader.
    assert t.code(ts.channel, "%s/RefreshPopulation" % TS, {}) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert t.code(admin, "%s/RefreshPopulation" % TS, {}) == grpc.StatusCode.OK
    ingest = ts.tls_channel(leaves["ingest"])
    assert t.code(ingest, "%s/RefreshPopulation" % TS, {}) == grpc.StatusCode.OK
    assert t.code(ingest, "%s/BatchGetCreatorTiers" % TS, {"creator_ids": [cid]}) == \
        grpc.StatusCode.PERMISSION_DENIED
    ingest.close()
    tiers = t.call(ts.channel, "%s/BatchGetCreatorTiers" % TS, {"creator_ids": [cid]})
    assert [x["tier"] for x in tiers["tiers"]] == ["TIER_MID"], tiers
    admin.close()


def test_tier_scoring_without_peer_ca_cannot_reach_an_mtls_creator_profile(
        tmp_path_factory, mtls_stack, pki):
    """A peer that speaks plaintext to a TLS service fails fast (UNAVAILABLE), it never
    hangs; the service itself stays up."""
    cp, _, _ = mtls_stack
    ca, leaves = pki
    ts = make(tmp_path_factory, TIER_BIN, "m_ts_plain",
              tls_args(leaves["tier-scoring"], ca) +
              ["--creator-profile-addr", cp.address, "--creator-profile-timeout-ms", "3000"],
              ca=ca, client_cert=leaves["admin"]).start()
    try:
        t0 = time.monotonic()
        code = code_of(lambda: ts.call("%s/ScoreCreator" % TS, {"creator_id": "c-x"}))
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), code
        assert time.monotonic() - t0 < 5
    finally:
        ts.stop()


def test_attribution_ingest_and_labels_over_mtls(mtls_stack, pki):
    cp, ts, at = mtls_stack
    _, leaves = pki
    now = int(time.time())
    day = now - now % 86400
    cid = uid("c")
    cp.call("%s/CreateCreator" % CP, {"request_id": uid("r"), "creator": {
        "creator_id": cid, "display_name": "n", "categories": ["food"], "followers": "8000"}})
    ev = {"event_id": uid("e"), "viewer_id": "v", "creator_id": cid, "product_ids": ["p"],
          "kind": "EXPOSURE_KIND_IMPRESSION",
          "occur_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))}
    s = at.call("%s/RecordExposures" % AT, {"events": [ev]})  # the ingest certificate
    assert int(s.get("accepted", 0)) == 1
    rng = {"start_time": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(day - 86400)),
           "end_time": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(day + 86400))}
    t = Typed(at.channel)
    # The ingest identity may not read reports; the reader may, and may not ingest.
    assert t.code(at.channel, "%s/GetTierReport" % AT, rng) == grpc.StatusCode.PERMISSION_DENIED
    reader = at.tls_channel(leaves["reader"])
    deadline = time.monotonic() + 10
    while True:
        rep = t.call(reader, "%s/GetTierReport" % AT, rng)
        rows = {r.get("tier"): r for r in rep.get("rows", [])}
        if "TIER_TAIL" in rows or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "TIER_TAIL" in rows and not rep.get("tier_labels_error"), rep
    assert t.code(reader, "%s/RecordExposures" % AT, {"events": [ev]}) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert t.code(reader, "%s/UpdateAttributionSettings" % AT,
                  {"settings": {"click_window": "172800s"}, "update_mask": "clickWindow"}) == \
        grpc.StatusCode.PERMISSION_DENIED
    reader.close()
    admin = at.tls_channel(leaves["admin"])
    assert t.code(admin, "%s/UpdateAttributionSettings" % AT,
                  {"settings": {"click_window": "172800s"}, "update_mask": "clickWindow"}) == \
        grpc.StatusCode.OK
    admin.close()


def test_health_probe_speaks_mtls(mtls_server, pki):
    """tools/health_probe with -tls-ca-cert (and a client certificate for mTLS)."""
    ca, leaves = pki
    probe = binary_path("tools/health_probe/health_probe")
    base = [probe, "-addr", mtls_server.address, "-rpc-timeout", "3000"]
    cert = ["-tls-client-cert", leaves["stranger"].cert, "-tls-client-key",
            leaves["stranger"].key]
    ok = subprocess.run(base + ["-tls-ca-cert", ca.ca_cert] + cert, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "SERVING" in ok.stdout, (ok.stdout, ok.stderr)
    no_cert = subprocess.run(base + ["-tls-ca-cert", ca.ca_cert], capture_output=True, text=True)
    assert no_cert.returncode == 2, (no_cert.stdout, no_cert.stderr)
    plain = subprocess.run(base, capture_output=True, text=True)
    assert plain.returncode == 2
    bad = subprocess.run(base + ["-tls-client-cert", leaves["stranger"].cert], capture_output=True,
                         text=True)
    assert bad.returncode == 1
