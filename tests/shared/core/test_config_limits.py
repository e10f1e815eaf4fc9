"""Config limits are declared on the fields, match what the database and the clock hold,
and no value of any setting produces anything but a Config or a ConfigError."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core import config as config_module
from shared.core.accounting import CallRecord, record_call
from shared.core.config import Config, ConfigError, load_config, parse_config
from shared.core.config_limits import LIMIT, Limit, limit_of
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.pricing import Pricer
from tests.shared.books import assert_books_exact


def _scalar_fields(cls=Config, prefix=()) -> list[tuple[tuple[str, ...], dataclasses.Field, type]]:
    """(path, field, type) of every scalar setting, through nested sections, lists and tables."""
    out = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "path":
            continue
        hint = hints[field.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
        item = typing.get_args(hint)[-1] if origin in (list, dict) else None
        if dataclasses.is_dataclass(hint):
            out += _scalar_fields(hint, prefix + (field.name,))
        elif item is not None and dataclasses.is_dataclass(item):
            out += _scalar_fields(item, prefix + (field.name, "[]" if origin is list else "{}"))
        else:
            out.append((prefix + (field.name,), field, hint))
    return out


SCALARS = _scalar_fields()


def _raw(path: tuple[str, ...], value) -> dict:
    """A raw config (as TOML gives it) that sets the setting at `path` to `value`."""
    if path[0] == "keys":
        key = {"label": "k", "api_key": "sk-fuzz-0000000000000000"}
        key[path[2]] = value
        return {"keys": [key]}
    if path[1:2] == ("{}",) or (len(path) > 2 and path[2:3] == ("{}",)):
        head, rest = path[:path.index("{}")], path[path.index("{}") + 1:]
        raw: dict = {"keys": [{"label": "k", "api_key": "sk-fuzz-0000000000000000"}]}
        node = raw
        for part in head:
            node = node.setdefault(part, {})
        node["k"] = {rest[0]: value}     # budgets.keys."k" names the key above; pricing.overrides."k" a model
        return raw
    raw = {}
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return raw


def test_every_setting_declares_its_limits():
    """Numbers have both bounds; text has a length within its column (or a list of choices)."""
    missing = []
    for path, field, kind in SCALARS:
        limit = limit_of(field)
        name = ".".join(path)
        if kind is bool:
            continue
        if LIMIT not in field.metadata:
            missing.append(f"{name}: no setting(...) declaration")
        elif kind in (int, float, Decimal) and (limit.low is None or limit.high is None):
            missing.append(f"{name}: needs low= and high=")
        elif kind is str and not limit.choices and limit.max_length is None:
            missing.append(f"{name}: needs max_length= or choices=")
        elif typing.get_origin(kind) is list and limit.max_length is None and limit.high is None:
            missing.append(f"{name}: needs list_setting(max_length=...) (or high=)")
    assert not missing, "settings without declared limits (see shared/core/config_limits.py):\n" + "\n".join(missing)


def test_the_defaults_are_within_their_own_limits():
    for path, field, _kind in SCALARS:
        assert limit_of(field).problem(field.default) is None, ".".join(path)


REFUSED = [
    ("[autoreply]\nmax_output_tokens = -5\n", "'autoreply.max_output_tokens' must be between 1 and 1,000,000, not -5"),
    ("[client]\ntimeout_seconds = -1.0\n", "'client.timeout_seconds' must be positive and at most 3600"),
    ("[database]\nbusy_timeout_seconds = -3\n", "'database.busy_timeout_seconds' must be positive"),
    ('log_level = "LOUD"\n', "'log_level' must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', not 'LOUD'"),
    ("[worker]\ntick_seconds = inf\n", "'worker.tick_seconds' must be a finite number, not inf"),
    ("[worker]\nlease_seconds = nan\n", "'worker.lease_seconds' must be a finite number, not nan"),
    ("[database]\nbusy_timeout_seconds = -inf\n", "'database.busy_timeout_seconds' must be a finite number"),
    ("[worker]\nretention_days = 10000000000\n", "'worker.retention_days' must be between 1 and 36600"),
    ("[autoreply]\ncooldown_seconds = 1000000000000000\n", "'autoreply.cooldown_seconds' must be between 0 and 604800"),
    ('[pricing.overrides."m"]\ninput_per_mtok = 1e30\n', "'pricing.overrides.m.input_per_mtok' must be between 0 and"),
    ('[pricing.overrides."m"]\noutput_per_mtok = nan\n',
     "'pricing.overrides.m.output_per_mtok' must be a finite number"),
    ("[budgets]\ndaily_cost_usd = nan\n", "'budgets.daily_cost_usd' must be a finite number"),
    ("[budgets]\nmonthly_cost_usd = inf\n", "'budgets.monthly_cost_usd' must be a finite number"),
    ("[pool]\ndaily_token_limit = 9223372036854775808\n", "'pool.daily_token_limit' must be positive and at most"),
    ('[[keys]]\napi_key = "sk-1"\ndaily_token_limit = 18446744073709551616\n',
     "'keys[0].daily_token_limit' must be positive and at most 1,000,000,000,000,000"),
    ("[bot]\nname = \"" + "b" * 100 + "\"\n", "'bot.name' must be at most 64 characters long (it is 100)"),
    ('[[keys]]\napi_key = "sk-1"\nlabel = "' + "l" * 1000 + '"\n', "'keys[0].label' must be at most 100 characters"),
    ('[bot]\nname = "  "\n', "'bot.name' must be non-empty text"),
    ('[bot]\nname = "a\\u0000b"\n', "'bot.name' must be text without NUL characters"),
    ("[worker]\nname = \"" + "w" * 65 + "\"\n", "'worker.name' must be at most 64 characters"),
    ('[client]\ndefault_model = "' + "m" * 101 + '"\n', "'client.default_model' must be at most 100 characters"),
    ("[bot]\napi_id = -1\n", "'bot.api_id' must be between 0 and 2,147,483,647"),
    ("[dashboard]\nport = 0\n", "'dashboard.port' must be between 1 and 65535, not 0"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested far too deeply"),
    ("[client]\ntimeout_seconds = " + "9" * 400 + "\n", "'client.timeout_seconds' is far too large"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=[m.split("'")[1] if "'" in m else m for _, m in REFUSED])
def test_values_the_database_or_the_clock_cannot_hold_are_refused_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert len(str(info.value)) < 400        # one readable line, never the whole value


def test_log_level_is_case_insensitive():
    assert parse_config({"log_level": "debug"}, env={}).log_level == "debug"


def test_a_secret_that_breaks_a_limit_is_not_shown():
    secret = "sk-" + "s" * 2000
    with pytest.raises(ConfigError) as info:
        parse_config({"keys": [{"label": "a", "api_key": secret}]}, env={})
    assert "'keys[0].api_key' must be at most" in str(info.value) and "sss" not in str(info.value)


# --- the fuzz: every setting, any value TOML can hold -----------------------------------------

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e30, -0.0, 1e-320, 2.0**63, 10**19]),
    st.text(max_size=30),
    st.text(min_size=60, max_size=300),
    st.sampled_from(["", " ", "\x00", "LOUD", "rolling", "utc-day", "sticky", "INFO", "http://x", "09:00-18:00",
                     "1e30", "nan", "inf", "-5", "x" * 5000]),
    st.datetimes(),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.sampled_from(SCALARS), value=toml_values, other=st.sampled_from(SCALARS), value2=toml_values)
def test_config_fuzz_never_produces_a_traceback(choice, value, other, value2):
    """Bounded run time: a fixed number of examples, each a parse without I/O."""
    raw = _raw(choice[0], value)
    extra = _raw(other[0], value2)
    for section, content in extra.items():      # two settings at once, where they do not collide
        raw.setdefault(section, content)
    try:
        config = parse_config(raw, "fuzz.toml", env={})
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ") and "\n" not in str(exc)
        assert len(str(exc)) < 600
        return
    _assert_fits(config)


def _assert_fits(config: Config) -> None:
    """An accepted config holds only values the database and the clock take."""
    for path, field, kind in SCALARS:
        for value in _values_at(config, path):
            if value is None or kind is bool:
                continue
            assert limit_of(field).problem(value) is None, (path, value)
            if kind is float:
                dt.timedelta(seconds=value)          # every float setting is a duration: it fits the clock
    assert all(len(k.label) <= 100 and len(k.base_url) <= 500 for k in config.keys)


def _values_at(obj, path):
    if not path:
        yield obj
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        for item in obj:
            yield from _values_at(item, rest)
    elif head == "{}":
        for item in obj.values():
            yield from _values_at(item, rest)
    else:
        yield from _values_at(getattr(obj, head), rest)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='[]{}="abc.=\n 1\\', max_size=200))
def test_any_file_text_loads_or_is_refused_with_a_message(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(text)
    try:
        load_config(path, env={})
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")


# --- the limits fit the columns of every backend ---------------------------------------------

def _at_the_limits() -> Config:
    """A config with every key and bot string at its longest and every number at its largest."""
    def top(cls, name):
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        limit: Limit = limit_of(field)
        return limit.high if limit.high is not None else limit.max_length
    model = "m" * top(config_module.ClientConfig, "default_model")
    price = str(top(config_module.ModelPrice, "input_per_mtok"))
    raw = {
        "bot": {"name": "b" * top(config_module.BotConfig, "name")},
        "worker": {"name": "w" * top(config_module.WorkerConfig, "name")},
        "client": {"default_model": model},
        "pool": {"daily_token_limit": top(config_module.PoolConfig, "daily_token_limit")},
        "pricing": {"overrides": {model: {"input_per_mtok": price, "output_per_mtok": price}}},
        "keys": [{"label": f"{i}" + "l" * (top(config_module.KeyConfig, "label") - 1),
                  "api_key": f"sk-limits-{i}-0000000000000000",
                  "base_url": "https://" + "u" * (top(config_module.KeyConfig, "base_url") - 8),
                  "daily_token_limit": top(config_module.KeyConfig, "daily_token_limit")} for i in range(3)],
    }
    return parse_config(raw, "limits.toml", env={})


def test_settings_at_their_limits_are_stored_and_recorded_on_every_backend(db):
    config = _at_the_limits()
    ring = sync_keys(config)
    output = top_tokens = 1_000_000       # autoreply.max_output_tokens at its limit, and as much input
    for key_id in ring.ids():
        key = ApiKey.get_by_id(key_id)
        record_call(CallRecord(key_id=key_id, bot=config.bot.name, operation="autoreply",
                               model=config.client.default_model, input_tokens=top_tokens,
                               output_tokens=output, call_id=f"limits-{key_id}"),
                    anchor=key.window_anchor, pricer=Pricer(config.pricing))
    assert {k.label for k in ApiKey.select()} == {k.label for k in config.keys}
    event = UsageEvent.select().first()
    assert (event.bot, event.model) == (config.bot.name, config.client.default_model)
    assert event.cost_nanousd > 0
    assert_books_exact()
