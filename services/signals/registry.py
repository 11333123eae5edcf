"""Account registry logic: records from PUT bodies and CSV rows, and their CloudEvents."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from shared.contracts import BILLING_PERIODS, MAX_RECORD_BYTES, AccountRecord
from shared.errors import PayloadTooLarge, Problem, ValidationFailed, problems_from, summary
from shared.netguard import slack_url_allowed, stored_url_problem

PEOPLE = ("owner", "manager", "sponsor")
PERSON_FIELD = {"owner": "owner", "manager": "manager", "sponsor": "executive_sponsor"}
QUALIFICATION_COLUMNS = (
    "potential_arr",
    "gross_margin",
    "reference_customer",
    "target_sector",
    "innovation_partner",
)
PLAIN_COLUMNS = (
    "id",
    "name",
    "arr",
    "currency",
    "tier",
    "segment",
    "renewal_date",
    "term_months",
    *QUALIFICATION_COLUMNS,
)
CSV_COLUMNS = (
    *PLAIN_COLUMNS[:7],
    *(f"{p}_{f}" for p in PEOPLE for f in ("name", "email", "slack_webhook")),
    "external_ids",
    "term_months",
    "billing_period",
    *QUALIFICATION_COLUMNS,
)


@dataclass(frozen=True)
class WebhookRules:
    """Where a registry Slack webhook may point (shared/netguard.py): never at loopback or
    private addresses unless trusted; in prod only at the allow-listed hosts."""

    trusted: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None  # None: any public host (dev)

    def problems(self, record: AccountRecord, column_names: bool = False) -> list[Problem]:
        found = []
        for role in ("owner", "manager", "executive_sponsor"):
            person = getattr(record, role)
            url = person.slack_webhook if person else None
            if not url:
                continue
            field = f"{role}.slack_webhook"
            if column_names:
                field = f"{'sponsor' if role == 'executive_sponsor' else role}_slack_webhook"
            problem = stored_url_problem(url, self.trusted)
            allowed = self.allowed_hosts
            if problem is None and allowed is not None and not slack_url_allowed(url, list(allowed)):
                problem = (
                    "must be an https:// URL on a host in KAMWATCH_SIGNALS_SLACK_ALLOWED_HOSTS "
                    f"({', '.join(allowed)})"
                )
            if problem:
                found.append(Problem(field, problem))
        return found


def ceiling_problems(record: AccountRecord, max_arr: Decimal | None) -> list[Problem]:
    """ARR (and potential ARR) above the configured ceiling: most likely a typo (cents as units,
    an extra digit), and one such account would top every revenue-at-risk list."""
    if max_arr is None:
        return []
    return [
        Problem(
            field, f"{value} is above the ceiling {max_arr:,} (KAMWATCH_SIGNALS_MAX_ARR); check the amount"
        )
        for field, value in (("arr", record.arr), ("potential_arr", record.potential_arr))
        if value is not None and value > max_arr
    ]


def record_from_body(
    account_id: str,
    body: dict[str, Any],
    now: datetime,
    rules: WebhookRules | None = None,
    max_arr: Decimal | None = None,
) -> AccountRecord:
    """Validate a PUT body (id optional, must match the path); the server sets updated_at."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", problems=[Problem("body", "expected an object")]
        )
    if "id" in body and body["id"] != account_id:
        raise ValidationFailed(
            f"body id {body['id']!r} differs from the path id {account_id!r}",
            problems=[Problem("id", f"must equal the path id {account_id!r} or be left out")],
        )
    size = len(json.dumps(body, default=str).encode())
    if size > MAX_RECORD_BYTES:
        # A 5 MB record was answered 200 and then failed every relay tick (MessageSizeTooLarge).
        raise PayloadTooLarge(
            f"the account record is {size} bytes; at most {MAX_RECORD_BYTES} bytes are accepted"
        )
    body, problems = with_term_from_billing_period(body)
    try:
        record = AccountRecord.model_validate({**body, "id": account_id, "updated_at": now})
        problems += ceiling_problems(record, max_arr)
        problems += (rules or WebhookRules()).problems(record)
    except ValidationError as exc:
        problems += problems_from(exc.errors(include_url=False), empty="body")
    if problems:
        raise ValidationFailed("invalid account: " + summary(problems), problems=problems)
    return record


def with_term_from_billing_period(body: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """`billing_period` (monthly | quarterly | annual) is another way to write `term_months`; the
    stored record keeps only term_months. Both given: they must agree."""
    if "billing_period" not in body:
        return body, []
    body = dict(body)
    period = body.pop("billing_period")
    if period is None or period == "":
        return body, []
    months = BILLING_PERIODS.get(str(period).strip().lower()) if isinstance(period, str) else None
    if months is None:
        known = ", ".join(BILLING_PERIODS)
        return body, [Problem("billing_period", f"must be one of {known} (or give term_months in months)")]
    given = body.get("term_months")
    if given not in (None, "") and str(given).strip() != str(months):
        return body, [
            Problem(
                "billing_period",
                f"{period!r} means term_months {months}, but term_months is {given!r}; give one of them",
            )
        ]
    body["term_months"] = months
    return body, []


def record_json(record: AccountRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


# --- CSV import --------------------------------------------------------------------------------
def parse_csv(
    text: str, now: datetime, rules: WebhookRules | None = None, max_arr: Decimal | None = None
) -> tuple[list[AccountRecord], list[dict[str, Any]]]:
    """Records and every row's problems (`row` = line number in the file, header = line 1)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems: list[dict[str, Any]] = []
    missing = [c for c in ("id", "name", "arr") if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        for column in missing:
            problems.append({"row": 1, "field": column, "message": "required column is missing"})
        for column in unknown:
            problems.append(
                {"row": 1, "field": column, "message": f"unknown column; known: {', '.join(CSV_COLUMNS)}"}
            )
        return [], problems
    records: list[AccountRecord] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        record, row_problems = _record_from_row(values, now)
        if record is not None:
            row_problems += ceiling_problems(record, max_arr)
            row_problems += (rules or WebhookRules()).problems(record, column_names=True)
        if record is not None and record.id in seen:
            row_problems.append(Problem("id", f"duplicate of row {seen[record.id]}"))
        if record is not None:
            seen.setdefault(record.id, line)
        problems += [{"row": line, "field": p.field, "message": p.message} for p in row_problems]
        if record is not None and not row_problems:
            records.append(record)
    return records, problems


def _record_from_row(values: dict[str, str], now: datetime) -> tuple[AccountRecord | None, list[Problem]]:
    body: dict[str, Any] = {k: v for k, v in values.items() if k in PLAIN_COLUMNS and v != ""}
    if values.get("billing_period"):
        body["billing_period"] = values["billing_period"]
    for person in PEOPLE:
        fields = {f: values.get(f"{person}_{f}", "") for f in ("name", "email", "slack_webhook")}
        if any(fields.values()):
            body[PERSON_FIELD[person]] = {k: v for k, v in fields.items() if v}
    body, problems = with_term_from_billing_period(body)
    try:
        body["external_ids"] = parse_external_ids(values.get("external_ids", ""))
    except ValueError as exc:
        problems.append(Problem("external_ids", str(exc)))
    body["updated_at"] = now
    try:
        return AccountRecord.model_validate(body), problems
    except ValidationError as exc:
        problems += [_csv_problem(p) for p in problems_from(exc.errors(include_url=False), empty="row")]
        return None, problems


def _csv_problem(problem: Problem) -> Problem:
    """Name the CSV column, not the nested model path (owner.email -> owner_email)."""
    head, _, tail = problem.field.partition(".")
    column = {v: k for k, v in PERSON_FIELD.items()}.get(head)
    if column and tail:
        return Problem(f"{column}_{tail}", problem.message)
    return problem


def parse_external_ids(text: str) -> dict[str, str]:
    """'stripe=cus_1;zendesk=123' -> {'stripe': 'cus_1', 'zendesk': '123'}."""
    ids: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        system, sep, external = part.partition("=")
        if not sep or not system.strip() or not external.strip():
            raise ValueError(f"{part!r} is not system=id; write e.g. 'stripe=cus_1;zendesk=123'")
        ids[system.strip()] = external.strip()
    return ids
