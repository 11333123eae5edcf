"""Registers the simulated accounts: through the signals API, or as account.upserted on Kafka."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from kamwatch.dev.simulator.generator import SOURCE
from kamwatch.dev.simulator.portfolio import Account
from shared.config import CommonSettings
from shared.contracts import ACCOUNT_UPSERTED, AccountRecord, contract_event
from shared.errors import ConfigError


class RegistryApiMissing(ConfigError):
    """The signals service does not offer PUT /v1/accounts/{id} (yet)."""


def register_api(
    client: httpx.Client,
    api_key: str,
    accounts: list[Account],
    as_of: datetime | None = None,
    on_account: Callable[[], object] | None = None,
) -> int:
    """PUT /v1/accounts/{id} on signals for each account (bearer key with accounts:write);
    `on_account` is called after each one (a progress bar)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    for account in accounts:
        body = {k: v for k, v in account.record(as_of).items() if k != "id"}
        response = client.put(f"/v1/accounts/{account.id}", json=body, headers=headers)
        if response.status_code in (404, 405) and "account" not in response.text.lower():
            raise RegistryApiMissing(
                f"signals has no account registry API at {client.base_url}; use --register kafka"
            )
        if response.status_code in (401, 403):
            raise ConfigError(f"signals refused the API key ({response.status_code}); pass --api-key")
        if response.status_code >= 400:
            raise ConfigError(f"PUT /v1/accounts/{account.id}: {response.status_code} {response.text[:300]}")
        if on_account is not None:
            on_account()
    return len(accounts)


def upserted_event(account: Account, prefix: str, now: datetime, as_of: datetime | None = None) -> bytes:
    """The account.upserted CloudEvent signals would publish for this account."""
    record = AccountRecord.model_validate({**account.record(as_of), "updated_at": now})
    data = record.model_dump(mode="json", exclude_none=True)
    event_id = f"{prefix}-account-{account.index:05d}"
    return contract_event(ACCOUNT_UPSERTED, data, id=event_id, source=SOURCE, subject=account.id, time=now)


def register_kafka(
    common: CommonSettings, accounts: list[Account], prefix: str, now: datetime, as_of: datetime | None = None
) -> int:
    """Produce account.upserted to the accounts topic (key = account id), acknowledged."""
    from shared.kafka import make_producer

    producer = make_producer(common, client_id="kamwatch-simulator")
    try:
        futures = [
            producer.send(
                common.topics.accounts, key=a.id.encode(), value=upserted_event(a, prefix, now, as_of)
            )
            for a in accounts
        ]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close(timeout=5)
    return len(accounts)
