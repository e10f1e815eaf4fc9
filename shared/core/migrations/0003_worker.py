"""The worker: the lease records whether its holder also holds the PostgreSQL advisory lock."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('lease', 'locked', BooleanField(default=False)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('lease', 'locked'))
