"""A real NATS JetStream cluster on loopback for the cluster tests: `nats-server`
processes (Debian's nats-server), each with its own temp store dir, free client, route and
monitoring ports, routes to all the others, JetStream on. Exactly what a user's cluster
runs, only on one machine.

    nats = NatsCluster(tmp_dir, n=3).start()
    nats.urls          # "nats://127.0.0.1:p1,nats://127.0.0.1:p2,nats://127.0.0.1:p3"
    nats.jsz(0)        # the monitoring endpoint's /jsz of server 0, as a dict
    nats.kill9(1); nats.restart(1)
    nats.stop()
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

from conftest import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"
READY_TIMEOUT_S = 30.0


class NatsServer:
    def __init__(self, base, name):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(os.path.join(self.dir, "js"), exist_ok=True)
        self.port = free_port()
        self.cluster_port = free_port()
        self.http_port = free_port()
        self.conf = os.path.join(self.dir, "nats.conf")
        self.log_path = os.path.join(self.dir, "nats.log")
        self.proc = None

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def write_conf(self, peers):
        routes = ",\n    ".join("nats-route://127.0.0.1:%d" % p.cluster_port
                                for p in peers if p is not self)
        cluster = ""
        if len(peers) > 1:
            cluster = """cluster {
  name: yw-test
  listen: 127.0.0.1:%d
  routes: [
    %s
  ]
}
""" % (self.cluster_port, routes)
        with open(self.conf, "w") as f:
            f.write("""server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: "%s"
  max_memory_store: 64MB
  max_file_store: 4GB
}
%s""" % (self.name, self.port, self.http_port, os.path.join(self.dir, "js"), cluster))

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path),
                                    timeout=2) as r:
            return json.loads(r.read().decode())

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""


class NatsCluster:
    def __init__(self, base, n=3):
        self.servers = [NatsServer(base, "nats%d" % (i + 1)) for i in range(n)]
        for s in self.servers:
            s.write_conf(self.servers)

    @property
    def urls(self):
        return ",".join(s.url for s in self.servers)

    def start(self):
        for s in self.servers:
            s.start()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Every running server answers and JetStream has a meta leader."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                leaders = set()
                for s in self.servers:
                    if not s.running():
                        continue
                    jsz = s.get("/jsz")
                    meta = jsz.get("meta_cluster") or {}
                    if len(self.servers) == 1:
                        leaders.add(s.name)
                    elif meta.get("leader"):
                        leaders.add(meta["leader"])
                if len(leaders) == 1:
                    return
                last = "meta leaders seen: %r" % (leaders,)
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise AssertionError("NATS cluster not ready in %.0f s (%s); logs:\n%s" % (
            timeout, last, "\n".join(s.log_tail() for s in self.servers)))

    def jsz(self, i=0, **query):
        q = "&".join("%s=%s" % kv for kv in query.items())
        return self.servers[i].get("/jsz" + ("?" + q if q else ""))

    def kill9(self, i):
        self.servers[i].kill9()

    def restart(self, i):
        self.servers[i].kill9()
        self.servers[i].start()

    def stop(self):
        for s in self.servers:
            s.stop()
