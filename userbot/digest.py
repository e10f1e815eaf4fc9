"""The away digest: who wrote while the bot answered, what each said and what became of
it, what still needs the owner, and what each conversation cost. `.digest` shows it on
demand; the bot posts it to Saved Messages by itself when the owner comes back.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape

import peewee as pw

from shared.core.config import Config
from shared.core.models import UsageEvent
from shared.core.query_rows import tuple_rows
from shared.core.windows import format_duration
from shared.reports.money import money_text, pricing_hint
from shared.reports.render_telegram import fit
from userbot.commands import Reply
from userbot.state import MERGED, REPLIED, Fate, Store

SETTLED_FINE = (REPLIED, MERGED)
MAX_FATES = 500
SNIPPET = 60


@dataclass
class Conversation:
    chat_id: int
    name: str
    username: str
    fates: list[Fate] = field(default_factory=list)
    tokens: int = 0
    cost_nanousd: int = 0
    unpriced_tokens: int = 0         # tokens of models without a known price

    @property
    def link(self) -> str:
        url = f"https://t.me/{self.username}" if self.username else f"tg://user?id={self.chat_id}"
        return f'<a href="{escape(url)}">{escape(self.name)}</a>'


def conversations(store: Store, since: dt.datetime, until: dt.datetime) -> list[Conversation]:
    """The chats with messages received in [since, until), oldest message first, with their costs."""
    fates = list(reversed(store.fates(since=since, limit=MAX_FATES)))
    by_chat: dict[int, Conversation] = {}
    for fate in fates:
        conversation = by_chat.setdefault(fate.chat_id, Conversation(fate.chat_id, fate.name, fate.username))
        conversation.fates.append(fate)
    if by_chat:
        e = UsageEvent
        query = (e.select(e.chat_id, pw.fn.SUM(e.total_tokens), pw.fn.SUM(e.cost_nanousd), pw.fn.SUM(e.unpriced_tokens))
                 .where((e.bot == store.bot) & (e.at >= since) & (e.at < until) & e.chat_id.in_(list(by_chat)))
                 .group_by(e.chat_id))
        for chat_id, tokens, cost, unpriced in tuple_rows(query):
            chat = by_chat[chat_id]
            chat.tokens, chat.cost_nanousd, chat.unpriced_tokens = int(tokens or 0), int(cost or 0), int(unpriced or 0)
    return list(by_chat.values())


def away_digest(store: Store, config: Config, since: dt.datetime, now: dt.datetime,
                automatic: bool = False) -> Reply | None:
    """The digest of [since, now) as a command Reply; None when automatic and nothing happened."""
    chats = conversations(store, since, now)
    if automatic and not chats:
        return None
    return Reply(render_digest(chats, since, now))


def render_digest(chats: list[Conversation], since: dt.datetime, now: dt.datetime) -> str:
    head = [f"🗒 <b>While you were away</b> — since {since:%H:%M} UTC ({format_duration(now - since)})", ""]
    if not chats:
        return "\n".join(head + ["Nobody wrote."])
    items = []
    needs_you = []
    for chat in chats:
        answered = sum(f.outcome in SETTLED_FINE for f in chat.fates)
        lines = [f"👤 {chat.link}: {len(chat.fates)} message(s), {answered} answered · "
                 f"{chat.tokens:,} tokens · {money_text(chat.cost_nanousd, chat.unpriced_tokens)}"]
        for fate in chat.fates:
            lines.append(f"  • “{escape(_snippet(fate.text))}” — {escape(fate.describe())}")
            if fate.outcome not in SETTLED_FINE:
                needs_you.append(f"• {chat.link}: “{escape(_snippet(fate.text))}” — {escape(fate.describe())}")
        items.append("\n".join(lines))
    tokens = sum(c.tokens for c in chats)
    cost = sum(c.cost_nanousd for c in chats)
    unpriced = sum(c.unpriced_tokens for c in chats)
    tail = ["", f"Σ {tokens:,} tokens · {money_text(cost, unpriced)}"]
    if unpriced:
        tail.append(f"ℹ️ <i>{escape(pricing_hint(_unpriced_models(since, now)), quote=False)}</i>")
    if needs_you:
        tail += ["", f"⚠️ <b>Needs you</b> ({len(needs_you)})"] + needs_you[:20]
        if len(needs_you) > 20:
            tail.append(f"<i>…and {len(needs_you) - 20} more</i>")
    return fit(head, items, tail, "chats")


def _unpriced_models(since: dt.datetime, until: dt.datetime) -> list[str]:
    e = UsageEvent
    query = (e.select(e.model).distinct().where((e.at >= since) & (e.at < until) & (e.unpriced_tokens > 0))
             .order_by(e.model))
    return [model for (model,) in tuple_rows(query)]


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def digest_period(store: Store, now: dt.datetime, hours: float | None) -> dt.datetime:
    """Where `.digest` starts: N hours back, else the last digest, else the last 24 hours."""
    if hours is not None:
        return now - dt.timedelta(hours=hours)
    since = store.digest_since()
    return since if since is not None and now - since < dt.timedelta(days=7) else now - dt.timedelta(hours=24)

