"""The offline OpenAI simulator, driven by the real openai client (async and sync) and run
as `tokenpool sim` in a real process."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from shared.ai.rate_limits import rate_limit_snapshot
from shared.ai.token_estimates import estimate_prompt_tokens
from shared.core.keys import fingerprint
from shared.tools.simulator import Fault, Simulator, SimulatorError, parse_fault

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-sim-test-" + "a" * 24 + "0001"
OTHER = "sk-sim-test-" + "b" * 24 + "0002"
HI = [{"role": "user", "content": "hi"}]


def client(sim, key=KEY):
    return openai.AsyncOpenAI(api_key=key, base_url=sim.base_url, max_retries=0)


async def test_answers_with_usage_and_rate_limit_headers():
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        raw = await api.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        completion = raw.parse()
        now = dt.datetime(2026, 1, 1)
        snapshot = rate_limit_snapshot(raw.headers, now)
    usage = completion.usage
    assert completion.choices[0].message.content and completion.choices[0].finish_reason == "stop"
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert (snapshot.limit_requests, snapshot.remaining_requests) == (5000, 4999)
    assert snapshot.remaining_tokens == 2_000_000 - usage.total_tokens
    assert now < snapshot.reset_requests_at < now + dt.timedelta(seconds=1)
    assert sim.requests_by_fingerprint == {fingerprint(KEY): 1}


async def test_streams_with_usage_in_a_final_chunk_only_when_asked():
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        with_usage = [c async for c in await api.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True})]
        without = [c async for c in await api.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                                       stream=True)]
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in with_usage[:-1])
    assert with_usage[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in without) and without[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in with_usage[:-1])
    assert text == "".join(c.choices[0].delta.content or "" for c in without)


async def test_enforces_its_own_token_allowance():
    async with Simulator({KEY: 100}) as sim, client(sim) as api:
        used = 0
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(20):
                used += (await api.chat.completions.create(model="gpt-4o-mini", messages=HI)).usage.total_tokens
        assert caught.value.code == "insufficient_quota"
        assert used >= 100 and sim.stats(KEY).used == used


async def test_enforces_requests_per_minute_with_retry_after():
    async with Simulator({KEY: None}, rpm=2) as sim, client(sim) as api:
        await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        raw = await api.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as caught:
            await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.code == "rate_limit_exceeded"
    assert 55 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert "requests per min" in caught.value.message


@pytest.mark.parametrize("fault, error, code", [
    (Fault.rate_limit(2), openai.RateLimitError, "rate_limit_exceeded"),
    (Fault.quota(), openai.RateLimitError, "insufficient_quota"),
    (Fault.invalid(), openai.AuthenticationError, "invalid_api_key"),
    (Fault.server_error(503), openai.InternalServerError, None),
])
async def test_scripted_faults_come_once_then_normal_service(fault, error, code):
    async with Simulator({KEY: None, OTHER: None}) as sim, client(sim) as api:
        sim.script(KEY, fault)
        with pytest.raises(error) as caught:
            await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert caught.value.code == code
        await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert sim.requests_for(KEY) == 2 and sim.requests_for(OTHER) == 0


async def test_standing_fault_until_cleared_and_scripts_come_first():
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        sim.set_fault(KEY, Fault.invalid())
        sim.script(KEY, Fault.ok())
        await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        for _ in range(2):
            with pytest.raises(openai.AuthenticationError):
                await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        sim.set_fault(KEY, None)
        await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert sim.stats(KEY).ok == 2


async def test_cut_stream_breaks_the_connection():
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        sim.script(KEY, Fault.cut(3))
        received = []
        with pytest.raises(openai.APIConnectionError):
            async for chunk in await api.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True):
                received.append(chunk)
        assert len(received) == 3


async def test_unknown_key_gets_401_naming_only_the_masked_key(caplog):
    caplog.set_level(logging.DEBUG)
    async with Simulator({KEY: None}) as sim, client(sim, OTHER) as api:
        with pytest.raises(openai.AuthenticationError) as caught:
            await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert "sk-…0002" in caught.value.message and OTHER not in caught.value.message
    assert all(OTHER not in r.getMessage() for r in caplog.records)
    assert fingerprint(OTHER) not in sim.requests_by_fingerprint   # unknown keys are not stored


async def test_accepts_any_key_when_asked():
    async with Simulator(accept_unknown_keys=True, default_allowance=10_000) as sim, client(sim, OTHER) as api:
        await api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert sim.requests_by_fingerprint == {fingerprint(OTHER): 1}
        assert sim.stats(OTHER).allowance == 10_000


async def test_bad_requests_get_openai_style_errors():
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        with pytest.raises(openai.NotFoundError) as unknown_model:
            await api.chat.completions.create(model="gpt-0", messages=HI)
        with pytest.raises(openai.BadRequestError) as empty:
            await api.chat.completions.create(model="gpt-4o-mini", messages=[])
        models = await api.models.list()
    assert unknown_model.value.code == "model_not_found" and "gpt-0" in unknown_model.value.message
    assert empty.value.param == "messages"
    assert "gpt-4o-mini" in [m.id for m in models.data]


async def test_prompt_caching_and_reasoning_tokens():
    system = {"role": "system", "content": "Rules. " * 1200}
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        first = await api.chat.completions.create(model="gpt-4o-mini", messages=[system, *HI])
        second = await api.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[system, {"role": "user", "content": "other"}])
        thinking = await api.chat.completions.create(model="o4-mini", messages=HI)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached < second.usage.prompt_tokens
    reasoning = thinking.usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0 and thinking.usage.completion_tokens > reasoning


def test_serves_sync_callers_from_a_thread():
    sim = Simulator({KEY: None})
    base_url = sim.start_in_thread()
    try:
        api = openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=0)
        assert api.chat.completions.create(model="gpt-4o-mini", messages=HI).usage.total_tokens > 0
        sim.script(KEY, Fault.quota())
        with pytest.raises(openai.RateLimitError):
            api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        api.close()
    finally:
        sim.stop()
    assert sim.requests_for(KEY) == 2


def test_a_busy_port_is_reported_to_the_starting_thread():
    first = Simulator()
    first.start_in_thread()
    try:
        second = Simulator(port=first.port)
        with pytest.raises(OSError):
            second.start_in_thread()
        second.stop()                       # nothing to stop; must not raise
    finally:
        first.stop()


@pytest.mark.parametrize("text, fault", [
    ("quota", Fault.quota()), ("rate_limit:2.5", Fault.rate_limit(2.5)), ("server_error:502", Fault.server_error(502)),
    ("slow:3", Fault.slow(3)), ("cut:4", Fault.cut(4)), ("invalid", Fault.invalid()),
])
def test_parse_fault(text, fault):
    assert parse_fault(text) == fault


@pytest.mark.parametrize("text", ["explode", "slow:soon", "quota:3"])
def test_parse_fault_refuses_nonsense(text):
    with pytest.raises(SimulatorError):
        parse_fault(text)


def test_tokenpool_sim_runs_as_a_process(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[[keys]]\nlabel = "k1"\napi_key = "{KEY}"\ndaily_token_limit = 50\n'
                      f'[[keys]]\nlabel = "k2"\napi_key = "{OTHER}"\n')
    process = subprocess.Popen([sys.executable, "-m", "shared.tools.cli", "--config", str(config), "sim", "--port", "0",
                                "--json", "--strict", "--fault", "k2=invalid"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        base_url = json.loads(process.stdout.readline())["base_url"]
        api = openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=0)
        with pytest.raises(openai.RateLimitError) as quota:   # the config's 50-token limit is its allowance
            for _ in range(10):
                api.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert quota.value.code == "insufficient_quota"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key=OTHER, base_url=base_url, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=HI)
        with pytest.raises(openai.AuthenticationError):    # --strict: keys outside the config are refused
            openai.OpenAI(api_key="sk-stranger", base_url=base_url, max_retries=0).models.list()
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert KEY not in err and OTHER not in err


def test_tokenpool_sim_refuses_a_fault_for_an_unknown_label(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[[keys]]\nlabel = "k1"\napi_key = "{KEY}"\n')
    done = subprocess.run([sys.executable, "-m", "shared.tools.cli", "--config", str(config), "sim", "--port", "0",
                           "--fault", "k9=quota"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "no key labelled 'k9'" in done.stderr


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60          # enough of a JPEG for the simulator's check


def _photo_message(data: bytes = JPEG, detail: str = "low", role: str = "user") -> dict:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return {"role": role, "content": [{"type": "text", "text": "what is this?"},
                                      {"type": "image_url", "image_url": {"url": url, "detail": detail}}]}


async def test_image_parts_are_accepted_and_counted_like_the_bots_estimate():
    messages = [_photo_message()]
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        mini = await api.chat.completions.create(model="gpt-4o-mini", messages=messages)
        big = await api.chat.completions.create(model="gpt-4o", messages=messages)
    assert mini.usage.prompt_tokens == estimate_prompt_tokens(messages, ("gpt-4o-mini",)) > 2_833
    assert 85 < big.usage.prompt_tokens == estimate_prompt_tokens(messages, ("gpt-4o",)) < 200
    assert sim.stats(KEY).images == 2


@pytest.mark.parametrize("model, message, problem", [
    ("o3-mini", _photo_message(), "only supported by certain models"),
    ("gpt-4o", _photo_message(role="assistant"), "only allowed for messages with role 'user'"),
    ("gpt-4o", _photo_message(b"not a picture at all"), "unsupported image"),
    ("gpt-4o", _photo_message(detail="medium"), "Supported values are"),
    ("gpt-4o", {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}]},
     "base64-encoded data URL"),
])
async def test_bad_image_parts_answer_400_like_openai(model, message, problem):
    async with Simulator({KEY: None}) as sim, client(sim) as api:
        with pytest.raises(openai.BadRequestError) as caught:
            await api.chat.completions.create(model=model, messages=[message])
    assert problem in caught.value.message and sim.stats(KEY).images == 0
