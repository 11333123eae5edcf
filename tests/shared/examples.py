"""One example `data` per event type (the same ones docs/events.md shows)."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {
    "usage.recorded": {"metric": "api_calls", "quantity": 18250, "active_users": 42},
    "ticket.opened": {"ticket_id": "ZD-1042", "priority": "urgent", "status": "open"},
    "ticket.updated": {"ticket_id": "ZD-1042", "priority": "urgent", "status": "open", "reopened": True},
    "ticket.closed": {"ticket_id": "ZD-1042", "priority": "urgent", "status": "solved", "csat": 2},
    "invoice.issued": {
        "invoice_id": "in_1Q",
        "amount": "30000.00",
        "currency": "EUR",
        "due_date": "2026-10-15",
    },
    "invoice.paid": {
        "invoice_id": "in_1Q",
        "amount": "30000.00",
        "currency": "EUR",
        "due_date": "2026-10-15",
        "days_overdue": 12,
    },
    "invoice.overdue": {
        "invoice_id": "in_1Q",
        "amount": "30000.00",
        "currency": "EUR",
        "due_date": "2026-09-15",
        "days_overdue": 47,
    },
    "payment.failed": {
        "invoice_id": "in_1Q",
        "amount": "30000.00",
        "currency": "EUR",
        "failure_reason": "card_declined",
    },
    "subscription.changed": {
        "subscription_id": "sub_9",
        "status": "active",
        "mrr": "8000.00",
        "previous_mrr": "10000.00",
        "currency": "EUR",
    },
    "contact.joined": {"contact_id": "crm-881", "role": "executive_sponsor", "executive": True},
    "contact.left": {"contact_id": "crm-112", "role": "champion"},
    "contact.role_changed": {"contact_id": "crm-113", "role": "user", "previous_role": "decision_maker"},
    "engagement.recorded": {"kind": "qbr", "outcome": "declined", "scheduled_for": "2026-11-20"},
    "survey.responded": {"score": 4, "survey": "nps", "contact_id": "crm-113"},
    "account.churned": {"reason": "moved to a competitor", "arr": "360000", "currency": "EUR"},
    "account.renewed": {"arr": "390000", "currency": "EUR"},
}
