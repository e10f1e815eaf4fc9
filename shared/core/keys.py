"""Key identity and the key registry.

The database knows a key by a fingerprint (a hash prefix of the secret), a label and a
masked form like `sk-…a1b2`. Each process maps fingerprints back to secrets from its
own config; `KeyRing` is that map and the only place a secret lives at run time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.core.allowances import AllowanceRef, join, matches, sync_allowances
from shared.core.config import Config, KeyConfig
from shared.core.db import write_transaction
from shared.core.models import ApiKey, utcnow
from shared.core.windows import anchor_for

FINGERPRINT_LENGTH = 16
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


def sync_keys(config: Config, *, mark_removed: bool = False) -> KeyRing:
    """Register this config's keys (add new ones, update labels and limits); return its KeyRing.

    With `mark_removed` (the worker, whose config is the pool's), keys missing from config
    are marked `in_config = False`; their history stays. Other processes leave that alone:
    a bot on another host may hold only some of the keys.
    """
    now = utcnow()
    held = []
    with write_transaction():
        allowances = sync_allowances(config, now)
        seen = set()
        for position, key in enumerate(config.keys):
            held.append(_upsert_key(config, key, position, now, tuple(allowances[n] for n in key.allowances)))
            join(held[-1].id, list(held[-1].allowances))
            seen.add(held[-1].id)
        if mark_removed and seen:
            (ApiKey.update(in_config=False)
             .where((ApiKey.in_config == True) & ApiKey.id.not_in(seen)).execute())  # noqa: E712
    return KeyRing(held)


def _upsert_key(config: Config, key: KeyConfig, position: int, now,
                allowances: tuple[AllowanceRef, ...] = ()) -> HeldKey:
    fp = fingerprint(key.secret)
    reset = config.key_reset(key)
    masked = mask(key.secret)
    fields = dict(label=key.label, masked=masked, position=position, base_url=key.base_url,
                  daily_token_limit=config.key_limit(key), in_config=True)
    if not key.enabled:
        # A config can disable a key; only `tokenpool keys enable` re-enables one, so an operator's
        # `keys disable` is not undone by the next process that starts with `enabled = true`.
        fields["disabled"] = True
    # Several processes may register the same key at once: insert-or-ignore, then read.
    ApiKey.insert(fingerprint=fp, reset_mode=reset, window_anchor=anchor_for(reset, now),
                  created_at=now, **fields).on_conflict_ignore().execute()
    row = ApiKey.get(ApiKey.fingerprint == fp)
    if row.reset_mode != reset:
        fields.update(reset_mode=reset, window_anchor=anchor_for(reset, now))
    if row.invalid and row.base_url != key.base_url and row.invalid_reason.startswith(MISCONFIGURED_PREFIX):
        # The wrong base_url that made the key misconfigured has been corrected in config.
        fields.update(invalid=False, invalid_reason="")
    if any(getattr(row, name) != value for name, value in fields.items()):
        ApiKey.update(**fields).where(ApiKey.id == row.id).execute()
    return HeldKey(id=row.id, fingerprint=fp, label=key.label, masked=masked,
                   base_url=key.base_url, secret=key.secret, models=tuple(key.models), allowances=allowances)
