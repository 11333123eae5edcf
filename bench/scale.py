"""Benchmark 4: cost of the time-driven sweep and of `kamwatch signals rebuild` at growing portfolios.

For each size: a fresh schema holding the registry and the processed events of N accounts (a
simulated template portfolio of up to 1,000 accounts, replicated under new account and event ids
so every account has the same realistic history); then `kamwatch signals rebuild` and a full
sweep (bench/sweep.py, the service's own sweep) each run as a subprocess, timed, with their peak
resident memory (ru_maxrss from wait4).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from bench.env import Schema, service_env, status_kb
from kamwatch.dev.simulator.generator import SimConfig, Simulation
from kamwatch.dev.simulator.portfolio import Account
from services.signals.events import signal_from_payload
from services.signals.models import Account as AccountRow
from services.signals.models import SignalBucket, SignalEntity, SignalEvent
from services.signals.rebuild import state_rows
from services.signals.state import AccountState
from shared.config import CommonSettings
from shared.events import parse_rfc3339, to_json

TEMPLATE_ACCOUNTS = 1000
HISTORY_DAYS = 3
CHUNK = 5000


def template(
    now: datetime, accounts: int = TEMPLATE_ACCOUNTS
) -> tuple[list[Account], dict[str, list[dict[str, Any]]]]:
    """Simulated accounts (1,000 by default) with their canonical events (subject = account id)."""
    end = now.replace(microsecond=0)
    config = SimConfig(
        accounts=accounts, seed=23, aliases=False,
        start=end - timedelta(days=HISTORY_DAYS), live_start=end, end=end,
    )  # fmt: skip
    simulation = Simulation(config)
    events: dict[str, list[dict[str, Any]]] = {a.id: [] for a in simulation.accounts}
    for event in simulation.events():
        events[event.subject or ""].append(json.loads(to_json(event)))
    return simulation.accounts, events


def fill(schema: Schema, size: int, accounts: list[Account], events: dict[str, list[dict[str, Any]]]) -> int:
    """Registry rows and processed events for `size` accounts; returns the event count."""
    now = datetime.now(UTC)
    account_rows, event_rows, total = [], [], 0
    with schema.engine.begin() as connection:
        for n in range(size):
            base = accounts[n % len(accounts)]
            account_id = f"{base.id}-{n // len(accounts)}"
            account_rows.append(_account_row(base, account_id, now))
            for obj in events[base.id]:
                obj = {**obj, "subject": account_id, "id": f"{obj['id']}-{n // len(accounts)}"}
                event_rows.append(_event_row(obj, account_id, now))
            if len(event_rows) >= CHUNK:
                connection.execute(insert(SignalEvent), event_rows)
                total += len(event_rows)
                event_rows = []
            if len(account_rows) >= CHUNK:
                connection.execute(insert(AccountRow), account_rows)
                account_rows = []
        for table, rows in ((SignalEvent, event_rows), (AccountRow, account_rows)):
            if rows:
                connection.execute(insert(table), rows)
        total += len(event_rows)
    return total


def fill_state(
    schema: Schema, size: int, accounts: list[Account], events: dict[str, list[dict[str, Any]]]
) -> None:
    """Buckets and entities of `size` accounts, folded once per template account and replicated."""
    states = {}
    for account in accounts:
        state = AccountState()
        for obj in events[account.id]:
            signal = signal_from_payload(json.dumps(obj))
            state.apply(signal.type, signal.data, signal.time, signal.key)
        states[account.id] = state
    with schema.engine.begin() as connection:
        for start in range(0, size, 1000):
            chunk = {
                f"{accounts[n % len(accounts)].id}-{n // len(accounts)}": states[
                    accounts[n % len(accounts)].id
                ]
                for n in range(start, min(size, start + 1000))
            }
            rows = state_rows(chunk)
            for model, table in ((SignalBucket, "signal_buckets"), (SignalEntity, "signal_entities")):
                if rows[table]:
                    connection.execute(insert(model), rows[table])


def _account_row(base: Account, account_id: str, now: datetime) -> dict[str, Any]:
    record = {**base.record(), "id": account_id, "updated_at": now.isoformat()}
    return {
        "id": account_id,
        "name": base.name,
        "arr": float(base.arr),
        "currency": base.currency,
        "tier": base.tier,
        "segment": base.segment,
        "renewal_date": base.renewal_date,
        "owner_email": base.owner["email"],
        "owner_name": base.owner["name"],
        "deleted": False,
        "record": json.dumps(record, sort_keys=True),
        "version": 1,
        "updated_at": now,
        "published_at": now,
    }


def _event_row(obj: dict[str, Any], account_id: str, now: datetime) -> dict[str, Any]:
    return {
        "source": obj["source"],
        "event_id": obj["id"],
        "type": obj["type"],
        "account_id": account_id,
        "event_time": parse_rfc3339(obj["time"]),
        "payload": json.dumps(obj, sort_keys=True, separators=(",", ":")),
        "received_at": now,
    }


def timed(command: list[str], env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """Run a child process; wall time, peak RSS and its last stdout line.

    The peak is the child's VmHWM, sampled every 50 ms: ru_maxrss from wait4 would also count the
    benchmark's own pages that the child shared between fork and exec."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.DEVNULL, text=True)
        peak_kb = 0
        while process.poll() is None:
            peak_kb = max(peak_kb, status_kb(process.pid, "VmHWM"))
            if time.perf_counter() - started > timeout_s:
                process.kill()
            time.sleep(0.05)
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed with exit code {process.returncode}")
    lines = [line for line in output.splitlines() if line.strip()]
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_bytes": peak_kb * 1024,
        "output": lines[-1] if lines else "",
    }


def run_size(
    size: int,
    template_data: tuple[list[Account], dict[str, list[dict[str, Any]]]],
    *,
    rebuild_too: bool = True,
    sweep_batches: int = 0,
) -> dict[str, Any]:
    """Fill, then rebuild (unless skipped) and sweep (all accounts, or `sweep_batches` ticks)."""
    schema = Schema()
    try:
        fill_started = time.perf_counter()
        events = fill(schema, size, *template_data)
        fill_s = time.perf_counter() - fill_started
        env = service_env(CommonSettings(database_url=schema.url), KAMWATCH_LOG_LEVEL="WARNING")
        result: dict[str, Any] = {"accounts": size, "events": events, "fill_s": round(fill_s, 2)}
        if rebuild_too:
            rebuild = timed(
                [sys.executable, "-m", "kamwatch.cli", "signals", "rebuild", "--quiet"], env, 3600
            )
            rebuild.pop("output")
            result["rebuild"] = {**rebuild, "ms_per_account": round(rebuild["seconds"] * 1000 / size, 3)}
        else:
            # The state the rebuild would have written; the sweep then scores every account.
            fill_state(schema, size, *template_data)
        hours = "24" if rebuild_too else "0"
        sweep = timed([sys.executable, "-m", "bench.sweep", hours, str(sweep_batches)], env, 3600)
        detail = json.loads(sweep.pop("output"))
        result["sweep"] = {**sweep, **detail, "complete": not sweep_batches or detail["accounts"] >= size}
        if not result["sweep"]["complete"]:
            result["sweep"]["projected_full_s"] = round(detail["ms_per_account"] * size / 1000, 1)
        return result
    finally:
        schema.close()
