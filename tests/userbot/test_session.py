"""Credentials, the session file and the command line, without a Telegram account."""
import inspect
import stat

import pytest
from pyrogram import Client

from shared.core.config import parse_config
from tests.userbot.recording import make_user
from userbot.__main__ import main
from userbot.session import (
    SetupError,
    TelegramCredentials,
    login,
    make_client,
    require_session,
    session_path,
    telegram_credentials,
)


def config_at(tmp_path, **bot):
    return parse_config({"data_dir": "data", "bot": bot}, str(tmp_path / "config.toml"), env={})


def test_credentials_from_config_and_its_env_var(tmp_path):
    config = config_at(tmp_path, api_id=12345, api_hash_env="MY_HASH", session_string_env="MY_SESSION")
    creds = telegram_credentials(config, {"MY_HASH": "abc123", "MY_SESSION": "SESSION=="})
    assert (creds.api_id, creds.api_hash, creds.session_string) == (12345, "abc123", "SESSION==")
    assert "abc123" not in repr(creds) and "SESSION" not in repr(creds)


def test_credentials_from_the_environment(tmp_path):
    creds = telegram_credentials(config_at(tmp_path), {"TOKENPOOL_API_ID": " 777 ", "TOKENPOOL_API_HASH": "h"})
    assert (creds.api_id, creds.api_hash, creds.session_string) == (777, "h", "")


@pytest.mark.parametrize("bot, env, message", [
    ({}, {}, "Telegram api_id and api_hash missing: get them at https://my.telegram.org, then set [bot] api_id "
             "and api_hash_env in {path}, or the environment variables TOKENPOOL_API_ID and TOKENPOOL_API_HASH"),
    ({"api_id": 5}, {}, "Telegram api_hash missing"),
    ({"api_id": 5, "api_hash_env": "NOPE"}, {}, "{path}: environment variable 'NOPE' named by 'bot.api_hash_env' "
                                                "is not set"),
    ({}, {"TOKENPOOL_API_ID": "abc", "TOKENPOOL_API_HASH": "h"}, "TOKENPOOL_API_ID must be a number"),
    ({"api_id": 5, "api_hash": "h", "session_string_env": "S"}, {},
     "{path}: environment variable 'S' named by 'bot.session_string_env' is not set"),
])
def test_missing_credentials_say_where_to_put_them(tmp_path, bot, env, message):
    config = config_at(tmp_path, **bot)
    with pytest.raises(SetupError) as caught:
        telegram_credentials(config, env)
    assert message.format(path=config.path) in str(caught.value)


async def test_client_keeps_a_persistent_session_and_asks_for_missed_updates(tmp_path):
    config = config_at(tmp_path, name="alt-bot")
    client = make_client(config, TelegramCredentials(1, "h"))
    assert client.name == "alt-bot" and str(client.workdir) == config.data_dir and not client.in_memory
    if "skip_updates" in inspect.signature(Client.__init__).parameters:   # kurigram
        assert client.skip_updates is False
    from_string = make_client(config, TelegramCredentials(1, "h", "SESSIONSTRING"))
    assert from_string.in_memory and from_string.session_string == "SESSIONSTRING"


def test_the_bot_refuses_to_start_without_a_session(tmp_path):
    config = config_at(tmp_path)
    with pytest.raises(SetupError, match="run `tokenpool-bot login` first"):
        require_session(config, TelegramCredentials(1, "h"))
    require_session(config, TelegramCredentials(1, "h", "SESSIONSTRING"))
    session_path(config).parent.mkdir(parents=True)
    session_path(config).touch()
    require_session(config, TelegramCredentials(1, "h"))


def test_bot_names_that_are_no_file_names_are_refused(tmp_path):
    with pytest.raises(SetupError, match="'bot.name' is used as the session file name"):
        session_path(config_at(tmp_path, name="../evil"))


class OfflineLogin(Client):
    """A real Client whose start() opens its real session storage but skips the network
    (where a real one would ask for the phone number, the code and the 2FA password)."""

    async def start(self):
        await self.storage.open()
        await self.storage.user_id(99)
        self.me = make_user(99, "Owner", is_self=True, username="owner")
        return self

    async def stop(self, *args, **kwargs):
        await self.storage.close()
        return self

    async def export_session_string(self):
        return "EXPORTED"


async def test_login_stores_the_session_for_the_owner_only(tmp_path):
    config = config_at(tmp_path)
    line = await login(config, TelegramCredentials(1, "h"), client_class=OfflineLogin)
    path = session_path(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert line == f"logged in as @owner (id 99); session saved to {path} (mode 0600)"
    line = await login(config, TelegramCredentials(1, "h"), client_class=OfflineLogin, print_session_string=True)
    assert line.endswith("put it in TOKENPOOL_SESSION_STRING):\nEXPORTED")


def test_command_line_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    for name in ("TOKENPOOL_API_ID", "TOKENPOOL_API_HASH", "TOKENPOOL_SESSION_STRING"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.toml"
    path.write_text('[bot]\nname = "main"\n')
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("tokenpool-bot: Telegram api_id and api_hash missing")
    path.write_text('[bot]\napi_id = 5\napi_hash = "h"\n')
    assert main(["--config", str(path)]) == 2
    assert "no Telegram session at" in capsys.readouterr().err
    path.write_text('[bot]\napi_idd = 5\n')
    assert main(["--config", str(path), "login"]) == 2
    assert "unknown key 'bot.api_idd' (did you mean 'api_id'?)" in capsys.readouterr().err
