"""`kamwatch simulate`: generate a portfolio and send its events to kamwatch or to a file."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kamwatch.dev.local import service_port
from shared.errors import ConfigError

TARGETS = ("kafka", "webhooks", "api", "file")


@dataclass(frozen=True)
class SimulateOptions:
    """What `kamwatch simulate` was asked to do (its command-line options)."""

    accounts: int = 50
    seed: int = 42
    days: int = 365
    start: date | None = None
    speedup: float = 60.0
    live_minutes: float = 0.0
    spotlight: int = 0
    target: str | None = None
    out: Path | None = None
    register: str = "api"
    ingest_url: str = ""
    signals_url: str = ""
    api_key: str | None = None
    no_aliases: bool = False
    quiet: bool = False


@click.command(
    epilog="""\b
Examples:
  kamwatch simulate --accounts 50 --days 365 --out var/sim.jsonl
  kamwatch simulate --accounts 20 --days 120 --target api --live-minutes 5 --speedup 120
  kamwatch simulate --target webhooks --register kafka"""
)
@click.option("--accounts", type=int, default=50, show_default=True, help="number of accounts")
@click.option("--seed", type=int, default=42, show_default=True, help="random seed (same seed, same events)")
@click.option("--days", type=int, default=365, show_default=True, help="days of history to backfill")
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="first day (default: today 00:00 UTC - DAYS)",
)
@click.option(
    "--speedup", type=float, default=60.0, show_default=True, help="live phase: simulated s per real s"
)
@click.option(
    "--live-minutes", type=float, default=0.0, help="real minutes of live streaming after the history"
)
@click.option(
    "--spotlight", type=int, default=0, help="accounts scripted to decline visibly early in the live phase"
)
@click.option(
    "--target", type=click.Choice(TARGETS), default=None, help="default: file with --out, else kafka"
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="JSON-lines file for --target file"
)
@click.option(
    "--register",
    type=click.Choice(("api", "kafka", "none")),
    default="api",
    show_default=True,
    help="how the accounts reach the registry",
)
@click.option(
    "--ingest-url", default=None, help="ingest base URL (default http://127.0.0.1:KAMWATCH_INGEST_PORT)"
)
@click.option(
    "--signals-url", default=None, help="signals base URL (default http://127.0.0.1:KAMWATCH_SIGNALS_PORT)"
)
@click.option("--api-key", default=None, help="default: KAMWATCH_API_KEY or var/api-key")
@click.option("--no-aliases", is_flag=True, help="address every event by account id")
@click.option("--quiet", is_flag=True, help="no progress bars (registering, then the simulated days)")
def simulate(**options: Any) -> int:
    """Simulate a portfolio of key accounts and stream its events: a deterministic history sent as
    fast as possible, then a live phase paced by --speedup."""
    options["start"] = options["start"].date() if options["start"] else None
    options["ingest_url"] = options["ingest_url"] or f"http://127.0.0.1:{service_port('ingest')}"
    options["signals_url"] = options["signals_url"] or f"http://127.0.0.1:{service_port('signals')}"
    return cmd_simulate(SimulateOptions(**options))


def read_api_key(explicit: str | None) -> str | None:
    """--api-key, else KAMWATCH_API_KEY, else the local key `kamwatch run` keeps in var/api-key."""
    if explicit:
        return explicit
    if os.environ.get("KAMWATCH_API_KEY"):
        return os.environ["KAMWATCH_API_KEY"]
    path = Path(os.environ.get("KAMWATCH_VAR_DIR", "var")) / "api-key"
    return path.read_text().strip() if path.exists() else None


def config_from_args(args: SimulateOptions, today: date) -> Any:
    from kamwatch.dev.simulator.generator import SimConfig

    if args.accounts < 1 or args.days < 0 or args.live_minutes < 0:
        raise ConfigError("--accounts must be at least 1, --days and --live-minutes not negative")
    if args.live_minutes > 0 and args.speedup <= 0:
        raise ConfigError("--live-minutes needs a positive --speedup")
    first = args.start or today - timedelta(days=args.days)
    start = datetime.combine(first, datetime.min.time(), UTC)
    live_start = start + timedelta(days=args.days)
    end = live_start + timedelta(seconds=round(args.live_minutes * 60 * max(args.speedup, 0)))
    return SimConfig(
        accounts=args.accounts,
        seed=args.seed,
        start=start,
        live_start=live_start,
        end=end,
        spotlight=min(args.spotlight, args.accounts),
        aliases=not args.no_aliases,
    )


def cmd_simulate(args: SimulateOptions) -> int:
    import httpx
    from kafka.errors import KafkaError

    from kamwatch.dev.simulator.generator import Simulation
    from kamwatch.dev.simulator.runner import run

    target = args.target or ("file" if args.out else "kafka")
    config = config_from_args(args, datetime.now(UTC).date())
    if not args.quiet and args.accounts >= 1000:
        click.echo(f"drawing {args.accounts} accounts and their hidden satisfaction ...", err=True)
    simulation = Simulation(config)
    try:
        sink = _sink(target, args)
        try:
            if target != "file" and args.register != "none":
                _register(args, simulation)
            started = time.monotonic()
            stats = _run_with_bar(simulation, sink, args, run)
        finally:
            sink.close()
    except (httpx.TransportError, KafkaError) as error:
        raise ConfigError(
            f"cannot reach kamwatch ({type(error).__name__}: {error}); start it with `kamwatch run`, "
            "check --ingest-url/--signals-url or KAMWATCH_KAFKA_BOOTSTRAP, or use --target file"
        ) from None
    _summary(simulation, stats, target, args, time.monotonic() - started)
    return 0


def _sink(target: str, args: SimulateOptions) -> Any:
    from kamwatch.dev.simulator import emit

    if target == "file":
        if args.out is None:
            raise ConfigError("--target file needs --out PATH")
        return emit.FileSink(args.out)
    if target == "kafka":
        from shared.config import CommonSettings

        return emit.KafkaSink(CommonSettings())
    key = read_api_key(args.api_key)
    if not key:
        raise ConfigError("no API key: pass --api-key, set KAMWATCH_API_KEY, or start `kamwatch run` first")
    client = _client(args.ingest_url)
    if target == "api":
        return emit.ApiSink(client, key)
    from services.ingest.config import IngestSettings

    ingest = IngestSettings()
    return emit.WebhookSink(client, key, ingest.stripe_webhook_secrets[0], ingest.zendesk_webhook_secrets[0])


def _client(base_url: str) -> Any:
    import httpx

    return httpx.Client(base_url=base_url, timeout=30)


def _register(args: SimulateOptions, simulation: Any) -> None:
    from kamwatch.dev.simulator.registry import register_api, register_kafka

    accounts = simulation.accounts
    if args.register == "kafka":
        from shared.config import CommonSettings

        prefix = simulation.config.id_prefix()
        end = simulation.config.end
        count = register_kafka(CommonSettings(), accounts, prefix, datetime.now(UTC), end)
    else:
        key = read_api_key(args.api_key)
        if not key:
            raise ConfigError("no API key for --register api: pass --api-key or use --register kafka")
        from tqdm import tqdm

        bar = tqdm(total=len(accounts), unit="account", desc="register", file=sys.stderr, disable=args.quiet)
        with bar, _client(args.signals_url) as client:
            count = register_api(client, key, accounts, simulation.config.end, on_account=bar.update)
    click.echo(f"registered {count} accounts ({args.register})", err=True)


def _run_with_bar(simulation: Any, sink: Any, args: SimulateOptions, run: Any) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=simulation.day_count(), unit="day", file=sys.stderr, disable=args.quiet)

    def on_day(day: datetime, stats: Any) -> None:
        bar.set_postfix_str(
            f"{day:%Y-%m-%d} {stats.history_events + stats.live_events} events", refresh=False
        )
        bar.update(1)

    try:
        return run(simulation, sink, args.speedup if args.live_minutes > 0 else 0, on_day=on_day)
    finally:
        bar.close()


def _summary(simulation: Any, stats: Any, target: str, args: SimulateOptions, seconds: float) -> None:
    churned = stats.by_type.get("account.churned", 0)
    renewed = stats.by_type.get("account.renewed", 0)
    where = str(args.out) if target == "file" else target
    click.echo(
        f"{stats.history_events + stats.live_events} events ({stats.history_events} history, "
        f"{stats.live_events} live) for {len(simulation.accounts)} accounts over {stats.days} days "
        f"-> {where} in {seconds:.1f} s; outcomes: {churned} churned, {renewed} renewed",
        err=True,
    )
