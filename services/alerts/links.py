"""Signed, expiring action links (Acknowledge/Snooze) that work without an API key."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, Signer

ACTIONS = ("ack", "snooze")


@dataclass(frozen=True)
class LinkClaim:
    """What a link allows: one action on one alert, by one recipient, until a time."""

    alert_id: int
    action: str
    actor: str
    expires: datetime


class LinkInvalid(Exception):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signer(secret: str) -> Signer:
    return Signer(secret, salt="kamwatch.alert-link", sep=".", digest_method=hashlib.sha256)


def sign(secret: str, claim: LinkClaim) -> str:
    """An opaque token: base64(JSON claim) '.' its HMAC-SHA256 signature (itsdangerous)."""
    payload = {"a": claim.alert_id, "x": claim.action, "r": claim.actor, "e": int(claim.expires.timestamp())}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return _signer(secret).sign(body).decode()


def verify(secret: str, token: str, now: datetime) -> LinkClaim:
    """The claim of a token whose signature matches (constant-time) and that has not expired."""
    try:
        body = _signer(secret).unsign(token).decode()
    except BadSignature:
        raise LinkInvalid(
            "this link is not valid (it was changed or belongs to another installation)"
        ) from None
    try:
        payload = json.loads(_unb64(body))
        claim = LinkClaim(
            alert_id=int(payload["a"]),
            action=str(payload["x"]),
            actor=str(payload["r"]),
            expires=datetime.fromtimestamp(int(payload["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError):
        raise LinkInvalid("this link is not valid") from None
    if claim.action not in ACTIONS:
        raise LinkInvalid("this link is not valid")
    if claim.expires <= now:
        raise LinkInvalid("this link has expired; use the kamwatch API or a newer message")
    return claim
