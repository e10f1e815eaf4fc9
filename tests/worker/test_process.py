"""The worker as real processes (`python -m worker`): leadership, signals, systemd, outages."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from shared.core.keys import sync_keys
from shared.core.models import Alert, ApiKey, Heartbeat, KeyRanking, KeyReset, Lease
from shared.core.windows import WINDOW
from shared.core.worker_nudge import notify_worker
from tests.backends import fresh_database_url
from tests.conftest import make_config, open_test_db
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
# The lease is renewed every tick; a live leader must never lose it, even when a busy machine
# (a SQLite fsync behind other test runs) keeps it from renewing for a second or two.
TICK, LEASE = 0.2, 3.0
# Waits are for conditions; this limit only turns a hang into a failure (a loaded machine may be slow).
HANG = 300.0


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request, tmp_path):
    """A migrated database that the worker processes and the test share: (url, db)."""
    with fresh_database_url(request.param, tmp_path) as url:
        db = open_test_db(url)
        yield url, db
        db.close()


def write_config(tmp_path: Path, url: str, name: str = "config.toml", **worker) -> Path:
    settings = {"tick_seconds": TICK, "lease_seconds": LEASE, **worker}
    lines = [f'data_dir = "{tmp_path}"', "[database]", f"url = {json.dumps(url)}", "[worker]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for i in range(3):
        lines += ["[[keys]]", f'label = "k{i + 1}"', f'api_key = "sk-test-{i + 1:02d}-{"x" * 24}"',
                  "daily_token_limit = 1000000"]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


class WorkerProcess:
    def __init__(self, config: Path, log: Path, env: dict | None = None, args=()):
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker", "--config", str(config), *args], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=self._log_file,
                                     env={**os.environ, **(env or {})})
        self.holder = f"{socket.gethostname()}:{self.proc.pid}"

    @property
    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=HANG) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(*args, **kwargs):
        started.append(WorkerProcess(*args, **kwargs))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.stop()


def wait_for(predicate, timeout: float, what: str, db=None):
    """Poll until `predicate()`; `timeout` is a floor raised to HANG, never an assertion on speed."""
    timeout = max(timeout, HANG)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db is not None:
            db.close()                 # a fresh connection sees the other processes' commits
        if predicate():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def lease() -> Lease | None:
    return Lease.get_or_none(Lease.name == "worker")


def rankings() -> list[list[int]]:
    return [json.loads(r.key_ids) for r in KeyRanking.select().order_by(KeyRanking.generation)]


def test_standby_takes_over_within_two_lease_periods_of_a_kill_and_nothing_is_done_twice(
        shared_db, tmp_path, workers):
    url, db = shared_db
    config = write_config(tmp_path, url)
    sync_keys(make_config(3, url=url))
    k1, k2, k3 = (ApiKey.get(ApiKey.label == f"k{i}") for i in (1, 2, 3))
    for k in (k1, k2):   # counters of an old window: the leader must persist their resets, once
        ApiKey.update(window_start=k.window_anchor - WINDOW, used_today=500, calls_today=1).where(
            ApiKey.id == k.id).execute()

    a = workers(config, tmp_path / "a.log")
    wait_for(lambda: (lease() or Lease()).holder == a.holder, 10, "worker a to lead", db)
    b = workers(config, tmp_path / "b.log")
    wait_for(lambda: Heartbeat.get_or_none(Heartbeat.name == b.holder) is not None, 10, "worker b to beat", db)
    term = lease().term
    ApiKey.update(invalid=True).where(ApiKey.id == k3.id).execute()          # a change a must publish
    wait_for(lambda: rankings()[-1:] == [[k1.id, k2.id]], 5, "a to publish without k3", db)
    time.sleep(2 * LEASE)                                                    # both alive: b must not lead
    assert (lease().holder, lease().term) == (a.holder, term)
    assert "leading as" not in b.output

    a.proc.kill()                                                           # kill -9
    a.proc.wait(HANG)
    wait_for(lambda: (lease() or Lease()).holder == b.holder, 2 * LEASE + 1, "b to lead", db)
    assert lease().term == term + 1
    ApiKey.update(invalid=False).where(ApiKey.id == k3.id).execute()         # a change b must publish
    wait_for(lambda: k3.id in rankings()[-1], 5, "b to publish k3 again", db)
    time.sleep(5 * TICK)
    assert b.stop() == 0

    db.close()
    assert sorted((r.key_id, r.window_start) for r in KeyReset.select()) == sorted(
        (k.id, k.window_anchor) for k in (k1, k2))
    assert {r.reset_by for r in KeyReset.select()} == {a.holder}
    generations = [r.generation for r in KeyRanking.select().order_by(KeyRanking.generation)]
    assert generations == list(range(1, len(generations) + 1))
    published = rankings()
    assert all(before != after for before, after in zip(published, published[1:]))   # never the same twice
    assert published[-1] == [k1.id, k2.id, k3.id] or published[-1][0] in (k1.id, k2.id)
    assert [a.kind for a in Alert.select().where(Alert.kind == "worker_takeover")] == ["worker_takeover"]
    assert [a.kind for a in Alert.select().where(Alert.kind == "key_invalid")] == ["key_invalid"]


class Systemd:
    """A notify socket standing in for systemd: what the worker told it, line by line."""

    def __init__(self, path: Path):
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.messages: list[str] = []

    def count(self, prefix: str) -> int:
        """Messages heard so far that start with `prefix` (after reading one more, if any came)."""
        try:
            self.messages.extend(self.socket.recv(4096).decode().splitlines())
        except TimeoutError:
            pass
        return sum(m.startswith(prefix) for m in self.messages)

    def heard(self, prefix: str) -> bool:
        return self.count(prefix) > 0

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def systemd(tmp_path):
    listener = Systemd(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_sigterm_finishes_the_tick_exits_0_promptly_and_releases_the_lease(shared_db, tmp_path, workers, systemd):
    url, db = shared_db
    worker = workers(write_config(tmp_path, url), tmp_path / "w.log",
                     env={"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "2000000", "JOURNAL_STREAM": "8:1"})
    heard = systemd.heard
    wait_for(lambda: heard("READY=1"), 10, "READY=1")
    wait_for(lambda: heard("STATUS=leading"), 10, "a STATUS saying it leads")
    wait_for(lambda: heard("WATCHDOG=1"), 5, "watchdog pings")
    wait_for(lambda: (lease() or Lease()).holder == worker.holder, 5, "the worker to lead", db)

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(HANG) == 0
    wait_for(lambda: heard("STOPPING=1"), 2, "STOPPING=1")
    db.close()
    released = lease()
    assert (released.holder, released.expires_at) == ("", None)
    assert Heartbeat.get_or_none(Heartbeat.name == worker.holder) is None   # not shown green for a minute
    log = worker.output.splitlines()
    assert log and all(line.startswith("<") for line in log)                # journald priorities
    assert any(line.startswith("<6>tokenpool.worker: released the lease") for line in log)


def test_a_bot_wakes_the_worker_before_its_tick_is_due(shared_db, tmp_path, workers):
    url, db = shared_db
    # Ticks an hour apart: a second ranking within the test can only come from the wake-up.
    worker = workers(write_config(tmp_path, url, tick_seconds=3600.0, lease_seconds=7200.0), tmp_path / "w.log")
    wait_for(lambda: len(rankings()) == 1, 10, "the first ranking", db)
    k2 = ApiKey.get(ApiKey.label == "k2")
    ApiKey.update(invalid=True).where(ApiKey.id == k2.id).execute()
    nudged = [0.0]

    def nudge_then_look() -> bool:
        """A wake-up sent before the worker listens is not heard: nudge again every half second."""
        if time.monotonic() - nudged[0] > 0.5:
            notify_worker()
            nudged[0] = time.monotonic()
        return len(rankings()) == 2

    wait_for(nudge_then_look, 5, "the ranking without k2", db)
    assert k2.id not in rankings()[-1]
    assert worker.stop() == 0


def test_once_runs_one_tick_and_exits(shared_db, tmp_path):
    url, db = shared_db
    done = subprocess.run([sys.executable, "-m", "worker", "--once", "--config", str(write_config(tmp_path, url))],
                          cwd=ROOT, capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr
    db.close()
    assert len(rankings()) == 1 and len(rankings()[0]) == 3
    assert lease().holder == ""
    assert Heartbeat.select().count() == 0          # a host:pid run leaves no permanent DOWN row


def test_bad_config_exits_with_a_message_naming_the_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[worker]\npolicy = \"fastest\"\n")
    done = subprocess.run([sys.executable, "-m", "worker", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 78
    assert "worker.policy" in done.stderr and str(config) in done.stderr
    assert "Traceback" not in done.stderr


def test_database_outage_is_retried_and_logged_once_each_way(tmp_path, workers, systemd):
    retried = 3          # failed ticks to see before the database comes back: "many", whatever the clock says
    with fresh_database_url("postgres", tmp_path) as url:
        db = open_test_db(url)
        parts = urlparse(url)
        proxy = TcpProxy(parts.hostname, parts.port or 5432)
        proxy.start()
        proxied = urlunparse(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        # systemd hears "retrying in …" after every failed tick: the test counts the attempts there.
        worker = workers(write_config(tmp_path, proxied), tmp_path / "w.log", env={"NOTIFY_SOCKET": str(systemd.path)})
        try:
            wait_for(lambda: Heartbeat.get_or_none(Heartbeat.name == worker.holder) is not None, 10,
                     "the worker to beat", db)
            proxy.stop()
            wait_for(lambda: systemd.heard("STATUS=retrying"), 10, "a failed tick")
            db.close()
            beat = Heartbeat.get(Heartbeat.name == worker.holder).last_seen
            wait_for(lambda: systemd.count("STATUS=retrying") >= retried, 10, f"{retried} failed ticks")
            db.close()
            assert Heartbeat.get(Heartbeat.name == worker.holder).last_seen == beat   # it really was cut off
            assert worker.proc.poll() is None                 # still running: no crash loop
            assert "database unavailable" in worker.output
            assert "database reachable again" not in worker.output
            proxy.start()
            wait_for(lambda: "database reachable again" in worker.output, 40, "the recovery", None)
            db.close()
            beat = Heartbeat.get(Heartbeat.name == worker.holder).last_seen
            wait_for(lambda: Heartbeat.get(Heartbeat.name == worker.holder).last_seen > beat, 5, "new beats", db)
            assert worker.stop() == 0
        finally:
            proxy.close()
            db.close()
    log = worker.output
    assert log.count("database unavailable") == 1
    assert log.count("database reachable again") == 1
    failed = re.search(r"database reachable again after [\d.]+ s and (\d+) failed tick", log)
    assert failed and int(failed.group(1)) >= retried
    assert "Traceback" not in log


def test_once_with_the_database_down_exits_1_after_one_log_line(tmp_path):
    with socket.socket() as closed:                    # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_config(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    done = subprocess.run([sys.executable, "-m", "worker", "--once", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 1
    assert done.stderr.count("database unavailable") == 1
    assert "Traceback" not in done.stderr
