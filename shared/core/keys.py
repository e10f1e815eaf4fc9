"""Key identity and the key registry.

The database knows a key by a fingerprint (a hash prefix of the secret), a label and a
masked form like `sk-…a1b2`. Each process maps fingerprints back to secrets from its
own config; `KeyRing` is that map and the only place a secret lives at run time.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import peewee as pw

from shared.core.allowances import AllowanceRef, join, matches, sync_allowances
from shared.core.config import Config, KeyConfig
from shared.core.db import write_transaction
from shared.core.models import ApiKey, utcnow
from shared.core.windows import anchor_for

FINGERPRINT_LENGTH = 16
log = logging.getLogger("tokenpool.keys")

MISCONFIGURED_PREFIX = "misconfigured"    # invalid_reason of a key whose base_url answered 404/405


def fingerprint(secret: str) -> str:
    """A stable, non-reversible id for a secret: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]


def mask(secret: str) -> str:
    """`sk-…a1b2`: enough to recognise a key, never enough to use it."""
    secret = secret.strip()
    prefix = "sk-" if secret.startswith("sk-") else ""
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{prefix}…{tail}"


@dataclass(frozen=True)
class HeldKey:
    """A key this process can call with: its row id, identity and secret."""
    id: int
    fingerprint: str
    label: str
    masked: str
    base_url: str
    secret: str
    models: tuple[str, ...] = ()      # name patterns of the models it serves; empty: any
    allowances: tuple[AllowanceRef, ...] = ()     # what it draws on (with other keys, maybe)

    def serves(self, model: str) -> bool:
        return matches(self.models, model)

    def allowances_for(self, model: str) -> list[AllowanceRef]:
        """The allowances a call of `model` with this key draws on."""
        return [a for a in self.allowances if a.covers(model)]

    def __repr__(self) -> str:  # never show the secret
        return f"HeldKey({self.label!r}, {self.masked})"


class KeyRing:
    """Secrets this process holds, by ApiKey id."""

    def __init__(self, held: list[HeldKey]):
        self._by_id = {k.id: k for k in held}

    def get(self, key_id: int) -> HeldKey | None:
        return self._by_id.get(key_id)

    def __contains__(self, key_id: int) -> bool:
        return key_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[int]:
        return list(self._by_id)

    def held(self) -> list[HeldKey]:
        return list(self._by_id.values())

    def secrets(self) -> list[str]:
        return [k.secret for k in self._by_id.values()]


OWNER = "worker"     # settings_owner of a key whose settings the pool's config (the worker's) wrote

# The settings of a key that belong to the pool (one owner), compared with a process's config.
POOL_SETTINGS = ("label", "position", "base_url", "daily_token_limit", "reset_mode", "config_disabled")


def sync_keys(config: Config, *, owner: bool = False) -> KeyRing:
    """Register this config's keys and return its KeyRing (fingerprint → secret).

    The pool has one definition. With `owner` (the worker, whose config is the pool's), each
    key's settings (label, position, base_url, daily limit, reset mode, enabled) are written
    and keys missing from config are marked `in_config = False` (their history stays). Any
    other process (a bot, the CLI) only adds keys the pool does not know yet; a key whose
    settings the owner wrote is left alone, and where this config disagrees, one warning
    names the key and the difference. (Before any worker has run, the last process to
    start writes the settings, as there is no other definition.) A key the operator
    disabled (`tokenpool keys disable`) stays disabled whatever any config says.
    """
    now = utcnow()
    held = []
    with write_transaction():
        allowances = sync_allowances(config, now)
        seen = set()
        for position, key in enumerate(config.keys):
            held.append(_sync_key(config, key, position, now, owner=owner,
                                  allowances=tuple(allowances[n] for n in key.allowances)))
            join(held[-1].id, list(held[-1].allowances))
            seen.add(held[-1].id)
        if owner and seen:
            (ApiKey.update(in_config=False)
             .where((ApiKey.in_config == True) & ApiKey.id.not_in(seen)).execute())  # noqa: E712
    return KeyRing(held)


def _sync_key(config: Config, key: KeyConfig, position: int, now, *, owner: bool,
              allowances: tuple[AllowanceRef, ...] = ()) -> HeldKey:
    fp = fingerprint(key.secret)
    reset = config.key_reset(key)
    masked = mask(key.secret)
    fields = dict(label=key.label, masked=masked, position=position, base_url=key.base_url,
                  daily_token_limit=config.key_limit(key), in_config=True, config_disabled=not key.enabled)
    # Several processes may register the same key at once: insert-or-ignore, then read.
    ApiKey.insert(fingerprint=fp, reset_mode=reset, window_anchor=anchor_for(reset, now), created_at=now,
                  disabled=not key.enabled, settings_owner=OWNER if owner else "",
                  **fields).on_conflict_ignore().execute()
    row = ApiKey.get(ApiKey.fingerprint == fp)
    if owner or row.settings_owner != OWNER:
        _write_settings(row, fields, key, reset, now, owner=owner)
        label, base_url = key.label, key.base_url
    else:
        _warn_if_different(row, fields, reset, config)
        label, base_url = row.label, row.base_url    # the pool's, not this file's
    return HeldKey(id=row.id, fingerprint=fp, label=label, masked=masked,
                   base_url=base_url, secret=key.secret, models=tuple(key.models), allowances=allowances)


def _write_settings(row: ApiKey, fields: dict, key: KeyConfig, reset: str, now, *, owner: bool) -> None:
    if row.reset_mode != reset:
        fields.update(reset_mode=reset, window_anchor=anchor_for(reset, now))
    if row.invalid and row.base_url != key.base_url and row.invalid_reason.startswith(MISCONFIGURED_PREFIX):
        # The wrong base_url that made the key misconfigured has been corrected in config.
        fields.update(invalid=False, invalid_reason="")
    if owner and row.settings_owner != OWNER:
        fields.update(settings_owner=OWNER)
    disabled = fields["config_disabled"] or row.operator_disabled
    if any(getattr(row, name) != value for name, value in fields.items()) or row.disabled != disabled:
        # `disabled` in SQL: an operator's `keys disable` that lands meanwhile is kept.
        (ApiKey.update(**fields, disabled=pw.Value(fields["config_disabled"]) | ApiKey.operator_disabled)
         .where(ApiKey.id == row.id).execute())


def _warn_if_different(row: ApiKey, fields: dict, reset: str, config: Config) -> None:
    mine = {**fields, "reset_mode": reset}
    differences = [f"{name} is {_shown(getattr(row, name))} in the pool, {_shown(mine[name])} here"
                   for name in POOL_SETTINGS if getattr(row, name) != mine[name]]
    if differences:
        log.warning("key %r (%s): %s differs from the pool, which the worker's config defines; "
                    "the pool's settings apply (%s)", row.label, row.masked, config.path or "this config",
                    "; ".join(differences))


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)
