"""Per-chat daily rollups for the "by chat" reports, filled from the events already kept."""
from peewee import *

# Outcomes that count as errors (shared.core.accounting.ERROR_OUTCOMES when this was written).
ERROR_OUTCOMES = ('quota_exhausted', 'invalid_key', 'bad_request', 'server_error', 'timeout',
                  'connection_error')


def up(migrator, db):
    class ApiKey(Model):
        class Meta:
            database = db
            table_name = 'api_key'

    class UsageEvent(Model):
        id = BigAutoField()
        at = DateTimeField()
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        bot = CharField(max_length=64)
        input_tokens = IntegerField(default=0)
        cached_tokens = IntegerField(default=0)
        output_tokens = IntegerField(default=0)
        reasoning_tokens = IntegerField(default=0)
        total_tokens = IntegerField(default=0)
        cost_nanousd = BigIntegerField(default=0)
        duration_ms = IntegerField(default=0)
        outcome = CharField(max_length=32)
        chat_id = BigIntegerField(null=True)
        class Meta:
            database = db
            table_name = 'usage_event'

    class ChatRollup(Model):
        day = DateField()
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        bot = CharField(max_length=64)
        chat_id = BigIntegerField()
        calls = BigIntegerField(default=0)
        ok_calls = BigIntegerField(default=0)
        error_calls = BigIntegerField(default=0)
        rate_hits = BigIntegerField(default=0)
        input_tokens = BigIntegerField(default=0)
        cached_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        reasoning_tokens = BigIntegerField(default=0)
        total_tokens = BigIntegerField(default=0)
        cost_nanousd = BigIntegerField(default=0)
        duration_ms = BigIntegerField(default=0)
        class Meta:
            database = db
            table_name = 'chat_rollup'
            indexes = ((('day', 'key', 'bot', 'chat_id'), True),)
    db.create_tables([ChatRollup])

    def count_if(condition):
        return fn.SUM(Case(None, [(condition, 1)], 0))

    e = UsageEvent
    day = fn.DATE(e.at)
    source = (e.select(day, e.key, e.bot, e.chat_id, fn.COUNT(e.id), count_if(e.outcome == 'ok'),
                       count_if(e.outcome.in_(ERROR_OUTCOMES)), count_if(e.outcome == 'rate_limited'),
                       fn.SUM(e.input_tokens), fn.SUM(e.cached_tokens), fn.SUM(e.output_tokens),
                       fn.SUM(e.reasoning_tokens), fn.SUM(e.total_tokens), fn.SUM(e.cost_nanousd),
                       fn.SUM(e.duration_ms))
              .where(e.chat_id.is_null(False))
              .group_by(day, e.key, e.bot, e.chat_id))
    c = ChatRollup
    c.insert_from(source, [c.day, c.key, c.bot, c.chat_id, c.calls, c.ok_calls, c.error_calls, c.rate_hits,
                           c.input_tokens, c.cached_tokens, c.output_tokens, c.reasoning_tokens,
                           c.total_tokens, c.cost_nanousd, c.duration_ms]).execute()
