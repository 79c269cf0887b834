"""The store's PostgreSQL backend against a real server (pg_server.py): each test of
tests/unit/common/test_store_pg_live.c runs in a database of its own; `outage` stops the
server and starts it again when the program asks (STOP/START on its stdout)."""
import os
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


def run_live(pg, name, timeout=30):
    db = "live_%s" % name
    uri = pg.create_database(db)
    env = dict(os.environ, YW_TEST_PG_URI=uri)
    out = subprocess.run([binary_path(LIVE), name], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 0 failed" in out.stdout, out.stdout


@pytest.mark.parametrize("name", ["migrate_concurrent", "newer_refused", "write_read_jobs",
                                  "notify", "close_with_queued_jobs"])
def test_live(pg, name):
    run_live(pg, name)


def test_outage(pg):
    uri = pg.create_database("live_outage")
    env = dict(os.environ, YW_TEST_PG_URI=uri)
    proc = subprocess.Popen([binary_path(LIVE), "outage"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "STOP":
                pg.stop()
                proc.stdin.write("stopped\n")
                proc.stdin.flush()
            elif line.strip() == "START":
                pg.start()
                proc.stdin.write("started\n")
                proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not pg.running():
            pg.start()
    out = "".join(lines)
    print(out)
    assert proc.returncode == 0, out
    assert "1 passed, 0 failed" in out, out
