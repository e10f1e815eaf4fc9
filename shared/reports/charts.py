"""Charts as PNG bytes (matplotlib's Agg canvas, no pyplot state, no display needed).

`daily_chart`: tokens (or cost) per UTC day as bars stacked by key. The y-axis is scaled to
the data, so real use is never a sliver under a far-away limit; the limits are given as
annotations instead: each key's own daily limit in the legend, the pool's (the sum) as one
dashed line when it is within the scale and as a note when it is above it. Today's bar is
hatched and labelled as a partial day. `usage_chart` starts at the first day with data.
Limits are per 24-hour window and bars per UTC day, so they compare closely, not exactly.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

from shared.core.models import ApiKey
from shared.reports.queries import daily_cost_by_key, daily_tokens_by_key, first_usage_day, utc_day

WIDTH, HEIGHT, DPI = 1200, 600, 100
PHONE_WIDTH, PHONE_HEIGHT = 480, 560       # shown about 390 CSS pixels wide: text stays readable
MAX_KEYS_SHOWN = 12          # more keys than this: the smallest are drawn together as "other keys"
METRICS = ("tokens", "cost")


@dataclass(frozen=True)
class KeySeries:
    label: str
    limit: int               # tokens per day; 0 when there is none to show (cost)
    tokens: list[int]        # one value per day of the chart (tokens, or nano-USD for cost)


def _tokens_axis(value, _position) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _usd_axis(value, _position) -> str:
    usd = value / 1e9
    return f"${usd:,.2f}" if usd >= 1 or usd == 0 else f"${usd:.4f}".rstrip("0")


def _fold_small(series: list[KeySeries]) -> list[KeySeries]:
    if len(series) <= MAX_KEYS_SHOWN:
        return series
    ranked = sorted(series, key=lambda s: -sum(s.tokens))
    kept, rest = ranked[:MAX_KEYS_SHOWN - 1], ranked[MAX_KEYS_SHOWN - 1:]
    other = KeySeries(f"{len(rest)} other keys", sum(s.limit for s in rest),
                      [sum(values) for values in zip(*(s.tokens for s in rest))])
    return [s for s in series if s in kept] + [other]


def daily_chart(days: list[dt.date], series: list[KeySeries], *, metric: str = "tokens", today: dt.date | None = None,
                title: str = "", width: int = WIDTH, height: int = HEIGHT, dpi: int = DPI) -> bytes:
    """A PNG of `width` x `height` pixels: bars stacked by key (in the given order).

    `today`, when it is the last day shown, is drawn hatched as a partial day."""
    # Imported here: matplotlib is ~25 MB resident, loaded only by what draws (the bot draws in
    # a helper process, shared/reports/offload.py).
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    series = _fold_small(series)
    compact = width < 700
    scale = 1.25 if compact else 1.0
    axis = _usd_axis if metric == "cost" else _tokens_axis
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = [f"C{i}" if len(series) <= 10 else colormaps["tab20"](i) for i in range(len(series))]
    positions = list(range(len(days)))
    partial = today is not None and bool(days) and days[-1] == today
    base = [0] * len(days)
    for s, colour in zip(series, palette):
        limit = f" · limit {_tokens_axis(s.limit, None)}/day" if metric == "tokens" and s.limit else ""
        bars = axes.bar(positions, s.tokens, bottom=base, width=0.8, color=colour, linewidth=0,
                        label=f"{s.label}{limit}")
        if partial:
            bars[-1].set_alpha(0.5)
            bars[-1].set_hatch("///")
        base = [b + t for b, t in zip(base, s.tokens)]
    peak = max(base, default=0)
    pool = sum(s.limit for s in series) if metric == "tokens" else 0
    top, line, note = scale_and_limit(peak, pool)
    if line:
        axes.axhline(pool, color="black", linestyle="--", linewidth=1.1, alpha=0.7)
    if note:
        if compact:                      # two short lines fit a phone's width
            note = note.replace(" is above", "\nis above").replace(" (sum", "\n(sum")
        axes.annotate(note, xy=(1, pool if line else top), xycoords=("axes fraction", "data"),
                      xytext=(-4, 3 if line else -4), textcoords="offset points", ha="right",
                      va="bottom" if line else "top", fontsize=8 * scale,
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    what = "Cost" if metric == "cost" else "Tokens"
    span = f"{days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}" if days else ""
    axes.set_title(title or f"{what} per UTC day,{chr(10) if compact else ' '}{span}", loc="left", fontsize=11)
    axes.set_ylabel("USD" if metric == "cost" else "tokens", fontsize=9 * scale)
    axes.yaxis.set_major_formatter(FuncFormatter(axis))
    axes.tick_params(axis="y", labelsize=8 * scale)
    axes.set_ylim(0, top)
    step = max(1, len(days) // (6 if compact else 15))
    labels = [f"{d:%m-%d}" for d in days]
    if partial:
        labels[-1] = "today\n(so far)"
    shown = sorted(set(positions[::step]) | ({positions[-1]} if partial else set()))
    upright = compact or len(days) <= 10
    axes.set_xticks(shown, [labels[i] for i in shown], rotation=0 if upright else 45,
                    ha="center" if upright else "right", fontsize=8 * scale)
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.grid(axis="y", alpha=0.3)
    if series:
        if compact:       # a phone: the legend goes under the plot, not beside it
            axes.legend(loc="upper left", bbox_to_anchor=(0, -0.14), fontsize=8 * scale, frameon=False, ncol=1)
        else:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False,
                        title="keys", title_fontsize=8)
    else:
        axes.text(0.5, 0.5, "no usage in this period", transform=axes.transAxes, ha="center", color="grey")
    if compact:
        legend_share = min(0.45, 0.045 * (len(series) + 1))
        figure.subplots_adjust(left=0.17, right=0.97, top=0.88, bottom=0.1 + legend_share)
    else:
        figure.subplots_adjust(left=0.08, right=0.80, top=0.92, bottom=0.14)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def scale_and_limit(peak: int, pool: int) -> tuple[float, bool, str]:
    """(top of the y-axis, whether the pool's limit is drawn as a line, its annotation).

    The axis follows the data; the pool's limit is a line only when it is near the data,
    otherwise a note saying where it is, so real use is never a sliver at the bottom."""
    top = peak * 1.15 if peak else 1.0
    if not pool:
        return top, False, ""
    if pool <= top * 1.5:
        return max(top, pool * 1.08), True, f"pool limit {_tokens_axis(pool, None)}/day (sum of the keys' limits)"
    return top, False, (f"pool limit {_tokens_axis(pool, None)}/day is above this scale "
                        f"(busiest day: {peak / pool:.1%} of it)")


def daily_tokens_chart(days: list[dt.date], series: list[KeySeries], **options) -> bytes:
    """Tokens per UTC day stacked by key (see `daily_chart`)."""
    return daily_chart(days, series, metric="tokens", **options)


def chart_days(now: dt.datetime, days: int) -> int:
    """At most `days`, starting no earlier than the first day with any usage (at least today)."""
    first = first_usage_day()
    if first is None:
        return 1
    return max(1, min(days, (utc_day(now) - first).days + 1))


def usage_chart(now: dt.datetime, days: int = 30, *, metric: str = "tokens", **size) -> bytes:
    """The `.chart [days]` PNG: up to the last `days` UTC days from the rollups, keys in config order."""
    shown = chart_days(now, days)
    query = daily_cost_by_key if metric == "cost" else daily_tokens_by_key
    day_list, by_key = query(now, shown)
    keys = ApiKey.select().where(ApiKey.id.in_(list(by_key))).order_by(ApiKey.position, ApiKey.id)
    series = [KeySeries(k.label, k.daily_token_limit, by_key[k.id]) for k in keys]
    return daily_chart(day_list, series, metric=metric, today=utc_day(now), **size)
