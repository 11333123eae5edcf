"""Ingest HTTP routes (thin): events API and signed webhooks.

The routes are `def`: storing and producing block, so FastAPI runs them in the thread pool and
the event loop (and /healthz) stays free. An accepted event is stored in the inbox and committed
before the 202, then relayed to its raw topic (services/ingest/relay.py): a 202 survives a broker
that loses its data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse

from services.ingest import metrics
from services.ingest.config import IngestSettings
from services.ingest.handler import WEBHOOK_SOURCES, validate_submission
from services.ingest.relay import accept
from services.ingest.schemas import Accepted, Ignored
from services.ingest.webhooks import (
    SignatureInvalid,
    stripe_to_events,
    verify_stripe,
    verify_zendesk,
    zendesk_to_events,
)
from shared.db import is_transient
from shared.errors import AppError, EventInvalid, Unauthorized, Unavailable, ValidationFailed
from shared.events import CloudEvent, decode_json
from shared.logging import get_logger
from shared.web import ClockDep, Principal, PublisherDep, RawBodyDep, SessionDep, app_part, require_scope

log = get_logger(__name__)
router = APIRouter(prefix="/v1")
SettingsDep = Annotated[IngestSettings, Depends(app_part("settings"))]
Translator = Callable[[dict[str, Any]], list[dict[str, Any]]]


def _publish(
    session: SessionDep,
    publisher: PublisherDep,
    settings: IngestSettings,
    clock: ClockDep,
    events: list[CloudEvent],
) -> Accepted:
    try:
        accept(session, publisher, settings, events, clock.now())
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("ingest.store_unavailable", count=len(events), error_type=type(exc).__name__)
        raise Unavailable(
            "the database is unavailable; nothing was accepted, retry later", headers={"Retry-After": "5"}
        ) from None
    return Accepted(accepted=len(events), ids=[e.id for e in events])


def _json(body: bytes) -> Any:
    try:
        return decode_json(body)
    except EventInvalid as error:
        raise ValidationFailed(str(error), problems=error.problems) from None


@router.post("/events", status_code=202, response_model=Accepted)
def post_events(
    _auth: Annotated[Principal, Depends(require_scope("events:write"))],
    body: RawBodyDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Accepted:
    """Send one CloudEvent or a JSON array of them (structured mode, application/json)."""
    events = validate_submission(_json(body), clock.now(), settings.max_batch_events, WEBHOOK_SOURCES)
    return _publish(session, publisher, settings, clock, events)


@router.post("/webhooks/stripe", status_code=202, response_model=Accepted | Ignored)
def stripe_webhook(
    body: RawBodyDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    session: SessionDep,
    stripe_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    """Stripe events (signature checked over the raw body before anything else)."""
    secrets, tolerance = settings.stripe_webhook_secrets, settings.signature_tolerance_s
    _verify("stripe", lambda: verify_stripe(stripe_signature, body, secrets, time.time(), tolerance))
    translated = _translate("stripe", _json(body), stripe_to_events)
    if isinstance(translated, JSONResponse):
        return translated
    return _publish_webhook("stripe", translated, session, clock, publisher, settings)


@router.post("/webhooks/zendesk", status_code=202, response_model=Accepted | Ignored)
def zendesk_webhook(
    body: RawBodyDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    session: SessionDep,
    x_zendesk_webhook_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_zendesk_webhook_signature_timestamp: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    """Zendesk event-subscription webhooks for tickets."""
    secrets, tolerance = settings.zendesk_webhook_secrets, settings.signature_tolerance_s
    signature, stamp = x_zendesk_webhook_signature, x_zendesk_webhook_signature_timestamp
    _verify("zendesk", lambda: verify_zendesk(signature, stamp, body, secrets, time.time(), tolerance))
    translated = _translate("zendesk", _json(body), zendesk_to_events)
    if isinstance(translated, JSONResponse):
        return translated
    return _publish_webhook("zendesk", translated, session, clock, publisher, settings)


@router.post("/webhooks/cloudevents", status_code=202, response_model=Accepted)
def cloudevents_webhook(
    body: RawBodyDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    session: SessionDep,
    x_kamwatch_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    """Generic signed CloudEvents (CRMs and anything else): X-Kamwatch-Signature, Stripe scheme."""
    secrets, tolerance = settings.cloudevents_webhook_secrets, settings.signature_tolerance_s
    _verify("cloudevents", lambda: verify_stripe(x_kamwatch_signature, body, secrets, time.time(), tolerance))
    events = validate_submission(_json(body), clock.now(), settings.max_batch_events, WEBHOOK_SOURCES)
    accepted = _publish(session, publisher, settings, clock, events)
    metrics.WEBHOOKS.labels("cloudevents", "accepted").inc()
    return accepted


def _verify(source: str, check: Callable[[], None]) -> None:
    try:
        check()
    except SignatureInvalid as error:
        metrics.SIGNATURE_FAILURES.labels(source).inc()
        metrics.WEBHOOKS.labels(source, "unauthorized").inc()
        raise Unauthorized(f"{source} webhook signature rejected: {error}") from None


def _translate(source: str, payload: Any, translate: Translator) -> list[dict[str, Any]] | JSONResponse:
    """The webhook's KAM events, or a 200 naming the ignored webhook type."""
    if not isinstance(payload, dict):
        raise ValidationFailed("webhook body must be a JSON object")
    try:
        raw_events = translate(payload)
    except EventInvalid as error:
        metrics.WEBHOOKS.labels(source, "invalid").inc()
        raise ValidationFailed(str(error), problems=error.problems) from None
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as error:
        # A payload of the wrong shape (a list where an object belongs, 1e400 as a time) is the
        # sender's error: 422, never a 500.
        metrics.WEBHOOKS.labels(source, "invalid").inc()
        raise ValidationFailed(f"{source} payload has an unexpected shape: {type(error).__name__}") from None
    if not raw_events:
        metrics.WEBHOOKS.labels(source, "ignored").inc()
        return JSONResponse(Ignored(ignored=str(payload.get("type"))).model_dump(), status_code=200)
    return raw_events


def _publish_webhook(
    source: str,
    raw_events: list[dict[str, Any]],
    session: SessionDep,
    clock: ClockDep,
    publisher: PublisherDep,
    settings: Any,
) -> Accepted:
    try:
        events = validate_submission(raw_events, clock.now(), len(raw_events))
    except AppError:
        metrics.WEBHOOKS.labels(source, "invalid").inc()
        raise
    accepted = _publish(session, publisher, settings, clock, events)
    metrics.WEBHOOKS.labels(source, "accepted").inc()
    return accepted
