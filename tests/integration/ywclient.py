"""A small reflection-driven gRPC client, the way grpcurl works.

Nothing here knows the yaowei contract: every message type of a service is
discovered at run time through server reflection (grpc.reflection.v1 or
v1alpha), loaded into a private DescriptorPool, and requests are built from
plain dicts (JSON) with google.protobuf.json_format.

The Python modules for the reflection and health protos themselves are
generated at run time with `protoc --python_out` from Debian's grpc-proto
package (/usr/share/grpc-proto), so no generated code is committed.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

GRPC_PROTO_DIR = os.environ.get("YW_GRPC_PROTO_DIR", "/usr/share/grpc-proto")
PROTOC = os.environ.get("YW_PROTOC", "protoc")

_PROTO_FILES = {
    "reflection_v1": "grpc/reflection/v1/reflection.proto",
    "reflection_v1alpha": "grpc/reflection/v1alpha/reflection.proto",
    "health": "grpc/health/v1/health.proto",
}

REFLECTION_METHODS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"

_gen_lock = threading.Lock()
_gen_modules = None


def _identity(b):
    return b


def generated_modules():
    """Returns {'reflection_v1': mod, 'reflection_v1alpha': mod, 'health': mod}.

    Runs protoc once per process into a temporary directory and imports the
    generated *_pb2.py files under private module names (the generated package
    path `grpc.` would collide with the grpcio package itself).
    """
    global _gen_modules
    with _gen_lock:
        if _gen_modules is not None:
            return _gen_modules
        out = tempfile.mkdtemp(prefix="ywclient-pb2-")
        try:
            cmd = [PROTOC, "--python_out=" + out, "-I" + GRPC_PROTO_DIR] + list(_PROTO_FILES.values())
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError("protoc failed (%s): %s" % (" ".join(cmd), res.stderr.strip()))
            mods = {}
            for key, proto in _PROTO_FILES.items():
                path = os.path.join(out, proto[: -len(".proto")] + "_pb2.py")
                name = "_ywclient_%s_pb2" % key
                spec = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
                mods[key] = mod
            _gen_modules = mods
            return mods
        finally:
            shutil.rmtree(out, ignore_errors=True)


def health_pb2():
    return generated_modules()["health"]


def reflection_pb2(version="v1"):
    if version not in REFLECTION_METHODS:
        raise ValueError("reflection version must be v1 or v1alpha, not %r" % (version,))
    return generated_modules()["reflection_" + version]


class ReflectionError(Exception):
    """An error_response from the reflection service."""

    def __init__(self, code, message):
        super().__init__("reflection error %d: %s" % (code, message))
        self.code = code
        self.message = message


class ReflectionClient:
    """ServerReflectionInfo over one bidirectional stream per request batch."""

    def __init__(self, channel, version="v1", timeout=10.0):
        self.channel = channel
        self.version = version
        self.pb = reflection_pb2(version)
        self.timeout = timeout
        self._stub = channel.stream_stream(
            REFLECTION_METHODS[version],
            request_serializer=self.pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=self.pb.ServerReflectionResponse.FromString,
        )

    def exchange(self, requests):
        """Sends all requests on one stream; returns the list of responses."""
        reqs = [self.pb.ServerReflectionRequest(**r) if isinstance(r, dict) else r for r in requests]
        return list(self._stub(iter(reqs), timeout=self.timeout))

    def request(self, **fields):
        """One request on its own stream; returns the one response."""
        resps = self.exchange([fields])
        if len(resps) != 1:
            raise AssertionError("expected exactly 1 reflection response, got %d" % len(resps))
        return resps[0]

    @staticmethod
    def _check(resp):
        if resp.WhichOneof("message_response") == "error_response":
            raise ReflectionError(resp.error_response.error_code, resp.error_response.error_message)
        return resp

    def list_services(self):
        resp = self._check(self.request(list_services=""))
        return [s.name for s in resp.list_services_response.service]

    def _files(self, resp):
        resp = self._check(resp)
        out = []
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto()
            fdp.ParseFromString(raw)
            out.append(fdp)
        return out

    def file_containing_symbol(self, symbol):
        """FileDescriptorProtos (the file first, then dependencies, as sent)."""
        return self._files(self.request(file_containing_symbol=symbol))

    def file_by_filename(self, filename):
        return self._files(self.request(file_by_filename=filename))

    def all_extension_numbers_of_type(self, type_name):
        resp = self._check(self.request(all_extension_numbers_of_type=type_name))
        r = resp.all_extension_numbers_response
        return r.base_type_name, list(r.extension_number)


class DynamicClient:
    """Invokes any method by full name with dict requests, types via reflection."""

    def __init__(self, channel, version="v1", timeout=10.0):
        self.channel = channel
        self.reflection = ReflectionClient(channel, version, timeout)
        self.pool = descriptor_pool.DescriptorPool()
        self.factory = message_factory.MessageFactory(self.pool)
        self.timeout = timeout
        self._files = {}  # name -> FileDescriptorProto, fetched but maybe not yet added
        self._added = set()

    # -- descriptor loading -------------------------------------------------

    def _add_file(self, name, stack=()):
        if name in self._added:
            return
        if name in stack:
            raise RuntimeError("import cycle through %s" % name)
        if name not in self._files:
            for fdp in self.reflection.file_by_filename(name):
                self._files.setdefault(fdp.name, fdp)
            if name not in self._files:
                raise RuntimeError("reflection did not return file %s" % name)
        fdp = self._files[name]
        for dep in fdp.dependency:
            self._add_file(dep, stack + (name,))
        self.pool.Add(fdp)
        self._added.add(name)

    def load_symbol(self, symbol):
        """Fetches the file defining `symbol` (and its dependencies) into the pool."""
        files = self.reflection.file_containing_symbol(symbol)
        if not files:
            raise RuntimeError("no file for symbol %s" % symbol)
        for fdp in files:
            self._files.setdefault(fdp.name, fdp)
        # The first file is the one that contains the symbol.
        self._add_file(files[0].name)
        return files

    def service(self, full_name):
        try:
            return self.pool.FindServiceByName(full_name)
        except KeyError:
            self.load_symbol(full_name)
            return self.pool.FindServiceByName(full_name)

    def method(self, full_method):
        """`pkg.Service/Method` or `pkg.Service.Method` -> MethodDescriptor."""
        name = full_method.lstrip("/")
        if "/" in name:
            svc, meth = name.split("/", 1)
        else:
            svc, meth = name.rsplit(".", 1)
        sd = self.service(svc)
        md = sd.methods_by_name.get(meth)
        if md is None:
            raise KeyError("service %s has no method %s" % (svc, meth))
        return md

    def message_class(self, full_name_or_desc):
        desc = full_name_or_desc
        if isinstance(desc, str):
            try:
                desc = self.pool.FindMessageTypeByName(desc)
            except KeyError:
                self.load_symbol(desc)
                desc = self.pool.FindMessageTypeByName(desc)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return self.factory.GetPrototype(desc)

    # -- invocation ---------------------------------------------------------

    @staticmethod
    def _path(md):
        return "/%s/%s" % (md.containing_service.full_name, md.name)

    def build(self, full_method, request):
        md = self.method(full_method)
        cls = self.message_class(md.input_type)
        msg = cls()
        json_format.ParseDict(request or {}, msg)
        return msg

    def to_dict(self, msg):
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def call(self, full_method, request=None, timeout=None, metadata=None, with_call=False):
        """Unary call with a dict request; returns the response as a dict.

        Raises grpc.RpcError on a non-OK status.
        """
        md = self.method(full_method)
        if md.client_streaming or md.server_streaming:
            raise ValueError("%s is a streaming method; use call_stream" % full_method)
        req_cls = self.message_class(md.input_type)
        resp_cls = self.message_class(md.output_type)
        msg = req_cls()
        json_format.ParseDict(request or {}, msg)
        stub = self.channel.unary_unary(
            self._path(md),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_cls.FromString,
        )
        t = self.timeout if timeout is None else timeout
        if with_call:
            resp, call = stub.with_call(msg, timeout=t, metadata=metadata)
            return self.to_dict(resp), call
        return self.to_dict(stub(msg, timeout=t, metadata=metadata))

    def call_raw(self, path, payload, timeout=None, metadata=None):
        """Unary call with raw request bytes on any path; returns raw response bytes."""
        return call_raw(self.channel, path, payload, timeout=self.timeout if timeout is None else timeout,
                        metadata=metadata)


def call_raw(channel, path, payload, timeout=10.0, metadata=None):
    if not path.startswith("/"):
        path = "/" + path
    stub = channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
    return stub(payload, timeout=timeout, metadata=metadata)


# -- health -------------------------------------------------------------------

def health_check(channel, service="", timeout=5.0, wait_for_ready=None):
    """Returns the status name ('SERVING', 'NOT_SERVING', ...) or raises grpc.RpcError."""
    pb = health_pb2()
    stub = channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=pb.HealthCheckRequest.SerializeToString,
        response_deserializer=pb.HealthCheckResponse.FromString,
    )
    resp = stub(pb.HealthCheckRequest(service=service), timeout=timeout, wait_for_ready=wait_for_ready)
    return pb.HealthCheckResponse.ServingStatus.Name(resp.status)


def health_watch(channel, service="", timeout=None):
    """Returns the response iterator (a grpc call): yields status names via iter_status()."""
    pb = health_pb2()
    stub = channel.unary_stream(
        HEALTH_WATCH,
        request_serializer=pb.HealthCheckRequest.SerializeToString,
        response_deserializer=pb.HealthCheckResponse.FromString,
    )
    return stub(pb.HealthCheckRequest(service=service), timeout=timeout)


def status_name(resp):
    pb = health_pb2()
    return pb.HealthCheckResponse.ServingStatus.Name(resp.status)


def connect(address, max_message_bytes=None):
    opts = []
    if max_message_bytes is not None:
        opts += [("grpc.max_send_message_length", max_message_bytes),
                 ("grpc.max_receive_message_length", max_message_bytes)]
    return grpc.insecure_channel(address, options=opts)
