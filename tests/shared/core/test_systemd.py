"""sd_notify over a real Unix datagram socket, and journald-style log lines."""
import logging
import os
import socket
import sys

from shared.core.logs import JournalFormatter
from shared.core.systemd import Notifier


def test_notifier_sends_datagrams_to_the_notify_socket(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.ready("up") and notifier.watchdog() and notifier.stopping()
        assert [systemd.recv(100) for _ in range(3)] == [b"READY=1\nSTATUS=up", b"WATCHDOG=1", b"STOPPING=1"]
        assert notifier.watchdog_seconds == 30.0
        notifier.close()


def test_notifier_reaches_an_abstract_socket():
    name = f"tokenpool-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert systemd.recv(100) == b"READY=1"


def test_a_full_notify_queue_drops_the_message_instead_of_blocking(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:     # bound, never read
        systemd.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        sent = [notifier.watchdog() for _ in range(1000)]     # far more than the kernel queues
        assert sent[0] and not sent[-1]
        notifier.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier({}).ready()
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).status("x")   # a stale socket path
    # The watchdog is meant for another process: do not ping it.
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_seconds is None


def test_journal_lines_carry_the_syslog_priority_on_every_line():
    formatter = JournalFormatter()
    record = logging.LogRecord("tokenpool.worker", logging.WARNING, __file__, 1, "db down", None, None)
    assert formatter.format(record) == "<4>tokenpool.worker: db down"
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("tokenpool.worker", logging.ERROR, __file__, 1, "tick failed", None, sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
