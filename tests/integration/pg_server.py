"""A real PostgreSQL on loopback for the tests: Debian's PostgreSQL 15 (package
`postgresql`), initdb into a temp dir, a free loopback port, no Unix socket; as the
`postgres` user through `runuser` when we are root (initdb refuses root). Exactly the
server a user runs, only on one machine and without a password (trust on loopback).

    pg = PgServer().start()   # in a temp dir of its own (pytest's are root-only)
    pg.uri("yaowei")          # "postgresql://postgres@127.0.0.1:PORT/yaowei"
    pg.create_database("yaowei")
    pg.sql("SELECT 1", db="yaowei")   # psql's output, stripped
    pg.stop(); pg.start()    # a restart (same port, same data)
    pg.kill9()               # the postmaster killed: a crash, recovered by the next start
    replica = pg.standby().start()   # a streaming standby of this server
    pg.destroy()             # stopped and its directory removed
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import free_port


def pg_bin_dir():
    """The directory of initdb/pg_ctl (the newest installed PostgreSQL), or None."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(bins[-1]) if bins else None


class PgServer:
    """One PostgreSQL server: a data directory, a port, started and stopped by pg_ctl."""

    def __init__(self, name="pg", settings=None):
        self.bin = pg_bin_dir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        # Its own temp dir: pytest's are root-only, and the server runs as postgres.
        self.dir = tempfile.mkdtemp(prefix="yw-%s-" % name)
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "log")
        self.port = free_port()
        self.settings = {"fsync": "on", "synchronous_commit": "on", "max_connections": "200",
                         "wal_level": "replica", "max_wal_senders": "5",
                         "shared_buffers": "64MB"}
        self.settings.update(settings or {})
        self.initialized = False

    def _run(self, argv, **kw):
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--"] + argv
        return subprocess.run(argv, check=True, **kw)

    def initdb(self):
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                  stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write("host replication postgres 127.0.0.1/32 trust\n")
        self.initialized = True

    def start(self):
        if not self.initialized:
            self.initdb()
        opts = "-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=''" % self.port
        opts += "".join(" -c %s=%s" % kv for kv in self.settings.items())
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts, "-l",
                   self.log_path, "-w", "-t", "120", "start"], stdout=subprocess.DEVNULL)
        return self

    @property
    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def running(self):
        try:
            os.kill(self.pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def uri(self, db="postgres", **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        return "postgresql://postgres@127.0.0.1:%d/%s%s" % (self.port, db, "?" + q if q else "")

    def sql(self, statement, db="postgres"):
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                              "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-c", statement], check=True, stdout=subprocess.PIPE, text=True)
        return out.stdout.strip()

    def create_database(self, db):
        self.sql('CREATE DATABASE "%s"' % db)
        return self.uri(db)

    def stop(self, mode="fast"):
        try:
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                       "-t", "60", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (subprocess.CalledProcessError, OSError):
            pass

    def kill9(self):
        """The postmaster and every backend killed: the data is what a crash leaves."""
        pid = self.pid
        subprocess.run(["pkill", "-9", "-P", str(pid)], check=False)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.running():
            time.sleep(0.05)
        try:
            os.unlink(os.path.join(self.data, "postmaster.pid"))
        except OSError:
            pass

    def standby(self, name="pg-standby"):
        """A streaming standby of this server (pg_basebackup -R), not started."""
        s = PgServer(name, self.settings)
        self._run([os.path.join(self.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p",
                   str(self.port), "-U", "postgres", "-D", s.data, "-R", "-X", "stream", "--checkpoint=fast",
                   "--no-sync"], stdout=subprocess.DEVNULL)
        s.initialized = True
        return s

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
