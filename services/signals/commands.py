"""CLI: `kamwatch signals rebuild`, `kamwatch train`, `kamwatch model list|promote|rollback`,
`kamwatch postmortem`, `kamwatch qualify`."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import click

from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.learning import decision_figures
from services.signals.modelstore import SCORECARD, ModelHolder, ModelStore
from services.signals.rebuild import RebuildResult, rebuild
from services.signals.scoring import load_scorecard
from shared.clock import Clock, clock_from_env
from shared.db import make_engine, make_sessionmaker
from shared.logging import configure_logging


class AlertsUnavailable(Exception):
    """The alerts service could not be asked (down, wrong URL, key refused)."""


def _local_key() -> str:
    path = Path(os.environ.get("KAMWATCH_VAR_DIR", "var")) / "api-key"
    return path.read_text().strip() if path.exists() else ""


def _alerts_over_http(base: str, key: str) -> Callable[[str], list[dict[str, Any]]]:
    """Each account's alerts in detail (with tasks) from the alerts service's public API."""
    import httpx

    client = httpx.Client(base_url=base.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def get(path: str, **params: Any) -> Any:
        try:
            response = client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise AlertsUnavailable(f"{base} did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            message = (
                response.json().get("message", "")
                if response.headers.get("content-type", "").startswith("application/json")
                else ""
            )
            raise AlertsUnavailable(f"{base}{path} answered {response.status_code} {message}".strip())
        return response.json()

    def alerts_of(account_id: str) -> list[dict[str, Any]]:
        listed = get("/v1/alerts", account=account_id, limit=1000)["alerts"]
        return [get(f"/v1/alerts/{int(a['id'])}") for a in listed]

    return alerts_of


def _settings() -> SignalsSettings:
    settings = SignalsSettings()
    configure_logging(settings.common.log_level, settings.common.log_format, "signals")
    return settings


def run_rebuild(settings: SignalsSettings, clock: Clock, *, check: bool, progress: bool) -> RebuildResult:
    """Replay signal_events into fresh state tables (or only compare with --check)."""
    engine = make_engine(settings.common.database_url)
    try:
        holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard(settings.scorecard_path))
        holder.refresh()
        sessions = make_sessionmaker(engine)
        return rebuild(sessions, RiskEngine(settings, holder), clock.now(), check=check, progress=progress)
    finally:
        engine.dispose()


@click.command(
    "rebuild",
    epilog="\b\nExamples:\n  kamwatch signals rebuild --check   (compare only, exit 1 on a difference)\n"
    "  kamwatch signals rebuild           (stop the signals workers first)",
)
@click.option("--check", is_flag=True, help="only compare the replay with the live state; change nothing")
@click.option("--quiet", is_flag=True, help="no progress bar")
def rebuild_state(check: bool, quiet: bool) -> int:
    """Replay the stored events into fresh feature and risk tables (or only compare with --check)."""
    settings = _settings()
    result = run_rebuild(settings, clock_from_env(settings.clock_file), check=check, progress=not quiet)
    if check:
        for line in result.differences:
            click.echo(f"differs: {line}")
        verdict = "differs from" if result.differences else "equals"
        click.echo(f"replayed {result.events} events of {result.accounts} accounts: {verdict} the live state")
        return 1 if result.differences else 0
    click.echo(f"rebuilt state from {result.events} events of {result.accounts} accounts and re-scored them")
    return 0


def _holder(settings: SignalsSettings) -> ModelHolder:
    holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard(settings.scorecard_path))
    holder.refresh()
    return holder


def run_train(settings: SignalsSettings, clock: Clock, progress: bool = True) -> tuple[str, dict[str, Any]]:
    from services.signals.training import train  # scikit-learn loads only when training

    engine = make_engine(settings.common.database_url)
    try:
        holder = _holder(settings)
        return train(
            settings, make_sessionmaker(engine), holder.scorecard, clock.now(), progress, holder.scorer
        )
    finally:
        engine.dispose()


@click.command(
    epilog="\b\nExamples:\n  kamwatch train --min-churns 20 && kamwatch model promote <version>\n"
    "  kamwatch train --refit-scorecard   (few churns: refit the scorecard's weights instead)"
)
@click.option("--min-churns", type=int, default=None, help="refuse to train below this many labelled churns")
@click.option("--horizon-days", type=click.IntRange(1, 730), default=None, help="label window (default 90)")
@click.option(
    "--refit-scorecard",
    is_flag=True,
    help="refit the scorecard's weights on the stored outcomes (works with few churns)",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
def train(min_churns: int | None, horizon_days: int | None, refit_scorecard: bool, quiet: bool) -> int:
    """Train a churn model on the stored history, write its report, and say how to promote it."""
    settings = _settings()
    if min_churns is not None:
        settings.min_churns = min_churns
    if horizon_days is not None:
        settings.horizon_days = horizon_days
    if refit_scorecard:
        return _refit(settings, not quiet)
    version, report = run_train(settings, clock_from_env(settings.clock_file), progress=not quiet)
    folder = Path(settings.model_dir) / version
    model, card, book = report["model"], report["scorecard"], report["book_regression"]
    click.echo(
        f"trained {version} ({report['chosen']}), validation {report['validation']['from'][:10]} .. "
        f"{report['validation']['to'][:10]}, base rate {report['validation']['base_rate']}: "
        f"ROC AUC {model['roc_auc']} (scorecard {card['roc_auc']}, book-style regression {book['roc_auc']}, "
        f"usage level only {report['naive_usage_level']['roc_auc']})"
    )
    click.echo(
        f"at the alert budget ({settings.alert_budget:.0%} of accounts): recall {model['recall_at_budget']}, "
        f"precision {model['precision_at_budget']}, median lead {model['lead_days_median']} days "
        f"(25th percentile {model['lead_days_p25']})"
    )
    click.echo(f"report: {folder / 'report.md'} and {folder / 'report.json'}")
    figures = decision_figures(report)  # learning's own rule, so `train` and learning agree
    if not figures["beats_scorecard"]:
        click.echo(
            "note: this model does not beat the scorecard on the validation dates by more than one "
            f"standard error of its ROC AUC ({figures['scorecard_margin']}); keep the scorecard"
        )
    click.echo(f"promote it with: kamwatch model promote {version}")
    return 0


@click.group()
def model() -> None:
    """List, promote or roll back trained models (running signals workers follow within a tick)."""


@model.command("list")
def model_list() -> int:
    """Versions with their validation metrics; * marks the one in use."""
    _list_models(ModelStore(Path(_settings().model_dir)))
    return 0


@model.command("promote", epilog="\b\nExample:\n  kamwatch model promote 20261128-120000")
@click.argument("version")
def model_promote(version: str) -> int:
    """Use VERSION in every signals worker."""
    ModelStore(Path(_settings().model_dir)).promote(version)
    click.echo(f"promoted {version}; running signals workers switch to it within one tick")
    return 0


@model.command("rollback")
def model_rollback() -> int:
    """Back to the previously promoted version (or the scorecard)."""
    click.echo(f"rolled back; now in use: {ModelStore(Path(_settings().model_dir)).rollback()}")
    return 0


def _refit(settings: SignalsSettings, progress: bool) -> int:
    from services.signals.refit import refit_scorecard

    engine = make_engine(settings.common.database_url)
    try:
        scorecard = load_scorecard(settings.scorecard_path)
        clock = clock_from_env(settings.clock_file)
        path, figures = refit_scorecard(settings, make_sessionmaker(engine), scorecard, clock.now(), progress)
    finally:
        engine.dispose()
    for name, row in figures.items():
        click.echo(
            f"{name} scorecard on the validation dates: ROC AUC {row['roc_auc']}, "
            f"recall {row['recall_at_budget']}"
        )
    click.echo(f"wrote {path}; use it with KAMWATCH_SIGNALS_SCORECARD_PATH={path}")
    return 0


def run_backtest(
    settings: SignalsSettings, out_dir: Path, version: str | None, since: str | None, progress: bool
) -> dict[str, Any]:
    from services.signals.backtest import backtest

    holder = _holder(settings)
    store = holder.store
    scorer = holder.scorer
    if version is None and store.current() is None and store.versions():
        version = store.versions()[-1]  # nothing promoted: judge the newest trained model
    start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    if version is not None:
        meta = store.metadata(version)
        if start is None:
            start = datetime.fromisoformat(meta["cutoff"])
        # The deployed fit learned from every observed row up to fitted_through: on those dates the
        # backtest scores the fit on the training rows only, which never saw them.
        seen = meta.get("fitted_through")
        scorer = store.load(version, validated=seen is not None and start <= datetime.fromisoformat(seen))
    thresholds = scorer.thresholds or (settings.amber_threshold, settings.red_threshold)
    engine = make_engine(settings.common.database_url)
    try:
        return backtest(
            make_sessionmaker(engine),
            scorer,
            holder.scorecard,
            thresholds,
            settings.horizon_days,
            settings.observation_step_days,
            settings.alert_budget,
            start,
            out_dir,
            progress,
            settings.budget_min_accounts,
        )
    finally:
        engine.dispose()
    return 0


def _list_models(store: ModelStore) -> None:
    current = store.current() or SCORECARD
    click.echo(f"{'*' if current == SCORECARD else ' '} {SCORECARD} (day-one scorecard)")
    for version in store.versions():
        metrics = store.metadata(version).get("metrics", {})
        mark = "*" if version == current else " "
        click.echo(f"{mark} {version}  roc_auc={metrics.get('roc_auc')} brier={metrics.get('brier')}")


def _day(_ctx: click.Context, _param: click.Parameter, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD") from None


@click.command(
    epilog="\b\nExamples:\n  kamwatch postmortem --since 2026-01-01 --out var/postmortem\n"
    "  kamwatch postmortem                 (every churn, into the current folder)",
)
@click.option("--since", callback=_day, default=None, help="only churns on or after YYYY-MM-DD")
@click.option("--out", default=".", show_default=True, help="folder for postmortem.md and the chart")
@click.option(
    "--alerts-url",
    envvar="KAMWATCH_ALERTS_URL",
    default="http://127.0.0.1:8003",
    show_default=True,
    help="the alerts service, for each churn's alerts, acknowledgement times and playbook steps",
)
@click.option(
    "--api-key", envvar="KAMWATCH_API_KEY", default=None, help="risk:read key (default: var/api-key)"
)
def postmortem(since: date | None, out: str, alerts_url: str, api_key: str | None) -> int:
    """Churn post-mortems as Markdown plus a PNG chart: reason, lead times, drivers, missed churns,
    and the alerts each churn got with their acknowledgement times (definitions: docs/metrics.md)."""
    from services.signals import postmortem as reports

    settings = _settings()
    start = datetime.combine(since, time(0), tzinfo=UTC) if since else None
    engine = make_engine(settings.common.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            body = reports.report(session, start)
    finally:
        engine.dispose()
    try:
        reports.with_alerts(body, _alerts_over_http(alerts_url, api_key or _local_key()))
    except AlertsUnavailable as exc:
        body["alerts_error"] = str(exc)
        click.echo(f"warning: alerts not included: {exc}", err=True)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "postmortem-lead-times.png"
    drawn = reports.chart(body, png) if body["items"] else False
    (folder / "postmortem.md").write_text(reports.markdown(body, png.name if drawn else None))
    roll = body["rollups"]
    click.echo(f"{roll['churned']} churns, {roll['flagged']} flagged, {len(roll['missed'])} missed")
    click.echo(f"report: {folder / 'postmortem.md'}" + (f" and {png}" if drawn else ""))
    if body["items"] and not drawn:
        click.echo("no chart: matplotlib is not installed (pip install 'kamwatch[bench]')")
    return 0


@click.command(
    epilog="\b\nExample:\n  kamwatch qualify --csv crm-export.csv > ranking.csv",
)
@click.option(
    "--csv", "csv_path", required=True, help="the CRM export: registry CSV columns (id, name, arr, ...)"
)
@click.option(
    "--config", default=None, help="weights and thresholds (default: the built-in qualification.yaml)"
)
def qualify(csv_path: str, config: str | None) -> int:
    """Rank a CRM export for key-account status (promote, keep, review, demote) and print the
    ranking as CSV (definitions: docs/metrics.md)."""
    import sys

    from services.signals import qualification
    from shared.errors import ConfigError, ValidationFailed

    settings = _settings()
    try:
        weights = qualification.load_config(config or settings.qualification_path)
        text = Path(csv_path).read_text(encoding="utf-8-sig")
        items = qualification.from_csv(text, clock_from_env(settings.clock_file).now(), weights)
    except (ConfigError, ValidationFailed, OSError, UnicodeDecodeError) as exc:
        click.echo(f"kamwatch qualify: {exc}", err=True)
        return 2
    sys.stdout.write(qualification.to_csv(items))
    return 0


@click.command(
    epilog="\b\nExamples:\n  kamwatch backtest --out var/backtest\n"
    "  kamwatch backtest --model 20261128-120000 --since 2026-01-01",
)
@click.option("--out", default="var/backtest", show_default=True, help="folder for report.md/json and PNGs")
@click.option("--model", "version", default=None, help="a trained version (default: the one in use)")
@click.option("--since", callback=_day, default=None, help="first as-of date, YYYY-MM-DD")
@click.option("--horizon-days", type=click.IntRange(1, 730), default=None, help="label window (default 90)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def backtest(out: str, version: str | None, since: date | None, horizon_days: int | None, quiet: bool) -> int:
    """Replay the stored history and score every account at weekly as-of dates with the scorer in
    use (or --model), beside the scorecard and a usage-level-only baseline, on fully observed rows."""
    settings = _settings()
    if horizon_days is not None:
        settings.horizon_days = horizon_days
    folder = Path(out)
    report = run_backtest(settings, folder, version, since.isoformat() if since else None, not quiet)
    key = "model" if "model" in report else "scorecard"
    row = report[key]
    click.echo(
        f"backtest of {report['scorer_in_use']} over {report['period']['dates']} weekly dates, "
        f"{report['period']['observed_rows']} fully observed rows (base rate {row['base_rate']}): "
        f"ROC AUC {row['roc_auc']} (scorecard {report['scorecard']['roc_auc']}, usage level only "
        f"{report['naive_usage_level']['roc_auc']}); recall {row['recall_at_budget']} and precision "
        f"{row['precision_at_budget']} at {row['flagged_share']:.1%} flagged; median lead "
        f"{row['lead_days_median']} days"
    )
    click.echo(
        f"wrote {folder / 'report.md'}, {folder / 'report.json'} and roc, calibration, lift, lead_time PNGs"
    )
    return 0
