"""One tick of the worker, each step a named method, in the order they run:

    claim_leadership -> (leader only) read_keys -> plan_resets -> plan_statuses
    -> plan_ranking -> plan_budget_alerts -> plan_allowance_alerts -> commit -> prune_events; then beat.

Planning reads and computes; `commit` makes every write of the tick in ONE transaction that
starts by fencing the lease (our term, renewed), so a replaced leader writes nothing. With
nothing changed, a tick writes only the lease renewal and the heartbeat.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

from shared.core import liveness
from shared.core.config import Config
from shared.core.db import database, write_transaction
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, KeyRanking, utcnow
from shared.core.schema import ensure_schema
from shared.core.status import Status, frees_up_at
from shared.reports.allowance_views import enqueue_allowance_alerts
from shared.reports.budgets import enqueue_budget_alerts
from worker import alert_rules
from worker.keytable import KeyTable, Refresh
from worker.leadership import Leadership, LostLeadership, Role
from worker.ranking import Candidate, rank, signature
from worker.resets import persist_resets
from worker.retention import prune_events

log = logging.getLogger("tokenpool.worker")

PRUNE_EVERY = dt.timedelta(hours=1)
_CHUNK = 500
_SENT_MEMORY = 100_000


@dataclass(frozen=True)
class Published:
    generation: int
    key_ids: list[int]


@dataclass
class TickReport:
    """What one tick saw and did; the loop logs it and hands a summary to systemd."""
    role: str = "standby"
    term: int = 0
    leader: str = ""
    keys: int = 0
    eligible: int = 0
    resets: int = 0
    statuses: int = 0
    generation: int | None = None
    published: bool = False
    alerts: int = 0
    pruned: int = 0
    bots_alive: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.role != "leader":
            return f"standing by; {self.leader or 'nobody'} leads"
        return (f"leading (term {self.term}): {self.eligible}/{self.keys} keys eligible, "
                f"ranking generation {self.generation}, {self.bots_alive} bot(s) alive")


@dataclass
class Changes:
    """The writes a tick plans; `commit` makes them together or not at all."""
    resets: list[tuple[int, dt.datetime]] = field(default_factory=list)
    statuses: dict[Status, list[int]] = field(default_factory=dict)
    ranking: list[int] | None = None
    alerts: list[alert_rules.AlertSpec] = field(default_factory=list)
    check_budgets: bool = False
    check_allowances: bool = False

    def __bool__(self) -> bool:
        return bool(self.resets or self.statuses or self.ranking is not None or self.alerts
                    or self.check_budgets or self.check_allowances)


class Ticker:
    def __init__(self, config: Config, *, name: str, holder: str):
        self.config = config
        self.name = name[:128]
        self.holder = holder[:128]
        self.leadership = Leadership(self.holder, config.worker.lease_seconds)
        self.keys = KeyTable(config.pool.low_threshold)
        self.published: Published | None = None
        self.stale = True                      # `published` and `keys` need re-reading
        self.eligible_count = 0
        self.term_seen: int | None = None
        self.started = False
        self.next_prune_at: dt.datetime | None = None
        self.budget_day: dt.date | None = None
        self.sent: set[str] = set()             # dedupe keys already in the outbox

    def tick(self, now: dt.datetime | None = None) -> TickReport:
        started = time.perf_counter()
        self.start()
        now = now or utcnow()
        report = TickReport()
        role = self.claim_leadership(now, report)
        if role.leader:
            refresh = self.read_keys(now, report)
            changes = Changes()
            if role.took_over_from:
                changes.alerts.append(alert_rules.leadership_alert(self.holder, role.term, role.took_over_from))
            self.plan_resets(refresh, changes)
            self.plan_statuses(refresh, changes, now)
            self.plan_ranking(refresh, changes, now, report)
            self.plan_budget_alerts(refresh, changes, now)
            self.plan_allowance_alerts(refresh, changes)
            if changes:
                self.commit(changes, now, report)
            if report.role == "leader":
                self.prune_events(now, report)
        self.beat(now, report)
        report.seconds = time.perf_counter() - started
        return report

    # --- the steps ----------------------------------------------------------------------

    def start(self) -> None:
        """Once per process (retried by the loop while the database is down): migrate, sync keys."""
        if not self.started:
            ensure_schema(database.obj)
            if self.config.keys:
                sync_keys(self.config, owner=True)
            else:   # syncing an empty list would mark every key as removed from config
                log.warning("no [[keys]] in %s: working with the keys the bots registered",
                            self.config.path or "the config")
            self.started = True

    def claim_leadership(self, now: dt.datetime, report: TickReport) -> Role:
        role = self.leadership.claim(now)
        report.term, report.leader = role.term, role.holder
        report.role = "leader" if role.leader else "standby"
        if role.leader and role.term != self.term_seen:
            log.info("leading as %s (term %d)%s", self.holder, role.term,
                     f", taking over from {role.took_over_from}" if role.took_over_from else "")
            self.forget()
        elif not role.leader and self.term_seen is not None:
            log.info("standing by: %s leads (term %d)", role.holder or "nobody", role.term)
            self.forget()
        self.term_seen = role.term if role.leader else None
        if role.leader and self.stale:
            self.published = self._latest_published()
            self.stale = False
        return role

    def read_keys(self, now: dt.datetime, report: TickReport) -> Refresh:
        refresh = self.keys.refresh(database.obj, now)
        report.keys = len(self.keys.states)
        return refresh

    def plan_resets(self, refresh: Refresh, changes: Changes) -> None:
        changes.resets = [(s.row.id, s.window_start) for s in refresh.changed if s.reset_due]

    def plan_statuses(self, refresh: Refresh, changes: Changes, now: dt.datetime) -> None:
        hits = self.config.worker.rate_limit_alert_hits
        alerting = []
        for state in refresh.changed:
            if state.stored_status_differs:
                changes.statuses.setdefault(state.status, []).append(state.row.id)
            kinds = alert_rules.key_transitions(state, rate_limit_hits=hits)
            if kinds:
                alerting.append((state, kinds))
        if alerting:
            names = self.keys.names(database.obj, [state.row.id for state, _ in alerting])
            for state, kinds in alerting:
                self._add_alerts(changes, [alert_rules.key_alert(kind, state, names[state.row.id], now)
                                           for kind in kinds])

    def plan_ranking(self, refresh: Refresh, changes: Changes, now: dt.datetime, report: TickReport) -> None:
        report.generation = self.published.generation if self.published else None
        if self.published is not None and not self._ranking_may_change(refresh):
            report.eligible = self.eligible_count
            return
        candidates = self.keys.candidates()
        report.eligible = self.eligible_count = len(candidates)
        previous = self.published.key_ids if self.published else None
        head = self.keys.states.get(previous[0]) if previous else None
        current = Candidate(head.row.id, head.row.position, head.left, head.row.last_used_at) if head else None
        ranking = rank(self.config.worker.policy, candidates, current=current,
                       headroom=self.config.worker.headroom_tokens)
        if previous == ranking:
            return
        changes.ranking = ranking
        generation = (self.published.generation if self.published else 0) + 1
        pool = self.keys.in_config()
        frees = [t for t in (frees_up_at(s.row, now) for s in pool) if t is not None]
        self._add_alerts(changes, alert_rules.pool_alerts(previous, ranking, generation, keys=len(pool),
                                                     frees_up_at=min(frees) if frees else None, now=now))

    def _ranking_may_change(self, refresh: Refresh) -> bool:
        if refresh.removed:
            return True
        policy, headroom = self.config.worker.policy, self.config.worker.headroom_tokens
        return any(signature(policy, state.candidate, headroom)
                   != signature(policy, old.candidate if old else None, headroom)
                   for state, old in ((s, refresh.before.get(s.row.id)) for s in refresh.changed))

    def plan_budget_alerts(self, refresh: Refresh, changes: Changes, now: dt.datetime) -> None:
        if not _has_budgets(self.config):
            return
        # Spending moves only with calls, and every call changes its key's row.
        changes.check_budgets = bool(refresh.changed) or self.budget_day != now.date()

    def plan_allowance_alerts(self, refresh: Refresh, changes: Changes) -> None:
        # Allowances fill only with calls, and every call changes its key's row.
        changes.check_allowances = bool(self.config.allowances) and bool(refresh.changed)

    def commit(self, changes: Changes, now: dt.datetime, report: TickReport) -> None:
        generation = None
        try:
            with write_transaction():
                self.leadership.fence(now)
                if changes.resets:
                    report.resets = len(persist_resets(changes.resets, by=self.holder, now=now))
                for status, ids in changes.statuses.items():
                    for i in range(0, len(ids), _CHUNK):
                        (ApiKey.update(status=status.value, status_changed_at=now)
                         .where(ApiKey.id.in_(ids[i:i + _CHUNK])).execute())
                    report.statuses += len(ids)
                if changes.ranking is not None:
                    generation = (self.published.generation if self.published else 0) + 1
                    KeyRanking.insert(generation=generation, key_ids=json.dumps(changes.ranking),
                                      policy=self.config.worker.policy, published_at=now,
                                      published_by=self.holder).execute()
                report.alerts = alert_rules.write_alerts(changes.alerts, now)
                if changes.check_budgets:
                    report.alerts += enqueue_budget_alerts(now, self.config)
                if changes.check_allowances:
                    report.alerts += enqueue_allowance_alerts(now)
        except LostLeadership as exc:
            log.warning("stepping down: %s", exc)
            self.forget()
            self.term_seen = None
            report.role = "standby"
            return
        except BaseException:
            self.forget()        # whatever we planned may or may not be in; re-read everything
            raise
        if generation is not None and changes.ranking is not None:     # published just now
            self.published = Published(generation, changes.ranking)
            report.generation, report.published = generation, True
            log.info("published ranking generation %d: %d key(s)", generation, len(changes.ranking))
        if changes.check_budgets:
            self.budget_day = now.date()
        if len(self.sent) > _SENT_MEMORY:
            self.sent.clear()
        self.sent.update(a.dedupe_key for a in changes.alerts)
        if report.resets:
            log.info("reset %d key(s) whose window ended", report.resets)

    def prune_events(self, now: dt.datetime, report: TickReport) -> None:
        if self.next_prune_at is not None and now < self.next_prune_at:
            return
        report.pruned, more = prune_events(now, self.config.worker.retention_days)
        self.next_prune_at = now if more else now + PRUNE_EVERY
        if report.pruned:
            log.info("pruned %d usage event(s) older than %d days", report.pruned,
                     self.config.worker.retention_days)

    def beat(self, now: dt.datetime, report: TickReport) -> None:
        liveness.beat("worker", self.name, {"role": report.role, "holder": self.holder, "term": report.term,
                                             "keys": report.keys, "eligible": report.eligible,
                                             "generation": report.generation}, now=now)
        report.bots_alive = liveness.count_alive("bot", now)

    # --- helpers ------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop cached state so the next leader tick re-reads everything from the database."""
        self.keys.forget()
        self.published = None
        self.stale = True
        self.sent.clear()

    def release(self) -> bool:
        return self.leadership.release()

    def sign_off(self, ephemeral: bool) -> None:
        """A clean stop: shown as stopped, not alive; a host:pid-named run leaves no row behind."""
        liveness.sign_off("worker", self.name, forget=ephemeral)

    def _latest_published(self) -> Published | None:
        row = KeyRanking.select().order_by(KeyRanking.generation.desc()).first()
        return Published(row.generation, json.loads(row.key_ids)) if row else None

    def _add_alerts(self, changes: Changes, specs: list[alert_rules.AlertSpec]) -> None:
        changes.alerts.extend(s for s in specs if s.dedupe_key not in self.sent)


def _has_budgets(config: Config) -> bool:
    budgets = config.budgets
    return bool(budgets.keys) or any(limit is not None for limit in (
        budgets.daily_cost_usd, budgets.monthly_cost_usd, budgets.daily_tokens, budgets.monthly_tokens))
