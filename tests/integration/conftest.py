"""Fixtures: start the real service binaries on a free loopback port.

Environment:
  YW_BIN_DIR   directory holding the Bazel outputs (default: <repo>/bazel-bin);
               the creator profile binary is services/creator_profile/creator_profile
               under it.
  YW_TEST_KEEP_LOGS=1   keep each server's stderr log (paths printed on failure).
  YW_TEST_STORES  the stores the store-parametrized tests run on, comma-separated
               (default "sqlite,postgres"; `make test` runs them on both in its sanitizer
               pass and on "sqlite" in its release pass). The PostgreSQL tests of their own
               (test_store_postgres.py, ...) run wherever PostgreSQL is installed.

RELEASE_PASS: `make test` runs every test once against the sanitizer build (ASan + UBSan),
and again against the release build (the binaries users run) only the tests marked
`release` (`pytest -m release`): those that assert what only a release build shows (RSS
and memory bounds, which the sanitizers' quarantine hides; stream sizes too long to run
sanitized), those skipped under the sanitizers, and what a newcomer runs first (the demo,
the README's commands, the benchmarks' smoke). Everything else checks behaviour that does
not depend on the build, and a second run of it cost `make test` about 4 minutes of its
15 (5 min 54 s for the whole suite against 2 min 12 s for the marked tests). `make integration` still runs the whole suite against the release build.

The store: creator profile and tier scoring keep their data in SQLite under --data-dir
(the default) or in PostgreSQL (--store postgresql://...). A test that starts them through
the fixtures below (server, fresh_server, tier_stack, ...) depends on the fixture `store`;
a module with `BOTH_STORES = True`, or a test marked `@pytest.mark.both_stores`, runs once
per store, its id saying which ([sqlite] / [postgres]). On "postgres" every service start
of a fixture gets a database of its own on one PostgreSQL server per session (started by
pg_server.py at the first use, removed at the end); a creator profile and the tier scoring
reading from it share theirs, as in production. Other tests run on SQLite only.
"""

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ywclient  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("YW_BIN_DIR") or os.path.join(REPO, "bazel-bin")
CREATOR_PROFILE_BIN = "services/creator_profile/creator_profile"
CREATOR_SERVICE = "yaowei.creator.v1.CreatorProfileService"

START_TIMEOUT_S = 20.0


def proc_status_kib(pid, field):
    """A kB figure of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


STOP_TIMEOUT_S = 10.0


def binary_path(rel):
    path = os.path.join(BIN_DIR, rel)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "service binary not found or not executable: %s\n"
            "build it first (bazel build //%s:%s) or point YW_BIN_DIR at the directory "
            "holding it" % (path, os.path.dirname(rel), os.path.basename(rel)),
            pytrace=False,
        )
    return path


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class ServerProcess:
    """One service process on 127.0.0.1:<port> with its own data dir."""

    def __init__(self, binary, data_dir, log_dir, extra_args=(), name="server"):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.extra_args = list(extra_args)
        self.name = name
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.proc = None
        self.returncode = None
        self._channel = None
        self._client = None
        self._starts = 0
        self.log_path = None
        self._log_file = None
        self.command_prefix = []  # runs the binary under it, e.g. ["prlimit", ..., "--"]
        self.store = "sqlite"  # or "postgres" (its --store is in extra_args)

    # -- process control ----------------------------------------------------

    def args(self):
        return self.command_prefix + [self.binary, "--listen", self.address, "--data-dir",
                                      self.data_dir, "--log-level", "info"] + self.extra_args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._starts += 1
        self.log_path = os.path.join(self.log_dir, "%s.%d.log" % (self.name, self._starts))
        self._log_file = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("YW_")}
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env)
        self.returncode = None
        self._wait_serving()
        return self

    def _wait_serving(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                pytest.fail("%s exited with %d during start-up; log:\n%s"
                            % (self.name, rc, self.log_tail()), pytrace=False)
            ch = grpc.insecure_channel(self.address)
            try:
                if ywclient.health_check(ch, "", timeout=1.0) == "SERVING":
                    return
                last = "health status not SERVING"
            except grpc.RpcError as e:
                last = "%s: %s" % (e.code(), e.details())
            finally:
                ch.close()
            time.sleep(0.05)
        self.kill9()
        pytest.fail("%s not SERVING within %.0f s (last: %s); log:\n%s"
                    % (self.name, START_TIMEOUT_S, last, self.log_tail()), pytrace=False)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _drop_channel(self):
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._client = None

    def kill9(self):
        """SIGKILL, no grace; returns the exit status (negative signal number)."""
        self._drop_channel()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.returncode = self.proc.wait()
        self._close_log()
        return self.returncode

    def terminate(self, timeout=STOP_TIMEOUT_S, close_channel=True):
        """SIGTERM and wait; returns the exit status, or None after SIGKILL on timeout."""
        if close_channel:
            self._drop_channel()
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = None
        self._close_log()
        return self.returncode

    def restart(self, hard=False):
        """Stops (SIGTERM, or SIGKILL when hard) and starts again on the same port and data dir."""
        if self.running():
            if hard:
                self.kill9()
            else:
                rc = self.terminate()
                assert rc == 0, "SIGTERM exit status %r; log:\n%s" % (rc, self.log_tail())
        self._drop_channel()
        return self.start()

    def stop(self):
        """SIGTERM; the service must exit 0. Under the sanitizer build (make asan) a
        leak or a UB report makes the exit status non-zero, so this is what catches it."""
        rc = 0
        if self.running():
            rc = self.terminate()
        self._drop_channel()
        log = self.log_tail()
        self._close_log()
        assert rc == 0, "%s: exit status %r at SIGTERM; log:\n%s" % (self.name, rc, log)

    # -- clients --------------------------------------------------------------

    @property
    def channel(self):
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    @property
    def client(self):
        """A DynamicClient (reflection v1) on this server."""
        if self._client is None:
            self._client = ywclient.DynamicClient(self.channel, "v1")
        return self._client

    def new_channel(self, **kw):
        return ywclient.connect(self.address, **kw)

    def call(self, method, request=None, **kw):
        if "/" not in method and "." not in method:
            method = "%s/%s" % (CREATOR_SERVICE, method)
        return self.client.call(method, request, **kw)

    def assert_alive(self):
        """The process runs and answers health and a real method."""
        assert self.running(), "%s is not running (exit %r); log:\n%s" % (
            self.name, self.proc.poll() if self.proc else None, self.log_tail())
        st = ywclient.health_check(self.channel, "", timeout=5.0)
        assert st == "SERVING", st

    # -- logs -----------------------------------------------------------------

    def log_text(self):
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_records(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_unparsed": line})
        return out


# -- the store ----------------------------------------------------------------------------

STORES = ("sqlite", "postgres")


def stores_to_test():
    """The stores of YW_TEST_STORES (default: both)."""
    names = [s.strip() for s in os.environ.get("YW_TEST_STORES", ",".join(STORES)).split(",")
             if s.strip()]
    for n in names:
        if n not in STORES:
            raise pytest.UsageError("YW_TEST_STORES: unknown store %r (known: %s)"
                                    % (n, ", ".join(STORES)))
    # The very objects of STORES: pytest keeps a parametrized fixture's value while the
    # next test's parameter `is` the same object, and sets it up again otherwise (a new
    # string from split() for every test would restart every module's server each test).
    return [s for s in STORES if s in names]


def pytest_configure(config):
    config.addinivalue_line("markers", "both_stores: run the test on SQLite and on PostgreSQL "
                            "(the fixture `store`)")
    config.addinivalue_line("markers", "release: run in `make test`'s release pass too (see "
                            "RELEASE_PASS in conftest.py)")


def pytest_generate_tests(metafunc):
    if "store" not in metafunc.fixturenames:
        return
    if (getattr(metafunc.module, "BOTH_STORES", False)
            or metafunc.definition.get_closest_marker("both_stores")):
        # Module scope: a module's tests run on one store, then on the other, so that a
        # module-scoped server is started once per store.
        metafunc.parametrize("store", stores_to_test(), indirect=True, scope="module")


@pytest.fixture(scope="session")
def store(request):
    """ "sqlite" or "postgres": where the services started by the fixtures keep their data."""
    return getattr(request, "param", "sqlite")


_PG = None
_DB_SEQ = itertools.count(1)


def pg_server():
    """The session's PostgreSQL server (pg_server.PgServer), started at the first call."""
    global _PG
    if _PG is None:
        from pg_server import PgServer
        _PG = PgServer("pg-session").start()
    return _PG


def pytest_sessionfinish(session, exitstatus):
    global _PG
    if _PG is not None:
        _PG.destroy()
        _PG = None


def new_database(name):
    """A new empty database on the session's PostgreSQL server; returns its URI."""
    db = "yw%d_%s" % (next(_DB_SEQ), re.sub(r"[^a-z0-9_]+", "_", name.lower()))
    return pg_server().create_database(db[:63])


def store_args(store, name):
    """The flags that put a service on `store`: none for SQLite (under --data-dir), --store
    with a new database for PostgreSQL."""
    if store == "sqlite":
        return []
    assert store == "postgres", store
    return ["--store", new_database(name)]


def _make_server(tmp_path_factory, name, extra_args=(), store="sqlite", store_uri_args=None):
    """A creator profile process (not started). On store "postgres", a new database
    (or the --store flags of store_uri_args, to share one)."""
    binary = binary_path(CREATOR_PROFILE_BIN)
    base = tmp_path_factory.mktemp(name)
    data_dir = base / "data"
    data_dir.mkdir()
    sargs = store_uri_args if store_uri_args is not None else store_args(store, name)
    srv = ServerProcess(binary, str(data_dir), str(base), list(extra_args) + sargs, name=name)
    srv.store = store
    return srv


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, store):
    """One creator profile process shared by a test module (tests use unique ids)."""
    srv = _make_server(tmp_path_factory, "creator_profile", store=store)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server):
    """The shared server; after each test it must still be alive and serving."""
    if not shared_server.running():
        shared_server.start()
    yield shared_server
    shared_server.assert_alive()


@pytest.fixture
def fresh_server(tmp_path_factory, store):
    """A creator profile process of its own, with an empty data dir (or database)."""
    srv = _make_server(tmp_path_factory, "creator_profile_fresh", ["--grace-ms", "2000"],
                       store=store)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory, store):
    """A creator profile process started with --max-message-bytes 65536."""
    srv = _make_server(tmp_path_factory, "creator_profile_small",
                       ["--max-message-bytes", "65536"], store=store)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def small_server(small_limit_server):
    yield small_limit_server
    small_limit_server.assert_alive()


# -- tier scoring: creator profile and tier scoring as two real processes ----------------

TIER_SCORING_BIN = "services/tier_scoring/tier_scoring"
TIER_SERVICE = "yaowei.tier.v1.TierScoringService"
# Short, so that tests see the population refreshed within a second or so.
TIER_REFRESH_MS = 300
ATTRIBUTION_BIN = "services/attribution/attribution"


class ServiceStack:
    """Creator profile, tier scoring and attribution, wired as in production, each with
    its own data dir under `prefix`_<name>; start() in that order, stop() the other way
    (each stop asserts exit 0 at SIGTERM)."""

    def __init__(self, tmp_path_factory, prefix, refresh_ms=TIER_REFRESH_MS):
        def proc(name, rel, args):
            base = tmp_path_factory.mktemp("%s_%s" % (prefix, name))
            data = base / "data"
            data.mkdir()
            return ServerProcess(binary_path(rel), str(data), str(base), args, name=name)

        self.creator = proc("creator_profile", CREATOR_PROFILE_BIN, [])
        self.tier = proc("tier_scoring", TIER_SCORING_BIN,
                         ["--creator-profile-addr", self.creator.address,
                          "--refresh-interval-ms", str(refresh_ms)])
        self.attr = proc("attribution", ATTRIBUTION_BIN,
                         ["--tier-scoring-addr", self.tier.address, "--grace-ms", "2000"])

    def start(self):
        for p in (self.creator, self.tier, self.attr):
            p.start()
        return self

    def stop(self):
        for p in (self.attr, self.tier, self.creator):
            p.stop()


class TierStack:
    """A creator profile process and a tier scoring process reading from it."""

    def __init__(self, creator, tier):
        self.creator = creator
        self.tier = tier

    def start(self):
        self.creator.start()
        self.tier.start()
        return self

    def stop(self):
        self.tier.stop()
        self.creator.stop()

    def cp(self, method, request=None, **kw):
        """A CreatorProfileService call ("CreateCreator", ...)."""
        return self.creator.call("%s/%s" % (CREATOR_SERVICE, method), request, **kw)

    def ts(self, method, request=None, **kw):
        """A TierScoringService call ("ScoreCreator", ...)."""
        return self.tier.call("%s/%s" % (TIER_SERVICE, method), request, **kw)


def _make_tier_stack(tmp_path_factory, name, tier_args=(), store="sqlite"):
    """Creator profile and tier scoring (not started); on store "postgres" both in one new
    database."""
    sargs = store_args(store, name)
    creator = _make_server(tmp_path_factory, name + "_creator_profile", store=store,
                           store_uri_args=sargs)
    base = tmp_path_factory.mktemp(name + "_tier_scoring")
    data_dir = base / "data"
    data_dir.mkdir()
    tier = ServerProcess(binary_path(TIER_SCORING_BIN), str(data_dir), str(base),
                         ["--creator-profile-addr", creator.address,
                          "--refresh-interval-ms", str(TIER_REFRESH_MS)] + list(tier_args)
                         + sargs, name=name + "_tier_scoring")
    tier.store = store
    return TierStack(creator, tier)


@pytest.fixture(scope="module")
def shared_tier_stack(tmp_path_factory, store):
    """One creator profile + tier scoring pair shared by a test module (tests use their
    own categories and ids)."""
    stack = _make_tier_stack(tmp_path_factory, "tier", store=store).start()
    yield stack
    stack.stop()


@pytest.fixture
def tier_stack(shared_tier_stack):
    """The shared pair; after each test both must still be alive and serving."""
    for srv in (shared_tier_stack.creator, shared_tier_stack.tier):
        if not srv.running():
            srv.start()
    yield shared_tier_stack
    shared_tier_stack.creator.assert_alive()
    shared_tier_stack.tier.assert_alive()


@pytest.fixture
def fresh_tier_stack(tmp_path_factory, store):
    """A pair of its own with empty data dirs (or database): for tests that change the
    policy, stop processes, or need to know every creator of the population."""
    stack = _make_tier_stack(tmp_path_factory, "tier_fresh", store=store).start()
    yield stack
    for srv in (stack.creator, stack.tier):
        if srv.proc is not None and srv.proc.poll() is None:
            try:
                srv.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            except OSError:
                pass
    stack.stop()
