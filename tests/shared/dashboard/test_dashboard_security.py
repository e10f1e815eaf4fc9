"""Who may see the dashboard: loopback by default, a token everywhere else, cookies done right."""
import dataclasses
import logging
import shutil
import ssl
import subprocess
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shared.core.config import ConfigError
from shared.dashboard.security import COOKIE, Throttle, check_bind, is_loopback
from shared.dashboard.server import create_app, run_dashboard
from tests.conftest import make_config
from tests.shared.dashboard_support import build_dashboard_fixture
from tests.shared.report_fixtures import NOW

TOKEN = "dash-7Yq2-very-secret-token"
DELAY = 0.05
PROTECTED = ["/", "/api/stats", "/api/keys", "/api/recent", "/api/usage?days=3", "/chart.png",
             "/static/dashboard.js"]


@pytest.fixture
async def client(sqlite_db, sqlite_url):
    config = build_dashboard_fixture(sqlite_url, token=TOKEN)
    app = create_app(config, clock=lambda: NOW, throttle=Throttle(base_delay=DELAY, max_delay=4 * DELAY))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_without_a_token_nothing_but_the_login_page_and_stylesheet(client):
    for path in PROTECTED:
        response = await client.get(path, allow_redirects=False)
        if path.startswith("/api/") or path == "/chart.png":
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await response.json())["error"] == "a token is required"
        elif path == "/":
            assert response.status == 303 and response.headers["Location"] == "/login"
        else:
            assert response.status in (303, 401), path
    assert (await client.get("/login")).status == 200
    assert (await client.get("/static/style.css")).status == 200


async def test_right_bearer_token_opens_everything(client):
    for path in PROTECTED:
        response = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}, allow_redirects=False)
        assert response.status == 200, path


async def test_wrong_token_is_refused_logged_without_the_token_and_slowed_down(client, caplog):
    caplog.set_level(logging.WARNING, logger="tokenpool.dashboard")
    waits = []
    for attempt in ("guess-1", TOKEN[:-1], TOKEN + "x", ""):
        started = time.monotonic()
        response = await client.get("/api/stats", headers={"Authorization": f"Bearer {attempt}"})
        waits.append(time.monotonic() - started)
        assert response.status == 401
        assert (await response.json())["error"] == "wrong token"
    # Each failure from the same address waits longer: 1x, 2x, 4x, then the cap.
    assert waits[0] >= DELAY and waits[1] >= 2 * DELAY and waits[2] >= 4 * DELAY and waits[3] >= 4 * DELAY
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 4 and "127.0.0.1" in rejected[0] and "/api/stats" in rejected[0]
    for message in rejected:
        assert "guess-1" not in message and TOKEN[:-1] not in message
    # The right token still works, and resets the count.
    ok = await client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200


async def test_other_authorization_schemes_are_wrong_tokens(client):
    response = await client.get("/api/keys", headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status == 401


async def test_login_form_sets_a_strict_httponly_session_cookie(client):
    wrong = await client.post("/login", data={"token": "nope"}, allow_redirects=False)
    assert wrong.status == 401 and "not right" in await wrong.text()
    assert COOKIE not in wrong.cookies

    response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/"
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert TOKEN not in header                                   # the cookie is not the token
    page = await client.get("/", allow_redirects=False)          # the client sends the cookie back
    assert page.status == 200 and "tokenpool" in await page.text()
    assert (await client.get("/api/stats")).status == 200


async def test_forged_cookie_is_refused(client):
    client.session.cookie_jar.update_cookies({COOKIE: TOKEN})
    response = await client.get("/api/stats")
    assert response.status == 401


async def test_login_page_never_shows_the_token(client):
    for response in (await client.get("/login"), await client.post("/login", data={"token": TOKEN[:10]})):
        assert TOKEN[:10] not in await response.text()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    check_bind(make_config(0, dashboard={"host": host}))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", ""])
def test_non_loopback_host_without_token_is_refused(host):
    assert not is_loopback(host)
    config = make_config(0, dashboard={"host": host})
    with pytest.raises(ConfigError) as error:
        check_bind(config)
    assert "'dashboard.token'" in str(error.value) and "test.toml" in str(error.value)
    check_bind(dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, token=TOKEN)))


def test_run_dashboard_refuses_before_opening_anything(tmp_path):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    config = make_config(1, url=url, dashboard={"host": "0.0.0.0", "port": 1})
    with pytest.raises(ConfigError, match="dashboard.token"):
        run_dashboard(config)
    assert not (tmp_path / "never.db").exists()


def test_throttle_forgets_and_caps():
    throttle = Throttle(base_delay=1.0, max_delay=3.0, forget_after=60.0)
    assert [throttle.failed("a") for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert throttle.failed("b") == 1.0
    throttle.succeeded("a")
    assert throttle.failed("a") == 1.0


def test_dashboard_settings_are_checked():
    with pytest.raises(ConfigError, match="'dashboard.refresh_seconds' must be positive"):
        make_config(0, dashboard={"refresh_seconds": 0})
    with pytest.raises(ConfigError, match="'dashboard.port' must be between 1 and 65535"):
        make_config(0, dashboard={"port": 70_000})


def _set_cookie(response) -> str:
    return response.headers["Set-Cookie"]


async def test_session_cookie_expires_and_is_not_secure_over_plain_http(client):
    response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    header = _set_cookie(response)
    assert "Max-Age=43200" in header                       # [dashboard] session_hours = 12
    assert "Secure" not in header
    # A proxy header is not believed unless the config says so.
    spoofed = await client.post("/login", data={"token": TOKEN}, allow_redirects=False,
                                headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in _set_cookie(spoofed)


async def test_session_cookie_is_secure_behind_a_trusted_tls_proxy(sqlite_db, sqlite_url):
    config = build_dashboard_fixture(sqlite_url, token=TOKEN)
    config = dataclasses.replace(config, dashboard=dataclasses.replace(
        config.dashboard, trust_forwarded_proto=True, session_hours=2))
    async with TestClient(TestServer(create_app(config, clock=lambda: NOW))) as client:
        behind = await client.post("/login", data={"token": TOKEN}, allow_redirects=False,
                                   headers={"X-Forwarded-Proto": "https"})
        plain = await client.post("/login", data={"token": TOKEN}, allow_redirects=False,
                                  headers={"X-Forwarded-Proto": "http"})
    assert "Secure" in _set_cookie(behind) and "Max-Age=7200" in _set_cookie(behind)
    assert "Secure" not in _set_cookie(plain)


async def test_session_cookie_is_secure_when_served_over_tls(sqlite_db, sqlite_url, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    config = build_dashboard_fixture(sqlite_url, token=TOKEN)
    server = TestServer(create_app(config, clock=lambda: NOW))
    await server.start_server(ssl=context)
    async with TestClient(server) as client:
        assert client.server.scheme == "https"
        response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False, ssl=False)
        assert response.status == 303
    assert "Secure" in _set_cookie(response) and "Max-Age=43200" in _set_cookie(response)
