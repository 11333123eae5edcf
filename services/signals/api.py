"""HTTP routes of signals (thin): the account registry and risk queries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from services.signals import metrics, repository
from services.signals.models import Account, RiskHistory, RiskScore
from services.signals.registry import parse_csv, record_from_body, record_json
from services.signals.schemas import FeaturesOut, HistoryOut, ImportOut, PortfolioOut, RiskOut
from services.signals.service import account_message
from shared.auth import lookup_scopes, require_scope
from shared.contracts import AccountRecord
from shared.db import transaction
from shared.errors import Forbidden, NotFound, Problem, TransientError, Unauthorized, ValidationFailed
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v1")
READ = Depends(require_scope("risk:read"))
WRITE = Depends(require_scope("accounts:write"))
MAX_CSV_BYTES = 10 * 1024 * 1024


def _sessions(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def _now(request: Request) -> datetime:
    return request.app.state.clock.now()


# --- registry ------------------------------------------------------------------------------------
@router.put("/accounts/{account_id}", dependencies=[WRITE], tags=["accounts"], response_model=AccountRecord)
def put_account(account_id: str, request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """Create or replace an account (AccountRecord fields; `id` optional, must match the path)."""
    record = record_from_body(account_id, body, _now(request))
    with transaction(_sessions(request)) as session:
        row, changed = repository.save_account(session, record, record_json(record))
    if changed:
        publish_now(request, [row])
    return json.loads(row.record)


@router.get("/accounts/{account_id}", dependencies=[READ], tags=["accounts"], response_model=AccountRecord)
def get_account(account_id: str, request: Request) -> dict[str, Any]:
    with transaction(_sessions(request)) as session:
        row = repository.get_account(session, account_id)
    if row is None:
        raise NotFound(
            f"account {account_id!r} is not registered; PUT /v1/accounts/{account_id} registers it"
        )
    return json.loads(row.record)


@router.post("/accounts:import", dependencies=[WRITE], tags=["accounts"], response_model=ImportOut)
async def import_accounts(
    request: Request, dry_run: Annotated[bool, Query(description="check only, write nothing")] = False
) -> dict[str, Any]:
    """CSV upload (multipart field `file`, or the raw text/csv body); all rows or none."""
    text = await _csv_text(request)
    records, problems = parse_csv(text, _now(request))
    summary = {"dry_run": dry_run, "rows": len(records) + len({p["row"] for p in problems if p["row"] > 1})}
    if dry_run:
        return {**summary, "valid": len(records), "problems": problems}
    if problems:
        raise ValidationFailed(
            f"{len(problems)} problem(s) in the CSV; nothing was imported (try ?dry_run=true)",
            problems=[_csv_problem(p) for p in problems],
        )
    return {**summary, **await run_in_threadpool(_import, request, records)}


def _import(request: Request, records: list[Any]) -> dict[str, Any]:
    changed_rows: list[Account] = []
    with transaction(_sessions(request)) as session:
        for record in sorted(records, key=lambda r: r.id):  # id order: see mark_accounts_published
            row, changed = repository.save_account(session, record, record_json(record))
            if changed:
                changed_rows.append(row)
    publish_now(request, changed_rows)
    return {"imported": len(records), "changed": len(changed_rows), "problems": []}


def _csv_problem(problem: dict[str, Any]) -> Problem:
    return Problem(f"row {problem['row']}: {problem['field']}", problem["message"])


async def _csv_text(request: Request) -> str:
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


def publish_now(request: Request, rows: list[Account]) -> None:
    """Try to publish right after the commit; on a broker outage the tick relay sends it later."""
    if not rows:
        return
    state = request.app.state
    messages = [account_message(state.settings.common.topics.accounts, row) for row in rows]
    try:
        state.publisher.publish(messages)
    except TransientError as exc:
        log.warning("accounts.publish_deferred", accounts=len(rows), error=str(exc)[:200])
        return
    with transaction(_sessions(request)) as session:
        repository.mark_accounts_published(session, [(r.id, r.version) for r in rows], _now(request))
    metrics.ACCOUNTS_PUBLISHED.inc(len(rows))


# --- risk ------------------------------------------------------------------------------------------
def _risk_or_404(session: Session, account_id: str) -> RiskScore:
    risk = repository.get_risk(session, account_id)
    if risk is not None:
        return risk
    if repository.get_account(session, account_id) is not None:
        raise NotFound(
            f"account {account_id!r} has no risk score yet; it is scored within seconds of its "
            "registration or first event"
        )
    raise NotFound(f"account {account_id!r} is unknown: not registered and no events received")


@router.get("/accounts/{account_id}/risk", tags=["risk"], response_model=RiskOut)
def get_risk(account_id: str, request: Request) -> dict[str, Any]:
    """Score (probability of churn within the horizon), band, drivers, changes, model, as-of.
    Scope risk:read. The hot path: key check and score lookup share one transaction."""
    with transaction(_sessions(request)) as session:
        authorize(session, request, "risk:read")
        risk = _risk_or_404(session, account_id)
    return risk_view(risk)


def authorize(session: Session, request: Request, scope: str) -> None:
    """The same check as shared.auth.require_scope, inside the caller's transaction."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' "
            "(make run prints a local key; `kamwatch keys create` makes others)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scopes = lookup_scopes(session, key.strip())
    if scopes is None:
        raise Unauthorized("API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    if scope not in scopes and "admin" not in scopes:
        raise Forbidden(
            f"this API key lacks the scope '{scope}'; create one with `kamwatch keys create --scopes {scope}`"
        )


def risk_view(risk: RiskScore) -> dict[str, Any]:
    return {
        "account_id": risk.account_id,
        "name": risk.name,
        "score": risk.score,
        "band": risk.band,
        "drivers": json.loads(risk.drivers),
        "changes": json.loads(risk.changes),
        "model_version": risk.model_version,
        "as_of": risk.as_of.isoformat(),
        "scored_at": risk.scored_at.isoformat(),
        "arr": risk.arr,
        "currency": risk.currency,
        "tier": risk.tier,
        "revenue_at_risk": risk.revenue_at_risk,
    }


@router.get(
    "/accounts/{account_id}/risk/history", dependencies=[READ], tags=["risk"], response_model=HistoryOut
)
def get_risk_history(
    account_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="cursor: next_before_id of the previous page")
    ] = None,
) -> dict[str, Any]:
    """Every score change, newest first."""
    with transaction(_sessions(request)) as session:
        _risk_or_404(session, account_id)
        rows = repository.account_history(session, account_id, limit, before_id)
    return {
        "account_id": account_id,
        "items": [_history_view(r) for r in rows],
        "next_before_id": rows[-1].id if len(rows) == limit else None,
    }


def _history_view(row: RiskHistory) -> dict[str, Any]:
    return {
        "id": row.id,
        "score": row.score,
        "band": row.band,
        "previous_score": row.previous_score,
        "previous_band": row.previous_band,
        "drivers": json.loads(row.drivers),
        "changes": json.loads(row.changes),
        "model_version": row.model_version,
        "as_of": row.as_of.isoformat(),
        "published": row.published_at is not None,
    }


@router.get("/accounts/{account_id}/features", dependencies=[READ], tags=["risk"], response_model=FeaturesOut)
def get_features(account_id: str, request: Request) -> dict[str, Any]:
    """The features behind the current score (catalog: docs/features.md)."""
    with transaction(_sessions(request)) as session:
        risk = _risk_or_404(session, account_id)
    return {"account_id": account_id, "as_of": risk.as_of.isoformat(), "features": json.loads(risk.features)}


@router.get("/portfolio", dependencies=[READ], tags=["risk"], response_model=PortfolioOut)
def get_portfolio(
    request: Request,
    owner: Annotated[str | None, Query(max_length=320, description="owner e-mail or name")] = None,
    band: Annotated[Literal["green", "amber", "red"] | None, Query()] = None,
    tier: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # BIGINT: larger is a 422, not a 500
) -> dict[str, Any]:
    """Scored accounts by revenue at risk (ARR x probability), largest first, paginated."""
    with transaction(_sessions(request)) as session:
        rows, total = repository.portfolio(session, owner, band, tier, limit, offset)
    items = [
        {
            **{k: v for k, v in risk_view(r).items() if k not in ("changes", "drivers")},
            "owner": r.owner_name or r.owner_email,
            "top_drivers": [d["text"] for d in json.loads(r.drivers)[:3]],
        }
        for r in rows
    ]
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": next_offset}
