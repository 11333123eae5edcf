"""`kamwatch run --demo` / `make demo`: a portfolio that tells the story in a few minutes.

36 accounts get 120 days of history (so every account has a baseline), backfilled in seconds;
then the last 12 simulated hours stream live at 180x (4 real minutes), ending at the present.
Four spotlight accounts were already sliding when the live phase starts; within its first two
minutes each gets an urgent ticket, loses its champion, has an invoice reach 47 days overdue,
and some lose their executive sponsor. The timeline ends now, so every event is in the past
for the services' clocks (ingest refuses events more than 24 h ahead).
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kamwatch.dev.local import service_port, var_dir
from kamwatch.dev.simulator.emit import KafkaSink
from kamwatch.dev.simulator.generator import SimConfig, Simulation, midnight
from kamwatch.dev.simulator.portfolio import Account
from kamwatch.dev.simulator.registry import register_api, register_kafka
from kamwatch.dev.simulator.runner import RunStats, run
from shared.config import CommonSettings
from shared.errors import ConfigError
from shared.events import CloudEvent

DEMO_SEED = 7
DEMO_ACCOUNTS = 36
DEMO_SPOTLIGHT = 4
HISTORY_DAYS = 120
LIVE_SPAN = timedelta(hours=12)
LIVE_MINUTES = 4.0
REPORT_EVERY_S = 20.0


def demo_config(now: datetime) -> SimConfig:
    """The demo's timeline: it ends at `now`, the live phase is its last 12 hours."""
    end = now.astimezone(UTC).replace(microsecond=0)
    return SimConfig(
        accounts=DEMO_ACCOUNTS,
        seed=DEMO_SEED,
        start=midnight(end) - timedelta(days=HISTORY_DAYS),
        live_start=end - LIVE_SPAN,
        end=end,
        spotlight=DEMO_SPOTLIGHT,
        future_renewals=True,
    )


def speedup() -> float:
    return LIVE_SPAN.total_seconds() / (LIVE_MINUTES * 60)


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def notable(event: CloudEvent) -> str | None:
    """A few words for the events a KAM would care about, else None."""
    data = event.data
    if event.type == "contact.left" and data.get("role") in ("champion", "executive_sponsor"):
        return "champion left" if data["role"] == "champion" else "executive sponsor left"
    if event.type == "invoice.overdue" and int(data.get("days_overdue", 0)) >= 45:
        amount = f"{data['amount']} {data['currency']}"
        return f"invoice {data['invoice_id']} is {data['days_overdue']} days overdue ({amount})"
    if event.type == "ticket.opened" and data.get("priority") == "urgent":
        return "urgent ticket opened"
    if event.type in ("account.churned", "account.renewed"):
        return event.type.split(".")[1]
    return None


class Demo:
    """Runs in a daemon thread of `kamwatch run`; never blocks Ctrl-C."""

    def __init__(self, supervisor: Any) -> None:
        env = supervisor.env
        self.stop: threading.Event = supervisor.stopping
        self.common = CommonSettings(kafka_bootstrap=env.get("KAMWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
        self.key_path = var_dir() / "api-key"
        self.signals_url = f"http://127.0.0.1:{service_port('signals')}"
        self.simulation = Simulation(demo_config(datetime.now(UTC)))
        self.by_subject = _subjects(self.simulation.accounts)
        self.live_started = False

    def run(self) -> None:
        try:
            self._register()
            started = time.monotonic()
            sink = KafkaSink(self.common)
            say(f"backfilling {HISTORY_DAYS} days of history for {DEMO_ACCOUNTS} accounts ...")
            threading.Thread(target=self._report, name="kamwatch-demo-report", daemon=True).start()
            try:
                stats = run(
                    self.simulation, sink, speedup(), self.stop, on_live=self._on_live, recent_first=True
                )
            finally:
                sink.close()
            self._finish(stats, time.monotonic() - started)
        except Exception as error:
            if not self.stop.is_set():
                say(f"stopped: {type(error).__name__}: {str(error)[:200]}")

    def _register(self) -> None:
        accounts = self.simulation.accounts
        key = self.key_path.read_text().strip() if self.key_path.exists() else ""
        try:
            with httpx.Client(base_url=self.signals_url, timeout=10) as client:
                register_api(client, key, accounts, self.simulation.config.end)
            say(f"registered {len(accounts)} accounts through PUT {self.signals_url}/v1/accounts/{{id}}")
        except (ConfigError, httpx.HTTPError) as error:  # no registry API yet, or it failed
            prefix = self.simulation.config.id_prefix()
            register_kafka(self.common, accounts, prefix, datetime.now(UTC), self.simulation.config.end)
            say(f"registered {len(accounts)} accounts on {self.common.topics.accounts} ({error})")

    def _on_live(self, events: list[CloudEvent]) -> None:
        if not self.live_started:
            self.live_started = True
            say(
                f"history sent; now streaming the last {LIVE_SPAN.total_seconds() / 3600:.0f} simulated "
                f"hours at {speedup():.0f}x for {LIVE_MINUTES:.0f} minutes"
            )
        for event in events:
            words = notable(event)
            account = self.by_subject.get(event.subject or "")
            if words and account:
                say(f"{event.time:%H:%M} {account.name} ({account.tier}, ARR {account.arr:,.0f}): {words}")

    def _report(self) -> None:
        last: dict[str, str | None] = {}
        deadline = time.monotonic() + LIVE_MINUTES * 60 + 180
        while not self.stop.wait(REPORT_EVERY_S) and time.monotonic() < deadline:
            for name, line in (("portfolio", self._portfolio_line()), ("outbox", self._outbox_line())):
                if line and line != last.get(name):
                    say(line)
                    last[name] = line

    def _outbox_line(self) -> str | None:
        """Messages the alerts service delivered to the local sinks (var/outbox/mail, /slack)."""
        outbox = self.key_path.parent / "outbox"
        mail = len(list((outbox / "mail").glob("*.eml")))
        slack = len(list((outbox / "slack").glob("*.json")))
        if not mail and not slack:
            return None
        return f"alerts delivered: {mail} e-mails, {slack} Slack messages (in {outbox}/mail and /slack)"

    def _portfolio_line(self) -> str | None:
        key = self.key_path.read_text().strip() if self.key_path.exists() else ""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(
                f"{self.signals_url}/v1/portfolio",
                params={"limit": 200},
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
            if response.status_code == 200:
                return portfolio_summary(response.json())
        return None

    def _finish(self, stats: RunStats, seconds: float) -> None:
        if stats.stopped:
            return
        say(
            f"live phase over: {stats.history_events} history + {stats.live_events} live events "
            f"in {seconds:.0f} s. The services keep running; Ctrl-C stops everything."
        )
        say("see docs/simulator.md for what to look at and the curl commands")


def portfolio_summary(body: Any) -> str | None:
    """'portfolio: 2 red, 3 amber, 31 green; red: A, B' from a /v1/portfolio answer."""
    items = _items(body)
    bands: dict[str, list[str]] = {"red": [], "amber": [], "green": []}
    for item in items:
        risk = item["risk"] if isinstance(item.get("risk"), dict) else item
        band = str(risk.get("band", ""))
        if band in bands:
            bands[band].append(str(item.get("name") or item.get("account_id") or item.get("id") or "?"))
    if not any(bands.values()):
        return None
    counts = ", ".join(f"{len(names)} {band}" for band, names in bands.items())
    red = f"; red: {', '.join(bands['red'][:5])}" if bands["red"] else ""
    return f"portfolio: {counts}{red}"


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        for name in ("items", "accounts", "data", "results"):
            if isinstance(body.get(name), list):
                body = body[name]
                break
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _subjects(accounts: list[Account]) -> dict[str, Account]:
    out = {}
    for account in accounts:
        out[account.id] = account
        out[f"stripe:{account.stripe_id}"] = account
        out[f"zendesk:{account.zendesk_id}"] = account
    return out


def start_demo(supervisor: Any) -> threading.Thread:
    """Called by `kamwatch run --demo` once every service answers /healthz."""
    demo = Demo(supervisor)
    say(
        f"{DEMO_ACCOUNTS} simulated accounts (seed {DEMO_SEED}); "
        f"watch for amber and red in the next few minutes"
    )
    thread = threading.Thread(target=demo.run, name="kamwatch-demo", daemon=True)
    thread.start()
    return thread
