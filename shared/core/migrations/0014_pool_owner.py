"""One definition of the pool: who disabled a key (the pool's config, the operator) and
whether the pool's owner (the worker) has written the key's settings."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('api_key', 'config_disabled', BooleanField(default=False)),
        migrator.add_column('api_key', 'operator_disabled', BooleanField(default=False)),
        migrator.add_column('api_key', 'settings_owner', CharField(max_length=16, default='')),
    )
    db.execute_sql('UPDATE api_key SET config_disabled = disabled')


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column('api_key', 'config_disabled'),
        migrator.drop_column('api_key', 'operator_disabled'),
        migrator.drop_column('api_key', 'settings_owner'),
    )
