"""Bearer API keys: random, shown once, stored as SHA-256 hashes, each with scopes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shared.db import Base, UTCDateTime, transaction

SCOPES = ("events:write", "risk:read", "accounts:write", "alerts:write", "admin")
KEY_PREFIX = "kw_"


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def _hash(key: str) -> str:
    # Keys carry 190+ bits of randomness, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    return sorted(set(scopes))


def create_key(session: Session, name: str, scopes: list[str], now: datetime | None = None) -> str:
    """Create a key and return it in clear; only its hash is stored."""
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    session.add(
        ApiKey(
            key_id=key_id,
            name=name,
            key_hash=_hash(key),
            scopes=" ".join(check_scopes(scopes)),
            created_at=now or datetime.now(UTC),
        )
    )
    session.flush()
    return key


def revoke_key(session: Session, key_id: str, now: datetime | None = None) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or datetime.now(UTC)
    session.flush()
    return True


def lookup_scopes(session: Session, key: str) -> set[str] | None:
    """The scopes of a valid, unrevoked key, or None."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    key_id = key[len(KEY_PREFIX) :].split("_", 1)[0]
    row = session.execute(select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return set(row.scopes.split())


class KeyCache:
    """Scopes of keys checked in the last `ttl_s` seconds, so a request does not read the key table
    (twice: the body-limit middleware and the route's scope check). Only valid keys are kept, by
    their hash, at most `max_entries` (least recently used out first): a new key works at once, an
    unknown one is always looked up, and a key revoked elsewhere (`kamwatch keys revoke`, another
    replica) stops working within `ttl_s`. `ttl_s=0` turns the cache off."""

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 1024, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._now = now
        self._entries: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, key: str) -> set[str] | None:
        """The key's scopes if a fresh entry holds them (no I/O), else None."""
        if self.ttl_s <= 0:
            return None
        digest = _hash(key)
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None or hit[0] <= self._now():
                return None
            self._entries.move_to_end(digest)
            return set(hit[1])

    def scopes(self, key: str, load: Callable[[], set[str] | None]) -> set[str] | None:
        """The key's scopes from the cache while fresh, else from `load()` (the key table)."""
        if self.ttl_s <= 0:
            return load()
        digest = _hash(key)
        with self._lock:
            hit = self._entries.get(digest)
            if hit is not None and hit[0] > self._now():
                self._entries.move_to_end(digest)
                return set(hit[1])
        scopes = load()
        with self._lock:
            if scopes is None:
                self._entries.pop(digest, None)
                return None
            self._entries[digest] = (self._now() + self.ttl_s, frozenset(scopes))
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return scopes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def ensure_local_key(factory: sessionmaker[Session], path: Path) -> str:
    """The embedded profile's all-scopes key: reuse var/api-key if still valid, else make one."""
    if path.exists():
        key = path.read_text().strip()
        with transaction(factory) as session:
            if lookup_scopes(session, key) is not None:
                return key
    with transaction(factory) as session:
        key = create_key(session, "local (make run)", list(SCOPES))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key
