"""Learning on its own: retrain in the background when enough new outcomes arrived, and promote
the new model only if it beats the model in use and the scorecard on the latest honest period.

The candidate is judged on its validation period (its latest as-of dates, fully observed, one
purge horizon after its training rows): against the scorecard in use (with its peer reference) on
all of those rows, by more than one standard error of its ROC AUC (`scorecard_margin`), and against
the model in use on those after that model's `fitted_through` (a deployed model is refitted on
every row it had, so older rows would be its own training data); with none of them, or no churn
among them, it is rejected. Every decision is appended with its figures to
<model_dir>/promotions.log, counted in kamwatch_signals_model_decisions_total and logged as
model.promoted, model.rejected or model.skipped. Off by default; `kamwatch run` turns it on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from services.signals import metrics, peers, repository
from services.signals.config import SignalsSettings
from services.signals.modelstore import ModelHolder
from services.signals.peers import PeerReference
from shared.clock import Clock
from shared.db import transaction
from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger(__name__)
SHORT_HORIZON_DAYS = 30  # tried when the history is still too short for the configured horizon
PEER_GROWTH = 1.5  # refit the peer reference when the live portfolio grew or shrank by this factor


class Learner:
    """Owned by the signals consumer; `poll()` runs in its tick and returns at once."""

    def __init__(
        self, settings: SignalsSettings, sessions: sessionmaker[Session], holder: ModelHolder, clock: Clock
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.holder = holder
        self.clock = clock
        self.state_path = Path(settings.model_dir) / "learning.json"
        self._thread: threading.Thread | None = None
        self._next_check = 0.0
        self._peers_attempt: tuple[str, int] | None = None  # (when, live accounts): found no usage
        self._peers_churned: int | None = None  # churned accounts at the last fit

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> bool:
        """Refit the budget bands and start a background retraining when due; True when a
        retraining was started."""
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self.settings.learn_check_interval_s
        if self.settings.budget_bands:
            if self.settings.peer_usage:
                self.refit_peers()
            self.refit_bands()
        if not self.settings.learn or self.busy:
            return False
        with transaction(self.sessions) as session:
            churns = repository.churn_outcomes(session)
        seen = self._seen()
        needed = max(self.settings.learn_min_new_churns, round(self.settings.learn_min_new_share * seen))
        if churns - seen < needed:
            return False
        self._thread = threading.Thread(target=self.retrain, args=(churns,), name="learner", daemon=True)
        self._thread.start()
        return True

    def refit_bands(self) -> dict[str, Any] | None:
        """Amber/red thresholds that flag the alert budget of the live portfolio as scored now by
        the scorer in use (ties kept together), for every worker through <model_dir>/bands.json."""
        version = self.holder.scorer.version
        with transaction(self.sessions) as session:
            scores = np.array([score for _a, score, _b in repository.live_scores(session, version)])
            if scores.size < self.settings.budget_min_accounts:
                return None
            if self.holder.budget_bands() is not None and scores.size * 2 < repository.live_count(session):
                return None  # most accounts are still being re-scored under this scorer
        bands = self._bands_for(version, scores)
        if self.holder.budget_bands() != (bands["amber"], bands["red"]):
            self.holder.save_bands(bands)
            log.info("signals.bands_refitted", **bands)
        return bands

    def refit_peers(self) -> PeerReference | None:
        """While the scorecard is in use: fit its peer reference on the live portfolio when there
        is none, it is PEER_REFIT_DAYS old, or the portfolio grew or shrank by half since. The
        budget bands of the new reference are fitted in the same step (from the stored features),
        so re-scoring under it never falls back to the fixed thresholds. Returns the new one."""
        holder = self.holder
        if holder.scorer is not holder.scorecard:
            return None  # a trained model is in use: it learned its own view of usage levels
        now = self.clock.now()
        current = holder.scorecard.peers
        with transaction(self.sessions) as session:
            live = repository.live_count(session)
            churned = repository.churned_count(session)
        if live < self.settings.budget_min_accounts:
            return None
        # the last fit, or the last attempt that found nothing to fit (no usage): not every minute
        basis = (current.fitted_at, current.portfolio) if current is not None else self._peers_attempt
        if basis is not None and basis[0]:
            age = now - datetime.fromisoformat(basis[0])
            portfolio = max(1, basis[1])
            grown = live >= PEER_GROWTH * portfolio or live * PEER_GROWTH <= portfolio
            # enough churns to weigh the metrics, or half as many again as at the last fit
            learned = (
                self._peers_churned if self._peers_churned is not None else current.churns if current else 0
            )
            churns = churned >= max(peers.MIN_CHURNS, PEER_GROWTH * learned, learned + 1)
            if not grown and not churns and age < timedelta(days=self.settings.peer_refit_days):
                return None
        with transaction(self.sessions) as session:
            rows = repository.live_features(session)  # streamed; fit keeps only the levels
            gone = repository.churned_features(session)
            fitted = peers.fit(rows, now.isoformat(), self.settings.budget_min_accounts, live, gone)
        self._peers_churned = churned
        if fitted is None:
            self._peers_attempt = (now.isoformat(), live)
            return None
        card = holder.base_scorecard.with_peers(fitted)
        if card.version != holder.scorecard.version:
            with transaction(self.sessions) as session:
                scores = np.array([card.score(f)[0] for f in repository.live_features(session)])
            holder.save_bands(self._bands_for(card.version, scores))
        holder.save_peers(fitted)
        log.info(
            "signals.peers_refitted",
            scorecard=card.version,
            accounts=fitted.accounts,
            portfolio=live,
            churns=fitted.churns,
            weights=fitted.weights,
        )
        return fitted

    def _bands_for(self, version: str, scores: np.ndarray) -> dict[str, Any]:
        from services.signals.evaluation import share_threshold

        amber = share_threshold(scores, self.settings.alert_budget)
        red = max(share_threshold(scores, self.settings.red_budget), amber + 1e-6)
        rounded = {"amber": round(amber, 6), "red": round(red, 6)}
        return {"scorer": version, **rounded, "accounts": int(scores.size)}

    def _seen(self) -> int:
        try:
            return int(json.loads(self.state_path.read_text())["churns_seen"])
        except (FileNotFoundError, KeyError, ValueError):
            return 0

    def retrain(self, churns: int) -> str:
        """Train, compare, promote or reject; returns the decision."""
        with _exclusive(Path(self.settings.model_dir) / ".learning.lock") as acquired:
            if not acquired:
                return "busy"  # another replica is training
            try:
                decision = self._train_and_decide()
            except ConfigError as exc:
                decision = "skipped"
                log.info("model.skipped", reason=str(exc)[:300], churns=churns)
            except Exception as exc:  # a failed background training must never stop scoring
                decision = "skipped"
                log.error("model.training_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps({"churns_seen": churns, "last_decision": decision}) + "\n")
            metrics.MODEL_DECISIONS.labels(decision).inc()
            return decision

    def _train_and_decide(self) -> str:
        from services.signals.training import train

        horizons = [self.settings.horizon_days]
        if self.settings.horizon_days > SHORT_HORIZON_DAYS:
            horizons.append(SHORT_HORIZON_DAYS)
        error: ConfigError | None = None
        for horizon in horizons:
            try:
                version, report = train(
                    self.settings,
                    self.sessions,
                    self.holder.scorecard,
                    self.clock.now(),
                    progress=False,
                    current=self.holder.scorer,
                    horizon_days=horizon,
                )
            except ConfigError as exc:
                error = exc
                continue
            return self._decide(version, report)
        assert error is not None
        raise error

    def _decide(self, version: str, report: dict[str, Any]) -> str:
        figures = decision_figures(report)
        store = self.holder.store
        if figures["beats_scorecard"] and figures["beats_current"]:
            store.promote(version, figures)
            log.info("model.promoted", version=version, **_flat(figures))
            return "promoted"
        store.record("rejected", version, figures)
        log.info("model.rejected", version=version, **_flat(figures))
        return "rejected"


def decision_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The validation figures a promotion decision rests on (all on the same rows)."""
    model = report["model"].get("roc_auc") or 0.0
    card = report["scorecard"].get("roc_auc") or 0.0
    current = report.get("current_model", {}).get("roc_auc")
    versus = report.get("versus_current")
    beats_current = current is None or model > current
    if versus is not None:  # the model in use refitted on older validation rows: only newer ones count
        theirs, ours = versus.get("current_roc_auc"), versus.get("model_roc_auc")
        beats_current = theirs is not None and ours is not None and ours > theirs
    validation = report["validation"]
    sizes = validation.get("churned_accounts"), validation.get("retained_accounts")
    margin = scorecard_margin(model, sizes[0] or 0, sizes[1] or 0)
    return {
        "horizon_days": report["horizon_days"],
        "validation_from": validation["from"],
        "validation_rows": validation["observations"],
        "roc_auc": model,
        "scorecard_roc_auc": card,
        "scorecard_margin": round(margin, 4),
        "current_roc_auc": current,
        "recall_at_budget": report["model"].get("recall_at_budget"),
        "beats_scorecard": model > card + margin,
        "versus_current": versus,
        "beats_current": beats_current,
    }


def scorecard_margin(auc: float, churned: int, retained: int) -> float:
    """By how much a trained model must beat the scorecard's validation ROC AUC to replace it:
    one standard error of its own (Hanley-McNeil over the churned and retained validation
    accounts), the one-standard-error rule `choose` applies among the candidates, with the
    scorecard as the simplest scorer of all. A young history validates on a dozen churners, where
    a lead of a few hundredths is noise, and the scorecard with its peer reference is what the
    model would replace live."""
    from services.signals.training import auc_standard_error

    return auc_standard_error(auc, churned, retained)


def _flat(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if not isinstance(v, dict)}


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
