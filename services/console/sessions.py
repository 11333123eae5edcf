"""Console sessions: a random id in a signed, HttpOnly, SameSite cookie; the API key stays on the
server (in memory), so a stolen cookie expires with the session and never reveals the key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE = "kw_session"
SIGNIN_COOKIE = "kw_signin"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def mac(secret: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value` for one purpose (cookie, sign-in form), base64url."""
    return _b64(hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).digest())


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class UserSession:
    """Who is signed in and what their key allows."""

    sid: str
    key: str
    key_id: str
    key_name: str
    scopes: frozenset[str]
    email: str | None
    csrf: str
    expires: datetime

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def user(self) -> str:
        return self.email or self.key_name


class SessionStore:
    """Sessions by id, oldest evicted beyond `max_sessions`; thread-safe (routes run in a pool)."""

    def __init__(self, secret: str, lifetime: timedelta, max_sessions: int) -> None:
        self.secret = secret
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, UserSession] = OrderedDict()
        self._lock = threading.Lock()

    def create(
        self, key: str, identity: dict[str, object], email: str | None, now: datetime, sid: str | None = None
    ) -> UserSession:
        scopes = identity.get("scopes")
        session = UserSession(
            sid=sid or secrets.token_urlsafe(24),
            key=key,
            key_id=str(identity.get("key_id", "")),
            key_name=str(identity.get("name", "")),
            scopes=frozenset(str(s) for s in scopes) if isinstance(scopes, list) else frozenset(),
            email=email,
            csrf=secrets.token_urlsafe(24),
            expires=now + self.lifetime,
        )
        with self._lock:
            self._sessions[session.sid] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def cookie_value(self, session: UserSession) -> str:
        return f"{session.sid}.{mac(self.secret, 'session', session.sid)}"

    def find(self, cookie: str | None, now: datetime) -> UserSession | None:
        """The live session a cookie names, or None (unsigned, forged, expired or unknown)."""
        sid, _, signature = (cookie or "").partition(".")
        if not sid or not signature or not same(signature, mac(self.secret, "session", sid)):
            return None
        return self.get(sid, now)

    def get(self, sid: str, now: datetime) -> UserSession | None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= now:
                del self._sessions[sid]
                return None
            return session

    def drop(self, session: UserSession) -> None:
        with self._lock:
            self._sessions.pop(session.sid, None)
