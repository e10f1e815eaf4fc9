import textwrap
from pathlib import Path

import pytest

from shared.core.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def _load(tmp_path, text, env=None):
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, env=env or {})


def _error(tmp_path, text, env=None) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, env)
    return str(info.value)


def test_example_config_loads_with_its_documented_defaults():
    config = load_config(EXAMPLE, env={})
    assert config.pool.daily_token_limit == 2_500_000
    assert config.pool.low_threshold == 500_000
    assert config.pool.reset == "rolling"
    assert config.keys == []
    assert config.database_url.startswith("sqlite:///")


def test_missing_file_gives_defaults_unless_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).keys == []
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_keys_read_secrets_from_env_and_inline(tmp_path):
    config = _load(tmp_path, """
        [[keys]]
        label = "a"
        api_key_env = "KEY_A"
        [[keys]]
        api_key = "sk-inline-0000000000001234"
        daily_token_limit = 100
        reset = "utc-day"
        """, env={"KEY_A": "sk-from-env-000000000009999"})
    assert [k.label for k in config.keys] == ["a", "key2"]
    assert config.keys[0].secret == "sk-from-env-000000000009999"
    assert config.key_limit(config.keys[0]) == 2_500_000 and config.key_limit(config.keys[1]) == 100
    assert config.key_reset(config.keys[1]) == "utc-day"


def test_secrets_never_appear_in_repr(tmp_path):
    config = _load(tmp_path, """
        [bot]
        api_hash = "hash-secret-value"
        [dashboard]
        token = "dash-secret-value"
        [[keys]]
        api_key = "sk-inline-secret-value-1234"
        """)
    text = repr(config)
    for secret in ("sk-inline-secret-value-1234", "hash-secret-value", "dash-secret-value"):
        assert secret not in text


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path):
    config = _load(tmp_path, 'data_dir = "state"\n')
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'tokenpool.db'}"


def test_database_url_env_overrides_the_file(tmp_path):
    config = _load(tmp_path, "", env={"TOKENPOOL_DATABASE_URL": "postgresql://db/x"})
    assert config.database_url == "postgresql://db/x"


@pytest.mark.parametrize("text, env, message", [
    ('[[keys]]\nlabel = "a"\napi_key_env = "NOPE"\n', {},
     "keys[0] ('a'): environment variable 'NOPE' named by 'api_key_env' is not set"),
    ('[[keys]]\nlabel = "a"\n', {}, "keys[0] ('a'): missing 'api_key_env' (or inline 'api_key')"),
    ('[[keys]]\napi_key = "sk-1"\napi_key_env = "X"\n', {"X": "sk-2"},
     "keys[0]: give either 'api_key' or 'api_key_env', not both"),
    ('[[keys]]\napi_key = "sk-1"\ndaily_token_limit = -5\n', {},
     "'keys[0].daily_token_limit' must be positive and at most 1,000,000,000,000,000, not -5"),
    ('[[keys]]\nlabel = "a"\napi_key = "sk-1"\n[[keys]]\nlabel = "a"\napi_key = "sk-2"\n', {},
     "keys[1]: duplicate label 'a' (also keys[0])"),
    ('[[keys]]\napi_key = "sk-1"\n[[keys]]\napi_key = "sk-1"\n', {},
     "keys[1]: duplicate key: the same API key as keys[0]"),
    ('[[keys]]\napi_key = "sk-1"\ndaily_token_limt = 5\n', {},
     "unknown key 'keys[0].daily_token_limt' (did you mean 'daily_token_limit'?)"),
    ('[pool]\nlow_treshold = 5\n', {}, "unknown key 'pool.low_treshold' (did you mean 'low_threshold'?)"),
    ('[pol]\n', {}, "unknown key 'pol' (did you mean 'pool'?)"),
    ('[pool]\ndaily_token_limit = "lots"\n', {}, "'pool.daily_token_limit' must be a whole number, not 'lots'"),
    ('[pool]\nreset = "weekly"\n', {}, "'pool.reset' must be one of 'rolling', 'utc-day', not 'weekly'"),
    ('[worker]\npolicy = "random"\n', {}, "'worker.policy' must be one of"),
    ('[[keys]]\napi_key = "sk-1"\nbase_url = "localhost:8000"\n', {},
     "'keys[0].base_url' must start with http:// or https://"),
    ('[autoreply]\nenabled = "yes"\n', {}, "'autoreply.enabled' must be true or false, not 'yes'"),
    ('[dashboard]\nport = 70000\n', {}, "'dashboard.port' must be between 1 and 65535"),
    ('[autoreply.media_by_kind]\nvoice = "vision"\n', {},
     "'autoreply.media_by_kind.voice' must be one of 'ignore', 'text', not 'vision'"),
    ('[autoreply]\nimage_detail = "ultra"\n', {}, "'autoreply.image_detail' must be one of 'low', 'high', 'auto'"),
    ('[pricing.overrides.m]\ninput_per_mtok = -1\n', {},
     "'pricing.overrides.m.input_per_mtok' must be between 0 and 100000, not -1"),
    ('keys = 5\n', {}, "'keys' must be a list"),
    ('[pool\n', {}, "not valid TOML"),
])
def test_bad_config_names_the_file_and_the_key(tmp_path, text, env, message):
    error = _error(tmp_path, text, env)
    assert error.startswith(str(tmp_path / "config.toml") + ": ")
    assert message in error


def test_bad_config_error_never_shows_the_secret(tmp_path):
    error = _error(tmp_path, '[[keys]]\napi_key = "sk-secret-abcdefghijkl"\n[[keys]]\n'
                             'api_key = "sk-secret-abcdefghijkl"\n')
    assert "sk-secret-abcdefghijkl" not in error


def test_parse_config_accepts_pricing_overrides():
    config = parse_config({"pricing": {"overrides": {"local": {"input_per_mtok": 0.1, "output_per_mtok": "0.4"}}}},
                          env={})
    price = config.pricing.overrides["local"]
    assert str(price.input_per_mtok) == "0.1" and str(price.output_per_mtok) == "0.4"
