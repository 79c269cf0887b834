#!/usr/bin/python3
"""Loads N synthetic creators into a running creator profile service (CreateCreator,
64 calls in flight). Used by the benchmarks; deterministic ids creator-000000..."""
import argparse
import os
import subprocess
import sys
import tempfile

import grpc


def stubs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tempfile.mkdtemp(prefix="yw-bench-pb-")
    subprocess.check_call(["protoc", "--python_out=" + out, "-I" + os.path.join(root, "proto"),
                           "-I/usr/include", "yaowei/creator/v1/creator.proto"])
    sys.path.insert(0, out)
    from yaowei.creator.v1 import creator_pb2  # noqa: E402
    return creator_pb2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--inflight", type=int, default=64)
    a = ap.parse_args()
    pb = stubs()
    ch = grpc.insecure_channel(a.addr)
    create = ch.unary_unary("/yaowei.creator.v1.CreatorProfileService/CreateCreator",
                            request_serializer=pb.CreateCreatorRequest.SerializeToString,
                            response_deserializer=pb.Creator.FromString)
    cats = ["beauty", "fashion", "food", "travel", "home", "tech", "parenting", "fitness"]
    futs = []
    for i in range(a.count):
        req = pb.CreateCreatorRequest(
            request_id="load-%06d" % i,
            creator=pb.Creator(creator_id="creator-%06d" % i, display_name="Creator %d" % i,
                               region="CN-%02d" % (i % 34), categories=[cats[i % 8]],
                               followers=(i * 7919) % 2000000))
        futs.append(create.future(req, timeout=60))
        if len(futs) >= a.inflight:
            futs.pop(0).result()
    for f in futs:
        f.result()
    print("loaded %d creators" % a.count)


if __name__ == "__main__":
    main()
