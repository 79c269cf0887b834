"""The main job with creator profile and tier scoring on PostgreSQL (`make run
STORE=postgres`, tools/demo/run.sh --store postgres) gives the same answer as on SQLite.

run.sh runs twice at test_demo.py's tiny size, with the same seed and the same --now:
once as `make run` runs it, once with --store postgres (a PostgreSQL server of the run's
own, one database for both services). Both must pass every check and stop every process
with exit 0, and print the same report (but the services' addresses and the steps'
timings). The server must be stopped and its directory removed at the end, also when
the run fails.

Needs: bazel build //services/... //tools/demo //tools/health_probe, and postgresql.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import BIN_DIR, REPO
from pg_server import pg_bin_dir
from test_demo import TINY
from test_demo_cluster import assert_same_report, explain

RUN_SH = os.path.join(REPO, "tools", "demo", "run.sh")
SEED = "12"

# It checks the main job, not memory: release pass only (the sanitizer pass runs the
# services on PostgreSQL in test_store_postgres.py and the store-parametrized suites).
pytestmark = [pytest.mark.release, pytest.mark.skipif(os.environ.get("YW_SANITIZED") == "1",
                                 reason="release pass only (make test runs both)"),
              pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL is not installed")]

RUN_TIMEOUT_S = 150


def run_main_job(work, now, store, demo_args=None):
    """run.sh at the tiny size with TMPDIR=work: (exit status, stdout, stderr)."""
    work.mkdir()
    args = [RUN_SH, "--bin-dir", BIN_DIR, "--store", store, "--", "--seed", SEED,
            "--now", str(now)] + (TINY if demo_args is None else demo_args)
    env = dict(os.environ, TMPDIR=str(work), KEEP_DATA="0")
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S, env=env)
    return p.returncode, p.stdout, p.stderr


def pg_dir_of(err):
    m = re.search(r"^started postgres on 127\.0\.0\.1:(\d+) \(postgresql://postgres@127\.0\.0\.1:"
                  r"\1/yaowei, data in (\S+)/data\)$", err, re.M)
    assert m, err
    return m.group(2)


def processes_using(path):
    """Pids of processes whose command line names `path`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if path.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def assert_pg_gone(err):
    d = pg_dir_of(err)
    assert "stopped postgres" in err, err
    assert not os.path.exists(d), "%s left behind" % d
    assert processes_using(d) == [], "a PostgreSQL process still runs on %s" % d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo_postgres")
    now = int(time.time())
    return {store: run_main_job(tmp / store, now, store) for store in ("sqlite", "postgres")}


def test_both_runs_pass_every_check_and_stop_cleanly(runs):
    for store, (rc, out, err) in runs.items():
        assert rc == 0, explain(store, rc, out, err)
        assert re.search(r"^PASS: (\d+) of \1 checks passed$", out, re.M), out
        for name in ("creator_profile", "tier_scoring", "attribution"):
            assert "stopped %s (exit 0)" % name in err, err
    assert "started postgres" not in runs["sqlite"][2]
    assert_pg_gone(runs["postgres"][2])


def test_postgres_gives_the_same_report_as_sqlite(runs):
    assert_same_report(runs, "sqlite", "postgres")


def test_a_failed_run_stops_and_removes_the_server_too(tmp_path):
    # The demo refuses its flags (exit 2) once the services, PostgreSQL first, are up.
    rc, out, err = run_main_job(tmp_path / "bad", int(time.time()), "postgres",
                                ["--ctr", "0.1,0.2"])
    assert rc == 2, explain("postgres", rc, out, err)
    assert "--ctr" in err
    assert_pg_gone(err)
    for name in ("creator_profile", "tier_scoring", "attribution"):
        assert "stopped %s (exit 0)" % name in err, err
    # Its log is kept with the services' in the run's temp dir, for the failure.
    kept = [os.path.join(tmp_path / "bad", d, "postgres.log")
            for d in os.listdir(tmp_path / "bad") if d.startswith("yaowei-run.")]
    assert len(kept) == 1 and os.path.getsize(kept[0]) > 0, kept
