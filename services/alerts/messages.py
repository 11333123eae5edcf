"""Message rendering (pure): Slack Block Kit payloads and e-mails with text and HTML parts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime

from services.alerts.templates import render

TRIGGER_WORDS = {
    "band_red": "entered the red risk band",
    "band_amber": "entered the amber risk band",
    "score_rise": "risk score rose sharply",
}
SLACK_HANDLE = re.compile(r"@?([A-Za-z0-9][A-Za-z0-9._-]{0,79})")
KIND_WORDS = {
    "notify": "Churn risk",
    "escalation": "Escalated: churn risk",
    "repeat": "Reminder: churn risk",
    "update": "Update: churn risk",
    "resolution": "Resolved: churn risk",
}


@dataclass(frozen=True)
class MessageContext:
    """Everything one message says; built once when the step is decided."""

    alert_id: int
    kind: str  # notify|escalation|repeat|resolution
    level: int
    account_name: str
    arr: Decimal
    currency: str
    score: float
    band: str
    previous_band: str | None
    triggers: list[str]
    drivers: list[str]
    changes: list[str]
    recipient_name: str
    role: str
    ack_url: str | None = None
    snooze_url: str | None = None
    brief_url: str | None = None  # the account brief in the console
    reason: str = ""
    waited: str | None = None  # escalations: how long nobody acknowledged
    next_steps: list[str] = field(default_factory=list)  # open playbook steps with due dates
    escalates: str | None = None  # to whom and when it climbs next
    snooze_for: str = "4 hours"  # the Snooze link's length, on its button
    renewal: str | None = None  # "2027-01-15 (in 75 days)"
    at_risk: str | None = None  # revenue at risk, ARR x score, in the account's currency
    mention: str | None = None  # the recipient's Slack handle
    extra: dict[str, str] = field(default_factory=dict)


def trigger_words(trigger: str) -> str:
    return TRIGGER_WORDS.get(trigger, trigger.replace("_", " "))


def headline(ctx: MessageContext) -> str:
    if ctx.band == "churned":
        return f"Churned: {ctx.account_name} left; its churn-risk alert is closed"
    return f"{KIND_WORDS[ctx.kind]}: {ctx.account_name} is {ctx.band.upper()} ({ctx.score * 100:.0f}/100)"


def money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.0f}"


def summary_lines(ctx: MessageContext) -> list[str]:
    """The facts in order: why, value, drivers, what changed."""
    lines = [f"Account: {ctx.account_name} (ARR {money(ctx.arr, ctx.currency)})"]
    band = ctx.band.upper() + (f", was {ctx.previous_band.upper()}" if ctx.previous_band else "")
    lines.append(f"Risk score: {ctx.score * 100:.0f}/100 ({band})")
    if ctx.at_risk and ctx.kind != "resolution":
        lines.append(f"Revenue at risk: {ctx.at_risk}")
    if ctx.renewal and ctx.kind != "resolution":
        lines.append(f"Renewal: {ctx.renewal}")
    if ctx.kind == "resolution":
        lines.append(f"Resolved: {ctx.reason}")
        return lines
    lines.append("Why: " + "; ".join(trigger_words(t) for t in ctx.triggers))
    if ctx.kind == "update" and ctx.reason:
        lines.append(f"New since the last message: {ctx.reason}")
    if ctx.waited:
        why = ctx.waited if ctx.waited.startswith("the ") else f"not acknowledged within {ctx.waited}"
        lines.append(f"Escalated to you (level {ctx.level}): {why}")
    if ctx.escalates:
        lines.append(f"Escalates {ctx.escalates}")
    return lines


def mrkdwn(text: str) -> str:
    """Slack's escaping: &, < and > are control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(ctx: MessageContext) -> dict[str, object]:
    """An incoming-webhook payload: text fallback plus Block Kit blocks with action links."""
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(ctx)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn("\n".join(summary_lines(ctx)))}},
    ]
    if ctx.drivers and ctx.kind != "resolution":
        text = "*Drivers*\n" + "\n".join(f"• {mrkdwn(d)}" for d in ctx.drivers)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if ctx.changes and ctx.kind != "resolution":
        text = "*What changed*\n" + "\n".join(f"• {mrkdwn(c)}" for c in ctx.changes)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if ctx.next_steps:
        text = "*Next steps*\n" + "\n".join(f"{i}. {mrkdwn(s)}" for i, s in enumerate(ctx.next_steps, 1))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url, **style}
        for label, url, style in (
            ("Acknowledge", ctx.ack_url, {"style": "primary"}),
            (f"Snooze {ctx.snooze_for}", ctx.snooze_url, {}),
            ("Open the account brief", ctx.brief_url, {}),
        )
        if url
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"kamwatch alert #{ctx.alert_id}"}]}
    )
    # The top-level text is mrkdwn too (notifications, fallback): escaped like the blocks, so an
    # account named "<!channel>" cannot ping a whole channel or render a disguised link. The
    # recipient is @mentioned only by a handle that is a plain Slack ID or name.
    handle = SLACK_HANDLE.fullmatch(ctx.mention) if ctx.mention else None
    plain = handle is not None and handle.group(1).lower() not in ("here", "channel", "everyone")
    mention = f"<@{handle.group(1)}> " if handle and plain else ""
    if mention:
        blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": mention.strip()}})
    return {"text": mention + mrkdwn(headline(ctx)), "blocks": blocks}


def email_text(ctx: MessageContext) -> str:
    parts = [f"Hello {ctx.recipient_name},", "", *summary_lines(ctx)]
    if ctx.drivers and ctx.kind != "resolution":
        parts += ["", "Drivers:", *(f"- {d}" for d in ctx.drivers)]
    if ctx.changes and ctx.kind != "resolution":
        parts += ["", "What changed:", *(f"- {c}" for c in ctx.changes)]
    if ctx.next_steps:
        parts += ["", "Next steps:", *(f"{i}. {s}" for i, s in enumerate(ctx.next_steps, 1))]
    if ctx.ack_url:
        parts += ["", f"Acknowledge: {ctx.ack_url}"]
    if ctx.snooze_url:
        parts += [f"Snooze {ctx.snooze_for}: {ctx.snooze_url}"]
    if ctx.brief_url:
        parts += [f"Account brief: {ctx.brief_url}"]
    parts += ["", f"-- kamwatch alert #{ctx.alert_id} (automatic message)"]
    return "\n".join(parts) + "\n"


def email_html(ctx: MessageContext) -> str:
    return render("email.html", ctx=ctx, headline=headline(ctx), summary=summary_lines(ctx))


@dataclass(frozen=True)
class Envelope:
    sender: str
    to: str
    message_id: str
    date: datetime
    references: list[str] = field(default_factory=list)


def email_message(ctx: MessageContext, envelope: Envelope) -> EmailMessage:
    """Text + HTML alternative, auto-generated, threaded under earlier messages of the alert."""
    message = EmailMessage()
    message["Subject"] = headline(ctx)
    message["From"] = envelope.sender
    message["To"] = envelope.to
    message["Date"] = format_datetime(envelope.date)
    message["Message-ID"] = envelope.message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Kamwatch-Alert"] = str(ctx.alert_id)
    if envelope.references:  # every later message replies to the alert's first one: one thread root
        message["In-Reply-To"] = envelope.references[0]
        message["References"] = " ".join(envelope.references)
    message.set_content(email_text(ctx))
    message.add_alternative(email_html(ctx), subtype="html")
    return message


def message_id(alert_id: int, step: str, recipient: str, domain: str) -> str:
    """Stable: the same alert, step and recipient always give the same Message-ID."""
    import hashlib

    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:10]
    return f"<kamwatch.alert-{alert_id}.{step}.{digest}@{domain}>"
