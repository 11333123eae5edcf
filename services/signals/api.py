"""HTTP routes of signals (thin): the account registry and risk queries. Each route runs in one
request-scoped session (SessionDep), which the API-key check shares."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, NoReturn

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from services.signals import metrics, repository
from services.signals.config import SignalsSettings
from services.signals.kam_api import router as kam_router
from services.signals.models import Account, RiskScore
from services.signals.money import Rates, load_rates
from services.signals.outbox import account_message
from services.signals.registry import WebhookRules, parse_csv, record_from_body, record_json
from services.signals.schemas import (
    Band,
    FeaturesOut,
    HistoryItem,
    HistoryOut,
    ImportOut,
    PortfolioOut,
    RegistryOut,
    RiskOut,
)
from shared.cache import TtlMemo
from shared.contracts import AccountRecord, Driver, mask_people
from shared.errors import NotFound, Problem, TransientError, ValidationFailed
from shared.events import ACCOUNT_ID_PATTERN
from shared.logging import get_logger
from shared.web import (
    ClockDep,
    Principal,
    PublisherDep,
    ReaderDep,
    SessionDep,
    StrictQuery,
    app_part,
    require_scope,
)

log = get_logger(__name__)
router = APIRouter(prefix="/v1")
ReadAuth = Annotated[Principal, Depends(require_scope("risk:read"))]
WriteAuth = Annotated[Principal, Depends(require_scope("accounts:write"))]
SettingsDep = Annotated[SignalsSettings, Depends(app_part("settings"))]


PortfolioMemoDep = Annotated[TtlMemo[Any], Depends(app_part("portfolio_memo"))]


async def _rates(settings: SettingsDep, memo: PortfolioMemoDep) -> Rates:
    """The reporting currency and its rates table, re-read when the file changes. The file is
    looked at (a stat(), on the event loop) at most every `portfolio_cache_s` seconds: the stat
    was a twentieth of the portfolio route's time."""
    where = (settings.rates_path, settings.reporting_currency)
    rates: Rates = memo.get(("rates", where), lambda: load_rates(*where))
    return rates


RatesDep = Annotated[Rates, Depends(_rates)]
MAX_CSV_BYTES = 10 * 1024 * 1024
router.include_router(kam_router)  # the KAM numbers: revenue, renewals, post-mortems


def _webhook_rules(settings: SignalsSettings) -> WebhookRules:
    """Registry Slack webhooks: never internal addresses; in prod only allow-listed hosts."""
    prod = settings.common.profile == "prod"
    return WebhookRules(
        tuple(settings.common.trusted_webhook_hosts), tuple(settings.slack_allowed_hosts) if prod else None
    )


# --- registry ------------------------------------------------------------------------------------
@router.put("/accounts/{account_id}", tags=["accounts"], response_model=AccountRecord)
def put_account(
    _auth: WriteAuth,
    account_id: str,
    body: Annotated[Any, Body()],
    session: SessionDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Create or replace an account (AccountRecord fields; `id` optional, must match the path)."""
    record = record_from_body(account_id, body, clock.now(), _webhook_rules(settings), settings.max_arr)
    row, changed = repository.save_account(session, record, record_json(record))
    if changed:
        session.commit()  # durable before it is announced; the outbox relays it if the publish fails
        publish_now(session, publisher, settings, [row], clock.now())
    return json.loads(row.record)


@router.get("/accounts/{account_id}", tags=["accounts"], response_model=AccountRecord)
def get_account(account_id: str, session: SessionDep, auth: ReadAuth) -> dict[str, Any]:
    """The registry record. People's e-mail addresses and Slack webhook URLs (a credential) are
    masked unless the key may write the registry (accounts:write)."""
    row = repository.get_account(session, account_id)
    if row is None:
        raise NotFound(
            f"account {account_id!r} is not registered; PUT /v1/accounts/{account_id} registers it"
        )
    record: dict[str, Any] = json.loads(row.record)
    return record if auth.scopes & {"accounts:write", "admin"} else mask_people(record)


async def _csv_text(request: Request) -> str:
    """The CSV of an import, read on the event loop (multipart field `file` or the raw body)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ValidationFailed("send the CSV as the multipart field 'file'")
        raw = await upload.read()
    else:
        raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise ValidationFailed(f"the CSV is larger than {MAX_CSV_BYTES} bytes; split it")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV must be UTF-8 encoded") from None


@router.post("/accounts:import", tags=["accounts"], response_model=ImportOut)
def import_accounts(
    _auth: WriteAuth,
    text: Annotated[str, Depends(_csv_text)],
    session: SessionDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query(description="check only, write nothing")] = False,
) -> dict[str, Any]:
    """CSV upload (multipart field `file`, or the raw text/csv body); all rows or none."""
    records, problems = parse_csv(text, clock.now(), _webhook_rules(settings), settings.max_arr)
    summary = {"dry_run": dry_run, "rows": len(records) + len({p["row"] for p in problems if p["row"] > 1})}
    if dry_run:
        return {**summary, "valid": len(records), "problems": problems}
    if problems:
        raise ValidationFailed(
            f"{len(problems)} problem(s) in the CSV; nothing was imported (try ?dry_run=true)",
            problems=[_csv_problem(p) for p in problems],
        )
    changed_rows: list[Account] = []
    for record in sorted(records, key=lambda r: r.id):  # id order: see mark_accounts_published
        row, changed = repository.save_account(session, record, record_json(record))
        if changed:
            changed_rows.append(row)
    session.commit()  # all rows durable before any is announced
    publish_now(session, publisher, settings, changed_rows, clock.now())
    return {**summary, "imported": len(records), "changed": len(changed_rows), "problems": []}


def _csv_problem(problem: dict[str, Any]) -> Problem:
    return Problem(f"row {problem['row']}: {problem['field']}", problem["message"])


def publish_now(
    session: Session, publisher: PublisherDep, settings: SignalsSettings, rows: list[Account], now: datetime
) -> None:
    """Try to publish right after the commit; on a broker outage the tick relay sends it later."""
    if not rows:
        return
    messages = [account_message(settings.common.topics.accounts, row) for row in rows]
    try:
        publisher.publish(messages)
    except TransientError as exc:
        log.warning("accounts.publish_deferred", accounts=len(rows), error=str(exc)[:200])
        return
    repository.mark_accounts_published(session, [(r.id, r.version) for r in rows], now)
    metrics.ACCOUNTS_PUBLISHED.inc(len(rows))


# --- risk ------------------------------------------------------------------------------------------
def _risk_or_404(session: Session, account_id: str) -> RiskScore:
    risk = repository.get_risk(session, account_id)
    if risk is None:
        _not_scored(session, account_id)
    return risk


def _not_scored(session: Session, account_id: str) -> NoReturn:
    """The 404 of an account without a score, worded by whether it is registered."""
    if repository.get_account(session, account_id) is not None:
        raise NotFound(
            f"account {account_id!r} has no risk score yet; it is scored within seconds of its "
            "registration or first event"
        )
    raise NotFound(f"account {account_id!r} is unknown: not registered and no events received")


@router.get("/accounts/{account_id}/risk", tags=["risk"], response_model=RiskOut)
async def get_risk(account_id: str, _auth: ReadAuth, reader: ReaderDep, rates: RatesDep) -> Response:
    """Score (probability of churn within the horizon), band, drivers, changes, model, as-of;
    ARR and revenue at risk in the account's currency and in the reporting currency.
    Scope risk:read. The hot path: the key is checked from its cache and, on PostgreSQL, the
    lookup runs on the event loop too (SQLite: on one worker thread)."""

    # One lookup (a second one only to word a 404), on the event loop on PostgreSQL. The answer
    # is RiskOut, rendered from the row's columns (tests/signals/test_api.py checks it against the
    # schema): building the ORM object, validating it twice and the hand-off to a worker thread
    # cost more than the lookup.
    row = await reader.plan(repository.risk_answer(account_id))
    if row is None:
        await reader(lambda session: _not_scored(session, account_id))
    return JSONBytes(_json(_risk_body(row, rates)))


@router.get("/accounts/{account_id}/risk/history", tags=["risk"], response_model=HistoryOut)
async def get_risk_history(
    _auth: ReadAuth,
    account_id: str,
    reader: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="cursor: next_before_id of the previous page")
    ] = None,
) -> HistoryOut:
    """Every score change, newest first."""

    def answer(session: Session) -> HistoryOut:
        _risk_or_404(session, account_id)
        rows = repository.account_history(session, account_id, limit, before_id)
        return HistoryOut(
            account_id=account_id,
            items=[HistoryItem.model_validate(row) for row in rows],
            next_before_id=rows[-1].id if len(rows) == limit else None,
        )

    return await reader(answer)


@router.get("/accounts/{account_id}/features", tags=["risk"], response_model=FeaturesOut)
async def get_features(account_id: str, _auth: ReadAuth, reader: ReaderDep) -> FeaturesOut:
    """The features behind the current score (catalog: docs/features.md)."""
    return await reader(lambda session: FeaturesOut.model_validate(_risk_or_404(session, account_id)))


async def _filters(
    clock: ClockDep,
    owner: Annotated[str | None, Query(max_length=320, description="owner e-mail or name (any case)")] = None,
    manager: Annotated[
        str | None, Query(max_length=320, description="manager e-mail or name (any case)")
    ] = None,
    tier: Annotated[str | None, Query(max_length=50, description="tier (any case)")] = None,
    segment: Annotated[str | None, Query(max_length=50, description="segment (any case)")] = None,
    renewal_within: Annotated[
        int | None, Query(ge=0, le=3660, description="renewal date from today to today + N days")
    ] = None,
) -> repository.AccountFilters:
    today = clock.now().date()
    window = (today, today + timedelta(days=renewal_within)) if renewal_within is not None else None
    return repository.AccountFilters(owner, manager, tier, segment, window)


FiltersDep = Annotated[repository.AccountFilters, Depends(_filters)]


def reporting_money(rates: Rates, currency: str, arr: Decimal, at_risk: Decimal) -> dict[str, Any]:
    """The *_reporting fields of an answer: the amounts converted at the rates table's date."""
    return {
        "reporting_currency": rates.currency,
        "rates_date": rates.date.isoformat(),
        "arr_reporting": _number(rates.convert(arr, currency)),
        "revenue_at_risk_reporting": _number(rates.convert(at_risk, currency)),
    }


def _number(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)


class JSONBytes(Response):
    """An answer already rendered as JSON (FastAPI sends a Response as it is: no second pass)."""

    media_type = "application/json"


def _json(body: Any) -> bytes:
    """Compact UTF-8 JSON, byte for byte what `json.dumps(separators=(",", ":"),
    ensure_ascii=False)` writes, at a tenth of its time: the standard encoder was a tenth of the
    portfolio route. A non-finite number (none is stored) would be written as null."""
    return orjson.dumps(body)


DRIVER_FIELDS = tuple(Driver.model_fields)


def _risk_body(row: Any, rates: Rates) -> dict[str, Any]:
    """RiskOut of a row of repository.RISK_COLUMNS, fields in the schema's order."""
    return {
        **reporting_money(rates, row.currency, row.arr, row.revenue_at_risk),
        "account_id": row.account_id,
        "name": row.name,
        "score": float(row.score),
        "band": row.band,
        "drivers": [{k: driver[k] for k in DRIVER_FIELDS} for driver in row.drivers],
        "changes": list(row.changes),
        "model_version": row.model_version,
        "as_of": row.as_of.isoformat(),
        "scored_at": row.scored_at.isoformat(),
        "arr": float(row.arr),
        "currency": row.currency,
        "tier": row.tier,
        "revenue_at_risk": float(row.revenue_at_risk),
    }


def _portfolio_item(row: Any, rates: Rates) -> dict[str, Any]:
    """PortfolioItem of a row of repository.PORTFOLIO_COLUMNS, fields in the schema's order. The
    row is unpacked by position: reading 16 columns by name was a fifth of the route's time."""
    (account_id, name, score, band, model, as_of, scored_at, arr, currency, tier, at_risk) = row[:11]
    owner_name, owner_email, first, second, third = row[11:16]
    return {
        **reporting_money(rates, currency, arr, at_risk),
        "account_id": account_id,
        "name": name,
        "score": float(score),
        "band": band,
        "model_version": model,
        "as_of": as_of.isoformat(),
        "scored_at": scored_at.isoformat(),
        "arr": float(arr),
        "currency": currency,
        "tier": tier,
        "revenue_at_risk": float(at_risk),
        "owner": owner_name or owner_email,
        "top_drivers": [text for text in (first, second, third) if text is not None],
    }


@router.get("/portfolio", tags=["risk"], response_model=PortfolioOut, dependencies=[StrictQuery])
async def get_portfolio(
    _auth: ReadAuth,
    reader: ReaderDep,
    filters: FiltersDep,
    rates: RatesDep,
    memo: PortfolioMemoDep,
    band: Annotated[Band | None, Query(description="only this band (churned: accounts that left)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # BIGINT: larger is a 422, not a 500
    after: Annotated[
        str | None,
        Query(
            max_length=600,
            description="keyset pagination: the previous page's next_after (no OFFSET cost)",
        ),
    ] = None,
    include: Annotated[
        Literal["churned"] | None,
        Query(description="churned: also list accounts that churned (band churned); left out by default"),
    ] = None,
) -> Response:
    """Scored live accounts by revenue at risk (ARR x probability) converted into the reporting
    currency, largest first, paginated (by `offset`, or by `after` = the previous page's
    `next_after`); each item carries the original amounts too. Accounts that churned leave the
    portfolio unless `include=churned` is given; deleted accounts leave it. An unknown query
    parameter is a 422 naming it."""
    if after is not None and offset:
        raise ValidationFailed(
            "after: give `after` or `offset`, not both (after = the previous page's next_after)"
        )
    key = _decode_after(after) if after is not None else None

    # The ranking check, the page and the count need no common snapshot (the total may be a memo
    # anyway), so they run in autocommit, on the event loop on PostgreSQL; whether more rows
    # follow is read with the page itself. The answer is PortfolioOut, rendered from the rows'
    # columns (checked against the schema in tests/signals/test_api.py).
    found = await reader.plan(
        repository.portfolio(
            reader.dialect,
            filters,
            band,
            (limit, offset),
            rates,
            include_churned=include == "churned",
            after=key,
            memo=memo,
        )
    )
    more = found.more and found.last is not None
    return JSONBytes(
        _json(
            {
                "items": [_portfolio_item(row, rates) for row in found.rows],
                "reporting_currency": rates.currency,
                "rates_date": rates.date.isoformat(),
                "total": found.total,
                "limit": limit,
                "offset": offset,
                "next_offset": offset + len(found.rows) if more and key is None else None,
                "next_after": _encode_after(found.last) if more and found.last is not None else None,
            }
        )
    )


def _encode_after(key: repository.PortfolioKey) -> str:
    value, account_id = key
    raw = json.dumps([None if value is None else str(value), account_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_after(text: str) -> repository.PortfolioKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value, account_id = json.loads(raw)
        if not isinstance(account_id, str) or not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
            raise ValueError("not an account id")
        if value is None:
            return None, account_id
        amount = Decimal(value) if isinstance(value, str) and len(value) <= 40 else Decimal("NaN")
        if not amount.is_finite():
            raise ValueError("not an amount")
        return amount, account_id
    except (ValueError, TypeError, ArithmeticError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed(
            "after: not a portfolio cursor; pass the next_after of the previous page unchanged"
        ) from None


@router.get("/accounts", tags=["accounts"], response_model=RegistryOut, dependencies=[StrictQuery])
def list_accounts(
    auth: ReadAuth,
    session: SessionDep,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    include: Annotated[
        Literal["deleted"] | None, Query(description="deleted: list deleted accounts too")
    ] = None,
) -> RegistryOut:
    """The registry by id, filtered (owner, manager, tier, segment, renewal within N days).
    Contact data is masked unless the key may write the registry, as in GET /v1/accounts/{id}.
    An unknown query parameter is a 422 naming it."""
    rows, total = repository.registry(session, filters, limit, offset, include_deleted=include == "deleted")
    full = bool(auth.scopes & {"accounts:write", "admin"})
    items = [json.loads(row.record) for row in rows]
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return RegistryOut(
        items=items if full else [mask_people(i) for i in items],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=next_offset,
    )
