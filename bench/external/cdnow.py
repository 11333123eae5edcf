"""The CDNOW transaction log -> a kamwatch registry CSV and canonical kamwatch events.

Source: `CDNOW_master.txt`, shipped inside the `lifetimes` package (MIT licence) at
`lifetimes/datasets/`. It is the public CDNOW data set of Fader and Hardie: every purchase of the
23,570 customers who first bought at the online music retailer CDNOW in the first quarter of 1997,
up to the end of June 1998 (69,659 lines: customer id, date, number of CDs, dollar value).
docs/evaluation.md says why this set and how the churn label is defined.

The label does not leak. The events end at CUTOFF (1998-01-01); the six months after it
(up to 1998-06-30) are never sent, they only decide the label: an account churned if it made no
purchase after its last one before CUTOFF, i.e. it bought nothing in the rest of the log (at least
six months). `account.churned` is dated the day after that last purchase, so no feature ever sees
the silence that defines it: a row at time t is positive when the account makes its final purchase
in (t - 1 day, t + horizon - 1 day]. Accounts that bought again after CUTOFF never churn here.

Dates move forward by SHIFT (28 years: 10,227 days, whole weeks, so weekdays stay the same), so the
history lies after kamwatch's earliest accepted event time (2000-01-01) and before the present.

Usage: one `usage.recorded` per metric per customer per day with purchases: `orders` (lines in the
log that day), `cds` (number of CDs) and `spend` (dollars). Days without a purchase send nothing.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.events import CloudEvent, make_event, to_json

SOURCE = "cdnow/lifetimes"
SHIFT = timedelta(days=10227)  # 28 years, 1461 whole weeks
CUTOFF = date(1998, 1, 1)  # events before this; the rest of the log only decides the label
LOG_END = date(1998, 6, 30)
CHURN_DEFINITION = (
    "no purchase after the last one before 1998-01-01 (at least six months of silence up to the "
    "end of the log); dated the day after that last purchase"
)


@dataclass(frozen=True)
class Purchase:
    customer: str
    day: date
    cds: int
    dollars: Decimal


def dataset_path() -> Path:
    """CDNOW_master.txt inside the installed `lifetimes` package (not imported: only located)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the CDNOW data set comes with the `lifetimes` package: "
            "pip install -c constraints.txt -e '.[bench]' (make install does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    if not path.exists():
        raise SystemExit(f"{path} is missing; reinstall lifetimes==0.11.3")
    return path


def read_log(text: str) -> list[Purchase]:
    """Lines of 'customer_id yyyymmdd number_of_cds dollar_value' (whitespace separated)."""
    purchases = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] == "customer_id":
            continue
        if len(parts) != 4:
            raise ValueError(f"line {number}: expected 4 fields, got {len(parts)}: {line!r}")
        customer, day, cds, dollars = parts
        parsed = date(int(day[:4]), int(day[4:6]), int(day[6:8]))
        purchases.append(Purchase(customer, parsed, int(cds), Decimal(dollars)))
    return purchases


def sample(purchases: list[Purchase], customers: int | None, seed: int) -> list[Purchase]:
    """All purchases of `customers` customers drawn at random (deterministic per seed)."""
    ids = sorted({p.customer for p in purchases})
    if customers is None or customers >= len(ids):
        return purchases
    chosen = set(random.Random(seed).sample(ids, customers))
    return [p for p in purchases if p.customer in chosen]


def account_id(customer: str) -> str:
    return f"cdnow-{customer}"


def at(day: date, hour: int = 23) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + SHIFT + timedelta(hours=hour)


@dataclass
class Converted:
    registry: list[dict[str, str]]
    events: list[CloudEvent]
    churned: int
    accounts: int


def convert(purchases: list[Purchase]) -> Converted:
    """The registry rows and the events (time order), from purchases of any customers."""
    by_customer: dict[str, dict[date, list[Purchase]]] = defaultdict(lambda: defaultdict(list))
    for purchase in purchases:
        by_customer[purchase.customer][purchase.day].append(purchase)
    registry, events, churned = [], [], 0
    for customer in sorted(by_customer):
        days = by_customer[customer]
        first, last = min(days), max(days)
        registry.append(_registry_row(customer, days[first]))
        for day in sorted(d for d in days if d < CUTOFF):
            events += _usage(customer, day, days[day])
        if last < CUTOFF:
            churned += 1
            events.append(_churned(customer, last))
    events.sort(key=lambda e: (e.time, e.id))
    return Converted(registry, events, churned, len(by_customer))


def _registry_row(customer: str, first_day: list[Purchase]) -> dict[str, str]:
    """What is known when the customer signs up: the first day's spend, as a yearly value."""
    spend = sum((p.dollars for p in first_day), Decimal(0))
    return {
        "id": account_id(customer),
        "name": f"CDNOW customer {customer}",
        "arr": str((spend * 12).quantize(Decimal("0.01"))),
        "currency": "USD",
        "tier": "consumer",
        "segment": "cdnow-1997q1",
    }


def _usage(customer: str, day: date, lines: list[Purchase]) -> list[CloudEvent]:
    quantities = {
        "orders": float(len(lines)),
        "cds": float(sum(p.cds for p in lines)),
        "spend": float(sum((p.dollars for p in lines), Decimal(0))),
    }
    return [
        make_event(
            "usage.recorded",
            {"metric": metric, "quantity": round(max(0.0, quantity), 2)},
            id=f"{account_id(customer)}-{day.isoformat()}-{metric}",
            source=SOURCE,
            time=at(day),
            subject=account_id(customer),
        )
        for metric, quantity in quantities.items()
    ]


def _churned(customer: str, last: date) -> CloudEvent:
    return make_event(
        "account.churned",
        {"reason": "no purchase for the rest of the log (at least six months)"},
        id=f"{account_id(customer)}-churned",
        source=SOURCE,
        time=at(last + timedelta(days=1), hour=12),
        subject=account_id(customer),
    )


def registry_csv(rows: list[dict[str, str]]) -> str:
    """The CSV that `POST /v1/accounts:import` takes (columns of services/signals/registry.py)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "name", "arr", "currency", "tier", "segment"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write(converted: Converted, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    registry = folder / "registry.csv"
    registry.write_text(registry_csv(converted.registry), encoding="utf-8")
    events = folder / "events.jsonl"
    with events.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(to_json(e) + "\n" for e in converted.events)
    return registry, events


def summary(converted: Converted) -> dict[str, Any]:
    times = [e.time for e in converted.events]
    return {
        "source": "CDNOW_master.txt (lifetimes 0.11.3)",
        "accounts": converted.accounts,
        "churned": converted.churned,
        "events": len(converted.events),
        "from": min(times).isoformat() if times else None,
        "to": max(times).isoformat() if times else None,
        "churn_definition": CHURN_DEFINITION,
    }


def iter_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for registry.csv and events.jsonl")
    parser.add_argument("--customers", type=int, default=None, help="a random sample of this many")
    parser.add_argument("--seed", type=int, default=1997, help="seed of the sample (default 1997)")
    args = parser.parse_args(argv)
    purchases = sample(read_log(dataset_path().read_text(encoding="utf-8")), args.customers, args.seed)
    converted = convert(purchases)
    registry, events = write(converted, args.out)
    print(f"{summary(converted)} -> {registry}, {events}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
