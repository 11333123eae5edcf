"""Usage against the portfolio: the day-one scorecard flags the accounts that use the product
far less than their peers, where nothing declines before a churn (docs/features.md)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.signals import peers, repository
from services.signals.config import SignalsSettings
from services.signals.drivers import top_drivers
from services.signals.modelstore import ModelHolder, ModelStore
from services.signals.scoring import load_scorecard
from shared.clock import ManualClock
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker, transaction
from tests.helpers import NOW
from tests.signals.streams import DAY, event
from tests.signals.test_training import store_history


def levels(**metrics: float) -> dict[str, float]:
    return {f"usage.{m}.level_84d": v for m, v in metrics.items()} | {"usage_28d_avg": sum(metrics.values())}


def test_the_reference_compares_metrics_most_accounts_use_and_skips_accounts_without_usage() -> None:
    rows = [levels(logins=10.0 * (1 + n % 5), reports=1.0 + n % 3) for n in range(40)]
    rows += [levels(logins=20.0, rare=5.0) for _ in range(5)]  # `rare`: 5 of 45 accounts use it
    rows += [{"tickets_opened_30d": 3.0}] * 10  # accounts that send no usage at all
    reference = peers.fit(rows, "2026-11-01T00:00:00+00:00", min_accounts=20)

    assert reference is not None
    assert set(reference.inputs) == {"usage.logins.level_84d", "usage.reports.level_84d"}
    assert reference.accounts == 45  # the ten accounts without usage are not peers
    low = reference.gap(levels(logins=1.0, reports=0.0))
    typical = reference.gap(levels(logins=30.0, reports=2.0))
    assert low is not None and typical is not None and low < -1.5 < typical
    assert reference.gap({"tickets_opened_30d": 1.0}) is None  # not compared: it sends no usage
    assert peers.fit(rows[:10], min_accounts=20) is None  # too few accounts to be a reference
    assert peers.PeerReference.from_json(json.loads(json.dumps(reference.to_json()))) == reference


def test_the_scorecard_scores_usage_below_peers_only_with_a_reference_and_says_why() -> None:
    card = load_scorecard()
    rows = [levels(logins=5.0 + n, reports=1.0 + n / 10) for n in range(50)]
    reference = peers.fit(rows, min_accounts=10)
    assert reference is not None
    with_peers = card.with_peers(reference)
    assert with_peers.version == f"{card.version}+peers-{reference.id}"

    quiet, busy = levels(logins=0.5, reports=0.1), levels(logins=40.0, reports=4.0)
    assert card.score(quiet)[0] == card.score(busy)[0]  # without a reference: no view of levels
    score, contributions = with_peers.score(quiet)
    assert score > with_peers.score(busy)[0] and contributions["usage_vs_peers"] > 0
    # A stale value stored with an older score is never used: it is recomputed or dropped.
    assert with_peers.score({**quiet, "usage_vs_peers": 3.0}) == (score, contributions)
    assert "usage_vs_peers" not in card.score({**quiet, "usage_vs_peers": -3.0})[1]

    features = {**quiet, **with_peers.derived(quiet)}
    texts = [d.text for d in top_drivers(contributions, features, {})]
    assert any(t.startswith("uses the product less than most accounts in the portfolio (") for t in texts)


def _portfolio(accounts: int) -> list[Any]:
    """Steady daily usage at very different levels (nothing declines); account n uses
    (n + 1) x 10 api calls a day. Plus accounts that only ever send tickets."""
    events: list[Any] = []
    for n in range(accounts):
        account = f"p-{n:03d}"
        for d in range(100):
            data = {"metric": "api_calls", "quantity": float((n + 1) * 10), "active_users": 5}
            events.append(event("usage.recorded", account, NOW - (100 - d) * DAY, data, id=f"{account}-{d}"))
    for n in range(5):
        data = {"ticket_id": f"t-{n}", "priority": "low", "status": "open"}
        events.append(event("ticket.opened", f"t-{n}", NOW - 3 * DAY, data, id=f"t-{n}-opened"))
    return events


def _learning(
    database_url: str, tmp_path: Path, events: list[Any], clock: ManualClock, **settings: Any
) -> tuple[Any, Any, ModelHolder, Any]:
    """A signals processor with budget bands (20 live accounts are enough) over this stored history:
    (engine, sessions, model holder, processor)."""
    from services.signals.handler import SignalsProcessor

    engine = make_engine(database_url)
    history_db = make_sessionmaker(engine)
    store_history(history_db, events)
    configured = SignalsSettings(
        common=CommonSettings(database_url=database_url),
        model_dir=str(tmp_path / "models"),
        budget_bands=True,
        budget_min_accounts=20,
        learn_check_interval_s=3600,
        **settings,
    )
    holder = ModelHolder(ModelStore(Path(configured.model_dir)), load_scorecard())
    return engine, history_db, holder, SignalsProcessor(configured, history_db, clock, holder)


def test_the_learner_fits_the_reference_with_its_bands_and_the_portfolio_flags_the_least_used(
    database_url: str, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL (the features are streamed from a JSON column)."""
    clock = ManualClock(NOW)
    engine, history_db, holder, processor = _learning(
        database_url, tmp_path, _portfolio(40), clock, alert_budget=0.1, red_budget=0.05
    )
    accounts = [f"p-{n:03d}" for n in range(40)] + [f"t-{n}" for n in range(5)]
    with transaction(history_db) as session:
        processor.engine.rescore(session, accounts, NOW, "event")
        before = {a: s for a, s, _b in repository.live_scores(session, holder.scorer.version)}
    assert len({before[a] for a in accounts[:40]}) == 1  # nothing declines: one score for all
    plain = holder.scorer.version
    assert processor.learner.refit_bands() is not None  # bands of the plain scorecard

    reference = processor.learner.refit_peers()
    assert reference is not None and reference.accounts == 40 and reference.portfolio == 45
    assert holder.scorer.version == f"{plain}+peers-{reference.id}"
    bands = json.loads(holder.bands_path.read_text())
    assert bands["scorer"] == holder.scorer.version and bands["previous"]["scorer"] == plain
    assert holder.budget_bands() is not None  # re-scoring under it never uses the fixed bands

    processor.tick()  # the sweep re-scores every account under the new version
    with transaction(history_db) as session:
        scored = {a: (s, b) for a, s, b in repository.live_scores(session, holder.scorer.version)}
    assert len(scored) == 45
    flagged = sorted(a for a, (_s, b) in scored.items() if b != "green")
    assert 1 <= len(flagged) <= 4 and set(flagged) <= {"p-000", "p-001", "p-002", "p-003"}
    assert all(scored[f"t-{n}"][1] == "green" for n in range(5))  # no usage: not compared

    # Fresh and the portfolio unchanged: no refit; a week later the same portfolio gives the
    # same reference, so the version (and every score) stays.
    assert processor.learner.refit_peers() is None
    clock.advance(timedelta(days=8))
    again = processor.learner.refit_peers()
    assert again is not None and again.id == reference.id
    assert holder.scorer.version == f"{plain}+peers-{reference.id}"
    engine.dispose()


def test_the_accounts_that_left_teach_the_reference_which_metrics_count_and_which_way() -> None:
    """Reports are what keeps accounts; errors are what drives them off, and busy accounts see
    more of both. With equal weights a busy account full of errors looks healthy; once enough
    accounts have churned, their features sign and size each metric."""
    live = [levels(reports=2.0 + n % 7, errors=1.0 + n % 5) for n in range(200)]
    churned = [levels(reports=0.5 + n % 2, errors=6.0 + n % 3) for n in range(peers.MIN_CHURNS)]
    equal = peers.fit(live, min_accounts=20, churned=churned[:-1])  # one churn short
    weighted = peers.fit(live, min_accounts=20, churned=churned)
    assert equal is not None and weighted is not None
    assert equal.weights == {} and equal.churns == 0
    assert equal == peers.fit(live, min_accounts=20)  # same reference, same id as without churns
    assert weighted.churns == peers.MIN_CHURNS and weighted.id != equal.id
    w = weighted.weights
    assert w["usage.reports.level_84d"] > 0 > w["usage.errors.level_84d"]
    assert abs(sum(abs(v) for v in w.values()) - 1) < 0.01

    troubled = levels(reports=4.0, errors=9.0)  # busy, and erring like the accounts that left
    calm = levels(reports=4.0, errors=1.0)
    gaps = [ref.gap(row) for ref in (equal, weighted) for row in (troubled, calm)]
    assert None not in gaps
    assert gaps[0] > gaps[1]  # equal weights: more of anything looks healthier
    assert gaps[2] < gaps[3]  # weighted: the errors count against it
    assert peers.PeerReference.from_json(json.loads(json.dumps(weighted.to_json()))) == weighted
    # deterministic: the same accounts give the same reference (and scorer version)
    assert peers.fit(live, min_accounts=20, churned=churned).id == weighted.id


def _two_metric_portfolio(stay: int, leave: int) -> tuple[list[Any], list[str], list[str]]:
    """30 days of steady usage: accounts that stay create reports and see few errors; those
    that will leave create fewer reports and see more errors (busy accounts see both)."""
    events: list[Any] = []
    stayers, leavers = [f"s-{n:03d}" for n in range(stay)], [f"l-{n:03d}" for n in range(leave)]
    for account in stayers + leavers:
        n = int(account[2:])
        reports, errors = (3.0 + n % 6, 1.0 + n % 4) if account in stayers else (1.0 + n % 2, 5.0 + n % 3)
        for d in range(30):
            for metric, quantity in (("reports", reports), ("errors", errors)):
                data = {"metric": metric, "quantity": quantity, "active_users": 3}
                when = NOW - (31 - d) * DAY
                events.append(event("usage.recorded", account, when, data, id=f"{account}-{metric}-{d}"))
    return events, stayers, leavers


def test_the_learner_weighs_the_reference_once_enough_accounts_have_churned(
    database_url: str, tmp_path: Path
) -> None:
    """On SQLite and PostgreSQL (the churned accounts' features are streamed from a JSON column)."""
    from tests.signals.test_outcomes import churned

    events, stayers, leavers = _two_metric_portfolio(60, peers.MIN_CHURNS)
    engine, history_db, holder, processor = _learning(database_url, tmp_path, events, ManualClock(NOW))
    with transaction(history_db) as session:
        processor.engine.rescore(session, stayers + leavers, NOW - DAY, "event")
    first = processor.learner.refit_peers()
    assert first is not None and first.weights == {}  # nobody has left yet: equal weights

    store_history(history_db, [churned(a, days_ago=0.5) for a in leavers[:-1]])
    with transaction(history_db) as session:
        processor.engine.rescore(session, leavers, NOW, "event")
        assert repository.churned_count(session) == peers.MIN_CHURNS - 1
    assert processor.learner.refit_peers() is None  # one churn short: nothing to learn yet

    store_history(history_db, [churned(leavers[-1], days_ago=0.5)])
    with transaction(history_db) as session:
        processor.engine.rescore(session, leavers, NOW, "event")
    weighted = processor.learner.refit_peers()
    assert weighted is not None and weighted.churns == peers.MIN_CHURNS
    assert weighted.weights["usage.reports.level_84d"] > 0 > weighted.weights["usage.errors.level_84d"]
    assert holder.scorer.version.endswith(f"+peers-{weighted.id}")
    assert processor.learner.refit_peers() is None  # no new churn, same portfolio: kept
    # the driver says what the number now means
    texts = [d.text for d in processor.engine.assess(levels(reports=1.0, errors=7.0), {}).drivers]
    assert any(t.startswith("uses the product less than most accounts in the portfolio (") for t in texts)
    assert any(t.endswith("each metric weighted by how the accounts that left used it)") for t in texts)
    engine.dispose()


def test_train_measures_a_weighted_scorecard_as_it_stood_at_the_validation_cutoff() -> None:
    """The weights have seen churns; those after the cutoff are the validation outcomes, so the
    baseline the model is compared on must not have learned from them."""
    from services.signals.training import Dataset, scorecard_at

    before, cutoff, after = NOW - 60 * DAY, NOW - 30 * DAY, NOW
    data = Dataset()
    churned_at = {f"early-{n}": before + DAY for n in range(25)} | {
        f"late-{n}": cutoff + DAY for n in range(25)
    }
    accounts = [f"stay-{n}" for n in range(60)] + sorted(churned_at)
    for when in (before, cutoff, after):
        for account in accounts:
            churn = churned_at.get(account)
            if churn is not None and churn <= when:
                continue  # gone: no more rows
            low = account.startswith(("early", "late"))
            data.rows.append(levels(reports=1.0 if low else 5.0 + int(account.split("-")[1]) % 4))
            data.labels.append(0)
            data.times.append(when)
            data.accounts.append(account)
    data.churned_at = churned_at
    live = [data.rows[i] for i, t in enumerate(data.times) if t == after]
    gone = [levels(reports=1.0)] * 50
    card = load_scorecard()
    weighted = card.with_peers(peers.fit(live, after.isoformat(), 20, churned=gone))
    assert weighted.peers is not None and weighted.peers.churns == 50

    at_cutoff = scorecard_at(weighted, data, cutoff, 20)
    assert at_cutoff.peers is not None and at_cutoff.peers.weights
    assert at_cutoff.peers.churns == 25  # only the churns known by the cutoff
    assert at_cutoff.peers.fitted_at == cutoff.isoformat()
    assert at_cutoff.peers.accounts == 60 + 25  # the accounts observed at the cutoff
    plain = card.with_peers(peers.fit(live, after.isoformat(), 20))
    assert scorecard_at(plain, data, cutoff, 20) is plain  # sees no outcome: kept as it is


def test_backtest_measures_a_weighted_scorecard_as_it_stood_on_its_first_date(database_url: str) -> None:
    """`kamwatch backtest` replays dates the weights in use have learned from; it measures the
    scorecard with its reference fitted again on the first date: the accounts observed then and
    the churns known by then (on SQLite and PostgreSQL)."""
    from services.signals.backtest import scorecard_at_start
    from tests.signals.test_outcomes import churned

    stayers = [f"s-{n:03d}" for n in range(60)]
    early, late = [f"e-{n:03d}" for n in range(25)], [f"l-{n:03d}" for n in range(25)]
    leaving = {**dict.fromkeys(early, 40), **dict.fromkeys(late, 10)}  # days ago
    events: list[Any] = []
    for account in stayers + early + late:
        n = int(account[2:])
        reports, errors = (3.0 + n % 6, 1.0 + n % 4) if account in stayers else (1.0 + n % 2, 5.0 + n % 3)
        for d in range(100 - leaving.get(account, 0)):
            for metric, quantity in (("reports", reports), ("errors", errors)):
                data = {"metric": metric, "quantity": quantity, "active_users": 3}
                when = NOW - (100 - d) * DAY
                events.append(event("usage.recorded", account, when, data, id=f"{account}-{metric}-{d}"))
    events += [churned(account, days_ago=days) for account, days in leaving.items()]
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        store_history(sessions, events)
        card = load_scorecard()
        rows = [levels(reports=5.0 + n % 4, errors=1.0 + n % 3) for n in range(40)]
        weighted = card.with_peers(peers.fit(rows, NOW.isoformat(), 20, churned=[levels(reports=1.0)] * 30))
        assert weighted.peers is not None and weighted.peers.weights
        since = NOW - 25 * DAY
        then, start = scorecard_at_start(sessions, weighted, 30 * DAY, 7 * DAY, since, 20, False)
        assert start is not None and since <= start < since + 7 * DAY
        assert then.peers is not None and then.peers.fitted_at == start.isoformat()
        assert then.peers.churns == len(early)  # the late leavers had not left yet
        assert then.peers.accounts == len(stayers) + len(late)  # observed on that date
        assert (
            then.peers.weights["usage.reports.level_84d"] > 0 > then.peers.weights["usage.errors.level_84d"]
        )
        assert then.version != weighted.version
        plain = card.with_peers(peers.fit(rows, NOW.isoformat(), 20))
        assert scorecard_at_start(sessions, plain, 30 * DAY, 7 * DAY, since, 20, False) == (plain, None)
    finally:
        engine.dispose()
