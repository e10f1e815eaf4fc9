"""Budgets that hold ([budgets] enforce = true): a gate row per budget scope that reservers
lock, and the reservations held against a budget's period until the call is recorded."""
from peewee import *


def up(migrator, db):
    class BudgetGate(Model):
        scope = CharField(max_length=110, unique=True)
        class Meta:
            database = db
            table_name = 'budget_gate'

    class BudgetHold(Model):
        id = BigAutoField()
        hold_id = CharField(max_length=32, index=True)
        scope = CharField(max_length=110)
        period = CharField(max_length=8)
        period_start = DateField()
        tokens = BigIntegerField(default=0)
        cost_nanousd = BigIntegerField(default=0)
        expires_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'budget_hold'
            indexes = ((('scope', 'period', 'period_start', 'expires_at'), False),)

    db.create_tables([BudgetGate, BudgetHold])


def down(migrator, db):
    db.execute_sql('DROP TABLE budget_hold')
    db.execute_sql('DROP TABLE budget_gate')
