"""Reservations against a key's own daily limit: a key alone is the one-allowance case."""
from peewee import *


def up(migrator, db):
    class ApiKey(Model):
        class Meta:
            database = db
            table_name = 'api_key'

    class KeyHold(Model):
        id = BigAutoField()
        hold_id = CharField(max_length=32, index=True)
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        window_start = DateTimeField()
        tokens = BigIntegerField(default=0)
        expires_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'key_hold'
            indexes = ((('key', 'window_start', 'expires_at'), False),)

    db.create_tables([KeyHold])


def down(migrator, db):
    db.execute_sql('DROP TABLE key_hold')
