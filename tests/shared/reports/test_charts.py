"""The usage chart: a real PNG of the asked size, from the rollups."""
import datetime as dt
import io
import struct

import matplotlib.image

from shared.reports.charts import (
    PHONE_HEIGHT,
    PHONE_WIDTH,
    KeySeries,
    chart_days,
    daily_tokens_chart,
    scale_and_limit,
    usage_chart,
)
from shared.reports.queries import first_usage_day
from tests.shared.report_fixtures import NOW, history_config, record_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_usage_chart_is_a_png_of_the_expected_size(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url), calls=200, days=30)
    data = usage_chart(NOW, 30)
    assert png_size(data) == (1200, 600)
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (600, 1200)
    assert len({tuple(p) for p in pixels[::7, ::7].reshape(-1, pixels.shape[2])}) > 8   # not blank


def test_chart_size_is_configurable_and_empty_periods_still_draw(sqlite_db):
    assert png_size(usage_chart(NOW, 7, width=640, height=320)) == (640, 320)


def test_many_keys_are_folded_into_other_keys():
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(5)]
    series = [KeySeries(f"key{i}", 1_000, [i] * 5) for i in range(30)]
    assert png_size(daily_tokens_chart(days, series, width=800, height=400)) == (800, 400)


def test_the_axis_follows_the_data_and_a_far_limit_is_a_note():
    top, line, note = scale_and_limit(peak=1_000, pool=2_500_000)
    assert top == 1_150 and not line
    assert note == "pool limit 2.5M/day is above this scale (busiest day: 0.0% of it)"
    top, line, note = scale_and_limit(peak=2_000_000, pool=2_500_000)
    assert line and top >= 2_500_000 and note.startswith("pool limit 2.5M/day")
    assert scale_and_limit(peak=0, pool=0) == (1.0, False, "")


def test_the_chart_starts_at_the_first_day_with_data(sqlite_db, sqlite_url):
    assert chart_days(NOW, 30) == 1                         # nothing recorded: today only
    record_history(history_config(sqlite_url), calls=50, days=5)
    first = first_usage_day()
    assert chart_days(NOW, 30) == (NOW.date() - first).days + 1 <= 6      # 5 x 24 h spans 6 UTC days
    assert chart_days(NOW, 2) == 2


def test_cost_and_phone_charts_render(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url), calls=50, days=5)
    tokens, cost = usage_chart(NOW, 30), usage_chart(NOW, 30, metric="cost")
    assert png_size(cost) == (1200, 600) and cost != tokens
    assert png_size(usage_chart(NOW, 30, width=PHONE_WIDTH, height=PHONE_HEIGHT)) == (PHONE_WIDTH, PHONE_HEIGHT)
