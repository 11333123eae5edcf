"""The alerts process: risk changes + the registry in; alerts, escalations and deliveries out."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts.api import router
from services.alerts.config import AlertsSettings
from services.alerts.handler import AlertsProcessor
from services.alerts.lifecycle import Lifecycle
from services.alerts.policy import load_policy
from shared.clock import Clock
from shared.runtime import build_service


def create_app(
    settings: AlertsSettings | None = None, *, clock: Clock | None = None, with_consumer: bool = True
) -> FastAPI:
    settings = settings or AlertsSettings()
    policy = load_policy(settings.policy_file)  # refuses to start on an invalid policy
    lifecycle = Lifecycle(settings, policy)
    return build_service(
        "alerts",
        settings,
        description="Risk changes in; alerts that reach the right person and climb when nobody acts.",
        router=router,
        topics=[settings.common.topics.accounts, settings.common.topics.risk],
        handler=lambda sessions, clock: AlertsProcessor(settings, sessions, clock, lifecycle),
        clock=clock,
        with_consumer=with_consumer,
        parts={"lifecycle": lifecycle},
    )


def load_settings() -> AlertsSettings:
    return AlertsSettings()
