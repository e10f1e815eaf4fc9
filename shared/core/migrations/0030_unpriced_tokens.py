"""Tokens of models without a known price, counted beside the cost, so reports can say
"unpriced" instead of showing $0. Earlier calls of models genai-prices does not know are
marked from their recorded cost of 0 (an override that priced a model at 0 is not known here)."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('api_key', 'unpriced_today', BigIntegerField(default=0)),
        migrator.add_column('api_key', 'total_unpriced', BigIntegerField(default=0)),
        migrator.add_column('usage_event', 'unpriced_tokens', IntegerField(default=0)),
        migrator.add_column('daily_rollup', 'unpriced_tokens', BigIntegerField(default=0)),
        migrator.add_column('chat_rollup', 'unpriced_tokens', BigIntegerField(default=0)),
    )
    backfill(db)


def backfill(db):
    """Mark the calls of models genai-prices does not know (cost 0, tokens > 0) as unpriced."""
    models = [row[0] for row in db.execute_sql(
        'SELECT DISTINCT model FROM daily_rollup WHERE cost_nanousd = 0 AND total_tokens > 0')]
    unpriced = _unknown(models)
    for model in unpriced:
        for table in ('usage_event', 'daily_rollup'):
            db.execute_sql(f'UPDATE {table} SET unpriced_tokens = total_tokens '
                           f'WHERE model = {db.param} AND cost_nanousd = 0', (model,))
    if unpriced:
        db.execute_sql('UPDATE api_key SET total_unpriced = (SELECT COALESCE(SUM(r.unpriced_tokens), 0) '
                       'FROM daily_rollup r WHERE r.key_id = api_key.id)')
        db.execute_sql('UPDATE api_key SET unpriced_today = (SELECT COALESCE(SUM(e.unpriced_tokens), 0) '
                       'FROM usage_event e WHERE e.key_id = api_key.id AND e.window_start = api_key.window_start)')


def _unknown(models):
    if not models:
        return []
    from shared.core.pricing import Pricer
    pricer = Pricer()
    return [model for model in models if not pricer.is_priced(model)]


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column('api_key', 'unpriced_today'),
        migrator.drop_column('api_key', 'total_unpriced'),
        migrator.drop_column('usage_event', 'unpriced_tokens'),
        migrator.drop_column('daily_rollup', 'unpriced_tokens'),
        migrator.drop_column('chat_rollup', 'unpriced_tokens'),
    )
