"""The store's PostgreSQL backend against a real server (pg_server.py): each test of
tests/unit/common/test_store_pg_live.c runs in a database of its own; `outage` stops the
server and starts it again when the program asks (STOP/START on its stdout)."""
import os
import signal
import subprocess

import pytest

from conftest import binary_path
from pg_server import PgServer, pg_bin_dir

LIVE = "tests/unit/common/test_store_pg_live"

pytestmark = pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL is not installed")


@pytest.fixture(scope="module")
def pg():
    server = PgServer("pg-store").start()
    yield server
    server.destroy()


def run_live(pg, name, timeout=30, **extra_env):
    db = "live_%s" % name
    uri = pg.create_database(db)
    env = dict(os.environ, YW_TEST_PG_URI=uri, **extra_env)
    out = subprocess.run([binary_path(LIVE), name], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 0 failed" in out.stdout, out.stdout


@pytest.mark.parametrize("name", ["migrate_concurrent", "newer_refused", "write_read_jobs",
                                  "notify", "close_with_queued_jobs"])
def test_live(pg, name):
    run_live(pg, name)


def test_read_pool_on_standby(pg):
    """pg_read_uri: read jobs on a streaming standby, writes on the primary."""
    pg.create_database("live_read_pool")
    standby = pg.standby().start()
    try:
        out = subprocess.run([binary_path(LIVE), "read_pool"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=60,
                             env=dict(os.environ, YW_TEST_PG_URI=pg.uri("live_read_pool"),
                                      YW_TEST_PG_READ_URI=standby.uri("live_read_pool")))
        assert out.returncode == 0, out.stdout
        assert "1 passed, 0 failed" in out.stdout and "skipped" not in out.stdout, out.stdout
    finally:
        standby.destroy()


def server_pids(pg):
    """The postmaster and its children (backends, checkpointer, ...)."""
    kids = subprocess.run(["pgrep", "-P", str(pg.pid)], stdout=subprocess.PIPE, text=True)
    return [pg.pid] + [int(p) for p in kids.stdout.split()]


def signal_server(pg, sig):
    for pid in server_pids(pg):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


@pytest.mark.parametrize("name,stop", [("outage", "stop"), ("outage", "kill9"),
                                       ("hang", None)])
def test_driven(pg, name, stop):
    """`outage`: the server stopped (pg_ctl stop, or kill -9) and started again; `hang`:
    frozen (SIGSTOP) and thawed."""
    uri = pg.create_database("live_%s_%s" % (name, stop))
    env = dict(os.environ, YW_TEST_PG_URI=uri)
    proc = subprocess.Popen([binary_path(LIVE), name], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "STOP":
                pg.kill9() if stop == "kill9" else pg.stop()
                proc.stdin.write("stopped\n")
                proc.stdin.flush()
            elif line.strip() == "START":
                pg.start()
                proc.stdin.write("started\n")
                proc.stdin.flush()
            elif line.strip() == "FREEZE":
                signal_server(pg, signal.SIGSTOP)
                proc.stdin.write("frozen\n")
                proc.stdin.flush()
            elif line.strip() == "THAW":
                signal_server(pg, signal.SIGCONT)
                proc.stdin.write("thawed\n")
                proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        signal_server(pg, signal.SIGCONT)
        if not pg.running():
            pg.start()
    out = "".join(lines)
    print(out)  # shown by pytest when the test fails (or with -s)
    assert proc.returncode == 0, out
    assert "1 passed, 0 failed" in out, out


@pytest.mark.parametrize("suite", ["tests/unit/services/creator_profile/test_creator_store",
                                   "tests/unit/services/tier_scoring/test_tier_store"])
def test_service_stores_on_postgres(pg, suite):
    """The services' store suites (their SQL, locks across two replicas' pools) on
    PostgreSQL: with YW_TEST_PG_URI each test runs there instead of on SQLite, in a
    database of its own. The tests' names come from a run on SQLite."""
    listing = subprocess.run([binary_path(suite)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=180)
    assert listing.returncode == 0, listing.stdout
    names = [line.split()[1] for line in listing.stdout.splitlines() if line.startswith("ok ")]
    assert len(names) >= 4, listing.stdout
    for i, name in enumerate(names):
        uri = pg.create_database("svc_%s_%d" % (os.path.basename(suite), i))
        out = subprocess.run([binary_path(suite), name], env=dict(os.environ, YW_TEST_PG_URI=uri),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=180)
        assert out.returncode == 0 and "1 passed, 0 failed" in out.stdout, out.stdout
        assert "skipped" not in out.stdout, out.stdout  # every test runs on PostgreSQL
