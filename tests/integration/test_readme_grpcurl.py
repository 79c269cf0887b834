"""Every grpcurl example of README.md, sent as written to the three running services.

Users copy the README's grpcurl commands first, so an example that cannot work must fail
the suite. The test reads README.md, pulls out every `grpcurl ...` command of its code
blocks (backslash continuations, single-quoted bodies over several lines, `<<'JSON'`
here-documents, trailing `# ...` comments and the shell variables the block sets, such as
`A=127.0.0.1:50051; S=yaowei.creator.v1.CreatorProfileService`), and does what grpcurl
would do with it against creator profile -> tier scoring -> attribution, started here on
free ports with fresh data directories (the README's ports 50051/50052/50053 are mapped
to them).

What is modelled of grpcurl (1.8/1.9):

- the `-d` body is protojson, parsed into the method's request type found through server
  reflection only (no .proto files), unknown fields refused; no `-d` sends an empty
  request; `-d @` reads the here-document, a stream of JSON messages (client streams);
- a `google.protobuf.FieldMask` field must be a JSON object `{"paths": [...]}`, whose
  paths go to the server verbatim (Python's json_format cannot read that form, so the
  test sets `paths` itself); a FieldMask written as a JSON string fails the example, as
  grpcurl fails it ("bad input: expecting start of JSON object");
- flags: `-plaintext`, `-d`, `-H 'name: value'` (metadata), `-max-time S` (deadline);
  a flag the test does not know fails the test, so that it is modelled when added;
- `list` and `describe SYMBOL`: the services and symbols must be known to reflection;
- a server stream (`grpc.health.v1.Health/Watch`) is read for its first message only.

Commands with TLS flags (`-cacert`, `-cert`, `-key`: the Security section's `list`) run
against a creator profile of their own started with mutual TLS: the test makes a CA and
certificates with openssl (pki.py) and maps the README's file names to them (`-cacert`
is the CA, `-cert NAME.crt`/`-key NAME.key` a certificate of that CA for NAME). Nothing
is skipped; a command whose TLS files cannot be mapped so fails.

What counts as working: the call ends OK, or with the status the README's comment on
that command names (`# NOT_FOUND names c-missing`). A `# -> {json}` comment right after
a command is the answer the README promises: each field it shows must be in the reply
with that value. An IngestSummary with rejected events fails unless such a comment
shows them. A `-d` body holding `<name>` (e.g. `"page_token":"<next_page_token>"`) gets
the `name` field of the previous reply of the same method.

Order: README order, so that creates come before gets, with two exceptions, both
because the README reads as one session but is sections a reader may try separately:
creators that later sections use but no example creates (`c-bo`, ...: every
`creator_id`/`creator_ids` value of an example, less those created by an example and
those a comment says are missing) are created first with a plain CreateCreator; and
`DeleteCreator` examples run last, since later sections still use `c-lily`.
"""

import json
import os
import re
import shlex

import grpc
import pytest

import pki
from conftest import CREATOR_PROFILE_BIN, REPO, ServiceStack, binary_path
from secure import SecureServerProcess

pytestmark = pytest.mark.release  # conftest.py RELEASE_PASS

README = os.path.join(REPO, "README.md")
README_PORTS = {"50051": "creator", "50052": "tier", "50053": "attr"}
TLS_FLAGS = ("-cacert", "-cert", "-key", "-servername", "-authority", "-insecure")
STATUS_NAMES = {c.name for c in grpc.StatusCode}
FIELD_MASK = "google.protobuf.FieldMask"
GRPCURL_FIELD_MASK_ERROR = "bad input: expecting start of JSON object"


class Example:
    """One grpcurl command of the README."""

    def __init__(self, line, text, argv, comment, stdin):
        self.line = line  # 1-based line of README.md where the command starts
        self.text = text
        self.argv = argv
        self.comment = comment  # the command's own trailing comment, or ""
        self.stdin = stdin  # here-document text, or None
        self.expect = None  # the dict of a "# -> {...}" comment right after it
        self.flags = {}
        self.headers = []
        self.positional = []

    def __repr__(self):
        return "README.md:%d" % self.line


def _comment_of(text):
    """The trailing `# ...` of a shell line, outside quotes ('' only here)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif ch == "#" and not quoted and (i == 0 or text[i - 1].isspace()):
            return text[i + 1:].strip()
    return ""


def _complete(text):
    try:
        shlex.split(text, comments=True)
        return True
    except ValueError:
        return False


def _expand(token, env):
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                  lambda m: env.get(m.group(1), m.group(0)), token)


def _expected_reply(comment):
    """`-> {"accepted":"3"}; ...` -> {"accepted": "3"}, else None."""
    m = re.match(r"->\s*(\{.*)", comment)
    if not m:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(m.group(1))
    except ValueError:
        return None
    return obj


def readme_examples(path=README):
    """Every grpcurl command of the code blocks of `path`, in order."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    in_block = False
    env = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_block = not in_block
            env = {}
            i += 1
            continue
        if not in_block:
            i += 1
            continue
        stripped = line.strip()
        m = re.fullmatch(r"((?:[A-Za-z_][A-Za-z0-9_]*=\S+\s*;?\s*)+)", stripped)
        if m:
            for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=([^;\s]+)", stripped):
                env[name] = _expand(value, env)
            i += 1
            continue
        if not stripped.startswith("grpcurl "):
            if out and out[-1].expect is None and out[-1].line_end == i - 1:
                out[-1].expect = _expected_reply(stripped.lstrip("#").strip())
            i += 1
            continue
        start = i
        text = ""
        comment = ""
        while True:
            part = lines[i]
            i += 1
            if part.rstrip().endswith("\\") and _complete(text + part.rstrip()[:-1]):
                text += part.rstrip()[:-1] + " "
                continue
            text += part
            if _complete(text) or i >= len(lines):
                comment = _comment_of(part)
                break
            text += "\n"
        argv = shlex.split(text, comments=True)
        stdin = None
        heredoc = [a for a in argv if a.startswith("<<")]
        if heredoc:
            argv = [a for a in argv if not a.startswith("<<")]
            delim = heredoc[0][2:].strip("-")
            body = []
            while i < len(lines) and lines[i].strip() != delim:
                body.append(lines[i])
                i += 1
            i += 1
            stdin = "\n".join(body)
        ex = Example(start + 1, text, argv, comment, stdin)
        ex.line_end = i - 1
        ex.env = dict(env)
        out.append(ex)
    for ex in out:
        _parse_flags(ex)
    return out


def _parse_flags(ex):
    args = ex.argv[1:]
    k = 0
    while k < len(args):
        a = args[k]
        if a.startswith("-") and len(a) > 1:
            name = a.lstrip("-")
            if name in ("plaintext",):
                ex.flags[name] = True
            elif name in ("d", "H", "max-time", "cacert", "cert", "key", "servername",
                          "authority", "import-path", "proto", "protoset"):
                if k + 1 >= len(args):
                    raise AssertionError("%r: %s needs a value" % (ex, a))
                value = args[k + 1]
                if name == "H":
                    ex.headers.append(_expand(value, ex.env))
                else:
                    ex.flags[name] = value if name == "d" else _expand(value, ex.env)
                k += 1
            else:
                ex.flags[name] = "unknown"
        else:
            ex.positional.append(_expand(a, ex.env))
        k += 1


# -- grpcurl's reading of a -d body ---------------------------------------------------------

def _field(desc, key):
    for f in desc.fields:
        if key in (f.name, f.json_name):
            return f
    return None


def split_field_masks(desc, body, where=""):
    """Takes every FieldMask value out of `body` (a dict for message `desc`), as grpcurl
    reads them: {"paths": [...]} only. Returns [(path of (field, index) steps, paths)]."""
    found = []
    for key in list(body):
        f = _field(desc, key)
        if f is None or f.message_type is None:
            continue
        name = "%s%s" % (where, key)
        value = body[key]
        if f.message_type.full_name == FIELD_MASK:
            if not isinstance(value, dict):
                raise AssertionError("%s: %s (a FieldMask written as %r; grpcurl takes "
                                     "{\"paths\": [\"snake_case_field\"]})"
                                     % (name, GRPCURL_FIELD_MASK_ERROR, value))
            extra = set(value) - {"paths"}
            if extra:
                raise AssertionError("%s: FieldMask object with unknown keys %s"
                                     % (name, sorted(extra)))
            paths = value.get("paths", [])
            assert isinstance(paths, list) and all(isinstance(p, str) for p in paths), \
                "%s.paths: must be a list of strings, got %r" % (name, paths)
            found.append((((f.name, None),), list(paths)))
            del body[key]
        elif f.message_type.GetOptions().map_entry:
            continue
        elif f.label == f.LABEL_REPEATED and isinstance(value, list):
            for idx, item in enumerate(value):
                if isinstance(item, dict):
                    for steps, paths in split_field_masks(f.message_type, item,
                                                          "%s[%d]." % (name, idx)):
                        found.append((((f.name, idx),) + steps, paths))
        elif isinstance(value, dict):
            for steps, paths in split_field_masks(f.message_type, value, name + "."):
                found.append((((f.name, None),) + steps, paths))
    return found


def grpcurl_request(cls, body):
    """The request message grpcurl would send for the JSON object `body`."""
    from google.protobuf import json_format

    body = json.loads(json.dumps(body))  # a copy
    masks = split_field_masks(cls.DESCRIPTOR, body)
    msg = cls()
    json_format.ParseDict(body, msg)
    for steps, paths in masks:
        target = msg
        for name, idx in steps:
            target = getattr(target, name) if idx is None else getattr(target, name)[idx]
        target.paths.extend(paths)
    return msg


def json_messages(text):
    """The JSON objects of a -d @ stream, one after another."""
    dec = json.JSONDecoder()
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        obj, end = dec.raw_decode(text, pos)
        out.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


# -- the services ----------------------------------------------------------------------------

class Stack(ServiceStack):
    def __init__(self, tmp_path_factory):
        super().__init__(tmp_path_factory, "readme")

    def server_for(self, ex, addr):
        port = addr.rsplit(":", 1)[-1]
        assert port in README_PORTS, "%r: address %s is none of the README's ports %s" % (
            ex, addr, sorted(README_PORTS))
        return getattr(self, README_PORTS[port])


class TlsStack:
    """Creator profile serving mutual TLS (the Security section's example), with a CA
    and certificates made by pki.py standing in for the README's files."""

    def __init__(self, tmp_path_factory):
        base = tmp_path_factory.mktemp("readme_tls")
        self.pki = pki.Pki(str(base / "pki"))
        server = self.pki.leaf("creator-profile")
        data = base / "data"
        data.mkdir()
        self.creator = SecureServerProcess(
            binary_path(CREATOR_PROFILE_BIN), str(data), str(base),
            ["--tls-cert", server.cert, "--tls-key", server.key,
             "--tls-client-ca", self.pki.ca_cert],
            name="creator_profile_tls", ca_pem=self.pki.ca_pem, client_cert=server)
        self._leaves = {}

    def start(self):
        self.creator.start()
        return self

    def stop(self):
        self.creator.stop()

    def server_for(self, ex, addr):
        assert addr.rsplit(":", 1)[-1] == "50051", \
            "%r: TLS is modelled for creator profile (50051) only, not %s" % (ex, addr)
        cert, key = ex.flags.get("cert"), ex.flags.get("key")
        assert "cacert" in ex.flags, "%r: TLS without -cacert: which CA?" % (ex,)
        assert cert and key and os.path.splitext(cert)[0] == os.path.splitext(key)[0], \
            "%r: -cert and -key must name one certificate (NAME.crt, NAME.key)" % (ex,)
        name = os.path.splitext(os.path.basename(cert))[0]
        if name not in self._leaves:
            self._leaves[name] = self.pki.leaf(name)
        self.creator.client_cert = self._leaves[name]
        self.creator._drop_channel()
        return self.creator


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory).start()
    yield s
    s.stop()


# -- running one example ---------------------------------------------------------------------

def _metadata(ex):
    md = []
    for h in ex.headers:
        name, sep, value = h.partition(":")
        assert sep, "%r: -H %r is not 'name: value'" % (ex, h)
        md.append((name.strip().lower(), value.strip()))
    return md or None


def _status_named(ex):
    """The status the command's comment says it ends with, or None (OK)."""
    for word in re.findall(r"[A-Z_]{5,}", ex.comment):
        if word in STATUS_NAMES and word != "OK":
            return word
    return None


def _shows(reply, expect):
    """Every field of `expect` is in `reply` with that value (lists item by item)."""
    if isinstance(expect, dict):
        return isinstance(reply, dict) and all(_shows(reply.get(k), v) for k, v in expect.items())
    if isinstance(expect, list):
        return (isinstance(reply, list) and len(reply) == len(expect)
                and all(_shows(r, e) for r, e in zip(reply, expect)))
    return reply == expect


def _fill_placeholders(body, previous):
    def fill(v):
        if isinstance(v, str):
            m = re.fullmatch(r"<([a-z_]+)>", v)
            if m:
                assert previous is not None, \
                    "placeholder %s: no earlier reply of this method to take it from" % v
                return previous.get(m.group(1), "")  # an empty field is left out of a reply
            return v
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        return v
    return fill(body)


def run_example(stack, ex, replies):
    """Sends `ex` as grpcurl would; returns the reply as a dict, raises on a failure."""
    from google.protobuf import json_format

    unknown = sorted(k for k, v in ex.flags.items() if v == "unknown")
    assert not unknown, "%r: grpcurl flags this test does not model: %s" % (ex, unknown)
    assert ex.flags.get("plaintext") or is_tls(ex), \
        "%r: without -plaintext grpcurl speaks TLS, and the command names no CA" % (ex,)
    assert ex.positional, "%r: no address" % (ex,)
    srv = stack.server_for(ex, ex.positional[0])
    client = srv.client
    rest = ex.positional[1:]

    if rest and rest[0] == "list":
        services = client.reflection.list_services()
        assert services, "%r: reflection lists no service" % (ex,)
        if len(rest) > 1:
            assert client.service(rest[1]) is not None
        return {"services": services}
    if rest and rest[0] == "describe":
        assert len(rest) == 2, "%r: describe takes one symbol" % (ex,)
        client.load_symbol(rest[1])
        return {}

    assert len(rest) == 1, "%r: expected ADDR METHOD, got %s" % (ex, ex.positional)
    md_desc = client.method(rest[0])
    req_cls = client.message_class(md_desc.input_type)
    resp_cls = client.message_class(md_desc.output_type)
    if "d" in ex.flags:
        if ex.flags["d"] == "@":
            assert ex.stdin is not None, "%r: -d @ without a here-document" % (ex,)
            bodies = json_messages(ex.stdin)
        else:
            bodies = json_messages(ex.flags["d"])
    else:
        bodies = [{}]
    prev = replies.get(md_desc.full_name)
    requests = [grpcurl_request(req_cls, _fill_placeholders(b, prev)) for b in bodies]
    if not md_desc.client_streaming:
        assert len(requests) == 1, "%r: %d messages for a unary request" % (ex, len(requests))
    timeout = float(ex.flags.get("max-time", 20))
    path = "/%s/%s" % (md_desc.containing_service.full_name, md_desc.name)
    ser = dict(request_serializer=lambda m: m.SerializeToString(),
               response_deserializer=resp_cls.FromString)
    metadata = _metadata(ex)
    ch = srv.channel
    if md_desc.client_streaming and not md_desc.server_streaming:
        resp = ch.stream_unary(path, **ser)(iter(requests), timeout=timeout, metadata=metadata)
    elif md_desc.server_streaming:
        if md_desc.client_streaming:
            call = ch.stream_stream(path, **ser)(iter(requests), timeout=timeout,
                                                 metadata=metadata)
        else:
            call = ch.unary_stream(path, **ser)(requests[0], timeout=timeout, metadata=metadata)
        resp = next(call)  # grpcurl would wait for more until Ctrl-C
        call.cancel()
    else:
        resp = ch.unary_unary(path, **ser)(requests[0], timeout=timeout, metadata=metadata)
    reply = json_format.MessageToDict(resp, preserving_proto_field_name=True)
    replies[md_desc.full_name] = reply
    return reply


def _ids_in(body, out):
    if isinstance(body, dict):
        for k, v in body.items():
            if k == "creator_id" and isinstance(v, str):
                out.append(v)
            elif k == "creator_ids" and isinstance(v, list):
                out.extend(x for x in v if isinstance(x, str))
            else:
                _ids_in(v, out)
    elif isinstance(body, list):
        for v in body:
            _ids_in(v, out)


def creators_to_seed(examples):
    """Creator ids the examples use but none of them creates (nor calls missing)."""
    used, created, missing = [], set(), set()
    for ex in examples:
        if "d" not in ex.flags or ex.flags["d"] == "@":
            continue
        try:
            bodies = json_messages(ex.flags["d"])
        except ValueError:
            continue
        method = ex.positional[-1] if ex.positional else ""
        for b in bodies:
            if method.endswith("CreateCreator"):
                created.add(b.get("creator", {}).get("creator_id"))
            _ids_in(b, used)
        if _status_named(ex) == "NOT_FOUND":
            missing.update(re.findall(r"\bc-[a-z0-9-]+", ex.comment))
    seen, out = set(), []
    for cid in used:
        if cid not in created and cid not in missing and cid not in seen and "<" not in cid:
            seen.add(cid)
            out.append(cid)
    return out


def is_tls(ex):
    return any(("-" + f) in ex.argv for f in (t.lstrip("-") for t in TLS_FLAGS))


def run_order(examples):
    deletes = [e for e in examples if e.positional and e.positional[-1].endswith("DeleteCreator")]
    return [e for e in examples if e not in deletes] + deletes


# -- the tests -----------------------------------------------------------------------------

EXAMPLES = readme_examples()


def test_readme_has_examples_of_every_service():
    """The parser found the README's examples (a change to its shape must not make this
    test silently run nothing)."""
    methods = " ".join(" ".join(e.positional) for e in EXAMPLES)
    for svc in ("CreatorProfileService", "TierScoringService", "AttributionService",
                "grpc.health.v1.Health"):
        assert svc in methods or any(svc in e.env.get("S", "") for e in EXAMPLES), svc
    assert len([e for e in EXAMPLES if "d" in e.flags]) >= 25, EXAMPLES


def test_field_mask_as_string_fails_like_grpcurl():
    """The model of grpcurl itself: a FieldMask as a JSON string is refused, an object of
    paths is passed on verbatim."""
    from google.protobuf import descriptor_pb2, descriptor_pool, field_mask_pb2  # noqa: F401
    from google.protobuf import message_factory

    pool = descriptor_pool.DescriptorPool()
    fm = descriptor_pb2.FileDescriptorProto()
    field_mask_pb2.DESCRIPTOR.CopyToProto(fm)
    pool.Add(fm)
    f = descriptor_pb2.FileDescriptorProto(name="t.proto", package="t",
                                           dependency=["google/protobuf/field_mask.proto"])
    m = f.message_type.add(name="Req")
    m.field.add(name="update_mask", number=1, type=11, label=1,
                type_name=".google.protobuf.FieldMask")
    m.field.add(name="x", number=2, type=9, label=1)
    pool.Add(f)
    desc = pool.FindMessageTypeByName("t.Req")
    cls = (message_factory.GetMessageClass(desc) if hasattr(message_factory, "GetMessageClass")
           else message_factory.MessageFactory(pool).GetPrototype(desc))
    with pytest.raises(AssertionError, match=GRPCURL_FIELD_MASK_ERROR):
        grpcurl_request(cls, {"x": "a", "update_mask": "followers,displayName"})
    msg = grpcurl_request(cls, {"x": "a", "update_mask": {"paths": ["display_name", "weird"]}})
    assert list(msg.update_mask.paths) == ["display_name", "weird"]


def test_readme_grpcurl_examples(stack):
    """Every example in README order (deletes last), each reported by its README line."""
    for cid in creators_to_seed([e for e in EXAMPLES if not is_tls(e)]):
        stack.creator.call("yaowei.creator.v1.CreatorProfileService/CreateCreator",
                           {"request_id": "readme-seed-" + cid,
                            "creator": {"creator_id": cid, "display_name": cid,
                                        "region": "CN-31", "categories": ["food"],
                                        "followers": "60000"}})
    check_examples(stack, [e for e in run_order(EXAMPLES) if not is_tls(e)])


def test_readme_grpcurl_tls_examples(tmp_path_factory):
    """The examples with TLS flags, against creator profile serving mutual TLS."""
    tls = [e for e in EXAMPLES if is_tls(e)]
    if not tls:
        return
    s = TlsStack(tmp_path_factory).start()
    try:
        check_examples(s, tls)
    finally:
        s.stop()


def check_examples(stack, examples):
    """Runs `examples` in order; fails naming every one that does not work."""
    failures, ran = [], 0
    replies = {}
    for ex in examples:
        want = _status_named(ex)
        try:
            reply = run_example(stack, ex, replies)
        except grpc.RpcError as e:
            ran += 1
            if e.code().name != want:
                failures.append("%r: %s: %s\n    %s" % (ex, e.code().name, e.details(),
                                                        ex.text.strip()))
            continue
        except Exception as e:  # a body grpcurl would refuse, an unknown method, ...
            ran += 1
            failures.append("%r: %s: %s\n    %s" % (ex, type(e).__name__, e, ex.text.strip()))
            continue
        ran += 1
        if want is not None:
            failures.append("%r: OK, but the README says %s\n    %s" % (ex, want, ex.text.strip()))
            continue
        if ex.expect is not None:
            if not _shows(reply, ex.expect):
                failures.append("%r: the README promises %s, the reply has %s\n    %s"
                                % (ex, ex.expect, reply, ex.text.strip()))
        elif int(reply.get("rejected", 0) or 0) > 0:
            failures.append("%r: events rejected: %s\n    %s" % (ex, reply.get("errors"),
                                                                ex.text.strip()))
    print("README grpcurl examples: %d run (%s .. %r)" % (ran, examples[0], examples[-1]))
    assert ran == len(examples)
    assert not failures, "%d of %d README grpcurl examples fail:\n%s" % (
        len(failures), ran, "\n".join(failures))
