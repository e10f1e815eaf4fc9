"""Conversations: each message's fate (pending, claimed by whom, merged into which reply),
the chat's name and username, the owner's pause, a per-chat persona and daily token cap."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('handled_message', 'kind', CharField(max_length=8, default='message')),
        migrator.add_column('handled_message', 'text', TextField(null=True)),
        migrator.add_column('handled_message', 'received_at', DateTimeField(null=True)),
        migrator.add_column('handled_message', 'claimed_by', CharField(max_length=128, default='')),
        migrator.add_column('handled_message', 'reply_id', BigIntegerField(null=True)),
        migrator.add_column('handled_message', 'settled_at', DateTimeField(null=True)),
        migrator.add_column('handled_message', 'detail', CharField(max_length=200, default='')),
        migrator.add_index('handled_message', ('bot', 'outcome'), False),
        migrator.add_column('chat_state', 'username', CharField(max_length=64, default='')),
        migrator.add_column('chat_state', 'owner_paused_until', DateTimeField(null=True)),
        migrator.add_column('chat_state', 'persona', TextField(null=True)),
        migrator.add_column('chat_state', 'daily_token_cap', BigIntegerField(null=True)),
        migrator.add_column('chat_state', 'new_chat', BooleanField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index('handled_message', 'handled_message_bot_outcome'),
        *[migrator.drop_column('handled_message', name)
          for name in ('kind', 'text', 'received_at', 'claimed_by', 'reply_id', 'settled_at', 'detail')],
        *[migrator.drop_column('chat_state', name)
          for name in ('username', 'owner_paused_until', 'persona', 'daily_token_cap', 'new_chat')],
    )
