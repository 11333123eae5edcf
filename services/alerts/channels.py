"""The two channels: Slack incoming webhooks and SMTP. Each send returns an outcome, never raises."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email import message_from_string, policy
from email.message import EmailMessage
from typing import Literal

import httpx

from shared.netguard import slack_url_allowed

__all__ = ["SendResult", "SmtpConfig", "send_email", "send_slack", "slack_url_allowed"]

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str
    retry_after_s: float | None = None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def send_slack(url: str, payload: str, timeout_s: float, require_https: bool) -> SendResult:
    """POST the JSON payload; 429/5xx/network errors are retried, other 4xx are permanent."""
    if require_https and not url.startswith("https://"):
        return SendResult("failed", "Slack webhook must be https:// in the prod profile")
    try:
        response = httpx.post(
            url, content=payload, headers={"Content-Type": "application/json"}, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        return SendResult("retry", f"Slack webhook unreachable: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return SendResult("sent", f"HTTP {status}")
    # Never the reply body: it is whatever the server at that URL chose to send back, and it
    # would be stored and shown to every risk:read key (issue 11 Medium #3).
    detail = f"HTTP {status}"
    if status == 429:
        return SendResult("retry", detail, _retry_after(response.headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return SendResult("retry", detail)
    return SendResult("failed", detail)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None
    password: str | None
    timeout_s: float


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    if config.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            config.host, config.port, timeout=config.timeout_s, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        if config.security == "starttls":
            client.starttls(context=ssl.create_default_context())
    if config.username:
        client.login(config.username, config.password or "")
    return client


def send_email(config: SmtpConfig, raw: str) -> SendResult:
    """Send one RFC 5322 message; SMTP 4xx and connection problems are retried, 5xx are permanent."""
    message = message_from_string(raw, _class=EmailMessage, policy=policy.SMTP)
    try:
        with _connect(config) as client:
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return _by_code(min(codes, default=550), f"recipient refused: {exc.recipients}")
    except smtplib.SMTPResponseException as exc:
        return _by_code(exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
    except (smtplib.SMTPException, OSError) as exc:
        return SendResult("retry", f"SMTP server unreachable: {type(exc).__name__}: {exc}")
    if refused:
        return SendResult("failed", f"recipient refused: {refused}")
    return SendResult("sent", "SMTP 250")


def _by_code(code: int, detail: str) -> SendResult:
    return SendResult("retry" if 400 <= code < 500 else "failed", detail[:500])
