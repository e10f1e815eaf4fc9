"""Several Telegram accounts in one bot process: configs, sessions, and two accounts running
side by side over one database thread (with Pyrogram clients that record instead of connecting)."""
import asyncio
import dataclasses

import pytest

from shared.core.config import ConfigError
from shared.core.models import UsageEvent
from tests.conftest import make_config
from tests.shared.client_fixtures import sim_config
from tests.userbot.recording import ALICE_ID, incoming, make_user
from tests.userbot.test_run import OfflineBot, eventually
from userbot.accounts import account_configs, check_sessions
from userbot.app import run_bots
from userbot.session import TelegramCredentials

ALICE = make_user(ALICE_ID, "Alice", is_contact=True)
BOB = make_user(2002, "Bob", is_contact=True)


def _first(tmp_path):
    path = tmp_path / "main.toml"
    path.write_text('[database]\nurl = "sqlite:///' + str(tmp_path / "pool.db") + '"\n'
                    '[bot]\nname = "main"\n'
                    '[[keys]]\nlabel = "k1"\napi_key = "sk-test-01-' + "x" * 24 + '"\ndaily_token_limit = 1000\n')
    from shared.core.config import load_config
    return load_config(path)


def test_one_config_is_the_one_account_process_unchanged(tmp_path):
    first = _first(tmp_path)
    assert account_configs(first, []) == [first]


def test_an_account_file_gives_its_name_settings_and_data_dir_over_the_first_configs_shared_parts(tmp_path):
    first = _first(tmp_path)
    (tmp_path / "bob").mkdir()
    bob = tmp_path / "bob" / "bob.toml"
    bob.write_text('data_dir = "."\n[bot]\nname = "bob"\napi_id = 7\n[autoreply]\nsystem_prompt = "Be Bob."\n')
    main, second = account_configs(first, [str(bob)])
    assert (second.bot.name, second.bot.api_id, second.autoreply.system_prompt) == ("bob", 7, "Be Bob.")
    assert second.data_dir == str(tmp_path / "bob" / ".") and second.path == str(bob)
    assert second.keys == first.keys and second.client == first.client
    assert second.database_url == main.database_url == first.database_url     # one database


@pytest.mark.parametrize("text, problem", [
    ('[bot]\nname = "main"\n', "two accounts are named 'main'"),
    ('[bot]\nname = "bob"\n[[keys]]\nlabel = "other"\napi_key = "sk-test-09-' + "y" * 24 + '"\n',
     "[keys] differs from"),
    ('[bot]\nname = "bob"\n[database]\nurl = "sqlite:///elsewhere.db"\n', "[database] differs from"),
])
def test_an_account_file_cannot_bring_other_shared_parts_or_a_taken_name(tmp_path, text, problem):
    bob = tmp_path / "bob.toml"
    bob.write_text(text)
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        account_configs(_first(tmp_path), [str(bob)])


def test_two_accounts_on_one_session_are_refused():
    one = make_config(1)
    two = dataclasses.replace(one, bot=dataclasses.replace(one.bot, name="two"))
    with pytest.raises(ConfigError, match="same Telegram session"):
        check_sessions([(one, TelegramCredentials(1, "h", "SAME")), (two, TelegramCredentials(1, "h", "SAME"))])
    check_sessions([(one, TelegramCredentials(1, "h", "A")), (two, TelegramCredentials(1, "h", "B"))])


async def test_two_accounts_in_one_process_answer_their_own_chats_over_one_database_thread(
        sqlite_db, sqlite_url, simulator):
    config = sim_config(simulator, sqlite_url, 2, autoreply={"cooldown_seconds": 0, "reply_after_quiet_seconds": 0},
                        bot={"deliver_alerts": False})
    second = dataclasses.replace(config, bot=dataclasses.replace(config.bot, name="second"))
    stop = asyncio.Event()
    OfflineBot.made.clear()
    running = asyncio.create_task(run_bots([(config, TelegramCredentials(1, "h", "SESSION-A")),
                                            (second, TelegramCredentials(1, "h", "SESSION-B"))],
                                           stop=stop, client_class=OfflineBot))
    await eventually(lambda: len(OfflineBot.made) == 2 and all(c.texts(ALICE_ID) for c in OfflineBot.made))
    first_client, second_client = OfflineBot.made
    assert (first_client.options["session_string"], second_client.options["session_string"]) == ("SESSION-A",
                                                                                                  "SESSION-B")
    apps = [[h for group in c.dispatcher.groups.values() for h in group][0].callback.__self__
            for c in (first_client, second_client)]
    assert [app.config.bot.name for app in apps] == ["main", "second"]
    first, other = (app.replier.client.failover for app in apps)
    assert first.database is other.database          # one database thread
    assert first.dialect is other.dialect            # one HTTP pool
    assert apps[0].store is not apps[1].store

    # A private message to the second account only: the second account answers it, the first does not.
    handlers = [h for group in second_client.dispatcher.groups.values() for h in group]
    for handler in handlers:
        message = incoming(BOB, "hi second", client=second_client)
        if await handler.check(second_client, message):
            await handler.callback(second_client, message)
            break
    await eventually(lambda: second_client.texts(BOB.id))
    assert not first_client.texts(BOB.id)

    stop.set()
    await asyncio.wait_for(running, 10)
    by_bot = {(e.bot, e.chat_id) for e in UsageEvent.select()}
    assert by_bot == {("main", ALICE_ID), ("second", ALICE_ID), ("second", BOB.id)}


def test_the_command_line_takes_more_accounts_and_names_a_mistake_in_one(tmp_path, capsys):
    from userbot.__main__ import main
    _first(tmp_path)
    bob = tmp_path / "bob.toml"
    bob.write_text('[bot]\nname = "main"\n')
    assert main(["run", "-c", str(tmp_path / "main.toml"), "--account", str(bob)]) == 2
    assert "two accounts are named 'main'" in capsys.readouterr().err
