"""Money: exact revenue at risk, and the reporting currency with its dated rates table.

Amounts are `Decimal`s to the cent (`shared.db.Money` stores them exactly). The rates table is a
YAML file (KAMWATCH_SIGNALS_RATES_PATH, default `rates.yaml` next to this file): its `currency`,
`date` and, per currency, how many units of `currency` one unit is worth. The reporting currency
(KAMWATCH_SIGNALS_REPORTING_CURRENCY, default the table's own) may be any currency in the table:
other rates are crossed through it. An amount in a currency the table does not list has no
converted value (null in the API, ranked after every converted one)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Numeric, case, func, literal_column, null, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from shared.db import cents
from shared.errors import ConfigError

RATE_PLACES = Decimal("1e-10")
# The stored ranking amount of an account whose currency has no rate: below every real amount
# (revenue at risk is never negative), so it ranks last, as NULLS LAST does.
UNRANKED = Decimal(-1)


def revenue_at_risk(arr: Decimal | float | int, score: float) -> Decimal:
    """ARR x score in exact decimals, to the cent (half up). The score is a float rounded to six
    places; its shortest decimal text is the value meant, so Decimal(str(score)) is exact."""
    return cents(Decimal(str(arr)) * Decimal(str(score)))


@dataclass(frozen=True)
class Rates:
    """Units of `currency` (the reporting currency) per one unit of each listed currency."""

    currency: str
    date: date
    per_unit: dict[str, Decimal]

    def rate(self, currency: str) -> Decimal | None:
        return Decimal(1) if currency == self.currency else self.per_unit.get(currency)

    def convert(self, amount: Decimal | None, currency: str) -> Decimal | None:
        rate = self.rate(currency)
        return None if amount is None or rate is None else cents(amount * rate)

    @functools.cached_property
    def digest(self) -> str:
        """Names the conversion (reporting currency and every rate; not the date, which changes
        no amount): the stamp of the ranking amounts stored with each score."""
        text = self.currency + ";" + ";".join(f"{c}={r}" for c, r in sorted(self.per_unit.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def ranking(self, amount: Decimal, currency: str) -> Decimal:
        """The amount in the reporting currency as the portfolio ranks it: `convert`, or UNRANKED
        without a rate."""
        converted = self.convert(amount, currency)
        return UNRANKED if converted is None else converted

    def converted(self, amount_column: Any, currency_column: Any, places: int = 2) -> ColumnElement[Any]:
        """SQL: the amount in the reporting currency (NULL without a rate) rounded as `convert`
        rounds, for ORDER BY. `places`: 2 where `shared.db.Money` stores currency units
        (PostgreSQL), 0 where it stores cents (SQLite)."""
        whens: dict[str, Any] = {c: literal_column(format(r, "f")) for c, r in sorted(self.per_unit.items())}
        whens[self.currency] = literal_column("1")
        factor = case(whens, value=currency_column, else_=null())
        return func.round(type_coerce(amount_column, Numeric()) * factor, places)

    def describe(self) -> dict[str, Any]:
        return {"currency": self.currency, "date": self.date.isoformat()}


def load_rates(path: str, reporting_currency: str | None = None) -> Rates:
    """The table at `path`, re-read when the file changes; ConfigError names what is wrong."""
    try:
        stamp = Path(path).stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"KAMWATCH_SIGNALS_RATES_PATH: cannot read {path}: {exc.strerror}") from None
    return _load(path, stamp, reporting_currency)


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: int, reporting_currency: str | None) -> Rates:
    where = f"KAMWATCH_SIGNALS_RATES_PATH ({path})"
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: not a readable YAML file: {exc}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with currency, date and rates")
    base = _currency(spec.get("currency"), f"{where}: currency")
    day = spec.get("date")
    if not isinstance(day, date):
        raise ConfigError(f"{where}: date must be the day the rates are for, e.g. 2025-01-02")
    raw = spec.get("rates")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: rates must map a currency code to a positive number")
    table = {
        _currency(code, f"{where}: rates"): _rate(value, f"{where}: rates.{code}")
        for code, value in raw.items()
    }
    table[base] = Decimal(1)
    target = reporting_currency or base
    pivot = table.get(target)
    if pivot is None:
        raise ConfigError(
            f"KAMWATCH_SIGNALS_REPORTING_CURRENCY {target!r} is not in {path}; "
            f"known: {', '.join(sorted(table))}"
        )
    crossed = {c: (r / pivot).quantize(RATE_PLACES) for c, r in table.items() if c != target}
    return Rates(target, day, crossed)


def _currency(value: Any, where: str) -> str:
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isupper()):
        raise ConfigError(f"{where}: {value!r} is not a three-letter currency code such as EUR")
    return value


def _rate(value: Any, where: str) -> Decimal:
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        rate = Decimal(-1)
    if not rate.is_finite() or rate <= 0:
        raise ConfigError(f"{where}: {value!r} is not a positive number")
    return rate
