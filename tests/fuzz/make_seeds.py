#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets: valid requests of every method (from the
descriptor sets Bazel built, bazel-bin/proto/*_descriptors.binpb), in the harness's
input format (fuzz_service.c): one byte for the method (its index in the service's
method table, which is the .proto order; checked against `YW_FUZZ_LIST=1 <target>` when
the target is built), then the request; for streaming methods, each message as a
2-byte little-endian length and its bytes.

    tests/fuzz/make_seeds.py [BAZEL_BIN] [FUZZ_OUT]

Seeds are named seed-<method>-<n>; files that libFuzzer adds to a corpus keep their
hash names. Regression inputs (crashes that were fixed) live in the same directories
as regress-<what>.
"""

import hashlib
import os
import struct
import subprocess
import sys
import time

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "bazel-bin")
FUZZ_OUT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/yaowei-fuzz"

NOW = int(time.time())
DAY = 86400
TODAY = NOW - NOW % DAY


def ts(sec):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def exposure(i, kind="EXPOSURE_KIND_CLICK"):
    return {"event_id": "e-%d" % i, "viewer_id": "v-1", "creator_id": "c-lily",
            "note_id": "n-1", "product_ids": ["sku-9", "sku-3"], "kind": kind,
            "watch_ms": "15000", "occur_time": ts(NOW - 3600 - i)}


def conversion(i):
    return {"order_id": "o-%d" % i, "viewer_id": "v-1", "product_id": "sku-9",
            "quantity": "1", "amount_minor": "10001", "currency": "CNY",
            "occur_time": ts(NOW - 60)}


RANGE = {"start_time": ts(TODAY - 7 * DAY), "end_time": ts(TODAY + DAY)}

CREATOR = {
    "CreateCreator": [{"request_id": "req-1", "creator": {
        "creator_id": "c-lily", "display_name": "Lily 的厨房", "region": "CN-31",
        "categories": ["food", "home"], "followers": "82000"}}],
    "GetCreator": [{"creator_id": "c-lily"}, {"creator_id": ""}],
    "BatchGetCreators": [{"creator_ids": ["c-lily", "c-missing", "c-lily"]}],
    "UpdateCreator": [{"creator": {"creator_id": "c-lily", "followers": "90500"},
                       "update_mask": "followers"},
                      {"creator": {"creator_id": "c-lily", "display_name": "L", "status": 2}}],
    "DeleteCreator": [{"creator_id": "c-lily"}],
    "ListCreators": [{"page_size": 2, "category": "food", "min_followers": "50000"},
                     {"page_size": 1, "page_token": "bm9wZQ"}],
    "RecordNoteStats": [{"stats": [
        {"note_id": "n-1", "creator_id": "c-lily", "day": "2026-01-20", "is_video": True,
         "impressions": "12000", "views": "3400", "video_plays": "3100",
         "avg_watch_ms": "14000", "completion_rate": 0.42, "likes": "510", "collects": "230",
         "comments": "41", "shares": "18", "follows_gained": "35"},
        {"note_id": "n-2", "creator_id": "c-lily", "day": "2026-01-21", "impressions": "8000",
         "views": "1500", "likes": "120"}]}],
    "GetCreatorStats": [{"creator_id": "c-lily", "window_days": 30, "end_day": "2026-01-27"}],
    "BatchGetCreatorStats": [{"creator_ids": ["c-lily", "c-bo"], "window_days": 7}],
}

TIER = {
    "ScoreCreator": [{"creator_id": "c-lily"}],
    "BatchScoreCreators": [{"creator_ids": ["c-lily", "c-bo", "c-lily"]}],
    "ListCreatorsByTier": [{"tier": "TIER_MID", "category": "food", "page_size": 20},
                           {"tier": "TIER_TAIL", "page_token": "eA"}],
    "GetTierPolicy": [{}],
    "UpdateTierPolicy": [
        {"policy": {"head_min_followers": "1000000", "mid_min_followers": "100000",
                    "tail_min_followers": "10000",
                    "weights": {"reach": 0.2, "engagement": 0.4, "video_momentum": 0.25,
                                "consistency": 0.15},
                    "rising_top_fraction": 0.05, "window_days": 28}},
        {"policy": {"rising_top_fraction": 0.2, "version": "1"},
         "update_mask": "risingTopFraction"}],
    "GetTierDistribution": [{}, {"category": "food"}],
    "BatchGetCreatorTiers": [{"creator_ids": ["c-lily", "c-missing", "c-lily"]},
                             {"creator_ids": ["c-lily", ""]}],
    "RefreshPopulation": [{}],
}

ATTR = {
    "RecordExposures": [{"events": [exposure(1), exposure(2, "EXPOSURE_KIND_VIEW"),
                                    exposure(3, "EXPOSURE_KIND_IMPRESSION")]}],
    "RecordConversions": [{"events": [conversion(1)]}],
    "RecordRefunds": [{"events": [{"refund_id": "r-1", "order_id": "o-1", "amount_minor": "1",
                                   "occur_time": ts(NOW - 30)}]}],
    "IngestExposures": [[exposure(10), exposure(11), exposure(10)]],
    "IngestConversions": [[conversion(10), conversion(11)]],
    "ExplainConversion": [{"order_id": "o-1"},
                          {"order_id": "o-1", "model": "ATTRIBUTION_MODEL_TIME_DECAY"}],
    "GetCreatorReport": [dict(RANGE, creator_id="c-lily"),
                         dict(RANGE, creator_id="c-lily", model="ATTRIBUTION_MODEL_LINEAR")],
    "GetTierReport": [dict(RANGE, model="ATTRIBUTION_MODEL_POSITION_BASED")],
    "ListTopCreators": [dict(RANGE, tiers=["TIER_MID", "TIER_TAIL"],
                             order_by="TOP_CREATORS_ORDER_GPM", page_size=20)],
    "GetAttributionSettings": [{}],
    "UpdateAttributionSettings": [{"settings": {"click_window": "172800s"},
                                   "update_mask": "clickWindow"}],
}

REFLECTION = [
    [{"list_services": ""}],
    [{"file_by_filename": "yaowei/creator/v1/creator.proto"},
     {"file_by_filename": "google/protobuf/timestamp.proto"}],
    [{"file_containing_symbol": "yaowei.creator.v1.CreatorProfileService"},
     {"file_containing_symbol": "yaowei.creator.v1.Creator.display_name"},
     {"file_containing_symbol": "nope.Nope"}],
    [{"all_extension_numbers_of_type": "google.protobuf.FieldOptions"},
     {"file_containing_extension": {"containing_type": "google.protobuf.FieldOptions",
                                    "extension_number": 50000}}],
]

TARGETS = [
    ("fuzz_creator_profile", "creator_profile_descriptors",
     "yaowei.creator.v1.CreatorProfileService", CREATOR),
    ("fuzz_tier_scoring", "tier_scoring_descriptors", "yaowei.tier.v1.TierScoringService", TIER),
    ("fuzz_attribution", "attribution_descriptors", "yaowei.attribution.v1.AttributionService",
     ATTR),
]


def pool_of(desc_name):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(os.path.join(BIN, "proto", desc_name + ".binpb"), "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return pool


def cls(desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def encode(desc, value):
    m = cls(desc)()
    json_format.ParseDict(value, m)
    return m.SerializeToString()


def stream(msgs):
    return b"".join(struct.pack("<H", len(m)) + m for m in msgs)


def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def check_order(target, paths):
    exe = os.path.join(FUZZ_OUT, target)
    if not os.access(exe, os.X_OK):
        return
    out = subprocess.run([exe], env=dict(os.environ, YW_FUZZ_LIST="1"), capture_output=True,
                         text=True).stdout.split("\n")
    listed = [line.split()[1] for line in out if line.strip()]
    assert listed == paths, (target, listed, paths)


def main():
    corpus = os.path.join(HERE, "corpus")
    for target, desc_name, service, examples in TARGETS:
        pool = pool_of(desc_name)
        sd = pool.FindServiceByName(service)
        paths = ["/%s/%s" % (service, m.name) for m in sd.methods]
        check_order(target, paths)
        for idx, md in enumerate(sd.methods):
            assert md.name in examples, (target, md.name)
            for n, ex in enumerate(examples[md.name]):
                if md.client_streaming:
                    payload = stream([encode(md.input_type, e) for e in ex])
                else:
                    payload = encode(md.input_type, ex)
                write(os.path.join(corpus, target), "seed-%s-%d" % (md.name, n),
                      bytes([idx]) + payload)
    pool = pool_of("creator_profile_descriptors")
    req = pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    for n, reqs in enumerate(REFLECTION):
        for idx, version in enumerate(("v1", "v1alpha")):
            write(os.path.join(corpus, "fuzz_reflection"), "seed-%s-%d" % (version, n),
                  bytes([idx]) + stream([encode(req, r) for r in reqs]))
    print("seeds written under %s" % corpus)


if __name__ == "__main__":
    main()
