"""Synthetic canonical event streams for the signals tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.events import make_event

DAY = timedelta(days=1)


def event(
    event_type: str, account: str, time: datetime, data: dict[str, Any], id: str, source: str = "test"
) -> Any:
    return make_event(event_type, data, id=id, source=source, time=time, subject=account)


def daily_usage(account: str, start: datetime, days: int, quantity: float, source: str = "test") -> list[Any]:
    return [
        event(
            "usage.recorded",
            account,
            start + i * DAY,
            {"metric": "api_calls", "quantity": quantity, "active_users": 20},
            id=f"{account}-u-{(start + i * DAY).date()}",
            source=source,
        )
        for i in range(days)
    ]


def contact(account: str, kind: str, contact_id: str, role: str, time: datetime, source: str = "test") -> Any:
    return event(
        f"contact.{kind}",
        account,
        time,
        {"contact_id": contact_id, "role": role},
        id=f"{account}-c-{contact_id}-{kind}",
        source=source,
    )


def invoice(
    account: str,
    kind: str,
    invoice_id: str,
    due: datetime,
    time: datetime,
    amount: str = "12000.00",
    source: str = "test",
) -> Any:
    return event(
        f"invoice.{kind}",
        account,
        time,
        {"invoice_id": invoice_id, "amount": amount, "currency": "EUR", "due_date": due.date().isoformat()},
        id=f"{account}-i-{invoice_id}-{kind}",
        source=source,
    )


def healthy_history(account: str, now: datetime, source: str = "test") -> list[Any]:
    """120 days of steady usage, three engaged contacts, invoices paid on time."""
    start = now - 120 * DAY
    events = daily_usage(account, start, 121, 1000.0, source)
    events += [
        contact(account, "joined", "champ", "champion", start, source),
        contact(account, "joined", "sponsor", "executive_sponsor", start, source),
        contact(account, "joined", "user1", "user", start, source),
        invoice(account, "issued", "INV-1", now - 60 * DAY, now - 90 * DAY, source=source),
        invoice(account, "paid", "INV-1", now - 60 * DAY, now - 61 * DAY, source=source),
    ]
    return events


def decline(account: str, now: datetime, source: str = "test") -> list[Any]:
    """The 30 days up to `now`: usage halves, the champion leaves 12 days ago, an invoice is
    45 days overdue."""
    events = daily_usage(account, now - 29 * DAY, 30, 500.0, source)
    events.append(contact(account, "left", "champ", "champion", now - 12 * DAY, source))
    events.append(invoice(account, "issued", "INV-2", now - 45 * DAY, now - 75 * DAY, source=source))
    events.append(invoice(account, "overdue", "INV-2", now - 45 * DAY, now - 2 * DAY, source=source))
    return events


def support_and_engagement(account: str, now: datetime, source: str = "test") -> list[Any]:
    """Tickets (one reopened, one urgent still open), a CSAT, a detractor NPS, a declined QBR."""

    def ticket(kind: str, ticket_id: str, priority: str, time: datetime, **extra: Any) -> Any:
        status = "solved" if kind == "closed" else "open"
        data = {"ticket_id": ticket_id, "priority": priority, "status": status, **extra}
        return event(
            f"ticket.{kind}", account, time, data, id=f"{account}-t-{ticket_id}-{kind}", source=source
        )

    return [
        ticket("opened", "T-1", "high", now - 20 * DAY),
        ticket("updated", "T-1", "high", now - 15 * DAY, reopened=True),
        ticket("closed", "T-1", "high", now - 10 * DAY, csat=2),
        ticket("opened", "T-2", "urgent", now - 5 * DAY),
        event("survey.responded", account, now - 8 * DAY, {"score": 4}, id=f"{account}-nps-1", source=source),
        event(
            "survey.responded", account, now - 40 * DAY, {"score": 9}, id=f"{account}-nps-0", source=source
        ),
        event(
            "engagement.recorded",
            account,
            now - 25 * DAY,
            {"kind": "qbr", "outcome": "declined"},
            id=f"{account}-qbr-1",
            source=source,
        ),
        event(
            "payment.failed",
            account,
            now - 3 * DAY,
            {"invoice_id": "INV-2", "amount": "12000.00", "currency": "EUR"},
            id=f"{account}-pf-1",
            source=source,
        ),
    ]


def full_story(account: str, now: datetime, source: str = "test") -> list[Any]:
    """Healthy history, then decline, tickets, surveys and engagement, in time order."""
    events = healthy_history(account, now - 30 * DAY, source) + decline(account, now, source)
    events += support_and_engagement(account, now, source)
    return sorted(events, key=lambda e: (e.time, e.id))
