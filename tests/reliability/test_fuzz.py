"""Fuzz the two places where users type things: the Saved Messages command parser (with the
real command registry and database) and the config loader. No exception escapes, and
every rejection says something."""
import asyncio
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.config import ConfigError, parse_config
from shared.core.models import utcnow
from tests.conftest import make_config
from userbot.commands import CommandContext, Reply, default_registry, run_command
from userbot.state import Store

REGISTRY = default_registry()
NAMES = [c.name for c in REGISTRY] + ["", "nope", "STATS", "help!", "1up"]
WORDS = st.one_of(st.sampled_from(["on", "off", "status", "csv", "json", "by", "day", "model", "chat", "op",
                                   "-1", "0", "5", "99999999999999999999", "1e9", "@alice_w", "@x", "nan",
                                   "1441", "365", "367", "<b>", "&amp;", "'", '"']),
                  st.text(alphabet=string.printable + "ёé😀\u200b", max_size=12))
COMMANDS = st.builds(lambda prefix, name, args: prefix + name + (" " + " ".join(args) if args else ""),
                     st.sampled_from([".", "", "..", "!", " ."]), st.sampled_from(NAMES),
                     st.lists(WORDS, max_size=4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(COMMANDS, st.text(max_size=40)), in_chat=st.booleans())
def test_no_command_text_crashes_and_every_rejection_says_why(sqlite_db, sqlite_url, text, in_chat):
    config = make_config(2, url=sqlite_url)   # .chart and .export open it from a helper process
    base = CommandContext(bot="main", config=config, store=Store("main"), now=utcnow(),
                          chat_id=4242 if in_chat else None, chat_label="Alice" if in_chat else "")

    async def no_such_user(username):
        return None

    reply = asyncio.run(run_command(REGISTRY, text, base, resolve=no_such_user, run_blocking=_inline))
    if reply is None:
        return
    assert isinstance(reply, Reply)
    reply.discard_files()                     # .chart/.export: the helper's temporary file
    assert reply.text.strip() or reply.document or reply.photo
    assert "failed; the bot's log has the details" not in reply.text, f"{text!r} raised inside its handler"
    if reply.text.startswith("⚠️"):
        assert "Usage:" in reply.text or "database" in reply.text


async def _inline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


SECTIONS = ["database", "pool", "client", "bot", "autoreply", "worker", "budgets", "dashboard", "pricing"]
VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                                st.floats(allow_nan=True), st.text(max_size=20)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.text(max_size=12), inner, max_size=3)),
                      max_leaves=8)
KEYS = st.dictionaries(st.sampled_from(["label", "api_key", "api_key_env", "daily_token_limit", "base_url",
                                        "reset", "enabled", "limit"]), VALUES, max_size=5)
RAW = st.fixed_dictionaries({}, optional={
    **{name: st.dictionaries(st.text(max_size=20), VALUES, max_size=4) for name in SECTIONS},
    "keys": st.one_of(st.lists(KEYS, max_size=3), VALUES),
    "data_dir": VALUES, "log_level": VALUES, "surprise": VALUES})


@settings(max_examples=500, deadline=None)
@given(raw=RAW)
def test_no_config_crashes_the_loader_and_every_rejection_names_the_file(raw):
    raw = {k: v for k, v in raw.items() if v is not None}   # TOML has no null
    try:
        parse_config(raw, "fuzz.toml", env={"SET": "sk-from-env-1234567890"})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and len(message) > len("fuzz.toml: ") + 5
