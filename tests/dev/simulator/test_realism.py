"""The simulated portfolio is realistic enough to evaluate a churn model on (issue 10, point 6):
a yearly churn of 10-15%, accounts that send only some channels, churns that no signal foretells,
and on average clearer warnings before a churn than before a renewal."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from statistics import mean

from kamwatch.dev.simulator.account import channel_of
from kamwatch.dev.simulator.generator import SimConfig, Simulation

START = datetime(2025, 6, 2, tzinfo=UTC)
ACCOUNTS = 300


@dataclass
class Seen:
    """What one account's events show (the test reads events only, never the hidden state)."""

    channels: set[str] = field(default_factory=set)
    core_usage: list[tuple[datetime, float]] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    warnings: list[datetime] = field(default_factory=list)
    outcome: tuple[str, datetime] | None = None
    renewal_date: date | None = None  # the first renewal, from the registry record

    def usage_ratio(self) -> float | None:
        """Core usage in the 30 days before the outcome against the 60 days before that."""
        assert self.outcome is not None
        when = self.outcome[1]
        recent = [q for t, q in self.core_usage if when - timedelta(days=30) <= t < when]
        before = [q for t, q in self.core_usage if when - timedelta(days=90) <= t < when - timedelta(days=30)]
        return mean(recent) / mean(before) if len(recent) > 20 and len(before) > 40 else None

    def warnings_before(self, days: int) -> int:
        assert self.outcome is not None
        when = self.outcome[1]
        return sum(1 for t in self.warnings if when - timedelta(days=days) <= t < when)


def _warning(event_type: str, d: dict) -> bool:
    return (
        (event_type == "ticket.opened" and d["priority"] == "urgent")
        or (event_type == "invoice.overdue" and d["days_overdue"] >= 15)
        or event_type == "payment.failed"
        or (event_type == "contact.left" and d["role"] in ("champion", "executive_sponsor"))
        or (event_type == "engagement.recorded" and d["outcome"] != "held" and d["kind"] == "qbr")
        or (event_type == "survey.responded" and d["score"] <= 6)
        or (
            event_type == "subscription.changed"
            and d["status"] != "canceled"  # the cancellation at the churn itself
            and (d.get("cancel_at_period_end") or Decimal(d.get("previous_mrr") or 0) > Decimal(d["mrr"]))
        )
    )


@cache
def year() -> dict[str, Seen]:
    """A year of 300 accounts (seed 2026), read back per account from its events."""
    end = START + timedelta(days=365)
    config = SimConfig(accounts=ACCOUNTS, seed=2026, start=START, live_start=end, end=end, aliases=False)
    seen: dict[str, Seen] = defaultdict(Seen)
    simulation = Simulation(config)
    for account in simulation.accounts:
        seen[account.id].renewal_date = account.renewal_date
    for e in simulation.events():
        account = seen[e.subject or ""]
        account.channels.add(channel_of(e.type))
        if e.type == "usage.recorded":
            account.metrics.add(e.data["metric"])
            if e.data["metric"] == "api_calls":
                account.core_usage.append((e.time, e.data["quantity"]))
        elif e.type in ("account.churned", "account.renewed") and account.outcome is None:
            account.outcome = (e.type, e.time)
        elif _warning(e.type, e.data):
            account.warnings.append(e.time)
    return dict(seen)


def churned() -> list[Seen]:
    return [s for s in year().values() if s.outcome and s.outcome[0] == "account.churned"]


def test_about_one_account_in_eight_churns_in_a_year() -> None:
    assert len(year()) == ACCOUNTS
    rate = len(churned()) / ACCOUNTS
    assert 0.10 <= rate <= 0.15, rate


def test_a_share_of_accounts_send_only_some_channels() -> None:
    full = {"usage", "tickets", "billing", "contacts", "engagement", "outcome"}
    partial = [s for s in year().values() if s.channels != full]
    usage_only = [s for s in year().values() if s.channels <= {"usage", "outcome"}]
    no_usage = [s for s in year().values() if "usage" not in s.channels]
    assert 0.25 <= len(partial) / ACCOUNTS <= 0.6
    assert len(usage_only) >= 0.08 * ACCOUNTS and len(no_usage) >= 0.03 * ACCOUNTS
    # Usage comes per metric: several names, and accounts differ in what they use.
    assert len({m for s in year().values() for m in s.metrics}) >= 5
    assert len({frozenset(s.metrics) for s in year().values() if s.metrics}) > 10


def test_some_churns_come_without_any_preceding_signal() -> None:
    """No warning in the 90 days before, and usage in its last month as before (within 10%)."""
    silent = [
        s
        for s in churned()
        if s.warnings_before(90) == 0 and (s.usage_ratio() is None or s.usage_ratio() >= 0.9)
    ]
    share = len(silent) / len(churned())
    assert 0.1 <= share <= 0.5, share
    # Most churns happen at the renewal; a contract that ends early (an acquisition) does not wait.
    early = [s for s in churned() if s.outcome and s.outcome[1].date() < (s.renewal_date or date.max)]
    assert 1 <= len(early) <= 0.25 * len(churned())


def test_churned_accounts_show_clearer_warnings_than_renewed_ones_on_average() -> None:
    renewed = [s for s in year().values() if s.outcome and s.outcome[0] == "account.renewed"]
    assert len(renewed) > 200

    def ratios(group: list[Seen]) -> list[float]:
        return [r for s in group if (r := s.usage_ratio()) is not None]

    assert mean(ratios(churned())) < mean(ratios(renewed)) - 0.05
    assert mean(s.warnings_before(60) for s in churned()) > 1.3 * mean(s.warnings_before(60) for s in renewed)
    # Noise: the signals separate the groups, they do not make it trivial.
    assert sum(r > 0.95 for r in ratios(churned())) >= 3
    assert sum(r < 0.85 for r in ratios(renewed)) >= 3
    assert sum(s.warnings_before(60) >= 3 for s in renewed) >= 10
