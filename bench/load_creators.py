#!/usr/bin/python3
"""Loads N synthetic creators into a running creator profile service (CreateCreator,
64 calls in flight), and optionally daily note stats for each (RecordNoteStats, 10,000
rows a call): --notes-per-creator notes, each with stats on each of the last
--stats-days days (today included, UTC), the first note of each creator a video.
Deterministic: creator-000000 ... (the ids every bench tool uses), the same figures
every time. Used by bench/bench.py and bench/h2load_get_creator.sh.

  bench/load_creators.py --addr HOST:PORT [--count 100000] [--notes-per-creator 0]
                         [--stats-days 7]
"""
import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

CATEGORIES = ["beauty", "fashion", "food", "travel", "home", "tech", "parenting", "fitness"]


def stubs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tempfile.mkdtemp(prefix="yw-bench-pb-")
    subprocess.check_call(["protoc", "--python_out=" + out, "-I" + os.path.join(root, "proto"),
                           "-I/usr/include", "yaowei/creator/v1/creator.proto"])
    sys.path.insert(0, out)
    try:
        from yaowei.creator.v1 import creator_pb2  # noqa: E402
    finally:
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)
    return creator_pb2


def followers(i):
    """Pareto, heavy-tailed: about 78 % amateur (< 5,000), 20 % tail, 2 % mid and 0.3 %
    head (>= 500,000), at most 20 million. bench/peer_cpp makes the same numbers."""
    h = (i * 2654435761) % 1000003 / 1000003.0  # a fixed scramble of i, in [0, 1)
    return min(int(1000 * (1.0 - h) ** -1.07), 20000000)


def pipeline(call, requests, inflight):
    """Sends every request with up to `inflight` calls outstanding; raises on an error."""
    futs = []
    for req in requests:
        futs.append(call.future(req, timeout=120))
        if len(futs) >= inflight:
            futs.pop(0).result()
    for f in futs:
        f.result()


def load(addr, count, notes_per_creator=0, stats_days=7, inflight=64):
    pb = stubs()
    ch = grpc.insecure_channel(addr)
    create = ch.unary_unary("/yaowei.creator.v1.CreatorProfileService/CreateCreator",
                            request_serializer=pb.CreateCreatorRequest.SerializeToString,
                            response_deserializer=pb.Creator.FromString)
    pipeline(create, (pb.CreateCreatorRequest(
        request_id="load-%06d" % i,
        creator=pb.Creator(creator_id="creator-%06d" % i, display_name="Creator %d" % i,
                           region="CN-%02d" % (i % 34), categories=[CATEGORIES[i % 8]],
                           followers=followers(i)))
        for i in range(count)), inflight)
    rows = 0
    if notes_per_creator > 0:
        record = ch.unary_unary("/yaowei.creator.v1.CreatorProfileService/RecordNoteStats",
                                request_serializer=pb.RecordNoteStatsRequest.SerializeToString,
                                response_deserializer=pb.RecordNoteStatsResponse.FromString)
        today = datetime.datetime.now(datetime.timezone.utc).date()
        days = [(today - datetime.timedelta(days=d)).isoformat() for d in range(stats_days)]

        def batches():
            batch = pb.RecordNoteStatsRequest()
            for i in range(count):
                reach = followers(i) // 20 + 50
                for k in range(notes_per_creator):
                    note = "note-%06d-%d" % (i, k)
                    for d, day in enumerate(days):
                        imp = reach * (1 + (i + k * 7 + d * 13) % 9)
                        views = imp // 4
                        s = batch.stats.add()
                        s.note_id = note
                        s.creator_id = "creator-%06d" % i
                        s.day = day
                        s.is_video = k == 0
                        s.impressions = imp
                        s.views = views
                        s.likes = views // (10 + (i + d) % 40)
                        s.collects = views // 50
                        s.comments = views // 200
                        s.shares = views // 400
                        s.follows_gained = views // 500
                        if k == 0:
                            s.video_plays = views
                            s.avg_watch_ms = 8000 + (i % 20) * 1000
                            s.completion_rate = 0.2 + ((i + d) % 60) / 100.0
                        if len(batch.stats) == 10000:
                            yield batch
                            batch = pb.RecordNoteStatsRequest()
            if len(batch.stats):
                yield batch

        rows = count * notes_per_creator * stats_days
        pipeline(record, batches(), 4)
    ch.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--notes-per-creator", type=int, default=0)
    ap.add_argument("--stats-days", type=int, default=7)
    ap.add_argument("--inflight", type=int, default=64)
    a = ap.parse_args()
    rows = load(a.addr, a.count, a.notes_per_creator, a.stats_days, a.inflight)
    print("loaded %d creators, %d note-day stats rows" % (a.count, rows))


if __name__ == "__main__":
    main()
