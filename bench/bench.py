#!/usr/bin/python3
"""make bench: every benchmark of issue 5 in one run, on this machine.

Starts the three services (and the peers) on loopback with fresh data directories on
disk, fills them, then measures, each figure RUNS times with the runs of what is
compared interleaved (the same noise for both sides), and writes the median and
min-max of each figure with the machine it ran on:

  1. Unary RPC: GetCreator (100,000 creators cached) against creator profile and
     against the C++ async peer (bench/peer_cpp), and ScoreCreator against tier
     scoring: QPS, p50/p99 latency and server CPU per call at 1, 16, 64 in flight
     (bench/loadgen: closed loop on the project's own client runtime); GetCreator
     under h2load too, a lighter client.
  2. Ingestion with N exposures stored (10 million): RecordExposures (batches of
     1,000, 4 in flight) and one IngestExposures stream (bench/ingest_exposures), the
     physical ceiling (the same events, one write + fdatasync per 1,000:
     bench/fsync_ceiling) and PostgreSQL 15 loading the same events with COPY into a
     table with the same join index (bench/pg_copy_exposures), on 4 connections (as
     the service's 4 calls in flight) and on 16.
  3. Attribution: RecordConversions (batches of 1,000, 4 in flight), orders that join
     the stored exposures (bench/ingest_conversions); ExplainConversion latency.
  4. Reports: GetTierReport over 30 days, one call at a time.
  5. Memory: peak RSS (VmHWM) of each service over 1-4.
  6. With --cluster (issue 14, make bench CLUSTER=1): attribution as a cluster, 3
     nats-server (JetStream) + 2 nodes on this machine, beside a standalone attribution of
     its own, each with N exposures stored: RecordExposures and RecordConversions through
     the cluster (the calls spread over both nodes) with --replicas 3 and 1, server CPU
     summed over every process (NATS included), disk per exposure (the log's bytes, every
     replica), and failover (kill -9 of a node -> the other serves every partition) at N
     and at the larger sizes of the profile, with the nodes' memory per partition.
  7. Store: creator profile on SQLite (under --data-dir, one process: SQLite cannot be
     shared by two) and on PostgreSQL (--store URI) with one replica and with two replicas
     on one database (the load spread over both), each with N creators loaded:
     CreateCreator (calls/s), RecordNoteStats (batches of 100 new notes: calls/s and
     rows/s) and GetCreator (QPS), 64 in flight, server CPU per call with PostgreSQL's
     backends counted; ratios PostgreSQL ÷ SQLite per run.

Writes bench/results/bench.md and bench.csv (bench-quick.* with --quick), cluster.json
(cluster-quick.json) with every cluster figure when 6 ran, and the raw output of every
run in runs-*.log. --cluster-only runs 6 alone: cluster(-quick).md, .csv, .json;
--store-only runs 7 alone: store(-quick).md, .csv.

  bench/bench.py [--quick] [--runs 3] [--keep] [--cluster | --cluster-only | --store-only]
Env: YW_BIN_DIR (bazel-bin), BENCH_DIR (parent of the work directory; /var/tmp).
"""
import argparse
import csv
import glob
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("YW_BIN_DIR") or os.path.join(ROOT, "bazel-bin")
RESULTS = os.path.join(ROOT, "bench", "results")
sys.path.insert(0, os.path.join(ROOT, "bench"))

# Sizes and durations. "full" is what the README's table comes from.
PROFILES = {
    "full": dict(creators=100000, notes_per_creator=2, stats_days=14, rpc_seconds=5,
                 h2load_calls=300000,
                 exposures=10000000, ingest_seconds=5, ceiling_seconds=3, conv_seconds=5,
                 explain_seconds=5, report_seconds=5,
                 cluster_seconds=5, failover_sizes=[10000000, 20000000],
                 store_creators=100000, store_seconds=5),
    "quick": dict(creators=100000, notes_per_creator=1, stats_days=7, rpc_seconds=2,
                  h2load_calls=100000,
                  exposures=1000000, ingest_seconds=2, ceiling_seconds=1, conv_seconds=2,
                  explain_seconds=2, report_seconds=2,
                  cluster_seconds=3, failover_sizes=[1000000, 2000000],
                  store_creators=20000, store_seconds=3),
}
INFLIGHT = [1, 16, 64]
# The second C++ peer's completion-queue threads: one per core of the 2-core machine.
PEER2_THREADS = 2
EXPLAIN_INFLIGHT = 16
# The service gets 4 RecordExposures calls in flight and PostgreSQL 4 connections; PG
# commits more rows per WAL flush with more connections, so it also runs with this many.
PG_WIDE_INFLIGHT = 16
REPORT_DAYS = 30
# The population of the attribution events (bench/bench_events.h), the same for every
# tool: exposures spread over the last 13 days, inside the 14-day join horizon.
VIEWERS, PRODUCTS, NOTES = 1000000, 100000, 1000000
SPREAD_S = 13 * 86400
PRELOAD_SEED = 1

# Targets of issue 5 (a benchmark reports them; no test asserts a time).
TARGET_RATIO = 1.5
TARGET_INGEST = 200000
TARGET_PG_RATIO = 2.0
TARGET_REPORT_P99_MS = 100.0
TARGET_RSS_MB = 200.0
TARGET_RESTART_TERM_S = 5.0
TARGET_RESTART_KILL_S = 15.0

# The cluster (issue 14, --cluster): three nats-server (JetStream, one cluster) and two
# attribution nodes on this machine, every one of them on the same cores standalone has
# alone. The load generator spreads its calls in flight over both nodes (--addr A,B).
CLUSTER_NATS = 3
CLUSTER_NODES = 2
CLUSTER_PARTITIONS = 64  # attribution's default
CLUSTER_LEASE_TTL_MS = 5000  # attribution's default
# Targets of issue 14, as ratios in one run.
TARGET_CLUSTER_RATIO = 0.5
TARGET_FAILOVER_S = 15.0

# The store section (7): creator profile on SQLite and on PostgreSQL, 64 calls in flight,
# RecordNoteStats in batches of 100 new notes. Two replicas exist only on PostgreSQL: a
# SQLite database belongs to the one process that opened it under --data-dir.
STORE_INFLIGHT = 64
STORE_BATCH = 100
STORE_POOL = 4  # --store-pool, the service's default
STORE_KINDS = [("sqlite", "SQLite, 1 process"), ("pg1", "PostgreSQL, 1 replica"),
               ("pg2", "PostgreSQL, 2 replicas, one database")]
STORE_METHODS = [("create_creator", "CreateCreator"), ("record_note_stats", "RecordNoteStats"),
                 ("get_creator", "GetCreator")]


# ---- output parsing (tests/integration/test_bench_smoke.py uses these) ----

def parse_line(out, program):
    """The key=value pairs of the line a bench tool printed, starting with `program`.
    Numbers become int or float. Raises ValueError when there is no such line."""
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == program:
            kv = {}
            for w in words[1:]:
                k, sep, v = w.partition("=")
                if not sep:
                    raise ValueError("not key=value: %r in %r" % (w, line))
                for conv in (int, float):
                    try:
                        v = conv(v)
                        break
                    except ValueError:
                        pass
                kv[k] = v
            return kv
    raise ValueError("no %s line in output:\n%s" % (program, out))


def med(xs):
    """(median, min, max) of a non-empty list."""
    return statistics.median(xs), min(xs), max(xs)


# ---- processes ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc=None, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def grpc_call(addr, method, body=b"", timeout=10.0):
    """A unary call with raw request bytes; returns the raw response bytes."""
    import grpc
    ch = grpc.insecure_channel(addr)
    try:
        return ch.unary_unary(method)(body, timeout=timeout)
    finally:
        ch.close()


def wait_until(fn, what, timeout=120):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
            time.sleep(0.2)
    raise RuntimeError("%s: not ready after %d s (%s)" % (what, timeout, last))


class Process:
    """A child process (self.proc, a Popen once started): its pid, whether it runs, and a
    stop that sends SIGTERM and waits STOP_TIMEOUT_S before it kills."""

    STOP_TIMEOUT_S = 60

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Service(Process):
    """One of our service processes on a free loopback port, with its own data dir."""

    def __init__(self, work, name, binary, extra=()):
        self.name = name
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.data = os.path.join(work, name)
        self.log = os.path.join(work, name + ".log")
        self.argv = [binary, "--listen", self.addr, "--data-dir", self.data,
                     "--log-level", "warn"] + list(extra)
        self.proc = None

    def start(self, timeout=120):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        wait_port(self.port, self.proc)
        # grpc.health.v1.Health/Check with service "": SERVING is field 1 = 1.
        wait_until(lambda: self._check(), "%s health" % self.name, timeout)
        return self

    def _check(self):
        resp = grpc_call(self.addr, "/grpc.health.v1.Health/Check", b"", 2.0)
        if resp != b"\x08\x01":
            raise RuntimeError("not SERVING: %r" % resp)



def cpu_seconds(pid):
    """utime + stime of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Postgres:
    """PostgreSQL 15 from Debian on a loopback port, in a directory of its own; as the
    postgres user when we are root (initdb refuses root)."""

    SETTINGS = {
        # Durable like the service: every COPY commits with an fsync'd WAL.
        "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
        # What a user would set for a bulk-ingest table on this machine.
        "shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min",
        "maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": "2",
    }

    def __init__(self, parent):
        bins = sorted(glob.glob("/usr/lib/postgresql/15/bin/initdb")) or \
            sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="yw-bench-pg-", dir=parent)
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.conninfo = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port

    def uri(self, db):
        """The libpq URI of database `db` (the service's --store)."""
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def _run(self, argv, **kw):
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--"] + argv
        return subprocess.run(argv, check=True, **kw)

    def start(self):
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                  stdout=subprocess.DEVNULL)
        opts = "-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=''" % self.port
        opts += "".join(" -c %s=%s" % kv for kv in self.SETTINGS.items())
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts, "-l",
                   os.path.join(self.dir, "log"), "-w", "-t", "120", "start"],
                  stdout=subprocess.DEVNULL)
        return self

    @property
    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def sql(self, statement):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", "-d", "postgres", "-c", statement],
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        try:
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                       "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (subprocess.CalledProcessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the attribution cluster (--cluster) ----

def failover_timeout(stored):
    """How long a failover may take before the run stops on it: it reads every partition's
    whole log, so the bound grows with what is stored (5 min + 1 s per 20,000 stored; the
    failovers measured took 20-41 s at 1-2 million, loaded)."""
    return 300 + stored / 20000


def tree_bytes(path):
    """Bytes on disk (allocated blocks, as du counts them) of every file under `path`."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(top, f)).st_blocks * 512
            except OSError:
                pass  # a file removed while we walk (a compacted block)
    return total


def with_children(pid):
    """`pid` and its direct children (PostgreSQL: the postmaster and its backends)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [pid] + [int(x) for x in f.read().split()]
    except OSError:
        return [pid]


def quiesce(pids, timeout=15.0, window=0.5, idle=0.1):
    """Waits until `pids` (a "+PID" with its children) together use less than `idle` of a
    core over `window` seconds, at most `timeout` seconds: what the last run left behind
    (PostgreSQL's autovacuum and WAL writes, replicas reloading) is not charged to the
    next. Returns the seconds waited."""
    start = time.time()

    def expand():
        out = []
        for p in pids:
            p = str(p)
            out += with_children(int(p[1:])) if p.startswith("+") else [int(p)]
        return out

    while time.time() - start < timeout:
        procs = expand()
        c0 = cpu_of(procs)
        time.sleep(window)
        if cpu_of(procs) - c0 < idle * window:
            break
    return time.time() - start


def cpu_of(pids):
    """utime + stime of the processes `pids`, summed; a process gone counts 0."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


class NatsServer(Process):
    """One nats-server (Debian's) with JetStream on loopback, in a cluster with its peers:
    server_name, listen, http monitoring, store_dir and the routes to the others, as
    tests/integration/nats_cluster.py writes them (and a user's cluster does). JetStream's
    limits are nats-server's defaults."""

    STOP_TIMEOUT_S = 30

    def __init__(self, work, name):
        self.name = name
        self.dir = os.path.join(work, name)
        self.store = os.path.join(self.dir, "js")
        os.makedirs(self.store, exist_ok=True)
        self.port, self.route_port, self.http_port = free_port(), free_port(), free_port()
        self.conf = os.path.join(self.dir, "nats.conf")
        self.log = os.path.join(self.dir, "nats.log")
        self.proc = None

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def write_conf(self, cluster_name, peers):
        routes = ", ".join("nats-route://127.0.0.1:%d" % p.route_port for p in peers
                           if p is not self)
        with open(self.conf, "w") as f:
            f.write('server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n'
                    'jetstream { store_dir: "%s" }\n'
                    'cluster { name: %s, listen: 127.0.0.1:%d, routes: [%s] }\n'
                    % (self.name, self.port, self.http_port, self.store, cluster_name,
                       self.route_port, routes))

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["nats-server", "-c", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def jsz(self, query=""):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/jsz%s" % (self.http_port, query),
                                    timeout=5) as r:
            return json.loads(r.read().decode())

    def meta_leader(self):
        return (self.jsz().get("meta_cluster") or {}).get("leader")

    def streams_state(self, prefix):
        """(messages, bytes) of this server's replicas of the streams named `prefix`...,
        summed; (0, 0) if none."""
        msgs = size = 0
        for acc in self.jsz("?streams=true").get("account_details") or []:
            for st in acc.get("stream_detail") or []:
                if st.get("name", "").startswith(prefix):
                    msgs += st["state"]["messages"]
                    size += st["state"]["bytes"]
        return msgs, size



class Node(Service):
    """An attribution node of a cluster: --cluster and the flags README "Running a
    cluster" lists, a metrics port (the partitions it serves)."""

    def __init__(self, work, name, binary, urls, replicas):
        self.mport = free_port()
        super().__init__(work, name, binary, [])
        self.argv += ["--tier-scoring-addr", "127.0.0.1:%d" % free_port(),  # none: no reports
                      "--cluster", urls, "--node-id", name, "--advertise-addr", self.addr,
                      "--replicas", str(replicas), "--partitions", str(CLUSTER_PARTITIONS),
                      "--lease-ttl-ms", str(CLUSTER_LEASE_TTL_MS),
                      "--metrics-listen", "127.0.0.1:%d" % self.mport]

    def metrics(self):
        """The yaowei_attribution_cluster_* samples, name{labels} -> value."""
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport,
                                    timeout=2) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("yaowei_attribution_cluster_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def serving(self):
        """Partitions this node serves (built from their logs, engine open)."""
        return int(self.metrics()['yaowei_attribution_cluster_partitions{state="serving"}'])

    def healthy(self):
        try:
            self._check()
            return True
        except Exception:  # noqa: BLE001 - not SERVING, or not answering
            return False


class Cluster:
    """CLUSTER_NATS nats-server and CLUSTER_NODES attribution nodes, streams and buckets
    with `replicas` copies; everything under `work`/<name>-*."""

    def __init__(self, work, name, attribution, replicas):
        self.name, self.replicas = name, replicas
        self.nats = [NatsServer(work, "%s-nats%d" % (name, i + 1)) for i in range(CLUSTER_NATS)]
        for n in self.nats:
            n.write_conf(name, self.nats)
        urls = ",".join(n.url for n in self.nats)
        self.nodes = [Node(work, "%s-node%d" % (name, i + 1), attribution, urls, replicas)
                      for i in range(CLUSTER_NODES)]
        self.stored = 0

    def start(self):
        for n in self.nats:
            n.start()
        # JetStream is up once every server knows the same meta leader.
        wait_until(lambda: self._one_leader(), "%s: JetStream meta leader" % self.name, 60)
        for node in self.nodes:
            node.start(timeout=600)
        self.wait_balanced()
        return self

    def _one_leader(self):
        leaders = {n.meta_leader() for n in self.nats}
        if len(leaders) != 1 or None in leaders:
            raise RuntimeError("meta leaders %r" % leaders)

    def wait_balanced(self, timeout=1800):
        """Every node SERVING, every partition served once, each node its fair share."""
        share = CLUSTER_PARTITIONS // CLUSTER_NODES

        def check():
            got = [(node.healthy(), node.serving()) for node in self.nodes]
            if not all(h and s == share for h, s in got):
                raise RuntimeError("(SERVING, partitions served) per node: %r" % got)
        wait_until(check, "%s: every node serving its share" % self.name, timeout)

    @property
    def addrs(self):
        return ",".join(node.addr for node in self.nodes)

    @property
    def nats_pids(self):
        return [n.pid for n in self.nats]

    @property
    def node_pids(self):
        return [node.pid for node in self.nodes]

    @property
    def pids(self):
        """Every server process: what the load generator's CPU figure sums."""
        return self.nats_pids + self.node_pids

    def store_bytes(self):
        """JetStream's files on the three servers, as du counts them: every replica of every
        stream and bucket, and the Raft logs of the replicated ones (until compacted)."""
        return sum(tree_bytes(n.store) for n in self.nats)

    def counters(self):
        """(leases lost, partitions built) since start, summed over the nodes that answer."""
        lost = built = 0
        for node in self.nodes:
            try:
                m = node.metrics()
            except OSError:
                continue
            lost += int(m.get("yaowei_attribution_cluster_leases_lost_total", 0))
            built += int(m.get("yaowei_attribution_cluster_partition_builds_total", 0))
        return lost, built

    def log_state(self):
        """(messages, bytes) of the partitions' logs, the streams yw-attr-log-<first>-<last>,
        summed over the servers' replicas: what JetStream stores of them, every copy."""
        states = [n.streams_state("yw-attr-log-") for n in self.nats]
        return sum(m for m, _ in states), sum(b for _, b in states)

    def node_bytes(self):
        return sum(tree_bytes(node.data) for node in self.nodes)

    def alive(self):
        return all(n.alive() for n in self.nats) and all(node.alive() for node in self.nodes)

    def stop(self):
        for node in self.nodes:
            node.stop()
        for n in self.nats:
            n.stop()


# ---- the benchmark ----

# What a run executes, copied out of bazel-bin first: others may rebuild bazel-bin
# (or `make asan` may fill it with sanitized builds) while a run takes its half hour.
BINARIES = ["services/creator_profile/creator_profile", "services/tier_scoring/tier_scoring",
            "services/attribution/attribution", "bench/loadgen", "bench/ingest_exposures",
            "bench/ingest_conversions", "bench/fsync_ceiling", "bench/pg_copy_exposures",
            "bench/peer_cpp/get_creator_server"]
# What --cluster-only runs.
CLUSTER_BINARIES = ["services/attribution/attribution", "bench/ingest_exposures",
                    "bench/ingest_conversions"]
# What --store-only runs.
STORE_BINARIES = ["services/creator_profile/creator_profile", "bench/loadgen"]


def snapshot_binaries(dest, binaries=BINARIES):
    for rel in binaries:
        src = os.path.join(BIN, rel)
        if not os.access(src, os.X_OK):
            raise RuntimeError("%s is missing: run `make bench` (it builds everything, the "
                               "manual peer targets included)" % src)
        libs = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        if "libasan" in libs or "libubsan" in libs:
            raise RuntimeError("%s is a sanitizer build (make asan): rebuild with `bazel "
                               "build //...` first" % src)
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))

class Bench:
    def __init__(self, args):
        self.a = args
        self.p = PROFILES["quick" if args.quick else "full"]
        self.runs = args.runs
        self.fig = {}        # figure key -> list of values, one per run
        self.single = {}     # figure key -> one value (memory, cold call, preload)
        self.procs = []
        self.clusters = {}  # replicas -> Cluster (--cluster)
        self.pg = None
        self.started = time.time()
        self.anchor = int(time.time())
        parent = os.environ.get("BENCH_DIR") or "/var/tmp"
        self.work = tempfile.mkdtemp(prefix="yw-bench-", dir=parent)
        self.machine = machine(self.work)
        self.load_start = loadavg()
        self.date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        self.bin = os.path.join(self.work, "bin")
        os.makedirs(RESULTS, exist_ok=True)
        self.logf = open(os.path.join(RESULTS, "runs-%s%s.log" % (
            "" if self.with_standalone else "store-" if self.store_only else "cluster-",
            self.profile_name)), "w")

    @property
    def profile_name(self):
        return "quick" if self.a.quick else "full"

    @property
    def store_only(self):
        return getattr(self.a, "store_only", False)

    @property
    def with_standalone(self):
        """Sections 1-5 (all but --cluster-only and --store-only)."""
        return not getattr(self.a, "cluster_only", False) and not self.store_only

    @property
    def with_store(self):
        """Section 7, the stores (with 1-5, and --store-only)."""
        return self.with_standalone or self.store_only

    @property
    def with_cluster(self):
        """Section 6, the attribution cluster (--cluster, --cluster-only)."""
        return getattr(self.a, "cluster", False) or getattr(self.a, "cluster_only", False)

    @property
    def stem(self):
        """bench/results/<stem>.md and .csv: bench(-quick), cluster(-quick) for
        --cluster-only, store(-quick) for --store-only."""
        return (("bench" if self.with_standalone else "store" if self.store_only
                 else "cluster")
                + ("" if self.profile_name == "full" else "-quick")
                + ("" if self.batch == 1000 else "-batch%d" % self.batch)
                + ("" if CLUSTER_PARTITIONS == 64 else "-partitions%d" % CLUSTER_PARTITIONS))

    @property
    def batch(self):
        """Events per RecordExposures call in section 6's rounds (--cluster-batch)."""
        return getattr(self.a, "cluster_batch", 1000)

    def say(self, msg):
        line = "[%6.1fs] %s" % (time.time() - self.started, msg)
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()

    def add(self, key, value):
        self.fig.setdefault(key, []).append(value)

    def tool(self, program, args, timeout, tolerate=()):
        """Runs bench/<program>, logs its output, returns its parsed line. Failed calls
        ("errors") and duplicates are a broken set-up unless named in `tolerate` (the
        cluster: a call may fail UNAVAILABLE while a partition changes hands; events sent
        again come back as duplicates); the tool's first error is then r["first_error"]."""
        argv = [os.path.join(self.bin, "bench", program)] + [str(x) for x in args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        self.logf.write("$ %s\n%s%s" % (" ".join(argv), p.stdout, p.stderr))
        self.logf.flush()
        try:
            r = parse_line(p.stdout, program)
        except ValueError:
            r = None
        # The tools exit 1 when a call failed; a result line still says what got through.
        if r is None or p.returncode != 0 and not (p.returncode == 1 and r.get("errors")
                                                   and "errors" in tolerate):
            raise RuntimeError("%s failed (exit %d):\n%s%s" % (program, p.returncode, p.stdout,
                                                               p.stderr))
        # Every event of a run is new and valid: anything else is a broken set-up.
        for k in ("errors", "duplicates", "rejected"):
            if r.get(k) and k not in tolerate:
                raise RuntimeError("%s: errors, duplicates or rejects:\n%s%s"
                                   % (program, p.stdout, p.stderr))
        r["first_error"] = ""
        for line in p.stderr.splitlines():
            if "first error:" in line:
                r["first_error"] = line.split("first error:", 1)[1].strip()
        return r

    def population(self):
        return ["--viewers", VIEWERS, "--creators", self.p["creators"], "--products", PRODUCTS,
                "--notes", NOTES, "--anchor", self.anchor, "--spread-s", SPREAD_S]

    def service(self, name, binary, extra=()):
        s = Service(self.work, name, os.path.join(self.bin, binary), extra)
        self.procs.append(s)
        return s.start()

    # -- 1. unary RPC --

    def setup_rpc(self):
        from load_creators import load
        p = self.p
        self.cp = self.service("creator_profile", "services/creator_profile/creator_profile")
        t = time.time()
        rows = load(self.cp.addr, p["creators"], p["notes_per_creator"], p["stats_days"])
        self.say("creator profile: %d creators, %d note-day stats rows loaded in %.0f s"
                 % (p["creators"], rows, time.time() - t))
        # No periodic refresh during the runs: one population, built at start-up.
        self.tier = self.service("tier_scoring", "services/tier_scoring/tier_scoring",
                                 ["--creator-profile-addr", self.cp.addr,
                                  "--refresh-interval-ms", "86400000"])
        wait_until(lambda: grpc_call(self.tier.addr,
                                     "/yaowei.tier.v1.TierScoringService/GetTierDistribution",
                                     b"", 10.0), "tier scoring population", 300)
        # The C++ peer twice: one completion-queue thread (like the yaowei runtime, the
        # peer the target is judged on) and one thread per core (how C++ async servers
        # are usually sized).
        self.peer, self.peer_addr = self.start_peer(1)
        self.peer2, self.peer2_addr = self.start_peer(PEER2_THREADS)

    def start_peer(self, threads):
        port = free_port()
        with open(os.path.join(self.work, "peer_cpp_%d.log" % threads), "wb") as log:
            peer = subprocess.Popen([os.path.join(self.bin, "bench/peer_cpp/get_creator_server"),
                                     "--listen", "127.0.0.1:%d" % port, "--creators",
                                     str(self.p["creators"]), "--threads", str(threads)],
                                    stdout=subprocess.DEVNULL, stderr=log)
        wait_port(port, peer)
        return peer, "127.0.0.1:%d" % port

    def loadgen(self, addr, method, inflight, seconds, pids, extra=()):
        return self.tool("loadgen", ["--addr", addr, "--method", method, "--inflight", inflight,
                                     "--seconds", seconds, "--warmup", 1, "--server-pids",
                                     ",".join(str(x) for x in pids)] + list(extra),
                         seconds + 120)

    def run_rpc(self):
        s = self.p["rpc_seconds"]
        ids = ["--ids", self.p["creators"]]
        for run in range(self.runs):
            for n in INFLIGHT:
                # Interleaved: yaowei, the C++ peer, then ScoreCreator, for each run.
                y = self.loadgen(self.cp.addr, "get_creator", n, s, [self.cp.pid], ids)
                c = self.loadgen(self.peer_addr, "get_creator", n, s, [self.peer.pid], ids)
                c2 = self.loadgen(self.peer2_addr, "get_creator", n, s, [self.peer2.pid], ids)
                sc = self.loadgen(self.tier.addr, "score_creator", n, s,
                                  [self.tier.pid, self.cp.pid], ids)
                for who, r in (("yaowei", y), ("cpp", c), ("cpp2", c2), ("score", sc)):
                    for k in ("qps", "p50_us", "p99_us", "server_cpu_us_per_call",
                              "client_cpu_us_per_call"):
                        self.add(("rpc", who, n, k), r[k])
                self.add(("rpc", "ratio", n, "qps"), y["qps"] / c["qps"])
                self.add(("rpc", "ratio", n, "cpu"),
                         y["server_cpu_us_per_call"] / c["server_cpu_us_per_call"])
                self.add(("rpc", "ratio2", n, "qps"), y["qps"] / c2["qps"])
                self.add(("rpc", "ratio2", n, "cpu"),
                         y["server_cpu_us_per_call"] / c2["server_cpu_us_per_call"])
                self.say("run %d, %2d in flight: GetCreator yaowei %.0f/s, C++ %.0f/s (%.2fx); "
                         "ScoreCreator %.0f/s" % (run + 1, n, y["qps"], c["qps"],
                                                  y["qps"] / c["qps"], sc["qps"]))
            # A second opinion with a lighter client: h2load, 1 connection x 64 streams.
            hy = self.h2load(self.cp.addr, self.cp.pid)
            hc = self.h2load(self.peer_addr, self.peer.pid)
            for who, r in (("yaowei", hy), ("cpp", hc)):
                self.add(("h2load", who, "qps"), r[0])
                self.add(("h2load", who, "cpu"), r[1])
            self.add(("h2load", "ratio", "qps"), hy[0] / hc[0])
            self.say("run %d, h2load 64 streams: GetCreator yaowei %.0f/s, C++ %.0f/s (%.2fx)"
                     % (run + 1, hy[0], hc[0], hy[0] / hc[0]))

    def h2load(self, addr, pid):
        """(calls/s, server CPU us/call) of GetCreator under h2load, 1 connection x 64."""
        body = os.path.join(self.work, "get_creator.body")
        if not os.path.exists(body):
            cid = b"creator-012345"
            msg = b"\x0a" + bytes([len(cid)]) + cid  # GetCreatorRequest{creator_id}
            with open(body, "wb") as f:
                f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)  # gRPC frame prefix
        n = self.p["h2load_calls"]
        c0 = cpu_seconds(pid)
        p = subprocess.run(["h2load", "-n", str(n), "-c", "1", "-m", "64", "-H",
                            "content-type: application/grpc", "-H", "te: trailers", "-d", body,
                            "http://%s/yaowei.creator.v1.CreatorProfileService/GetCreator"
                            % addr], capture_output=True, text=True, timeout=600)
        c1 = cpu_seconds(pid)
        self.logf.write("$ h2load %s\n%s" % (addr, p.stdout))
        rate = ok = None
        for line in p.stdout.splitlines():
            if line.startswith("finished in"):
                rate = float(line.split(",")[1].split()[0])
            elif line.startswith("status codes:"):
                ok = int(line.split()[2])
        if p.returncode != 0 or rate is None or ok != n:
            raise RuntimeError("h2load against %s failed:\n%s%s" % (addr, p.stdout, p.stderr))
        return rate, (c1 - c0) * 1e6 / n

    # -- 2. ingestion --

    def setup_ingest(self):
        n = self.p["exposures"]
        self.attr = self.service("attribution", "services/attribution/attribution",
                                 ["--tier-scoring-addr", self.tier.addr])
        t = time.time()
        r = self.tool("ingest_exposures", ["--addr", self.attr.addr, "--count", n, "--seed",
                                           PRELOAD_SEED, "--server-pids", self.attr.pid]
                      + self.population(), 3600)
        self.single["preload_rate"] = r["exposures_per_s"]
        self.single["attr_rss_at_n_kib"] = status_kib(self.attr.pid, "VmRSS")
        self.stored = n
        self.say("attribution: %d exposures stored in %.0f s (%.0f/s), RSS %.0f MB"
                 % (n, time.time() - t, r["exposures_per_s"],
                    self.single["attr_rss_at_n_kib"] / 1024))
        t = time.time()
        self.pg = Postgres(os.path.dirname(self.work)).start()
        self.pg.sql("CREATE TABLE exposure_touches (event_id text NOT NULL, viewer_id text NOT "
                    "NULL, product_id text NOT NULL, occur_time timestamptz NOT NULL, creator_id "
                    "text NOT NULL, note_id text NOT NULL, kind smallint NOT NULL, watch_ms "
                    "bigint NOT NULL)")
        # The same exposures; the index is built after the bulk load (faster than
        # maintaining it row by row), then the measured runs insert into the indexed table.
        self.tool("pg_copy_exposures", ["--conninfo", self.pg.conninfo, "--count", n, "--batch",
                                        50000, "--inflight", 2, "--seed", PRELOAD_SEED]
                  + self.population(), 3600)
        self.pg.sql("CREATE INDEX exposure_touches_join ON exposure_touches "
                    "(viewer_id, product_id, occur_time)")
        self.pg.sql("CHECKPOINT")
        self.say("postgresql: the same %d exposures loaded and indexed in %.0f s"
                 % (n, time.time() - t))

    def run_ingest(self):
        s = self.p["ingest_seconds"]
        for run in range(self.runs):
            seed = 100 + run
            u = self.tool("ingest_exposures", ["--addr", self.attr.addr, "--seconds", s,
                                               "--seed", seed, "--server-pids", self.attr.pid]
                          + self.population(), s + 300)
            st = self.tool("ingest_exposures", ["--addr", self.attr.addr, "--stream", 1,
                                                "--seconds", s, "--seed", 200 + run,
                                                "--server-pids", self.attr.pid]
                           + self.population(), s + 300)
            ce = self.tool("fsync_ceiling", ["--dir", self.work, "--seconds",
                                             self.p["ceiling_seconds"], "--seed", seed]
                           + self.population(), 600)
            pg = self.tool("pg_copy_exposures", ["--conninfo", self.pg.conninfo, "--seconds", s,
                                                 "--seed", seed, "--server-pids",
                                                 "+%d" % self.pg.pid] + self.population(),
                           s + 300)
            # The same events again (another seed: the table has no unique key, but
            # the same ids twice would not be the same workload).
            pgw = self.tool("pg_copy_exposures", ["--conninfo", self.pg.conninfo, "--seconds", s,
                                                  "--inflight", PG_WIDE_INFLIGHT, "--seed",
                                                  400 + run, "--server-pids",
                                                  "+%d" % self.pg.pid] + self.population(),
                            s + 300)
            self.stored += u["sent"] + st["sent"]
            for who, r in (("unary", u), ("stream", st), ("pg", pg), ("pg_wide", pgw)):
                self.add(("ingest", who, "rate"), r["exposures_per_s"])
                self.add(("ingest", who, "p50_ms"), r["p50_ms"])
                self.add(("ingest", who, "p99_ms"), r["p99_ms"])
                self.add(("ingest", who, "cpu"), r["server_cpu_us_per_exposure"])
            self.add(("ingest", "ceiling", "rate"), ce["exposures_per_s"])
            self.add(("ingest", "ceiling", "p50_ms"), ce["p50_us"] / 1000.0)
            self.add(("ingest", "ceiling", "p99_ms"), ce["p99_us"] / 1000.0)
            for who, r in (("unary", u), ("stream", st)):
                self.add(("ingest", who, "vs_pg"), r["exposures_per_s"] / pg["exposures_per_s"])
                self.add(("ingest", who, "vs_pg_wide"),
                         r["exposures_per_s"] / pgw["exposures_per_s"])
                self.add(("ingest", who, "vs_ceiling"),
                         r["exposures_per_s"] / ce["exposures_per_s"])
            self.say("run %d: RecordExposures %.0f/s, IngestExposures %.0f/s, ceiling %.0f/s, "
                     "PostgreSQL COPY %.0f/s (%d connections: %.0f/s)"
                     % (run + 1, u["exposures_per_s"], st["exposures_per_s"],
                        ce["exposures_per_s"], pg["exposures_per_s"], PG_WIDE_INFLIGHT,
                        pgw["exposures_per_s"]))
        self.single["stored_after_ingest"] = self.stored

    # -- 3. attribution --

    def run_attribution(self):
        s = self.p["conv_seconds"]
        for run in range(self.runs):
            seed = 300 + run
            c = self.tool("ingest_conversions", ["--addr", self.attr.addr, "--seconds", s,
                                                 "--seed", seed, "--exposure-seed", PRELOAD_SEED,
                                                 "--stored", self.p["exposures"],
                                                 "--server-pids", self.attr.pid]
                          + self.population(), s + 300)
            self.add(("conv", "rate"), c["conversions_per_s"])
            self.add(("conv", "p50_ms"), c["p50_ms"])
            self.add(("conv", "p99_ms"), c["p99_ms"])
            self.add(("conv", "cpu"), c["server_cpu_us_per_conversion"])
            e = self.loadgen(self.attr.addr, "explain_conversion", EXPLAIN_INFLIGHT,
                             self.p["explain_seconds"], [self.attr.pid],
                             ["--seed", seed, "--ids", c["sent"]])
            for k in ("qps", "p50_us", "p99_us", "server_cpu_us_per_call"):
                self.add(("explain", k), e[k])
            self.say("run %d: RecordConversions %.0f/s (%d orders); ExplainConversion p99 %d us"
                     % (run + 1, c["conversions_per_s"], c["sent"], e["p99_us"]))

    # -- restart --

    def run_restart(self):
        """Attribution from start to SERVING (health), with the data of 1-3 stored: after a
        SIGTERM (from the snapshot of the clean stop) and after a kill -9 (recomputed, the
        orders' touches looked up only after the touch mark)."""
        a = self.attr
        peak = status_kib(a.pid, "VmHWM")
        for run in range(self.runs):
            a.stop()
            t = time.time()
            a.start()
            self.add(("restart", "term_s"), time.time() - t)
        for run in range(self.runs):
            time.sleep(6)  # a maintenance tick (5 s) stores the touch mark
            a.proc.kill()
            a.proc.wait()
            t = time.time()
            a.start()
            self.add(("restart", "kill_s"), time.time() - t)
        # The memory figures keep the peak of the process before the restarts.
        self.single["rss_attribution_before_restart"] = peak
        self.say("restart to SERVING: after SIGTERM %s s, after kill -9 %s s"
                 % (", ".join("%.1f" % x for x in self.fig[("restart", "term_s")]),
                    ", ".join("%.1f" % x for x in self.fig[("restart", "kill_s")])))

    # -- 4. reports --

    def run_reports(self):
        day = 86400
        end = int(time.time()) // day * day + day

        def ts(field, secs):
            inner = b"\x08" + varint(secs)
            return bytes([field << 3 | 2, len(inner)]) + inner

        body = ts(1, end - REPORT_DAYS * day) + ts(2, end)
        pb = protoc_module("yaowei/attribution/v1/attribution.proto", "attribution_pb2",
                           ["yaowei/tier/v1/tier.proto"])
        method = "/yaowei.attribution.v1.AttributionService/GetTierReport"
        # The first call fetches the tier labels of every creator (tier scoring's
        # BatchGetCreatorTiers, from its population in memory: 1,000 a call, at most 4 in
        # flight, within attribution's 5 s label deadline); labels it could not get are
        # fetched again by the next call.
        t = time.time()
        rep = pb.TierReport.FromString(grpc_call(self.attr.addr, method, body, 60.0))
        self.single["report_cold_ms"] = (time.time() - t) * 1000
        self.single["report_cold_unlabeled"] = rep.unlabeled_creators
        cold_error = rep.tier_labels_error
        calls = 1
        while rep.unlabeled_creators and calls < 20:
            rep = pb.TierReport.FromString(grpc_call(self.attr.addr, method, body, 60.0))
            calls += 1
        self.single["report_calls_to_labels"] = calls
        self.single["report_labels_s"] = time.time() - t
        self.report_rows = [(r.tier, r.creators, r.impressions) for r in rep.rows]
        self.say("GetTierReport, first call: %.0f ms, %d of %d creators unlabeled (%r); every "
                 "label after %d calls, %.1f s"
                 % (self.single["report_cold_ms"], self.single["report_cold_unlabeled"],
                    sum(r.creators for r in rep.rows), cold_error, calls,
                    self.single["report_labels_s"]))
        for run in range(self.runs):
            r = self.loadgen(self.attr.addr, "tier_report", 1, self.p["report_seconds"],
                             [self.attr.pid], ["--days", REPORT_DAYS])
            self.add(("report", "degraded"), r["degraded"])
            self.add(("report", "p50_ms"), r["p50_us"] / 1000.0)
            self.add(("report", "p99_ms"), r["p99_us"] / 1000.0)
            self.add(("report", "qps"), r["qps"])
            self.say("run %d: GetTierReport p50 %.1f ms, p99 %.1f ms"
                     % (run + 1, r["p50_us"] / 1000.0, r["p99_us"] / 1000.0))

    # -- 6. the attribution cluster (--cluster) --

    def setup_cluster(self):
        """A standalone attribution of its own and the two clusters (R3 and R1), each with
        the same N exposures stored first (the preload's events, through both nodes)."""
        if shutil.which("nats-server") is None:
            raise RuntimeError("nats-server is not installed (make deps installs it)")
        n = self.p["exposures"]
        binary = os.path.join(self.bin, "services/attribution/attribution")
        self.sa = self.service("attribution_standalone", "services/attribution/attribution",
                               ["--tier-scoring-addr", "127.0.0.1:%d" % free_port()])
        self.clusters = {}
        for r in (3, 1):
            self.clusters[r] = Cluster(self.work, "r%d" % r, binary, r).start()
        S = self.single
        S["cluster_node_rss_empty_kib"] = max(status_kib(pid, "VmRSS")
                                              for pid in self.clusters[3].node_pids)
        # Disk per exposure: what the preload added to JetStream's files (every replica) and
        # to the data dirs (standalone's; the nodes' views of their partitions).
        targets = [("standalone", None)] + [("r%d" % r, c) for r, c in self.clusters.items()]
        for who, c in targets:
            addr, pids = (c.addrs, c.pids) if c else (self.sa.addr, [self.sa.pid])
            data = c.node_bytes if c else lambda: tree_bytes(self.sa.data)
            store0, data0, t = c.store_bytes() if c else 0, data(), time.time()
            log0 = c.log_state() if c else (0, 0)
            if c is None:
                r = self.tool("ingest_exposures", ["--addr", addr, "--count", n, "--seed",
                                                   PRELOAD_SEED, "--server-pids",
                                                   ",".join(map(str, pids))] + self.population(),
                              7200)
            else:
                r = self.cluster_send(c, n, 0)
            S["cluster_preload_rate_" + who] = r["exposures_per_s"]
            S["cluster_preload_cpu_" + who] = r["server_cpu_us_per_exposure"]
            S["cluster_preload_sends_" + who] = r.get("sends", 1)
            S["cluster_data_bytes_" + who] = (data() - data0) / n
            if c is not None:
                c.stored = n
                log1 = c.log_state()
                S["cluster_nats_bytes_" + who] = (c.store_bytes() - store0) / n
                S["cluster_log_bytes_" + who] = (log1[1] - log0[1]) / n
                # JetStream messages a RecordExposures call of 1,000 became (one copy).
                S["cluster_log_msgs_per_call_" + who] = \
                    (log1[0] - log0[0]) / c.replicas / (n / 1000.0)
            self.say("%s: %d exposures stored in %.0f s (%.0f/s, %.2f us server CPU each)"
                     % (who, n, time.time() - t, r["exposures_per_s"],
                        r["server_cpu_us_per_exposure"]))

    def cluster_send(self, c, count, first):
        """Stores exposures first .. first+count-1 of the preload's seed in cluster `c`
        (through both nodes). A call that fails (UNAVAILABLE while a partition changes
        hands) makes the whole range go again, up to 5 times: what was stored comes back as
        duplicates. Returns the first send's line, its rate over all the sends, and
        "sends"."""
        t, sends = time.time(), 0
        while True:
            sends += 1
            r = self.tool("ingest_exposures", ["--addr", c.addrs, "--count", count, "--seed",
                                               PRELOAD_SEED, "--first", first, "--server-pids",
                                               ",".join(map(str, c.pids))] + self.population(),
                          7200, tolerate=("errors", "duplicates") if sends > 1 else ("errors",))
            if sends == 1:
                first_line = r
            if not r["errors"]:
                break
            if sends == 5:
                raise RuntimeError("cluster %s: %d sends of the same %d exposures, each with "
                                   "failed calls (%s)" % (c.name, sends, count, r["first_error"]))
            self.say("cluster %s: %d calls failed (%s): sending the same %d exposures again"
                     % (c.name, r["errors"], r["first_error"], count))
        first_line["exposures_per_s"] = count / (time.time() - t)
        first_line["sends"] = sends
        return first_line

    def cluster_tool(self, program, c, args, timeout):
        """Runs a load generator against cluster `c` (both nodes); calls that fail are
        counted, not fatal (a partition changing hands answers UNAVAILABLE). Adds to its
        parsed line the share of the server CPU its NATS servers took (over the whole run),
        and the leases the nodes lost and the partitions they built meanwhile."""
        n0, a0, k0 = cpu_of(c.nats_pids), cpu_of(c.node_pids), c.counters()
        r = self.tool(program, ["--addr", c.addrs, "--server-pids",
                                ",".join(map(str, c.pids))] + args, timeout,
                      tolerate=("errors",))
        n1, a1, k1 = cpu_of(c.nats_pids), cpu_of(c.node_pids), c.counters()
        r["nats_cpu_share"] = (n1 - n0) / max(1e-9, (n1 - n0) + (a1 - a0))
        r["leases_lost"], r["builds"] = k1[0] - k0[0], k1[1] - k0[1]
        if r["errors"] and not r["accepted"]:
            raise RuntimeError("cluster %s: %s got no call through (%d failed: %s); the nodes' "
                               "logs are under %s (--keep)" % (c.name, program, r["errors"],
                                                               r["first_error"], self.work))
        if r["errors"]:
            self.single.setdefault("cluster_first_error", r["first_error"])
        return r

    def run_cluster(self):
        """Each round: standalone, the R3 cluster, the R1 cluster, back to back (the same
        noise for all three), RecordExposures then RecordConversions."""
        s, n = self.p["cluster_seconds"], self.p["exposures"]
        r3, r1 = self.clusters[3], self.clusters[1]
        for run in range(self.runs):
            seed = 500 + run
            pop = self.population()
            batch = ["--batch", self.batch]
            sa = self.tool("ingest_exposures", ["--addr", self.sa.addr, "--seconds", s, "--seed",
                                                seed, "--server-pids", self.sa.pid] + batch + pop,
                           s + 300)
            got = {"standalone": sa}
            for who, c in (("r3", r3), ("r1", r1)):
                b0 = c.log_state()[1]
                r = self.cluster_tool("ingest_exposures", c, ["--seconds", s, "--seed", seed]
                                      + batch + pop, s + 300)
                c.stored += r["sent"]
                self.add(("cluster", who, "log_bytes"), (c.log_state()[1] - b0) / r["sent"])
                self.add(("cluster", who, "nats_share"), r["nats_cpu_share"])
                for k in ("errors", "leases_lost", "builds"):
                    self.add(("cluster", who, k), r[k])
                got[who] = r
            for who, r in got.items():
                self.add(("cluster", who, "rate"), r["exposures_per_s"])
                self.add(("cluster", who, "p50_ms"), r["p50_ms"])
                self.add(("cluster", who, "p99_ms"), r["p99_ms"])
                self.add(("cluster", who, "cpu"), r["server_cpu_us_per_exposure"])
            rate = {who: r["exposures_per_s"] for who, r in got.items()}
            self.add(("cluster", "r3_vs_standalone"), rate["r3"] / rate["standalone"])
            self.add(("cluster", "r1_vs_standalone"), rate["r1"] / rate["standalone"])
            self.add(("cluster", "r3_vs_r1"), rate["r3"] / rate["r1"])
            self.say("run %d: RecordExposures standalone %.0f/s, cluster R3 %.0f/s (%.2fx), "
                     "R1 %.0f/s (%.2fx); server CPU us/exposure %.2f, %.2f, %.2f (NATS %.0f %%, "
                     "%.0f %%); failed calls %d, %d; leases lost %d, %d"
                     % (run + 1, rate["standalone"], rate["r3"],
                        rate["r3"] / rate["standalone"], rate["r1"],
                        rate["r1"] / rate["standalone"], sa["server_cpu_us_per_exposure"],
                        got["r3"]["server_cpu_us_per_exposure"],
                        got["r1"]["server_cpu_us_per_exposure"],
                        got["r3"]["nats_cpu_share"] * 100, got["r1"]["nats_cpu_share"] * 100,
                        got["r3"]["errors"], got["r1"]["errors"], got["r3"]["leases_lost"],
                        got["r1"]["leases_lost"]))
        for run in range(self.runs):
            # Orders by the viewers of the N exposures every one of the three holds.
            args = ["--seconds", s, "--seed", 600 + run, "--exposure-seed", PRELOAD_SEED,
                    "--stored", n] + self.population()
            got = {"standalone": self.tool("ingest_conversions",
                                           ["--addr", self.sa.addr, "--server-pids",
                                            self.sa.pid] + args, s + 300)}
            for who, c in (("r3", r3), ("r1", r1)):
                got[who] = self.cluster_tool("ingest_conversions", c, args, s + 300)
                for k in ("errors", "leases_lost", "builds"):
                    self.add(("cluster_conv", who, k), got[who][k])
            for who, r in got.items():
                self.add(("cluster_conv", who, "rate"), r["conversions_per_s"])
                self.add(("cluster_conv", who, "p99_ms"), r["p99_ms"])
                self.add(("cluster_conv", who, "cpu"), r["server_cpu_us_per_conversion"])
            self.add(("cluster_conv", "r3_vs_standalone"),
                     got["r3"]["conversions_per_s"] / got["standalone"]["conversions_per_s"])
            self.say("run %d: RecordConversions standalone %.0f/s, cluster R3 %.0f/s, R1 %.0f/s"
                     % (run + 1, got["standalone"]["conversions_per_s"],
                        got["r3"]["conversions_per_s"], got["r1"]["conversions_per_s"]))
        # The failovers need only R3: the others stop, leaving it the machine.
        for who in (r1, self.sa):
            who.stop()
        self.procs.remove(self.sa)
        del self.clusters[1]

    def run_failover(self):
        """kill -9 of one node of the R3 cluster until the survivor serves every partition
        again (health SERVING and its serving gauge = the partition count), RUNS times at
        each stored size of the profile; the killed node is started again (same data dir)
        and the cluster rebalanced between runs. The cluster grows to the next size with
        more of the preload's events (through both nodes)."""
        c = self.clusters[3]
        self.failover_sizes = []
        for i, size in enumerate(self.p["failover_sizes"]):
            if size <= c.stored and self.failover_sizes:
                continue  # measured at what is stored already
            if size > c.stored:
                t = time.time()
                r = self.cluster_send(c, size - c.stored, c.stored)
                self.say("cluster r3: grown from %d to %d stored in %.0f s (%d sends)"
                         % (c.stored, size, time.time() - t, r["sends"]))
                c.stored = size
                self.add(("failover", size, "grow_sends"), r["sends"])
            stored = c.stored
            self.failover_sizes.append(stored)
            rss = [status_kib(pid, "VmRSS") for pid in c.node_pids]
            self.add(("failover", stored, "rss_per_partition_kib"),
                     max(rss) / (CLUSTER_PARTITIONS / CLUSTER_NODES))
            self.add(("failover", stored, "nats_bytes"), c.store_bytes())
            self.add(("failover", stored, "log_bytes"), c.log_state()[1])
            self.add(("failover", stored, "node_bytes"), c.node_bytes())
            for run in range(self.runs):
                victim, survivor = c.nodes[run % 2], c.nodes[1 - run % 2]
                t0 = time.time()
                victim.proc.kill()
                victim.proc.wait()

                def every_partition():
                    served = survivor.serving()
                    if served != CLUSTER_PARTITIONS or not survivor.healthy():
                        raise RuntimeError("%d partitions served" % served)
                try:
                    wait_until(every_partition, "failover to %s" % survivor.name,
                               failover_timeout(stored))
                except RuntimeError as e:
                    # What the survivor says of itself, for the report of a stuck failover.
                    try:
                        said = ", ".join("%s %g" % kv for kv in sorted(survivor.metrics().items())
                                         if "_bucket" not in kv[0])
                    except OSError as m:
                        said = "no metrics (%s)" % m
                    raise RuntimeError("%s; %s: %s; its log: %s"
                                       % (e, survivor.name, said, survivor.log))
                took = time.time() - t0
                survivor_rss = status_kib(survivor.pid, "VmRSS")
                # Every partition takes writes again: a batch through the survivor alone.
                w = self.tool("ingest_exposures", ["--addr", survivor.addr, "--count", 1000,
                                                   "--seed", 700 + 10 * i + run]
                              + self.population(), 600, tolerate=("errors",))
                self.add(("failover", stored, "write_failed"), w["errors"])
                t1 = time.time()
                victim.start(timeout=3600)
                c.wait_balanced(3600)
                back = time.time() - t1
                self.add(("failover", stored, "s"), took)
                self.add(("failover", stored, "rejoin_s"), back)
                self.add(("failover", stored, "survivor_rss_kib"), survivor_rss)
                self.say("failover at %d stored, run %d: kill -9 %s -> %s serves all %d "
                         "partitions in %.1f s (a write to all of them then: %d accepted%s); "
                         "%s back and balanced in %.1f s"
                         % (stored, run + 1, victim.name, survivor.name, CLUSTER_PARTITIONS,
                            took, w["accepted"],
                            ", FAILED: " + w["first_error"] if w["errors"] else "",
                            victim.name, back))

    # -- 7. stores: SQLite and PostgreSQL --

    def setup_store(self):
        """Creator profile three times, each with its own store and the same N creators:
        SQLite under its --data-dir; one replica on PostgreSQL database yw_store1; two
        replicas on database yw_store2 (one PostgreSQL server for both databases: the idle
        one's backends cost nothing, and NOTIFY stays inside a database)."""
        from load_creators import load
        n = self.p["store_creators"]
        self.store = {}  # kind -> ([Service], [pid or "+pid" for --server-pids])
        self.store_pg = Postgres(os.path.dirname(self.work)).start()
        pg_pid = "+%d" % self.store_pg.pid
        sq = self.service("store_sqlite", "services/creator_profile/creator_profile")
        self.store["sqlite"] = ([sq], [sq.pid])
        for kind, db, replicas in (("pg1", "yw_store1", 1), ("pg2", "yw_store2", 2)):
            self.store_pg.sql("CREATE DATABASE %s" % db)
            flags = ["--store", self.store_pg.uri(db), "--store-pool", str(STORE_POOL)]
            reps = [self.service("store_%s_%d" % (kind, i + 1),
                                 "services/creator_profile/creator_profile", flags)
                    for i in range(replicas)]
            self.store[kind] = (reps, [r.pid for r in reps] + [pg_pid])
        for kind, _ in STORE_KINDS:
            t = time.time()
            load(self.store[kind][0][0].addr, n)
            took = time.time() - t
            self.single["store_load_s_" + kind] = took
            self.say("store %s: %d creators loaded in %.0f s (%.0f/s, one client, 64 in flight)"
                     % (kind, n, took, n / took))

    def run_store(self):
        s, n = self.p["store_seconds"], self.p["store_creators"]
        every = [p for _, pids in self.store.values() for p in pids]
        for run in range(self.runs):
            got = {}
            # Interleaved: every store for one method, then the next method; creates first
            # so the later methods run on the grown tables of every store alike. The order
            # of the stores turns with each run, and each measurement starts once every
            # store process (PostgreSQL's too) is idle.
            kinds = [k for k, _ in STORE_KINDS]
            kinds = kinds[run % len(kinds):] + kinds[:run % len(kinds)]
            for method, name in STORE_METHODS:
                for kind in kinds:
                    svcs, pids = self.store[kind]
                    quiesce(every)
                    extra = ["--ids", n]
                    if method != "get_creator":
                        extra += ["--tag", "s%d-%s-r%d" % (self.anchor, kind, run + 1)]
                    if method == "record_note_stats":
                        extra += ["--batch", STORE_BATCH]
                    r = self.loadgen(",".join(x.addr for x in svcs), method, STORE_INFLIGHT,
                                     s, pids, extra)
                    if method == "record_note_stats" and r["degraded"]:
                        raise RuntimeError("store %s: %d RecordNoteStats calls upserted fewer "
                                           "than %d rows" % (kind, r["degraded"], STORE_BATCH))
                    got[kind, method] = r
                    for k in ("qps", "p50_us", "p99_us", "server_cpu_us_per_call"):
                        self.add(("store", kind, method, k), r[k])
                    if method == "record_note_stats":
                        self.add(("store", kind, method, "rows"), r["qps"] * STORE_BATCH)
                for kind in ("pg1", "pg2"):
                    a, b = got[kind, method], got["sqlite", method]
                    self.add(("store", "ratio_" + kind, method, "qps"), a["qps"] / b["qps"])
                    self.add(("store", "ratio_" + kind, method, "cpu"),
                             a["server_cpu_us_per_call"] / b["server_cpu_us_per_call"])
                self.say("run %d, %s: SQLite %.0f/s, PostgreSQL 1 replica %.0f/s, 2 replicas "
                         "%.0f/s" % (run + 1, name, got["sqlite", method]["qps"],
                                      got["pg1", method]["qps"], got["pg2", method]["qps"]))
        for kind, _ in STORE_KINDS:
            for svc in self.store[kind][0]:
                if not svc.alive():
                    raise RuntimeError("%s died during the run; see %s" % (svc.name, svc.log))
                self.single["store_rss_" + svc.name] = status_kib(svc.pid, "VmHWM")

    def stop_store(self):
        """Stops section 7's services and PostgreSQL (their memory is not the other
        sections')."""
        for svcs, _ in getattr(self, "store", {}).values():
            for svc in svcs:
                svc.stop()
                if svc in self.procs:
                    self.procs.remove(svc)
        self.store = {}
        if getattr(self, "store_pg", None) is not None:
            self.store_pg.stop()
            self.store_pg = None

    # -- 5. memory --

    def record_memory(self):
        for s in (self.cp, self.tier, self.attr):
            self.single["rss_" + s.name] = status_kib(s.pid, "VmHWM")
        # Attribution restarted after 3 (run_restart): its peak is the larger of both lives.
        self.single["rss_attribution"] = max(self.single["rss_attribution"],
                                             self.single.get("rss_attribution_before_restart", 0))
        self.single["rss_cpp"] = status_kib(self.peer.pid, "VmHWM")

    def run(self):
        try:
            self.say("work directory %s (%s)" % (self.work, fs_of(self.work)))
            snapshot_binaries(self.bin, BINARIES if self.with_standalone else
                              STORE_BINARIES if self.store_only else CLUSTER_BINARIES)
            if self.with_standalone:
                self.setup_rpc()
                self.run_rpc()
                self.setup_ingest()
                self.run_ingest()
                self.run_attribution()
                self.run_restart()
                self.run_reports()
                self.record_memory()
            if self.with_store:
                self.setup_store()
                try:
                    self.run_store()
                finally:
                    self.stop_store()
            if self.with_cluster:
                self.setup_cluster()
                self.run_cluster()
                self.run_failover()
            for s in self.procs:
                if not s.alive():
                    raise RuntimeError("%s died during the run; see %s" % (s.name, s.log))
            for c in self.clusters.values():
                if not c.alive():
                    raise RuntimeError("a process of cluster %s died during the run; see the "
                                       "logs under %s (--keep)" % (c.name, self.work))
        finally:
            self.stop()
        self.elapsed = time.time() - self.started
        self.say("done in %.1f min" % (self.elapsed / 60))
        write_report(self)

    def stop(self):
        for c in self.clusters.values():
            c.stop()
        for s in reversed(self.procs):
            s.stop()
        for peer in (getattr(self, "peer", None), getattr(self, "peer2", None)):
            if peer is not None:
                peer.terminate()
                peer.wait()
        if self.pg is not None:
            self.pg.stop()
        self.stop_store()
        if not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def protoc_module(proto, module, deps=()):
    """Generates the Python module of `proto` (and its `deps`) with protoc into a
    temporary directory and imports it (python3-protobuf, no pip)."""
    out = tempfile.mkdtemp(prefix="yw-bench-pb-")
    subprocess.run(["protoc", "--python_out=" + out, "-I" + os.path.join(ROOT, "proto"),
                    "-I/usr/include", proto] + list(deps), check=True)
    sys.path.insert(0, out)
    import importlib
    try:
        return importlib.import_module(os.path.dirname(proto).replace("/", ".") + "." + module)
    finally:
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fs_of(path):
    try:
        out = subprocess.run(["findmnt", "-no", "SOURCE,FSTYPE", "-T", path],
                             capture_output=True, text=True).stdout.split()
        return "%s on %s" % (out[1], out[0])
    except (OSError, IndexError):
        return "?"


def machine(work):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = status_mem()
    debian = "?"
    try:
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    except OSError:
        pass
    return "%s, %d cores, %.0f GB RAM, Debian %s, Linux %s, data on %s" % (
        cpu, os.cpu_count(), mem / 1024 / 1024, debian, platform.release(), fs_of(work))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def status_mem():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--",
                                "common", "services", "proto"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except OSError:
        return "?"


# ---- the report ----

def fmt(x, digits=0):
    if digits == 0:
        return "{:,.0f}".format(x)
    return "{:,.{d}f}".format(x, d=digits)


def cell(xs, digits=0, suffix=""):
    m, lo, hi = med(xs)
    return "%s%s [%s–%s]" % (fmt(m, digits), suffix, fmt(lo, digits), fmt(hi, digits))


def write_report(b):
    """bench/results/bench(-quick).md and .csv from a finished Bench (cluster(-quick).* with
    --cluster-only), and cluster(-quick).json when the cluster ran."""
    rows = []  # csv: section, figure, unit, median, min, max, runs

    def num(x):
        return "%.0f" % x if abs(x) >= 100 else "%.2f" % x if abs(x) >= 1 else "%.4f" % x

    def row(section, figure, unit, xs):
        m, lo, hi = med(xs)
        rows.append([section, figure, unit, num(m), num(lo), num(hi), len(xs)])

    md = []
    md.append("# yaowei benchmarks (%s)" % b.profile_name)
    md.append("")
    md.append("Run %s on %s. Load average (1, 5, 15 min) at the start %s, at the end %s "
              "(the machine is shared). Build %s. %d runs per figure, median [min–max]; what "
              "is compared ran interleaved. Total time %.1f min."
              % (b.date, b.machine, b.load_start, loadavg(), git_rev(), b.runs, b.elapsed / 60))
    md.append("")

    def target(label, value_text, ok):
        md.append("| %s | %s | %s |" % (label, value_text, "met" if ok else "**missed**"))
        rows.append(["target", label, "", value_text, "", "", "met" if ok else "missed"])

    if b.with_standalone:
        standalone_sections(b, md, row, target)
    if b.with_store and any(k[0] == "store" for k in b.fig):
        store_sections(b, md, row)
    written = [b.stem + ".md", b.stem + ".csv"]
    if b.with_cluster:
        cluster_sections(b, md, row, target)
        written.append(b.stem.replace("bench", "cluster") + ".json")
        with open(os.path.join(RESULTS, written[-1]), "w") as f:
            json.dump(cluster_json(b), f, indent=1, sort_keys=True)
            f.write("\n")
    text = "\n".join(md) + "\n"
    with open(os.path.join(RESULTS, b.stem + ".md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, b.stem + ".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "figure", "unit", "median", "min", "max", "runs_or_result"])
        w.writerows(rows)
    print(text)
    print("written in %s: %s" % (RESULTS, ", ".join(written)))


def standalone_sections(b, md, row, target):
    """Sections 1-5 of the report and the targets of issue 5."""
    F, S, p = b.fig, b.single, b.p
    n_exp = p["exposures"]
    md.append("## 1. Unary RPC (%s creators; loadgen, one channel, %d s per run)"
              % (fmt(p["creators"]), p["rpc_seconds"]))
    md.append("")
    md.append("| method | server | in flight | QPS | p50 µs | p99 µs | server CPU µs/call "
              "| loadgen CPU µs/call |")
    md.append("|---|---|---|---|---|---|---|---|")
    names = {"yaowei": ("GetCreator", "creator profile"),
             "cpp": ("GetCreator", "C++ async peer"),
             "cpp2": ("GetCreator", "C++ async peer, %d threads" % PEER2_THREADS),
             "score": ("ScoreCreator", "tier scoring (+ creator profile)")}
    for who in ("yaowei", "cpp", "cpp2", "score"):
        for n in INFLIGHT:
            g = lambda k: F[("rpc", who, n, k)]  # noqa: E731
            md.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
                names[who][0], names[who][1], n, cell(g("qps")), cell(g("p50_us")),
                cell(g("p99_us")), cell(g("server_cpu_us_per_call"), 1),
                cell(g("client_cpu_us_per_call"), 1)))
            for k, unit in (("qps", "calls/s"), ("p50_us", "us"), ("p99_us", "us"),
                            ("server_cpu_us_per_call", "us CPU/call"),
                            ("client_cpu_us_per_call", "us loadgen CPU/call")):
                row("rpc", "%s %s %d in flight %s" % (names[who][0], who, n, k), unit, g(k))
    md.append("")
    md.append("GetCreator, creator profile ÷ C++ async peer (per run, then median): "
              + "; ".join("%d in flight: QPS %s, CPU/call %s" % (
                  n, cell(F[("rpc", "ratio", n, "qps")], 2, "×"),
                  cell(F[("rpc", "ratio", n, "cpu")], 2, "×")) for n in INFLIGHT) + ".")
    md.append("")
    md.append("GetCreator, creator profile ÷ C++ async peer with %d threads (per run, then "
              "median): " % PEER2_THREADS
              + "; ".join("%d in flight: QPS %s, CPU/call %s" % (
                  n, cell(F[("rpc", "ratio2", n, "qps")], 2, "×"),
                  cell(F[("rpc", "ratio2", n, "cpu")], 2, "×")) for n in INFLIGHT) + ".")
    md.append("")
    md.append("Why the QPS ratio stays near 1×: the load generator and the server share the "
              "machine's 2 cores, and at 64 in flight the loadgen (gRPC core's client path) "
              "spends about as much CPU per call as either server (columns above), so it "
              "saturates its core first and caps both servers' QPS at about 10⁶ / its own "
              "CPU µs per call. Server CPU per call is the figure that compares the servers; "
              "a QPS ratio of 1.5× would need the peer's server CPU/call to be ≥ 1.5× ours.")
    md.append("")
    md.append("The same servers under h2load (nghttp2's HTTP/2 load generator, a lighter "
              "client: 1 connection × 64 streams, %s calls a run): creator profile %s calls/s, "
              "%s µs CPU/call; C++ async peer %s calls/s, %s µs CPU/call; ratio %s."
              % (fmt(p["h2load_calls"]), cell(F[("h2load", "yaowei", "qps")]),
                 cell(F[("h2load", "yaowei", "cpu")], 1), cell(F[("h2load", "cpp", "qps")]),
                 cell(F[("h2load", "cpp", "cpu")], 1),
                 cell(F[("h2load", "ratio", "qps")], 2, "×")))
    for who in ("yaowei", "cpp"):
        row("rpc", "GetCreator h2load %s QPS" % who, "calls/s", F[("h2load", who, "qps")])
        row("rpc", "GetCreator h2load %s server CPU" % who, "us CPU/call",
            F[("h2load", who, "cpu")])
    row("rpc", "GetCreator h2load QPS ratio yaowei/cpp", "x", F[("h2load", "ratio", "qps")])
    for n in INFLIGHT:
        for key, peer in (("ratio", "cpp"), ("ratio2", "cpp2")):
            row("rpc", "GetCreator QPS ratio yaowei/%s %d in flight" % (peer, n), "x",
                F[("rpc", key, n, "qps")])
            row("rpc", "GetCreator CPU/call ratio yaowei/%s %d in flight" % (peer, n), "x",
                F[("rpc", key, n, "cpu")])
    md.append("")
    md.append("## 2. Exposure ingestion, durable, %s exposures stored first (%s after)"
              % (fmt(n_exp), fmt(S["stored_after_ingest"])))
    md.append("")
    md.append("| path | exposures/s | p50 ms | p99 ms | server CPU µs/exposure |")
    md.append("|---|---|---|---|---|")
    paths = [("unary", "RecordExposures, 1,000 a call, 4 in flight"),
             ("stream", "IngestExposures, one stream (latency: the whole stream)"),
             ("ceiling", "fsync ceiling: write + fdatasync per 1,000, one at a time"),
             ("pg", "PostgreSQL 15 COPY, 1,000 a transaction, 4 connections"),
             ("pg_wide", "PostgreSQL 15 COPY, 1,000 a transaction, %d connections"
              % PG_WIDE_INFLIGHT)]
    for who, label in paths:
        g = lambda k: F[("ingest", who, k)]  # noqa: E731
        cpu = cell(g("cpu"), 2) if ("ingest", who, "cpu") in F else "–"
        md.append("| %s | %s | %s | %s | %s |" % (label, cell(g("rate")), cell(g("p50_ms"), 1),
                                                  cell(g("p99_ms"), 1), cpu))
        row("ingest", "%s exposures/s" % who, "exposures/s", g("rate"))
        row("ingest", "%s p50" % who, "ms", g("p50_ms"))
        row("ingest", "%s p99" % who, "ms", g("p99_ms"))
        if ("ingest", who, "cpu") in F:
            row("ingest", "%s server CPU" % who, "us/exposure", g("cpu"))
    md.append("")
    md.append("Ratios (per run, then median): RecordExposures ÷ PostgreSQL (4 connections) %s, "
              "÷ PostgreSQL (%d) %s, ÷ ceiling %s; IngestExposures ÷ PostgreSQL (4) %s, ÷ "
              "PostgreSQL (%d) %s, ÷ ceiling %s. The service's preload ran at %s exposures/s "
              "(from empty)."
              % (cell(F[("ingest", "unary", "vs_pg")], 2, "×"), PG_WIDE_INFLIGHT,
                 cell(F[("ingest", "unary", "vs_pg_wide")], 2, "×"),
                 cell(F[("ingest", "unary", "vs_ceiling")], 2, "×"),
                 cell(F[("ingest", "stream", "vs_pg")], 2, "×"), PG_WIDE_INFLIGHT,
                 cell(F[("ingest", "stream", "vs_pg_wide")], 2, "×"),
                 cell(F[("ingest", "stream", "vs_ceiling")], 2, "×"), fmt(S["preload_rate"])))
    for who in ("unary", "stream"):
        for k in ("vs_pg", "vs_pg_wide", "vs_ceiling"):
            row("ingest", "%s %s ratio" % (who, k), "x", F[("ingest", who, k)])
    md.append("")
    md.append("## 3. Attribution (orders join the %s stored exposures)" % fmt(n_exp))
    md.append("")
    md.append("| figure | median [min–max] |")
    md.append("|---|---|")
    md.append("| RecordConversions, 1,000 a call, 4 in flight: conversions/s | %s |"
              % cell(F[("conv", "rate")]))
    md.append("| RecordConversions p50 / p99 ms a call | %s / %s |"
              % (cell(F[("conv", "p50_ms")], 1), cell(F[("conv", "p99_ms")], 1)))
    md.append("| RecordConversions server CPU µs/conversion | %s |" % cell(F[("conv", "cpu")], 1))
    md.append("| ExplainConversion, %d in flight: QPS | %s |"
              % (EXPLAIN_INFLIGHT, cell(F[("explain", "qps")])))
    md.append("| ExplainConversion p50 / p99 µs | %s / %s |"
              % (cell(F[("explain", "p50_us")]), cell(F[("explain", "p99_us")])))
    row("attribution", "RecordConversions conversions/s", "conversions/s", F[("conv", "rate")])
    row("attribution", "RecordConversions p50", "ms", F[("conv", "p50_ms")])
    row("attribution", "RecordConversions p99", "ms", F[("conv", "p99_ms")])
    row("attribution", "RecordConversions server CPU", "us/conversion", F[("conv", "cpu")])
    row("attribution", "ExplainConversion QPS", "calls/s", F[("explain", "qps")])
    row("attribution", "ExplainConversion p50", "us", F[("explain", "p50_us")])
    row("attribution", "ExplainConversion p99", "us", F[("explain", "p99_us")])
    md.append("")
    md.append("Restart, start to SERVING with the data of 1–3 stored: after a SIGTERM (from the "
              "snapshot of the clean stop) %s s, after a kill -9 (recomputed) %s s."
              % (cell(F[("restart", "term_s")], 1), cell(F[("restart", "kill_s")], 1)))
    row("attribution", "restart after SIGTERM to SERVING", "s", F[("restart", "term_s")])
    row("attribution", "restart after kill -9 to SERVING", "s", F[("restart", "kill_s")])
    md.append("")
    md.append("## 4. Reports: GetTierReport over %d days, one call at a time" % REPORT_DAYS)
    md.append("")
    tiers = {1: "head", 2: "mid", 3: "tail", 4: "amateur"}
    md.append("p50 %s ms, p99 %s ms, %s calls/s (%d of them without every tier label). The "
              "first call, which fetches the tier labels of every creator from tier scoring, "
              "took %s ms and left %s creators unlabeled; every label was in after %d calls "
              "(%.1f s). The report: %s."
              % (cell(F[("report", "p50_ms")], 1), cell(F[("report", "p99_ms")], 1),
                 cell(F[("report", "qps")], 1), sum(F[("report", "degraded")]),
                 fmt(S["report_cold_ms"]), fmt(S["report_cold_unlabeled"]),
                 S["report_calls_to_labels"], S["report_labels_s"],
                 ", ".join("%s %s creators, %s impressions" % (tiers.get(t, "unlabeled"),
                                                               fmt(c), fmt(i))
                           for t, c, i in b.report_rows)))
    row("reports", "GetTierReport p50", "ms", F[("report", "p50_ms")])
    row("reports", "GetTierReport p99", "ms", F[("report", "p99_ms")])
    row("reports", "GetTierReport first call", "ms", [S["report_cold_ms"]])
    md.append("")
    md.append("## 5. Memory: peak RSS (VmHWM) over 1–4")
    md.append("")
    md.append("| process | peak RSS MB |")
    md.append("|---|---|")
    for key, label in (("rss_creator_profile", "creator profile"),
                       ("rss_tier_scoring", "tier scoring"),
                       ("rss_attribution", "attribution (%s exposures stored at the end)"
                        % fmt(S["stored_after_ingest"])),
                       ("rss_cpp", "C++ peer (for comparison)")):
        md.append("| %s | %s |" % (label, fmt(S[key] / 1024)))
        row("memory", "%s peak RSS" % key[4:], "MB", [S[key] / 1024])
    md.append("")
    md.append("Attribution's RSS with exactly %s exposures stored (right after the preload): "
              "%s MB." % (fmt(n_exp), fmt(S["attr_rss_at_n_kib"] / 1024)))
    row("memory", "attribution RSS at %d stored" % n_exp, "MB", [S["attr_rss_at_n_kib"] / 1024])
    md.append("")
    md.append("## Targets (issue 5)")
    md.append("")
    md.append("| target | measured | |")
    md.append("|---|---|---|")

    r64 = med(F[("rpc", "ratio", 64, "qps")])[0]
    r64b = med(F[("rpc", "ratio2", 64, "qps")])[0]
    target("GetCreator QPS at 64 in flight ≥ %.1f× the C++ async peer (one thread)"
           % TARGET_RATIO, "%.2f× (%.2f× the %d-thread peer)" % (r64, r64b, PEER2_THREADS),
           r64 >= TARGET_RATIO)
    rate = med(F[("ingest", "unary", "rate")])[0]
    target("durable exposure ingestion ≥ %s/s with %s stored (RecordExposures)"
           % (fmt(TARGET_INGEST), fmt(n_exp)), fmt(rate), rate >= TARGET_INGEST)
    vs = med(F[("ingest", "unary", "vs_pg")])[0]
    target("… and ≥ %.0f× PostgreSQL COPY" % TARGET_PG_RATIO, "%.2f×" % vs, vs >= TARGET_PG_RATIO)
    p99 = med(F[("report", "p99_ms")])[0]
    target("GetTierReport p99 < %.0f ms" % TARGET_REPORT_P99_MS, "%.1f ms" % p99,
           p99 < TARGET_REPORT_P99_MS)
    for key, label in (("rss_creator_profile", "creator profile"),
                       ("rss_tier_scoring", "tier scoring")):
        mb = S[key] / 1024
        target("%s peak RSS < %.0f MB" % (label, TARGET_RSS_MB), "%s MB" % fmt(mb),
               mb < TARGET_RSS_MB)
    at_n, peak = S["attr_rss_at_n_kib"] / 1024, S["rss_attribution"] / 1024
    target("attribution peak RSS < %.0f MB at %s exposures" % (TARGET_RSS_MB, fmt(n_exp)),
           "%s MB at %s stored, %s MB peak (%s stored at the end)"
           % (fmt(at_n), fmt(n_exp), fmt(peak), fmt(S["stored_after_ingest"])),
           max(at_n, peak) < TARGET_RSS_MB)
    term, kill = med(F[("restart", "term_s")])[0], med(F[("restart", "kill_s")])[0]
    target("attribution SERVING within %.0f s of start after SIGTERM (%s exposures stored)"
           % (TARGET_RESTART_TERM_S, fmt(S["stored_after_ingest"])), "%.1f s" % term,
           term < TARGET_RESTART_TERM_S)
    target("… and within %.0f s after kill -9" % TARGET_RESTART_KILL_S, "%.1f s" % kill,
           kill < TARGET_RESTART_KILL_S)
    md.append("")


def store_sections(b, md, row):
    """Section 7: creator profile on SQLite and on PostgreSQL, one and two replicas."""
    F, S, p = b.fig, b.single, b.p
    md.append("## 7. Store: creator profile on SQLite and on PostgreSQL (%s creators loaded "
              "in each; loadgen, %d in flight, %d s per run)"
              % (fmt(p["store_creators"]), STORE_INFLIGHT, p["store_seconds"]))
    md.append("")
    md.append("SQLite has one process only (its database is a file under --data-dir that one "
              "process owns); two replicas are PostgreSQL only: two creator_profile processes "
              "on one database (--store URI, --store-pool %d), the calls in flight spread over "
              "both. PostgreSQL 15 on this machine, fsync and synchronous_commit on. Server CPU "
              "counts every creator_profile process of the row and, for PostgreSQL, the "
              "postmaster's children (its backends and background workers). RecordNoteStats: "
              "%d new notes a call, today's day, over the loaded creators. Ratios: "
              "PostgreSQL ÷ SQLite per run, then the median." % (STORE_POOL, STORE_BATCH))
    md.append("")
    md.append("| method | store | calls/s | rows/s | p50 µs | p99 µs | server CPU µs/call "
              "| calls/s ÷ SQLite | CPU/call ÷ SQLite |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for method, name in STORE_METHODS:
        for kind, label in STORE_KINDS:
            g = lambda k: F[("store", kind, method, k)]  # noqa: E731
            rows_cell = cell(g("rows")) if method == "record_note_stats" else "–"
            if kind == "sqlite":
                rq = rc = "1"
            else:
                rq = cell(F[("store", "ratio_" + kind, method, "qps")], 2, "×")
                rc = cell(F[("store", "ratio_" + kind, method, "cpu")], 2, "×")
            md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, label, cell(g("qps")), rows_cell, cell(g("p50_us")), cell(g("p99_us")),
                cell(g("server_cpu_us_per_call"), 1), rq, rc))
            for k, unit in (("qps", "calls/s"), ("p50_us", "us"), ("p99_us", "us"),
                            ("server_cpu_us_per_call", "us CPU/call")):
                row("store", "%s %s %s" % (name, kind, k), unit, g(k))
            if method == "record_note_stats":
                row("store", "%s %s rows/s" % (name, kind), "rows/s", g("rows"))
            if kind != "sqlite":
                row("store", "%s calls/s ratio %s/sqlite" % (name, kind), "x",
                    F[("store", "ratio_" + kind, method, "qps")])
                row("store", "%s CPU/call ratio %s/sqlite" % (name, kind), "x",
                    F[("store", "ratio_" + kind, method, "cpu")])
    md.append("")
    loads = ["%s %.0f s" % (label, S["store_load_s_" + kind]) for kind, label in STORE_KINDS
             if "store_load_s_" + kind in S]
    if loads:
        md.append("Loading the %s creators (bench/load_creators.py, one client, 64 in flight, "
                  "into one process): %s." % (fmt(p["store_creators"]), "; ".join(loads)))
        md.append("")


def cluster_sections(b, md, row, target):
    """Section 6 (the attribution cluster, --cluster) and the targets of issue 14."""
    F, S, n = b.fig, b.single, b.p["exposures"]
    whos = (("standalone", "standalone (one process)"),
            ("r3", "cluster, --replicas 3"),
            ("r1", "cluster, --replicas 1"))
    md.append("## 6. Attribution cluster: %d nats-server + %d nodes, %d partitions, on the "
              "same cores" % (CLUSTER_NATS, CLUSTER_NODES, CLUSTER_PARTITIONS))
    md.append("")
    md.append("A standalone attribution and two clusters (JetStream streams and buckets with 3 "
              "and with 1 replicas), each with the same %s exposures stored first (preload, "
              "exposures/s: standalone %s, R3 %s, R1 %s). Each round runs standalone, R3, R1 "
              "back to back: RecordExposures of %s, 4 in flight, %d s; the cluster's calls "
              "spread over both nodes (2 in flight at each; a node forwards the other's "
              "partitions). Server CPU sums every server process over the measured window "
              "(the cluster: %d nats-server + %d nodes); the NATS share is from the whole run."
              % (fmt(n), fmt(S["cluster_preload_rate_standalone"]),
                 fmt(S["cluster_preload_rate_r3"]), fmt(S["cluster_preload_rate_r1"]),
                 fmt(b.batch), b.p["cluster_seconds"], CLUSTER_NATS, CLUSTER_NODES))
    md.append("")
    md.append("| RecordExposures | exposures/s | p50 ms | p99 ms | server CPU µs/exposure "
              "| of it NATS | server cores busy |")
    md.append("|---|---|---|---|---|---|---|")
    for who, label in whos:
        g = lambda k: F[("cluster", who, k)]  # noqa: E731
        busy = [r * c / 1e6 for r, c in zip(g("rate"), g("cpu"))]
        share = cell([x * 100 for x in g("nats_share")], 0, " %") if who != "standalone" \
            else "–"
        md.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, cell(g("rate")), cell(g("p50_ms"), 1), cell(g("p99_ms"), 1),
            cell(g("cpu"), 2), share, cell(busy, 2)))
        row("cluster", "%s exposures/s" % who, "exposures/s", g("rate"))
        row("cluster", "%s p99" % who, "ms", g("p99_ms"))
        row("cluster", "%s server CPU" % who, "us/exposure", g("cpu"))
    md.append("")
    md.append("Ratios (per round, then median): cluster R3 ÷ standalone %s, R1 ÷ standalone "
              "%s, R3 ÷ R1 %s."
              % (cell(F[("cluster", "r3_vs_standalone")], 2, "×"),
                 cell(F[("cluster", "r1_vs_standalone")], 2, "×"),
                 cell(F[("cluster", "r3_vs_r1")], 2, "×")))
    for k in ("r3_vs_standalone", "r1_vs_standalone", "r3_vs_r1"):
        row("cluster", "exposures/s ratio " + k, "x", F[("cluster", k)])
    md.append("")
    total = lambda key: fmt(sum(F.get(key, [])))  # noqa: E731
    md.append("Calls that failed in the clusters' rounds (counted for nothing; a partition "
              "changing hands answers UNAVAILABLE), all rounds: RecordExposures R3 %s, R1 %s; "
              "RecordConversions R3 %s, R1 %s. Leases the nodes lost meanwhile: R3 %s, R1 %s. "
              "Preload sends (a range with a failed call goes again): R3 %s, R1 %s.%s"
              % (total(("cluster", "r3", "errors")), total(("cluster", "r1", "errors")),
                 total(("cluster_conv", "r3", "errors")), total(("cluster_conv", "r1", "errors")),
                 fmt(sum(F.get(("cluster", "r3", "leases_lost"), []))
                     + sum(F.get(("cluster_conv", "r3", "leases_lost"), []))),
                 fmt(sum(F.get(("cluster", "r1", "leases_lost"), []))
                     + sum(F.get(("cluster_conv", "r1", "leases_lost"), []))),
                 fmt(S.get("cluster_preload_sends_r3", 1)),
                 fmt(S.get("cluster_preload_sends_r1", 1)),
                 " First error: %s." % S["cluster_first_error"] if S.get("cluster_first_error")
                 else ""))
    md.append("")
    md.append("| RecordConversions (orders join the %s) | conversions/s | p99 ms | server CPU "
              "µs/conversion |" % fmt(n))
    md.append("|---|---|---|---|")
    for who, label in whos:
        g = lambda k: F[("cluster_conv", who, k)]  # noqa: E731
        md.append("| %s | %s | %s | %s |" % (label, cell(g("rate")), cell(g("p99_ms"), 1),
                                             cell(g("cpu"), 1)))
        row("cluster", "%s conversions/s" % who, "conversions/s", g("rate"))
        row("cluster", "%s server CPU per conversion" % who, "us/conversion", g("cpu"))
    md.append("")
    md.append("RecordConversions, cluster R3 ÷ standalone: %s."
              % cell(F[("cluster_conv", "r3_vs_standalone")], 2, "×"))
    row("cluster", "conversions/s ratio r3_vs_standalone", "x",
        F[("cluster_conv", "r3_vs_standalone")])
    md.append("")
    md.append("Disk per exposure, from the preload of %s: the partitions' logs (streams "
              "yw-attr-log-<first>-<last>, their stored bytes summed over the servers' "
              "replicas) R3 %s bytes, R1 %s (in the measured rounds: R3 %s, R1 %s); "
              "JetStream's files as du counts them (Raft logs not yet compacted included) R3 "
              "%s, R1 %s; the nodes' data dirs (their views of the partitions) R3 %s, R1 %s; "
              "standalone's data dir %s. A "
              "RecordExposures call of 1,000 became %s messages of the log (R3; R1 %s): one "
              "per partition it touched."
              % (fmt(n), fmt(S["cluster_log_bytes_r3"]), fmt(S["cluster_log_bytes_r1"]),
                 cell(F[("cluster", "r3", "log_bytes")]), cell(F[("cluster", "r1", "log_bytes")]),
                 fmt(S["cluster_nats_bytes_r3"]), fmt(S["cluster_nats_bytes_r1"]),
                 fmt(S["cluster_data_bytes_r3"]), fmt(S["cluster_data_bytes_r1"]),
                 fmt(S["cluster_data_bytes_standalone"]),
                 fmt(S["cluster_log_msgs_per_call_r3"], 1),
                 fmt(S["cluster_log_msgs_per_call_r1"], 1)))
    for who in ("r3", "r1"):
        row("cluster", "%s log bytes per exposure (all replicas)" % who, "bytes",
            [S["cluster_log_bytes_" + who]])
        row("cluster", "%s JetStream files (du) per exposure" % who, "bytes",
            [S["cluster_nats_bytes_" + who]])
        row("cluster", "%s node data bytes per exposure" % who, "bytes",
            [S["cluster_data_bytes_" + who]])
    row("cluster", "standalone data bytes per exposure", "bytes",
        [S["cluster_data_bytes_standalone"]])
    md.append("")
    md.append("Failover (R3, lease TTL %d ms): `kill -9` of one node, then until the other "
              "answers health SERVING with all %d partitions served (its "
              "`yaowei_attribution_cluster_partitions{state=\"serving\"}`), polled every 0.2 s; "
              "a batch of 1,000 through it then; the killed node started again and the "
              "cluster rebalanced (%d partitions each) before the next run. A node that takes "
              "a partition loads its latest snapshot and reads the log after it (with the "
              "default --snapshot-kb of 64 MiB a partition, none is made at these sizes: "
              "the whole log is read)."
              % (CLUSTER_LEASE_TTL_MS, CLUSTER_PARTITIONS, CLUSTER_PARTITIONS // CLUSTER_NODES))
    md.append("")
    md.append("| exposures stored | failover s | rejoin + rebalance s | node RSS per partition "
              "KB (%d each) | survivor RSS MB (all %d) | log GB (all replicas) | JetStream "
              "files GB | nodes' data GB |"
              % (CLUSTER_PARTITIONS // CLUSTER_NODES, CLUSTER_PARTITIONS))
    md.append("|---|---|---|---|---|---|---|---|")
    failed_writes = []
    for stored in b.failover_sizes:
        g = lambda k: F[("failover", stored, k)]  # noqa: E731
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            fmt(stored), cell(g("s"), 1), cell(g("rejoin_s"), 1),
            fmt(g("rss_per_partition_kib")[0]), cell([x / 1024 for x in g("survivor_rss_kib")]),
            fmt(g("log_bytes")[0] / 1e9, 2), fmt(g("nats_bytes")[0] / 1e9, 2),
            fmt(g("node_bytes")[0] / 1e9, 2)))
        if sum(F.get(("failover", stored, "write_failed"), [])):
            failed_writes.append("%s calls of the batch at %s stored"
                                 % (fmt(sum(g("write_failed"))), fmt(stored)))
        row("cluster", "failover at %d stored" % stored, "s", g("s"))
        row("cluster", "rejoin at %d stored" % stored, "s", g("rejoin_s"))
        row("cluster", "node RSS per partition at %d stored" % stored, "KiB",
            g("rss_per_partition_kib"))
    md.append("")
    regrown = ["%s to %s" % (fmt(F[("failover", stored, "grow_sends")][0]), fmt(stored))
               for stored in b.failover_sizes if F.get(("failover", stored, "grow_sends"),
                                                        [1])[0] > 1]
    md.append("The batch through the survivor right after each failover: %s.%s"
              % ("failed for " + ", ".join(failed_writes) if failed_writes
                 else "every call accepted",
                 " Growing the cluster took more than one send of the same range (a call "
                 "failed, UNAVAILABLE, while a partition changed hands): %s." % ", ".join(regrown)
                 if regrown else ""))
    md.append("")
    md.append("## Targets (issue 14)")
    md.append("")
    md.append("| target | measured | |")
    md.append("|---|---|---|")
    ratio = med(F[("cluster", "r3_vs_standalone")])[0]
    target("cluster (R3, %d nodes) durable exposures/s ≥ %.1f× standalone's, in one run"
           % (CLUSTER_NODES, TARGET_CLUSTER_RATIO), "%.2f× (%s vs %s/s)"
           % (ratio, fmt(med(F[("cluster", "r3", "rate")])[0]),
              fmt(med(F[("cluster", "standalone", "rate")])[0])), ratio >= TARGET_CLUSTER_RATIO)
    for stored in b.failover_sizes:
        took = med(F[("failover", stored, "s")])[0]
        target("failover (kill -9 → every partition served) ≤ %.0f s, %s exposures stored"
               % (TARGET_FAILOVER_S, fmt(stored)), "%.1f s" % took, took <= TARGET_FAILOVER_S)
    md.append("")


def cluster_json(b):
    """The cluster's figures for bench/results/cluster(-quick).json: every run's value and
    the median of each, the single figures, the run's conditions."""
    figures = {}
    for key, xs in b.fig.items():
        if key[0] in ("cluster", "cluster_conv", "failover"):
            figures["/".join(str(k) for k in key)] = {"median": med(xs)[0], "runs": xs}
    return {"date": b.date, "machine": b.machine, "load_start": b.load_start,
            "load_end": loadavg(), "build": git_rev(), "profile": b.profile_name,
            "runs": b.runs, "exposures_preloaded": b.p["exposures"],
            "nats_servers": CLUSTER_NATS, "nodes": CLUSTER_NODES,
            "partitions": CLUSTER_PARTITIONS, "lease_ttl_ms": CLUSTER_LEASE_TTL_MS,
            "failover_sizes": b.failover_sizes, "cluster_batch": b.batch, "figures": figures,
            "single": {k: v for k, v in b.single.items() if k.startswith("cluster_")}}

def main():
    ap = argparse.ArgumentParser(description="every benchmark of issue 5 (make bench)")
    ap.add_argument("--quick", action="store_true", help="1M exposures, shorter runs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--cluster", action="store_true",
                    help="also the attribution cluster (issue 14): 3 nats-server and 2 nodes "
                    "beside a standalone attribution, R3 and R1, failover (make bench CLUSTER=1)")
    ap.add_argument("--cluster-only", action="store_true",
                    help="only the cluster section, with its own standalone attribution to "
                    "compare with (results: cluster(-quick).md, .csv, .json)")
    ap.add_argument("--store-only", action="store_true",
                    help="only the store section: creator profile on SQLite and on PostgreSQL "
                    "with 1 and 2 replicas (results: store(-quick).md, .csv)")
    ap.add_argument("--cluster-batch", type=int, default=1000, metavar="N",
                    help="events per RecordExposures call in the cluster section's rounds, "
                    "standalone's and the clusters' alike (default 1000; results then "
                    "named cluster(-quick)-batchN): how the cluster's cost depends on the "
                    "client's batch (make bench CLUSTER=only BATCH=N)")
    ap.add_argument("--cluster-partitions", type=int, default=64, metavar="N",
                    help="the clusters' --partitions (default 64, attribution's; results then "
                    "named cluster(-quick)-partitionsN): a call touches fewer partitions, so "
                    "fewer log messages (make bench CLUSTER=only PARTITIONS=N)")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be >= 1")
    if a.store_only and (a.cluster or a.cluster_only):
        ap.error("--store-only runs the store section alone: no --cluster, --cluster-only")
    if not 1 <= a.cluster_batch <= 10000:
        ap.error("--cluster-batch must be 1..10000 (the service's batch limit)")
    if not 2 <= a.cluster_partitions <= 1024 or a.cluster_partitions % CLUSTER_NODES:
        ap.error("--cluster-partitions must be 2..1024 and even (two nodes share them)")
    global CLUSTER_PARTITIONS
    CLUSTER_PARTITIONS = a.cluster_partitions
    Bench(a).run()


if __name__ == "__main__":
    main()
