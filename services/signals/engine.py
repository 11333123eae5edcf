"""Scoring accounts inside a DB transaction: features -> score -> band -> drivers -> history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.signals import metrics, repository
from services.signals.config import SignalsSettings
from services.signals.drivers import PEERS_WEIGHTED, describe_changes, top_drivers
from services.signals.features import AccountInfo, compute_features, state_bounds
from services.signals.models import Account, RiskHistory, SignalEvent
from services.signals.modelstore import ModelHolder
from services.signals.money import Rates, load_rates, revenue_at_risk
from services.signals.peers import FEATURE as PEERS_FEATURE
from services.signals.repository import RiskRow
from services.signals.scoring import NO_DATA, band_for, should_publish
from services.signals.statecache import CachedState, StateCache, Written, new_token
from shared.contracts import CHURNED, Driver
from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger("signals.engine")


@dataclass
class Assessment:
    features: dict[str, float]
    score: float
    band: str
    drivers: list[Driver]
    contributions: dict[str, float] = field(default_factory=dict)


NO_DATA_ASSESSMENT = Assessment({}, 0.0, NO_DATA, [])


@dataclass
class Locked:
    """The registry and risk rows of the accounts a transaction scores, locked in that order (the
    order every writer takes them in: no deadlock)."""

    accounts: dict[str, Account]
    risks: dict[str, RiskRow]


def account_info(account: Account | None) -> AccountInfo:
    if account is None or account.deleted:
        return AccountInfo()
    return AccountInfo(
        arr=float(account.arr),
        renewal_date=account.renewal_date,
        term_months=getattr(account, "term_months", None),
    )


class RiskEngine:
    def __init__(self, settings: SignalsSettings, holder: ModelHolder) -> None:
        self.settings = settings
        self.holder = holder
        self._rates: Rates | None = None
        self._rates_error: str | None = None

    def rates(self) -> Rates:
        """The reporting currency's rates table (re-read when the file changes). A table that
        became unreadable keeps the last good one, with one warning, rather than failing scores."""
        try:
            self._rates = load_rates(self.settings.rates_path, self.settings.reporting_currency)
            self._rates_error = None
        except ConfigError as exc:
            if self._rates is None:
                raise
            if str(exc) != self._rates_error:
                log.warning("signals.rates_unreadable", error=str(exc), kept=self._rates.digest)
            self._rates_error = str(exc)
        return self._rates

    @property
    def model_version(self) -> str:
        return self.holder.scorer.version

    @property
    def thresholds(self) -> tuple[float, float]:
        """Amber/red: fitted to the live portfolio's alert budget when that is on, else the
        trained model's own, else the settings'."""
        return (
            self.holder.budget_bands()
            or self.holder.scorer.thresholds
            or (self.settings.amber_threshold, self.settings.red_threshold)
        )

    def features_of(
        self,
        session: Session,
        account_ids: list[str],
        accounts: dict[str, Account],
        as_of: datetime,
        with_state: set[str] | None = None,
    ) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        """Features of many accounts as of `as_of`, from two bulk queries; `with_state` receives
        the accounts that have recent state (so they surely have events)."""
        since_day, since = state_bounds(as_of)
        buckets = repository.buckets_of(session, account_ids, since_day)
        entities = repository.entities_of(session, account_ids, since)
        if with_state is not None:
            with_state.update(buckets, entities)
        return {
            a: compute_features(buckets.get(a, {}), entities.get(a, []), account_info(accounts.get(a)), as_of)
            for a in account_ids
        }

    def assess(self, features: dict[str, float], details: dict[str, Any]) -> Assessment:
        scorer = self.holder.scorer
        features = {**features, **scorer.derived(features)}  # e.g. usage_vs_peers, stored with it
        score, contributions = scorer.score(features)
        score = round(min(1.0, max(0.0, score)), 6)
        band = band_for(score, *self.thresholds)
        peers = getattr(scorer, "peers", None)
        if peers is not None and peers.weights and PEERS_FEATURE in contributions:
            details = {**details, PEERS_WEIGHTED: True}
        drivers = top_drivers(contributions, features, details)
        return Assessment(features, score, band, drivers, dict(contributions))

    def rescore(
        self,
        session: Session,
        account_ids: list[str],
        now: datetime,
        trigger: str,
        cache: StateCache | None = None,
        written: Written | None = None,
        locked: Locked | None = None,
        copies: dict[str, CachedState] | None = None,
    ) -> list[RiskHistory]:
        """Score each account as of `now`; return the new history rows to publish (with their
        ids; not attached to the session). A churned
        account (its latest outcome is `account.churned`) is not scored: it moves to band churned.

        `written`: the state rows this transaction wrote (apply_signals). With a `cache`, an
        account's state comes from the worker's memory when its token matches, else from the
        tables; without one (rebuild) the state is read and every token is cleared. `locked` and
        `copies`: what the caller already locked and took from the cache (the batch handler).
        The scores and history rows are written in bulk at the end (repository.write_risk)."""
        written = written or {}
        locked = locked or self.lock(session, account_ids)
        accounts, risks = locked.accounts, locked.risks
        churns = churned_accounts(repository.latest_outcomes(session, account_ids))
        ordered = sorted(set(account_ids))
        live = [a for a in ordered if a not in churns]
        seen: set[str] = set()
        if cache is None:
            computed = self.features_of(session, live, accounts, now, seen)
            tokens: dict[str, str | None] = dict.fromkeys(ordered)
        else:
            if copies is None:
                copies = self.copies(cache, live, risks, now)
            computed, tokens = self._cached_features(
                session, cache, copies, live, accounts, risks, now, written, seen
            )
            for account_id in written.keys() & churns.keys():
                tokens[account_id] = new_token()
                cache.stage(account_id, None)
        # only accounts without recent state need the (index-only) look for any event at all
        seen |= repository.accounts_with_events(session, [a for a in live if a not in seen])
        rates = self.rates()
        scores: list[RiskRow] = []
        history: list[RiskHistory] = []
        for account_id in ordered:
            account, risk = accounts.get(account_id), risks.get(account_id)
            token = tokens.get(account_id, risk["state_token"] if risk else None)
            if account_id in churns:
                features = repository.risk_features(session, account_id) if risk else {}
                row, change = self._churned(account_id, account, risk, churns[account_id], now, features)
            elif account_id not in seen:
                row, change = self._store(account_id, account, risk, NO_DATA_ASSESSMENT, now)
            else:
                row, change = self._store(account_id, account, risk, self.assess(*computed[account_id]), now)
            _copy_account(row, account_id, account, row["score"] if row["band"] != CHURNED else 0.0, rates)
            row["state_token"] = token
            scores.append(row)
            if change is not None:
                history.append(change)
        ids = repository.write_risk(session, scores, [_history_values(h) for h in history])
        for change in history:
            change.id = ids[change.account_id]
        metrics.SCORES.labels(trigger).inc(len(live))
        return [h for h in history if h.publish]

    @staticmethod
    def lock(session: Session, account_ids: list[str]) -> Locked:
        return Locked(
            repository.accounts_by_id(session, account_ids, lock=True),
            repository.locked_risks(session, account_ids),
        )

    @staticmethod
    def copies(
        cache: StateCache, account_ids: list[str], risks: dict[str, RiskRow], now: datetime
    ) -> dict[str, CachedState]:
        """The valid in-memory copies of these accounts (their token matches the locked row)."""
        found = {}
        for account_id in account_ids:
            risk = risks.get(account_id)
            copy = cache.get(account_id, risk["state_token"] if risk else None, now)
            if copy is not None:
                found[account_id] = copy
        return found

    def _cached_features(
        self,
        session: Session,
        cache: StateCache,
        copies: dict[str, CachedState],
        live: list[str],
        accounts: dict[str, Account],
        risks: dict[str, RiskRow],
        now: datetime,
        written: Written,
        seen: set[str],
    ) -> tuple[dict[str, tuple[dict[str, float], dict[str, Any]]], dict[str, str | None]]:
        """Features from the in-memory copies (plus this batch's rows); accounts without a valid
        copy are read from the tables once and copied. Returns the features and each scored
        account's state token to store."""
        since_day, since = state_bounds(now)
        states: dict[str, CachedState] = {}
        tokens: dict[str, str | None] = {}
        missing = []
        for account_id in live:
            copy = copies.get(account_id)
            if copy is None:
                missing.append(account_id)
                continue
            token = new_token() if account_id in written else copy.token
            states[account_id] = copy.with_written(token, written.get(account_id))
        buckets = repository.buckets_of(session, missing, since_day) if missing else {}
        entities = repository.entities_of(session, missing, since) if missing else {}
        for account_id in missing:
            risk = risks.get(account_id)
            token = (risk["state_token"] if risk is not None else None) or new_token()
            if account_id in written:
                token = new_token()
            found = {(e.kind, e.entity_id): e for e in entities.get(account_id, [])}
            states[account_id] = CachedState(token, since_day, since, buckets.get(account_id, {}), found)
        lookups = len(live) - len(missing)
        metrics.STATE_CACHE_LOOKUPS.labels("hit").inc(lookups)
        metrics.STATE_CACHE_LOOKUPS.labels("miss").inc(len(missing))
        computed = {}
        for account_id, state in states.items():
            state = state.trimmed(now)
            cache.stage(account_id, state)
            tokens[account_id] = state.token
            if state.buckets or state.entities:
                seen.add(account_id)
            computed[account_id] = compute_features(
                dict(state.buckets),
                list(state.entities.values()),
                account_info(accounts.get(account_id)),
                now,
            )
        return computed, tokens

    def _churned(
        self,
        account_id: str,
        account: Account | None,
        risk: RiskRow | None,
        churn: SignalEvent,
        now: datetime,
        features: dict[str, float],
    ) -> tuple[RiskRow, RiskHistory | None]:
        """Band churned, once: one published history row; later calls only refresh the copied
        registry fields (the sweep brings a churned account here only after a registry change).
        `features`: the account's as last scored, kept in its churned row."""
        if risk is not None and risk["band"] == CHURNED:
            return {**risk, "features": features}, None
        reason = json.loads(churn.payload).get("data", {}).get("reason")
        said = f"account churned on {churn.event_time.date().isoformat()}" + (f": {reason}" if reason else "")
        history = RiskHistory(
            account_id=account_id,
            score=1.0,
            band=CHURNED,
            previous_score=risk["score"] if risk else None,
            previous_band=risk["band"] if risk else None,
            model_version=self.model_version,
            as_of=now,
            scored_at=now,
            drivers=[],
            changes=[said],
            features=features,
            publish=True,
            published_at=None,
        )
        metrics.RISK_CHANGES.labels(CHURNED).inc()
        row: RiskRow = {
            "account_id": account_id,
            "published_score": 1.0,
            "published_band": CHURNED,
            "score": 1.0,
            "band": CHURNED,
            "model_version": self.model_version,
            "as_of": now,
            "scored_at": now,
            "drivers": [],
            "changes": [said],
            "features": dict(features),
        }
        return row, history

    def _store(
        self,
        account_id: str,
        account: Account | None,
        risk: RiskRow | None,
        result: Assessment,
        now: datetime,
    ) -> tuple[RiskRow, RiskHistory | None]:
        """The account's new row, and a history row when its score, band or model changed."""
        changed = risk is None or (risk["score"], risk["band"], risk["model_version"]) != (
            result.score,
            result.band,
            self.model_version,
        )
        row: RiskRow = dict(risk) if risk is not None else {"published_score": None, "published_band": None}
        row["account_id"] = account_id
        if risk is None or risk["band"] == NO_DATA:
            previous = None  # the first real score (never published before)
        else:
            previous = {
                "score": risk["score"],
                "band": risk["band"],
                "drivers": risk["drivers"],
                "model_version": risk["model_version"],
            }
        history = self._history(row, previous, result, now) if changed else None
        row["score"], row["band"], row["model_version"] = result.score, result.band, self.model_version
        row["as_of"], row["scored_at"] = now, now
        row["drivers"] = [d.model_dump() for d in result.drivers]
        row["features"] = dict(result.features)
        row["changes"] = history.changes if history is not None else (row.get("changes") or [])
        return row, history

    def _history(
        self, row: RiskRow, previous: dict[str, Any] | None, result: Assessment, now: datetime
    ) -> RiskHistory:
        if result.band == NO_DATA:
            changes = ["no events received yet: scored once the first one arrives"]
        else:
            changes = describe_changes(
                previous, result.score, result.band, result.drivers, result.contributions
            )
        if previous is not None and previous["model_version"] != self.model_version:
            changes.insert(0, f"now scored by {self.model_version} (was {previous['model_version']})")
        publish = (
            result.band != NO_DATA
            and should_publish(
                result.score,
                result.band,
                row["published_score"],
                row["published_band"],
                self.settings.publish_step,
            )
        ) or (result.band != NO_DATA and _new_driver(previous, result.drivers))
        if publish:
            row["published_score"], row["published_band"] = result.score, result.band
            metrics.RISK_CHANGES.labels(result.band).inc()
        return RiskHistory(
            account_id=row["account_id"],
            score=result.score,
            band=result.band,
            previous_score=previous["score"] if previous else None,
            previous_band=previous["band"] if previous else None,
            model_version=self.model_version,
            as_of=now,
            scored_at=now,
            drivers=[d.model_dump() for d in result.drivers],
            changes=changes,
            # the feature vector travels with risk.changed (alerts' suppression rules read it);
            # a row that is not published keeps its drivers and changes only (docs/architecture.md)
            features=result.features if publish else {},
            publish=publish,
            published_at=None,
        )


_HISTORY_COLUMNS = tuple(c.name for c in RiskHistory.__table__.c if c.name != "id")


def _history_values(history: RiskHistory) -> dict[str, Any]:
    return {name: getattr(history, name) for name in _HISTORY_COLUMNS}


def _copy_account(row: RiskRow, account_id: str, account: Account | None, score: float, rates: Rates) -> None:
    """The registry fields the portfolio shows, and revenue at risk (ARR x score; 0 once churned)
    with its ranking amount in the reporting currency."""
    live = account is not None and not account.deleted
    row["account_version"] = account.version if account is not None else 0
    row["name"] = account.name if live and account else account_id
    row["arr"] = account.arr if live and account else Decimal(0)
    row["currency"] = account.currency if live and account else "USD"
    row["tier"] = account.tier if live and account else "unregistered"
    row["owner_email"] = account.owner_email if live and account else None
    row["owner_name"] = account.owner_name if live and account else None
    row["revenue_at_risk"] = revenue_at_risk(row["arr"], score)
    row["ranking"] = rates.ranking(row["revenue_at_risk"], row["currency"])
    row["ranking_rates"] = rates.digest


def churned_accounts(outcomes: dict[str, SignalEvent]) -> dict[str, SignalEvent]:
    """The accounts whose latest outcome is a churn (an `account.renewed` dated after the churn
    reactivates the account: docs/alerts.md, "Churned accounts")."""
    return {a: e for a, e in outcomes.items() if e.type == "account.churned"}


def _new_driver(previous: dict[str, Any] | None, drivers: list[Driver]) -> bool:
    """A cause that was not there before (e.g. the champion left while already red) is news even
    when the score barely moves, so alerts can react to critical single signals."""
    if previous is None:
        return False
    return bool({d.feature for d in drivers} - {d["feature"] for d in previous["drivers"]})
