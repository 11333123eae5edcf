"""The console's only way to data: the public HTTP APIs of signals and alerts, with the user's key."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from shared.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """An API answered with an error; `message` is the API's own words (safe to show)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


class Apis:
    """One pooled HTTP client per upstream; every call carries the caller's bearer key."""

    def __init__(self, signals_url: str, alerts_url: str, timeout_s: float) -> None:
        self.signals = httpx.Client(base_url=signals_url.rstrip("/"), timeout=timeout_s)
        self.alerts = httpx.Client(base_url=alerts_url.rstrip("/"), timeout=timeout_s)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="console-api")

    def close(self) -> None:
        self.signals.close()
        self.alerts.close()
        self.pool.shutdown(wait=False)

    def call(self, client: httpx.Client, method: str, path: str, key: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        try:
            response = client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("console.upstream_unreachable", url=str(client.base_url), error=type(exc).__name__)
            name = "signals" if client is self.signals else "alerts"
            raise ApiError(503, f"the {name} service is not reachable; try again in a moment") from None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message") or response.reason_phrase)
            except ValueError:
                message = response.reason_phrase
            raise ApiError(response.status_code, message)
        return response.json()

    def together(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent reads concurrently (a brief needs about eight)."""
        futures = [self.pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    # --- signals ---------------------------------------------------------------------------
    def whoami(self, key: str) -> dict[str, Any]:
        return self.call(self.signals, "GET", "/v1/auth/whoami", key)

    def board(self, key: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.call(self.signals, "GET", "/v1/portfolio/board", key, params=params)

    def revenue(self, key: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.call(self.signals, "GET", "/v1/metrics/revenue", key, params=params)

    def signals_get(self, key: str, account_id: str, what: str = "", **params: Any) -> Any:
        path = f"/v1/accounts/{_segment(account_id)}" + (f"/{what}" if what else "")
        return self.call(self.signals, "GET", path, key, params=params)

    def put_plan(self, key: str, account_id: str, plan: dict[str, Any], version: int, user: str) -> Any:
        headers = {"If-Match": str(version), "X-Kamwatch-User": user[:200]}
        path = f"/v1/accounts/{_segment(account_id)}/plan"
        return self.call(self.signals, "PUT", path, key, json=plan, headers=headers)

    # --- alerts ----------------------------------------------------------------------------
    def alerts_list(self, key: str, **params: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in params.items() if v is not None}
        return self.call(self.alerts, "GET", "/v1/alerts", key, params=params)["alerts"]

    def alert_tasks(self, key: str, alert_id: int) -> list[dict[str, Any]]:
        found = self.call(self.alerts, "GET", f"/v1/alerts/{int(alert_id)}/tasks", key)
        tasks: list[dict[str, Any]] = found["tasks"]
        return tasks

    def task_action(self, key: str, alert_id: int, task_id: int, verb: str, body: dict[str, Any]) -> Any:
        path = f"/v1/alerts/{int(alert_id)}/tasks/{int(task_id)}/{verb}"
        return self.call(self.alerts, "POST", path, key, json=body)

    def alert_action(self, key: str, alert_id: int, action: str, body: dict[str, Any]) -> Any:
        return self.call(self.alerts, "POST", f"/v1/alerts/{int(alert_id)}/{action}", key, json=body)
