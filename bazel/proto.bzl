"""Protobuf code generation against Debian's protoc-c and protoc, offline.

Import roots, in order: this repository's proto/ tree, Debian's grpc-proto
(/usr/share/grpc-proto: grpc/health, grpc/reflection) and libprotobuf-dev's
well-known types (/usr/include/google/protobuf). Generated code lands in the bin
tree of the calling package and is never committed.
"""

_SYSTEM_INCLUDES = "-I/usr/share/grpc-proto -I/usr/include"

def _includes(srcs):
    # proto/ exists in the sandbox only when in-tree sources are inputs.
    return ("-Iproto " if srcs else "") + _SYSTEM_INCLUDES

def _base(p):
    return p[:-len(".proto")]

def yw_proto_c_library(name, protos, srcs = [], deps = []):
    """A cc_library of protobuf-c code for `protos` (import paths, e.g.
    "yaowei/creator/v1/creator.proto" or "google/protobuf/timestamp.proto").
    `srcs` are the in-tree .proto files, so that a change rebuilds."""
    outs = []
    for p in protos:
        outs += [_base(p) + ".pb-c.c", _base(p) + ".pb-c.h"]
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = "protoc-c %s --c_out=$(RULEDIR) %s" % (_includes(srcs), " ".join(protos)),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".c")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = deps + ["//third_party:protobuf_c"],
        visibility = ["//visibility:public"],
    )

def yw_descriptor_set(name, protos, srcs = []):
    """A cc_library defining `yw_descriptor_set` / `yw_descriptor_set_len`: the
    FileDescriptorSet of `protos` with all their imports, for server reflection.
    A binary links exactly one of these."""
    native.genrule(
        name = name + "_pb",
        srcs = srcs,
        outs = [name + ".binpb"],
        cmd = "protoc %s --include_imports --descriptor_set_out=$@ %s" % (_includes(srcs), " ".join(protos)),
    )
    native.genrule(
        name = name + "_c",
        srcs = [name + ".binpb"],
        outs = [name + "_embed.c"],
        tools = ["//bazel:embed"],
        cmd = "$(location //bazel:embed) yw_descriptor_set $< $@",
    )
    # alwayslink: common/app.c refers to the set weakly (so that tests can link the
    # runtime without one), and a weak reference alone pulls nothing from an archive.
    native.cc_library(
        name = name,
        srcs = [name + "_embed.c"],
        alwayslink = True,
        visibility = ["//visibility:public"],
    )
