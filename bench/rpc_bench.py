#!/usr/bin/python3
"""Unary RPC benchmark: GetCreator on creator profile against the C++ async peer.

For each concurrency (1, 16, 64 calls in flight) and each server, runs bench/loadgen
(closed loop, fixed duration, the project's own client runtime) RUNS times and
reports the median and min-max of QPS, p50 and p99 latency and server CPU time per
call (utime+stime of the server process over the run / calls). Both servers hold the
same 100,000 synthetic creators. Writes bench/results/rpc.md and rpc.csv.

  bench/rpc_bench.py [--runs 3] [--seconds 5] [--inflight 1,16,64]
"""
import argparse
import csv
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("YW_BIN_DIR", os.path.join(ROOT, "bazel-bin"))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d never opened" % port)


def loadgen(addr, inflight, seconds, creators):
    out = subprocess.run([os.path.join(BIN, "bench/loadgen"), "--addr", addr, "--inflight",
                          str(inflight), "--seconds", str(seconds), "--creators", str(creators)],
                         check=True, capture_output=True, text=True).stdout
    return dict(kv.split("=") for kv in out.split())


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "%s, %d cores, %s" % (cpu, os.cpu_count(), platform.platform())


def med(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--inflight", default="1,16,64")
    ap.add_argument("--creators", type=int, default=100000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="yw-rpc-bench-")
    servers = {}
    procs = []
    try:
        port = free_port()
        p = subprocess.Popen([os.path.join(BIN, "services/creator_profile/creator_profile"),
                              "--listen", "127.0.0.1:%d" % port, "--data-dir", work + "/data",
                              "--log-level", "warn"], stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(port)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench/load_creators.py"), "--addr",
                        "127.0.0.1:%d" % port, "--count", str(a.creators)], check=True)
        servers["yaowei"] = (p.pid, "127.0.0.1:%d" % port)
        port2 = free_port()
        p2 = subprocess.Popen([os.path.join(BIN, "bench/peer_cpp/get_creator_server"),
                               "--listen", "127.0.0.1:%d" % port2, "--creators",
                               str(a.creators)], stdout=subprocess.DEVNULL)
        procs.append(p2)
        wait_port(port2)
        servers["cpp-async"] = (p2.pid, "127.0.0.1:%d" % port2)

        rows = []
        for inflight in [int(x) for x in a.inflight.split(",")]:
            res = {name: {"qps": [], "p50": [], "p99": [], "cpu": []} for name in servers}
            for _ in range(a.runs):
                for name, (pid, addr) in servers.items():  # interleaved: same noise for both
                    c0 = cpu_seconds(pid)
                    r = loadgen(addr, inflight, a.seconds, a.creators)
                    c1 = cpu_seconds(pid)
                    calls = int(r["calls"])
                    res[name]["qps"].append(float(r["qps"]))
                    res[name]["p50"].append(int(r["p50_us"]))
                    res[name]["p99"].append(int(r["p99_us"]))
                    # CPU over warm-up + measured calls; loadgen counts only measured ones,
                    # so scale by the measured share of the run.
                    share = a.seconds / (a.seconds + 1.0)
                    res[name]["cpu"].append((c1 - c0) * share / max(calls, 1) * 1e6)
            for name in servers:
                rows.append((inflight, name, res[name]))
        write(rows, a)
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def write(rows, a):
    out = os.path.join(ROOT, "bench/results")
    os.makedirs(out, exist_ok=True)
    by = {(r[0], r[1]): r[2] for r in rows}
    lines = ["# Unary RPC: GetCreator, %d creators stored" % a.creators, "",
             "Machine: %s. %d runs of %d s each per cell; median [min-max]." % (
                 machine(), a.runs, a.seconds), "",
             "| in flight | server | QPS | p50 µs | p99 µs | server CPU µs/call | QPS ratio yaowei/C++ |",
             "|---|---|---|---|---|---|---|"]
    with open(os.path.join(out, "rpc.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["inflight", "server", "qps_median", "qps_min", "qps_max", "p50_us", "p99_us",
                    "cpu_us_per_call"])
        for inflight, name, r in rows:
            q, p50, p99, cpu = med(r["qps"]), med(r["p50"]), med(r["p99"]), med(r["cpu"])
            ratio = ""
            if name == "yaowei" and (inflight, "cpp-async") in by:
                ratio = "%.2f×" % (q[0] / statistics.median(by[(inflight, "cpp-async")]["qps"]))
            lines.append("| %d | %s | %.0f [%.0f–%.0f] | %d [%d–%d] | %d [%d–%d] | %.1f [%.1f–%.1f] | %s |" % (
                (inflight, name) + q + p50 + p99 + cpu + (ratio,)))
            w.writerow([inflight, name, "%.0f" % q[0], "%.0f" % q[1], "%.0f" % q[2], p50[0], p99[0],
                        "%.1f" % cpu[0]])
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "rpc.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
