"""Allowances shared by keys, their per-window usage, reservations (holds) and memberships."""
from peewee import *


def up(migrator, db):
    class ApiKey(Model):
        class Meta:
            database = db
            table_name = 'api_key'

    class Allowance(Model):
        name = CharField(max_length=100, unique=True)
        window = CharField(max_length=16)
        token_limit = BigIntegerField(null=True)
        request_limit = BigIntegerField(null=True)
        models = CharField(max_length=1000, default='')
        anchor = DateTimeField()
        in_config = BooleanField(default=True)
        class Meta:
            database = db
            table_name = 'allowance'

    class AllowanceWindow(Model):
        allowance = ForeignKeyField(Allowance, on_delete='CASCADE')
        window_start = DateTimeField()
        tokens_used = BigIntegerField(default=0)
        requests_used = BigIntegerField(default=0)
        class Meta:
            database = db
            table_name = 'allowance_window'
            indexes = ((('allowance', 'window_start'), True),)

    class AllowanceHold(Model):
        id = BigAutoField()
        hold_id = CharField(max_length=32, index=True)
        allowance = ForeignKeyField(Allowance, on_delete='CASCADE')
        window_start = DateTimeField()
        tokens = BigIntegerField(default=0)
        requests = IntegerField(default=0)
        expires_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'allowance_hold'
            indexes = ((('allowance', 'window_start', 'expires_at'), False),)

    class KeyAllowance(Model):
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        allowance = ForeignKeyField(Allowance, on_delete='CASCADE')
        class Meta:
            database = db
            table_name = 'key_allowance'
            indexes = ((('key', 'allowance'), True),)

    db.create_tables([Allowance, AllowanceWindow, AllowanceHold, KeyAllowance])


def down(migrator, db):
    db.execute_sql('DROP TABLE key_allowance')
    db.execute_sql('DROP TABLE allowance_hold')
    db.execute_sql('DROP TABLE allowance_window')
    db.execute_sql('DROP TABLE allowance')
