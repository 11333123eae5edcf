"""`kamwatch simulate`: generate a portfolio and send its events to kamwatch or to a file."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from kamwatch.dev.local import service_port
from shared.errors import ConfigError

TARGETS = ("kafka", "webhooks", "api", "file")


def register(top: Any, actions: Any) -> None:
    parser = top.add_parser(
        "simulate",
        help="simulate a portfolio of key accounts and stream its events",
        description="Generate a deterministic portfolio (same seed and arguments: same events) and "
        "send its history as fast as possible, then a live phase paced by --speedup.",
    )
    parser.add_argument("--accounts", type=int, default=50, help="number of accounts (default 50)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--days", type=int, default=365, help="days of history to backfill (default 365)")
    parser.add_argument(
        "--start", type=date.fromisoformat, default=None, help="first day (default: today 00:00 UTC - DAYS)"
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=60.0,
        help="live phase: simulated seconds per real second (default 60)",
    )
    parser.add_argument(
        "--live-minutes", type=float, default=0.0, help="real minutes of live streaming after the history"
    )
    parser.add_argument(
        "--spotlight",
        type=int,
        default=0,
        help="accounts scripted to decline visibly early in the live phase",
    )
    parser.add_argument(
        "--target", choices=TARGETS, default=None, help="default: file with --out, else kafka"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines file for --target file")
    parser.add_argument("--register", choices=("api", "kafka", "none"), default="api")
    parser.add_argument("--ingest-url", default=f"http://127.0.0.1:{service_port('ingest')}")
    parser.add_argument("--signals-url", default=f"http://127.0.0.1:{service_port('signals')}")
    parser.add_argument("--api-key", default=None, help="default: KAMWATCH_API_KEY or var/api-key")
    parser.add_argument("--no-aliases", action="store_true", help="address every event by account id")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_simulate)


def read_api_key(explicit: str | None) -> str | None:
    """--api-key, else KAMWATCH_API_KEY, else the local key `kamwatch run` keeps in var/api-key."""
    if explicit:
        return explicit
    if os.environ.get("KAMWATCH_API_KEY"):
        return os.environ["KAMWATCH_API_KEY"]
    path = Path(os.environ.get("KAMWATCH_VAR_DIR", "var")) / "api-key"
    return path.read_text().strip() if path.exists() else None


def config_from_args(args: argparse.Namespace, today: date) -> Any:
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


def cmd_simulate(args: argparse.Namespace) -> int:
    import httpx
    from kafka.errors import KafkaError

    from kamwatch.dev.simulator.generator import Simulation
    from kamwatch.dev.simulator.runner import run

    target = args.target or ("file" if args.out else "kafka")
    config = config_from_args(args, datetime.now(UTC).date())
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


def _sink(target: str, args: argparse.Namespace) -> Any:
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


def _register(args: argparse.Namespace, simulation: Any) -> None:
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
        with _client(args.signals_url) as client:
            count = register_api(client, key, accounts, simulation.config.end)
    print(f"registered {count} accounts ({args.register})", file=sys.stderr)


def _run_with_bar(simulation: Any, sink: Any, args: argparse.Namespace, run: Any) -> Any:
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


def _summary(simulation: Any, stats: Any, target: str, args: argparse.Namespace, seconds: float) -> None:
    churned = stats.by_type.get("account.churned", 0)
    renewed = stats.by_type.get("account.renewed", 0)
    where = str(args.out) if target == "file" else target
    print(
        f"{stats.history_events + stats.live_events} events ({stats.history_events} history, "
        f"{stats.live_events} live) for {len(simulation.accounts)} accounts over {stats.days} days "
        f"-> {where} in {seconds:.1f} s; outcomes: {churned} churned, {renewed} renewed",
        file=sys.stderr,
    )
