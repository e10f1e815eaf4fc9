"""Charts as PNG bytes (matplotlib's Agg canvas, no pyplot state, no display needed).

`daily_tokens_chart`: tokens per UTC day as bars stacked by key. Each key's daily limit is
marked by a dashed line in the key's colour at the height the stack would reach if that
key and every key below it used its whole allowance; the top line is the pool's limit.
When even the busiest day is far below the lowest line, the chart zooms to the bars and
says where the limits are instead.
Limits are per 24-hour window and bars per UTC day, so they compare closely, not exactly.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from shared.core.models import ApiKey
from shared.reports.queries import daily_tokens_by_key

WIDTH, HEIGHT, DPI = 1200, 600, 100
ZOOM_BELOW = 0.1            # busiest day under this share of the lowest limit line: zoom in
MAX_KEYS_SHOWN = 12          # more keys than this: the smallest are drawn together as "other keys"


@dataclass(frozen=True)
class KeySeries:
    label: str
    limit: int
    tokens: list[int]        # one value per day of the chart


def _tokens_axis(value, _position) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _fold_small(series: list[KeySeries]) -> list[KeySeries]:
    if len(series) <= MAX_KEYS_SHOWN:
        return series
    ranked = sorted(series, key=lambda s: -sum(s.tokens))
    kept, rest = ranked[:MAX_KEYS_SHOWN - 1], ranked[MAX_KEYS_SHOWN - 1:]
    other = KeySeries(f"{len(rest)} other keys", sum(s.limit for s in rest),
                      [sum(values) for values in zip(*(s.tokens for s in rest))])
    return [s for s in series if s in kept] + [other]


def daily_tokens_chart(days: list[dt.date], series: list[KeySeries], *, title: str = "",
                       width: int = WIDTH, height: int = HEIGHT, dpi: int = DPI) -> bytes:
    """A PNG of `width` x `height` pixels: bars stacked by key (in the given order), limits marked."""
    series = _fold_small(series)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = [f"C{i}" if len(series) <= 10 else colormaps["tab20"](i) for i in range(len(series))]
    positions = list(range(len(days)))
    base = [0] * len(days)
    limits: list[tuple[int, Any]] = []          # (stacked limit, colour of its key)
    for s, colour in zip(series, palette):
        axes.bar(positions, s.tokens, bottom=base, width=0.8, color=colour, linewidth=0,
                 label=f"{s.label} · limit {_tokens_axis(s.limit, None)}")
        base = [b + t for b, t in zip(base, s.tokens)]
        limits.append(((limits[-1][0] if limits else 0) + s.limit, colour))
    peak = max(base, default=0)
    # Usage far below every limit: zoom to the bars and say where the limits are.
    zoomed = bool(limits) and peak < ZOOM_BELOW * limits[0][0]
    top = peak * 1.15 if zoomed else max([peak] + [limit for limit, _ in limits]) * 1.08
    for limit, colour in limits:
        if limit <= top:
            axes.axhline(limit, color=colour, linestyle="--", linewidth=1.2, alpha=0.9)
    if limits:
        pool = limits[-1][0]
        note = (f"pool limit {_tokens_axis(pool, None)}/day" if not zoomed else
                f"daily limits are off this scale (lowest {_tokens_axis(limits[0][0], None)}, "
                f"pool {_tokens_axis(pool, None)})")
        axes.annotate(note, xy=(1, min(pool, top)), xycoords=("axes fraction", "data"),
                      xytext=(-4, -12 if zoomed else 3), textcoords="offset points", ha="right", va="bottom",
                      fontsize=8)
    axes.set_title(title or f"Tokens per UTC day, {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}", loc="left")
    axes.set_ylabel("tokens (dashed: daily limits, stacked)")
    axes.yaxis.set_major_formatter(FuncFormatter(_tokens_axis))
    axes.set_ylim(0, top or 1)
    step = max(1, len(days) // 15)
    axes.set_xticks(positions[::step], [f"{d:%m-%d}" for d in days[::step]], rotation=45, ha="right",
                    fontsize=8)
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.grid(axis="y", alpha=0.3)
    if series:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False,
                    title="keys", title_fontsize=8)
    else:
        axes.text(0.5, 0.5, "no usage in this period", transform=axes.transAxes, ha="center", color="grey")
    figure.subplots_adjust(left=0.08, right=0.84, top=0.92, bottom=0.14)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def usage_chart(now: dt.datetime, days: int = 30, **size) -> bytes:
    """The `.chart [days]` PNG: the last `days` UTC days from the rollups, keys in config order."""
    chart_days, by_key = daily_tokens_by_key(now, days)
    keys = ApiKey.select().where(ApiKey.id.in_(list(by_key))).order_by(ApiKey.position, ApiKey.id)
    series = [KeySeries(k.label, k.daily_token_limit, by_key[k.id]) for k in keys]
    return daily_tokens_chart(chart_days, series, **size)
