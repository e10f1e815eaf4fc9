"""The userbot's tables: chat context, handled messages (answered at most once) and chat state."""
from peewee import *


def up(migrator, db):
    class ChatMessage(Model):
        id = BigAutoField()
        bot = CharField(max_length=64)
        chat_id = BigIntegerField()
        message_id = BigIntegerField()
        role = CharField(max_length=16)
        text = TextField()
        at = DateTimeField()
        class Meta:
            database = db
            table_name = 'chat_message'
            indexes = ((('bot', 'chat_id', 'message_id'), True),)
    db.create_tables([ChatMessage])

    class HandledMessage(Model):
        id = BigAutoField()
        bot = CharField(max_length=64)
        chat_id = BigIntegerField()
        message_id = BigIntegerField()
        decided_at = DateTimeField(index=True)
        outcome = CharField(max_length=32)
        class Meta:
            database = db
            table_name = 'handled_message'
            indexes = ((('bot', 'chat_id', 'message_id'), True),)
    db.create_tables([HandledMessage])

    class ChatState(Model):
        bot = CharField(max_length=64)
        chat_id = BigIntegerField()
        rule = CharField(max_length=8, default='')
        label = CharField(max_length=100, default='')
        last_reply_at = DateTimeField(null=True)
        last_incoming_at = DateTimeField(null=True)
        replies = BigIntegerField(default=0)
        fast_exchanges = IntegerField(default=0)
        paused_until = DateTimeField(null=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'chat_state'
            indexes = ((('bot', 'chat_id'), True),)
    db.create_tables([ChatState])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('chat_state'))
    migrator.migrate(migrator.drop_table('handled_message'))
    migrator.migrate(migrator.drop_table('chat_message'))
