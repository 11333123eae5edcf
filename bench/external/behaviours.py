"""A level-driven subscription history: churn follows how much of what an account uses, not a
visible decline. The regime our own simulator does not cover.

Our simulator (kamwatch/dev/simulator) makes at-risk accounts drift down before they leave, which
is what the scorecard and the trend features look for. The histories issue 10 was measured on are
different: each customer has its own, roughly stable, daily rates per behaviour; some behaviours
make the product worth more to it (reports, shared dashboards), some less (errors, support
searches); and each month the subscription renews with a probability that depends on that mix.
Nothing declines before the churn; what predicts it is the level and the mix of the usage. This
module generates such a history so the model can be checked in that regime too. It is written
here from that description; no third-party simulator is used (docs/evaluation.md).

- Accounts: `accounts` of them, 80% present at the start, the rest signing up during the period.
  Each has a seat count (log-normal) and a vector of log daily rates per behaviour drawn from a
  correlated normal (correlation 0.4: busy accounts are busy at everything).
- Utility: a fixed weight per behaviour (positive or negative) applied to the account's
  standardised log rates, plus noise the data never shows (satisfaction that is not in the usage).
- Churn: at each monthly renewal, probability `base * exp(-steepness * utility)` (about 12% a
  year overall). The account sends nothing after `account.churned`.
- Usage: per behaviour per day, a Poisson count around the account's rate (weekends quieter, a
  slow random walk of +-10% so levels wander); `usage.recorded` with `active_users` when > 0.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from shared.events import CloudEvent, make_event, to_json

SOURCE = "bench/behaviours"
END = date(2026, 6, 1)  # fixed and in the past: no wall clock
# behaviour: (mean log daily rate, spread, utility weight)
BEHAVIOURS: dict[str, tuple[float, float, float]] = {
    "logins": (1.6, 0.7, 0.25),
    "reports_created": (0.2, 0.9, 0.45),
    "dashboards_shared": (-0.6, 1.0, 0.35),
    "api_calls": (3.0, 1.2, 0.10),
    "messages_sent": (1.0, 0.8, 0.20),
    "exports": (-0.3, 0.9, 0.05),
    "errors_seen": (-0.2, 0.8, -0.40),
    "help_searches": (-0.8, 0.9, -0.30),
}
CHURN_DEFINITION = "a monthly renewal not taken (probability falls with the usage utility)"


@dataclass
class Account:
    id: str
    seats: int
    log_rates: np.ndarray
    start: date
    churn: date | None


def _accounts(rng: np.random.Generator, count: int, start: date, days: int) -> list[Account]:
    names = list(BEHAVIOURS)
    means = np.array([BEHAVIOURS[n][0] for n in names])
    spreads = np.array([BEHAVIOURS[n][1] for n in names])
    weights = np.array([BEHAVIOURS[n][2] for n in names])
    corr = np.full((len(names), len(names)), 0.4) + np.eye(len(names)) * 0.6
    cov = corr * np.outer(spreads, spreads)
    accounts = []
    for i in range(count):
        z = rng.multivariate_normal(np.zeros(len(names)), cov, method="cholesky")
        utility = float(weights @ (z / spreads)) + rng.normal(0, 0.6)
        monthly = min(0.5, 0.008 * math.exp(-1.1 * utility))
        joined = start if rng.random() < 0.8 else start + timedelta(days=int(rng.integers(1, days - 60)))
        churn = None
        renewal = joined + timedelta(days=30)
        while renewal < start + timedelta(days=days):
            if rng.random() < monthly:
                churn = renewal
                break
            renewal += timedelta(days=30)
        seats = max(1, int(rng.lognormal(3.0, 0.8)))
        accounts.append(Account(f"beh-{i:05d}", seats, means + z, joined, churn))
    return accounts


def generate(count: int, days: int, seed: int) -> tuple[list[dict[str, str]], list[CloudEvent], int]:
    """Registry rows, events in time order, and the number of churns."""
    rng = np.random.default_rng(seed)
    start = END - timedelta(days=days)
    accounts = _accounts(rng, count, start, days)
    names = list(BEHAVIOURS)
    registry, events = [], []
    for account in accounts:
        registry.append(
            {
                "id": account.id,
                "name": f"Behaviour account {account.id[4:]}",
                "arr": str(account.seats * 240),
                "currency": "USD",
                "tier": "standard",
                "segment": "behaviours",
                "term_months": "1",
            }
        )
        last = account.churn or END
        drift = np.zeros(len(names))
        day = account.start
        while day < last:
            drift = 0.97 * drift + rng.normal(0, 0.03, len(names))
            weekday = 0.35 if day.weekday() >= 5 else 1.0
            counts = rng.poisson(np.exp(account.log_rates + drift) * weekday)
            users = min(account.seats, int(rng.poisson(max(1.0, account.seats * 0.6 * weekday))))
            when = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=20)
            for name, n in zip(names, counts, strict=True):
                if n > 0:
                    events.append(_usage(account.id, day, when, name, int(n), users))
            day += timedelta(days=1)
        if account.churn is not None:
            events.append(
                make_event(
                    "account.churned",
                    {"reason": "did not renew"},
                    id=f"{account.id}-churned",
                    source=SOURCE,
                    time=datetime.combine(account.churn, datetime.min.time(), UTC) + timedelta(hours=12),
                    subject=account.id,
                )
            )
    events.sort(key=lambda e: (e.time, e.id))
    return registry, events, sum(1 for a in accounts if a.churn is not None)


def _usage(account: str, day: date, when: datetime, metric: str, n: int, users: int) -> CloudEvent:
    return make_event(
        "usage.recorded",
        {"metric": metric, "quantity": float(n), "active_users": users},
        id=f"{account}-{day.isoformat()}-{metric}",
        source=SOURCE,
        time=when,
        subject=account,
    )


def write(folder: Path, count: int, days: int, seed: int) -> dict[str, Any]:
    registry, events, churned = generate(count, days, seed)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "registry.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(registry[0]))
        writer.writeheader()
        writer.writerows(registry)
    with (folder / "events.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(to_json(e) + "\n" for e in events)
    return {
        "source": f"bench.external.behaviours --accounts {count} --days {days} --seed {seed}",
        "accounts": count,
        "churned": churned,
        "events": len(events),
        "from": events[0].time.isoformat(),
        "to": events[-1].time.isoformat(),
        "churn_definition": CHURN_DEFINITION,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for registry.csv and events.jsonl")
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    print(write(args.out, args.accounts, args.days, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
