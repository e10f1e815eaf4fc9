"""`tokenpool monitor` in a real pseudo-terminal: it refreshes, shows new calls, exits 0 on SIGINT."""
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.core.accounting import CallRecord, record_call
from shared.core.liveness import beat
from shared.core.models import ApiKey, utcnow
from shared.core.pricing import Pricer
from shared.core.startup import open_runtime

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "monitor.db"}"\n\n'
                    '[[keys]]\nlabel = "main"\napi_key = "sk-monitor-' + "q" * 28 + '"\n')
    return path


class Terminal:
    """A child process on a pty, with everything it printed so far."""

    def __init__(self, argv, cwd):
        self.master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                        start_new_session=True)
        os.close(slave)
        self.output = b""

    def read_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.output.decode("utf-8", "replace")):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:      # the child closed the terminal
                    break
        return predicate(self.output.decode("utf-8", "replace"))

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_monitor_refreshes_shows_new_calls_and_exits_0_on_sigint(tmp_path):
    config_path = write_config(tmp_path)
    runtime = open_runtime(config_path=str(config_path))
    beat("worker", "w-monitor")
    terminal = Terminal([sys.executable, "-m", "shared.tools.cli", "-c", str(config_path),
                         "monitor", "--interval", "0.3"],
                        cwd=tmp_path)
    try:
        assert terminal.read_until(lambda out: out.count("tokenpool monitor") >= 2, timeout=300), terminal.output
        text = terminal.output.decode("utf-8", "replace")
        assert "main" in text and "FRESH" in text and "w-monitor" in text and "calls/min" in text

        key = ApiKey.get()
        record_call(CallRecord(key_id=key.id, bot="main", operation="probe-op", model="gpt-4o-mini",
                               input_tokens=1_200, output_tokens=34, at=utcnow()),
                    anchor=key.window_anchor, pricer=Pricer())
        assert terminal.read_until(lambda out: "probe-op" in out and "ACTIVE" in out, timeout=300), terminal.output
        seen = terminal.output.decode("utf-8", "replace").count("tokenpool monitor")
        assert seen >= 3

        terminal.process.send_signal(signal.SIGINT)
        assert terminal.process.wait(timeout=300) == 0
        assert "Traceback" not in terminal.output.decode("utf-8", "replace")
    finally:
        terminal.close()
        runtime.db.close()
