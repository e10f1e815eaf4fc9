"""Malformed requests, sent on raw sockets as an attacker would: each is answered 400, 401 or
404 with at most one log line, no traceback, and the dashboard token never reaches the log.
(aiohttp's 400 answer quotes the bad line back to its sender; that is no log.)"""
from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestServer

from shared.dashboard.security import Throttle
from shared.dashboard.server import create_app
from tests.shared.dashboard_support import build_dashboard_fixture
from tests.shared.report_fixtures import NOW

TOKEN = "dash-Zk41-never-in-any-log"


@pytest.fixture
async def server(sqlite_db, sqlite_url):
    config = build_dashboard_fixture(sqlite_url, token=TOKEN)
    app = create_app(config, clock=lambda: NOW, throttle=Throttle(base_delay=0.0, max_delay=0.0))
    async with TestServer(app) as server:
        yield server


async def raw_request(server, request: bytes) -> bytes:
    """Send bytes as they are; return everything the server answers before closing."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()          # the server answers, then closes (Connection: close)
    writer.close()
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get(path: bytes, *headers: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"\r\n"


MALFORMED = {
    "NUL in the bearer header": (get(b"/api/stats", b"Authorization: Bearer " + TOKEN.encode() + b"\x00"), 400),
    "NUL in another header": (get(b"/api/stats", b"X-Note: " + TOKEN.encode() + b"\x00x"), 400),
    "token in a header with a bad name": (get(b"/api/stats", b"Bad Name: " + TOKEN.encode()), 400),
    "non-ASCII bearer token": (get(b"/api/stats", "Authorization: Bearer tökén-ü".encode()), 401),
    "latin-1 bearer token": (get(b"/api/stats", b"Authorization: Bearer t\xf6ken"), 401),
    "5,000-character static path": (get(b"/static/" + b"a" * 5000, b"Authorization: Bearer " + TOKEN.encode()),
                                    404),
    "5,000-character static path, no token": (get(b"/static/" + b"a" * 5000), 303),   # to the login form
    "NUL in the path": (get(b"/static/a%00b", b"Authorization: Bearer " + TOKEN.encode()), 404),
}


@pytest.mark.parametrize("what", MALFORMED)
async def test_malformed_request_is_a_4xx_with_one_log_line_and_no_secret(server, caplog, what):
    request, expected = MALFORMED[what]
    caplog.set_level(logging.DEBUG)
    answer = await raw_request(server, request)
    assert status_of(answer) == expected, answer[:300]
    log_text = caplog.text
    assert TOKEN not in log_text and TOKEN[5:15] not in log_text
    assert "Traceback" not in log_text
    # (The test server keeps aiohttp's access log, which `tokenpool dashboard` turns off.)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO and r.name != "aiohttp.access"]
    assert len(lines) <= 1, [r.getMessage() for r in lines]
