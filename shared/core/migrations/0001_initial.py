"""The first schema: keys, events, rollups and the worker's tables."""
from peewee import *

# Time defaults (utcnow) are set by the application models, not by the database.


def up(migrator, db):
    class ApiKey(Model):
        fingerprint = CharField(unique=True, max_length=32)
        label = CharField(max_length=100)
        masked = CharField(max_length=32)
        position = IntegerField(default=0)
        base_url = CharField(max_length=500, default='')
        daily_token_limit = BigIntegerField()
        reset_mode = CharField(max_length=16, default='rolling')
        window_anchor = DateTimeField()
        in_config = BooleanField(default=True)
        disabled = BooleanField(default=False)
        invalid = BooleanField(default=False)
        invalid_reason = CharField(max_length=200, default='')
        exhausted_window = DateTimeField(null=True)
        cooldown_until = DateTimeField(null=True)
        created_at = DateTimeField()
        window_start = DateTimeField(null=True)
        used_today = BigIntegerField(default=0)
        input_today = BigIntegerField(default=0)
        cached_today = BigIntegerField(default=0)
        output_today = BigIntegerField(default=0)
        calls_today = BigIntegerField(default=0)
        rate_hits_today = BigIntegerField(default=0)
        errors_today = BigIntegerField(default=0)
        cost_today_nanousd = BigIntegerField(default=0)
        total_tokens = BigIntegerField(default=0)
        total_input = BigIntegerField(default=0)
        total_cached = BigIntegerField(default=0)
        total_output = BigIntegerField(default=0)
        total_calls = BigIntegerField(default=0)
        total_rate_hits = BigIntegerField(default=0)
        total_errors = BigIntegerField(default=0)
        total_cost_nanousd = BigIntegerField(default=0)
        last_used_at = DateTimeField(null=True)
        last_error = CharField(max_length=200, default='')
        last_error_at = DateTimeField(null=True)
        rl_remaining_requests = BigIntegerField(null=True)
        rl_remaining_tokens = BigIntegerField(null=True)
        rl_limit_requests = BigIntegerField(null=True)
        rl_limit_tokens = BigIntegerField(null=True)
        rl_reset_requests_at = DateTimeField(null=True)
        rl_reset_tokens_at = DateTimeField(null=True)
        rl_updated_at = DateTimeField(null=True)
        status = CharField(max_length=16, default='FRESH')
        status_changed_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'api_key'
    db.create_tables([ApiKey])

    class Alert(Model):
        created_at = DateTimeField(index=True)
        kind = CharField(max_length=32)
        dedupe_key = CharField(unique=True, max_length=200)
        key = ForeignKeyField(ApiKey, null=True, on_delete='SET NULL')
        text = TextField()
        claimed_by = CharField(null=True, max_length=128)
        claimed_at = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'alert'
    db.create_tables([Alert])

    class DailyRollup(Model):
        day = DateField()
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        bot = CharField(max_length=64)
        model = CharField(max_length=100)
        operation = CharField(max_length=64)
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
            table_name = 'daily_rollup'
            indexes = ((('day', 'key', 'bot', 'model', 'operation'), True),)
    db.create_tables([DailyRollup])

    class Heartbeat(Model):
        kind = CharField(max_length=16)
        name = CharField(max_length=128)
        host = CharField(max_length=128, default='')
        pid = IntegerField(default=0)
        started_at = DateTimeField()
        last_seen = DateTimeField()
        info = TextField(default='{}')
        class Meta:
            database = db
            table_name = 'heartbeat'
            indexes = ((('kind', 'name'), True),)
    db.create_tables([Heartbeat])

    class KeyRanking(Model):
        generation = BigIntegerField(primary_key=True)
        key_ids = TextField()
        policy = CharField(max_length=32)
        published_at = DateTimeField()
        published_by = CharField(max_length=128)
        class Meta:
            database = db
            table_name = 'key_ranking'
    db.create_tables([KeyRanking])

    class KeyReset(Model):
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        window_start = DateTimeField()
        reset_at = DateTimeField()
        reset_by = CharField(max_length=128)
        class Meta:
            database = db
            table_name = 'key_reset'
            indexes = ((('key', 'window_start'), True),)
    db.create_tables([KeyReset])

    class Lease(Model):
        name = CharField(primary_key=True, max_length=64)
        holder = CharField(max_length=128, default='')
        term = BigIntegerField(default=0)
        acquired_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'lease'
    db.create_tables([Lease])

    class Setting(Model):
        scope = CharField(max_length=64)
        name = CharField(max_length=64)
        value = TextField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'setting'
            indexes = ((('scope', 'name'), True),)
    db.create_tables([Setting])

    class UsageEvent(Model):
        id = BigAutoField()
        call_id = CharField(unique=True, max_length=32)
        at = DateTimeField(index=True)
        key = ForeignKeyField(ApiKey, on_delete='CASCADE')
        window_start = DateTimeField()
        bot = CharField(max_length=64)
        operation = CharField(max_length=64)
        model = CharField(max_length=100)
        input_tokens = IntegerField(default=0)
        cached_tokens = IntegerField(default=0)
        output_tokens = IntegerField(default=0)
        reasoning_tokens = IntegerField(default=0)
        total_tokens = IntegerField(default=0)
        cost_nanousd = BigIntegerField(default=0)
        duration_ms = IntegerField(default=0)
        outcome = CharField(max_length=32)
        error_code = CharField(max_length=100, default='')
        chat_id = BigIntegerField(null=True)
        estimated = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'usage_event'
            indexes = ((('key', 'at'), False),)
    db.create_tables([UsageEvent])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('usage_event'))
    migrator.migrate(migrator.drop_table('setting'))
    migrator.migrate(migrator.drop_table('lease'))
    migrator.migrate(migrator.drop_table('key_reset'))
    migrator.migrate(migrator.drop_table('key_ranking'))
    migrator.migrate(migrator.drop_table('heartbeat'))
    migrator.migrate(migrator.drop_table('daily_rollup'))
    migrator.migrate(migrator.drop_table('alert'))
    migrator.migrate(migrator.drop_table('api_key'))
