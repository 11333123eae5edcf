"""An account's events in words, for the timeline of the account brief (pure functions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ROLE_WORDS = {
    "executive_sponsor": "executive sponsor",
    "champion": "champion",
    "decision_maker": "decision maker",
    "technical_evaluator": "technical evaluator",
    "influencer": "influencer",
    "user": "user",
}
# What a KAM should look at first: the rest is routine (daily usage, paid invoices).
NOTABLE_KINDS = ("relationship", "payment", "support", "engagement", "outcome")


def _role(value: Any) -> str:
    return ROLE_WORDS.get(str(value), str(value))


def _usage(_verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    users = f", {d['active_users']} active users" if d.get("active_users") is not None else ""
    return "usage", f"Usage: {d.get('quantity', 0):,.0f} {d.get('metric', 'units')}{users}"


def _ticket(verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    csat = f", satisfaction {d['csat']}/5" if d.get("csat") else ""
    return "support", f"{str(d.get('priority', '')).capitalize()} ticket {d.get('ticket_id')} {verb}{csat}"


def _invoice(verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    amount = f"{d.get('amount')} {d.get('currency', '')}".strip()
    if verb == "overdue":
        return (
            "payment",
            f"Invoice {d.get('invoice_id')} ({amount}) is {d.get('days_overdue', 0)} days overdue",
        )
    return "payment" if verb != "paid" else "billing", f"Invoice {d.get('invoice_id')} ({amount}) {verb}"


def _payment(_verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    why = f": {d['failure_reason']}" if d.get("failure_reason") else ""
    return "payment", f"Payment of {d.get('amount')} {d.get('currency', '')} failed{why}"


def _subscription(_verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    before = f" (was {d['previous_mrr']})" if d.get("previous_mrr") is not None else ""
    cancel = ", cancels at period end" if d.get("cancel_at_period_end") else ""
    text = (
        f"Subscription {d.get('subscription_id')} {d.get('status')}: MRR {d.get('mrr')} {d.get('currency')}"
    )
    return "billing", text + before + cancel


def _contact(verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    who = f"{_role(d.get('role'))} {d.get('contact_id')}" + (" (executive)" if d.get("executive") else "")
    if verb == "role_changed":
        return (
            "relationship",
            f"Contact {d.get('contact_id')} moved from {_role(d.get('previous_role'))} to "
            + _role(d.get("role")),
        )
    return "relationship", f"The {who} {'left' if verb == 'left' else 'joined'}"


def _engagement(_verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    kind = "QBR" if d.get("kind") == "qbr" else "Meeting"
    outcome = {"held": "held", "declined": "declined by the customer", "no_show": "missed (no-show)"}
    return "engagement", f"{kind} {outcome.get(str(d.get('outcome')), d.get('outcome'))}"


def _survey(_verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    return "engagement", f"NPS answer: {d.get('score')}/10"


def _outcome(verb: str, d: Mapping[str, Any]) -> tuple[str, str]:
    why = f": {d['reason']}" if d.get("reason") else ""
    return "outcome", f"The account {verb}{why}"


DESCRIBERS: dict[str, Callable[[str, Mapping[str, Any]], tuple[str, str]]] = {
    "usage": _usage,
    "ticket": _ticket,
    "invoice": _invoice,
    "payment": _payment,
    "subscription": _subscription,
    "contact": _contact,
    "engagement": _engagement,
    "survey": _survey,
    "account": _outcome,
}


def describe(event_type: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, sentence) for one event, e.g. ('relationship', 'The champion C-1 left')."""
    family, _, verb = event_type.partition(".")
    describer = DESCRIBERS.get(family)
    if describer is None:
        return "other", event_type
    try:
        return describer(verb, data)
    except (TypeError, ValueError):  # stored payloads are validated; stay readable regardless
        return "other", event_type
