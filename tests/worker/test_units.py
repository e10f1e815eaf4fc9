"""The systemd units in deploy/ are valid, hardened, and agree with the worker's behaviour."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.loop import EXIT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALLED_BIN = "/opt/tokenpool/.venv/bin/"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            name, value = line.split("=", 1)
            found.setdefault(name, []).append(value)
    return found


@pytest.fixture
def rendered(tmp_path) -> Path:
    """The units with ExecStart pointing at this virtualenv's entry points, so that `verify`
    checks real executables (the bot template instantiated as tokenpool-bot@alice)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "tokenpool-worker").exists():
        pytest.skip(f"the entry points are not installed in {bin_dir} (pip install -e .)")
    for unit, name in (("tokenpool-worker.service", "tokenpool-worker.service"),
                       ("tokenpool-bot@.service", "tokenpool-bot@alice.service")):
        text = (DEPLOY / unit).read_text().replace(INSTALLED_BIN, f"{bin_dir}/")
        (tmp_path / name).write_text(text)
    return tmp_path


@needs_systemd
def test_units_pass_systemd_analyze_verify_without_a_warning(rendered):
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "tokenpool-worker.service", "tokenpool-bot@alice.service"],
                          cwd=rendered, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""          # unknown keys and bad values are only warnings


@needs_systemd
@pytest.mark.parametrize("unit", ["tokenpool-worker.service", "tokenpool-bot@alice.service"])
def test_units_have_a_low_exposure_level(rendered, unit):
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", unit], cwd=rendered,
                          capture_output=True, text=True, timeout=300)
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) < 3.0


def test_worker_unit_is_a_notify_service_with_a_watchdog_and_hardening():
    unit = settings("tokenpool-worker.service")
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [INSTALLED_BIN + "tokenpool-worker"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]


@pytest.mark.parametrize("unit", ["tokenpool-worker.service", "tokenpool-bot@.service"])
def test_units_are_hardened_and_read_secrets_from_an_environment_file(unit):
    found = settings(unit)
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["ProtectSystem"] == ["strict"]
    assert found["ReadWritePaths"] == ["/var/lib/tokenpool"]
    assert found["Restart"] == ["on-failure"]
    assert any(path.endswith("/etc/tokenpool/env") for path in found["EnvironmentFile"])
    assert found["User"] == ["tokenpool"]
