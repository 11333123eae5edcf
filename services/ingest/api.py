"""Ingest HTTP routes (thin): events API and signed webhooks."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.ingest import metrics
from services.ingest.config import IngestSettings
from services.ingest.schemas import Accepted, Ignored
from services.ingest.service import publish_raw, validate_submission
from services.ingest.webhooks import (
    SignatureInvalid,
    stripe_to_events,
    verify_stripe,
    verify_zendesk,
    zendesk_to_events,
)
from shared.auth import require_scope
from shared.errors import AppError, EventInvalid, TransientError, Unauthorized, Unavailable, ValidationFailed
from shared.events import decode_json
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v1")


def _settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def _publish(request: Request, events: list[Any]) -> Accepted:
    try:
        publish_raw(request.app.state.publisher, _settings(request), events)
    except TransientError:
        log.warning("ingest.publish_unavailable", count=len(events))
        raise Unavailable(
            "the event broker is unavailable; nothing was accepted, retry later", headers={"Retry-After": "5"}
        ) from None
    return Accepted(accepted=len(events), ids=[e.id for e in events])


def _json(body: bytes) -> Any:
    try:
        return decode_json(body)
    except EventInvalid as error:
        raise ValidationFailed(str(error), problems=error.problems) from None


@router.post(
    "/events", status_code=202, response_model=Accepted, dependencies=[Depends(require_scope("events:write"))]
)
async def post_events(request: Request) -> Accepted:
    """Send one CloudEvent or a JSON array of them (structured mode, application/json)."""
    body = await request.body()
    events = validate_submission(
        _json(body), request.app.state.clock.now(), _settings(request).max_batch_events
    )
    return _publish(request, events)


@router.post("/webhooks/stripe", status_code=202, response_model=Accepted | Ignored)
async def stripe_webhook(request: Request) -> Any:
    """Stripe events (signature checked over the raw body before anything else)."""
    body = await request.body()
    settings = _settings(request)
    _verify(
        "stripe",
        lambda: verify_stripe(
            request.headers.get("stripe-signature"),
            body,
            settings.stripe_webhook_secrets,
            time.time(),
            settings.signature_tolerance_s,
        ),
    )
    return _translate_and_publish(request, "stripe", _json(body), stripe_to_events)


@router.post("/webhooks/zendesk", status_code=202, response_model=Accepted | Ignored)
async def zendesk_webhook(request: Request) -> Any:
    """Zendesk event-subscription webhooks for tickets."""
    body = await request.body()
    settings = _settings(request)
    _verify(
        "zendesk",
        lambda: verify_zendesk(
            request.headers.get("x-zendesk-webhook-signature"),
            request.headers.get("x-zendesk-webhook-signature-timestamp"),
            body,
            settings.zendesk_webhook_secrets,
            time.time(),
            settings.signature_tolerance_s,
        ),
    )
    return _translate_and_publish(request, "zendesk", _json(body), zendesk_to_events)


@router.post("/webhooks/cloudevents", status_code=202, response_model=Accepted)
async def cloudevents_webhook(request: Request) -> Any:
    """Generic signed CloudEvents (CRMs and anything else): X-Kamwatch-Signature, Stripe scheme."""
    body = await request.body()
    settings = _settings(request)
    _verify(
        "cloudevents",
        lambda: verify_stripe(
            request.headers.get("x-kamwatch-signature"),
            body,
            settings.cloudevents_webhook_secrets,
            time.time(),
            settings.signature_tolerance_s,
        ),
    )
    events = validate_submission(_json(body), request.app.state.clock.now(), settings.max_batch_events)
    metrics.WEBHOOKS.labels("cloudevents", "accepted").inc()
    return _publish(request, events)


def _verify(source: str, check: Any) -> None:
    try:
        check()
    except SignatureInvalid as error:
        metrics.SIGNATURE_FAILURES.labels(source).inc()
        metrics.WEBHOOKS.labels(source, "unauthorized").inc()
        raise Unauthorized(f"{source} webhook signature rejected: {error}") from None


def _translate_and_publish(request: Request, source: str, payload: Any, translate: Any) -> Any:
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
    try:
        events = validate_submission(raw_events, request.app.state.clock.now(), len(raw_events))
    except AppError:
        metrics.WEBHOOKS.labels(source, "invalid").inc()
        raise
    accepted = _publish(request, events)
    metrics.WEBHOOKS.labels(source, "accepted").inc()
    return accepted
