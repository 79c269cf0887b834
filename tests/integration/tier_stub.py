"""A stub tier scoring for attribution's tests: a grpc.server with a generic handler that
answers BatchGetCreatorTiers (unless `old`, as a tier scoring from before that method:
then UNIMPLEMENTED, as grpc answers any method it does not serve) and BatchScoreCreators,
counting every call, holding each one `delay` seconds.

Tiers come from a dict {creator_id: "TIER_MID", ...}; ids not in it are unknown: listed
in `not_found` by BatchGetCreatorTiers, and named in a NOT_FOUND for the whole batch by
BatchScoreCreators, worded as creator profile words it ("creator_ids[i]: ...").

The message classes are generated at test time from proto/yaowei/tier/v1/tier.proto with
`protoc --python_out` (nothing generated is committed), as ywclient does for health and
reflection.
"""

import collections
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

from conftest import REPO
from ywclient import PROTOC

SERVICE = "yaowei.tier.v1.TierScoringService"
GET_TIERS = "/%s/BatchGetCreatorTiers" % SERVICE
SCORE = "/%s/BatchScoreCreators" % SERVICE

_lock = threading.Lock()
_pb2 = None


def tier_pb2():
    """The generated module of yaowei/tier/v1/tier.proto (made once per process)."""
    global _pb2
    with _lock:
        if _pb2 is None:
            out = tempfile.mkdtemp(prefix="tier-stub-pb2-")
            try:
                subprocess.run([PROTOC, "--python_out=" + out, "-I" + os.path.join(REPO, "proto"),
                                "yaowei/tier/v1/tier.proto"], check=True, capture_output=True)
                path = os.path.join(out, "yaowei", "tier", "v1", "tier_pb2.py")
                spec = importlib.util.spec_from_file_location("_tier_stub_tier_pb2", path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = mod
                spec.loader.exec_module(mod)
                _pb2 = mod
            finally:
                shutil.rmtree(out, ignore_errors=True)
        return _pb2


class TierStub:
    """Start with .start(); .address for --tier-scoring-addr; .calls[path] counts the calls
    of each method (UNIMPLEMENTED ones too), .ids[path] the ids they asked for,
    .max_concurrent the most calls held at once."""

    def __init__(self, tiers, delay=0.0, old=False):
        self.pb = tier_pb2()
        self.tiers = dict(tiers)
        self.delay = delay
        self.old = old
        self.calls = collections.Counter()
        self.ids = collections.Counter()
        self.max_concurrent = 0
        self._now = 0
        self._mu = threading.Lock()
        self._server = None
        self.address = None

    def _enter(self, path, ids):
        with self._mu:
            self.calls[path] += 1
            self.ids[path] += len(ids)
            self._now += 1
            self.max_concurrent = max(self.max_concurrent, self._now)
        if self.delay:
            time.sleep(self.delay)

    def _leave(self):
        with self._mu:
            self._now -= 1

    def _get_tiers(self, req, context):
        self._enter(GET_TIERS, req.creator_ids)
        try:
            resp = self.pb.BatchGetCreatorTiersResponse(policy_version=1)
            for cid in req.creator_ids:
                if cid in self.tiers:
                    resp.tiers.add(creator_id=cid, tier=self.pb.Tier.Value(self.tiers[cid]))
                else:
                    resp.not_found.append(cid)
            return resp
        finally:
            self._leave()

    def _score(self, req, context):
        self._enter(SCORE, req.creator_ids)
        try:
            missing = [i for i, cid in enumerate(req.creator_ids) if cid not in self.tiers]
            if len(missing) == 1:
                i = missing[0]
                context.abort(grpc.StatusCode.NOT_FOUND, 'creator_ids[%d]: creator "%s" not found'
                              % (i, req.creator_ids[i]))
            if missing:
                named = ", ".join('creator_ids[%d] "%s"' % (i, req.creator_ids[i])
                                  for i in missing[:20])
                more = ", and %d more" % (len(missing) - 20) if len(missing) > 20 else ""
                context.abort(grpc.StatusCode.NOT_FOUND, "creator_ids: %d creators not found: %s%s"
                              % (len(missing), named, more))
            resp = self.pb.BatchScoreCreatorsResponse()
            for cid in req.creator_ids:
                resp.scores.add(creator_id=cid, tier=self.pb.Tier.Value(self.tiers[cid]),
                                policy_version=1)
            return resp
        finally:
            self._leave()

    def start(self):
        stub = self
        pb = self.pb

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                path = details.method
                if path == GET_TIERS and not stub.old:
                    return grpc.unary_unary_rpc_method_handler(
                        stub._get_tiers, pb.BatchGetCreatorTiersRequest.FromString,
                        pb.BatchGetCreatorTiersResponse.SerializeToString)
                if path == SCORE:
                    return grpc.unary_unary_rpc_method_handler(
                        stub._score, pb.BatchScoreCreatorsRequest.FromString,
                        pb.BatchScoreCreatorsResponse.SerializeToString)
                with stub._mu:
                    stub.calls[path] += 1  # answered UNIMPLEMENTED by grpc
                return None

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self._server.add_generic_rpc_handlers((Handler(),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = "127.0.0.1:%d" % port
        return self

    def stop(self):
        if self._server is not None:
            self._server.stop(0)
            self._server = None
