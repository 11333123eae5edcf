"""Evaluate kamwatch on an event history it did not make: convert, load, train, backtest.

    .venv/bin/python -m bench.external.run                      # CDNOW, 3,000 customers
    .venv/bin/python -m bench.external.run --customers 0        # all 23,570 customers
    .venv/bin/python -m bench.external.run --data simulator --accounts 300   # our own simulator
    .venv/bin/python -m bench.external.run --data behaviours --accounts 3000  # level-driven churn

Everything happens in an isolated SQLite database under --out (default var/external/<data>):
the registry CSV and the events are loaded through the product's own code (bench/external/load.py),
then `kamwatch train` runs as a user would run it, and `kamwatch backtest` when this kamwatch has
it. The figures land in <out>/summary.json and <out>/summary.md; docs/evaluation.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.external import cdnow
from bench.external.load import load_folder
from shared.config import CommonSettings
from shared.db import make_engine, make_sessionmaker
from shared.migrate import upgrade

SIM_END = datetime(2026, 6, 1, tzinfo=UTC)  # fixed, and in the past: no wall clock, no future events


def convert_cdnow(folder: Path, customers: int | None, seed: int) -> dict[str, Any]:
    purchases = cdnow.read_log(cdnow.dataset_path().read_text(encoding="utf-8"))
    converted = cdnow.convert(cdnow.sample(purchases, customers, seed))
    cdnow.write(converted, folder)
    return cdnow.summary(converted)


def convert_simulator(folder: Path, accounts: int, seed: int, days: int) -> dict[str, Any]:
    """The same kind of files from `kamwatch simulate` (for a side-by-side with our own data)."""
    import csv

    from kamwatch.dev.simulator.emit import FileSink
    from kamwatch.dev.simulator.generator import SimConfig, Simulation
    from kamwatch.dev.simulator.runner import run

    start, end = SIM_END - timedelta(days=days), SIM_END
    config = SimConfig(accounts=accounts, seed=seed, start=start, live_start=end, end=end, aliases=False)
    simulation = Simulation(config)
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["id", "name", "arr", "currency", "tier", "segment", "renewal_date"]
    with (folder / "registry.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(a.record(start) for a in simulation.accounts)
    sink = FileSink(folder / "events.jsonl")
    stats = run(simulation, sink, speedup=0)
    sink.close()
    return {
        "source": f"kamwatch simulate --accounts {accounts} --seed {seed} --days {days}",
        "accounts": accounts,
        "churned": stats.by_type.get("account.churned", 0),
        "events": stats.history_events,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "churn_definition": "the simulator's account.churned (at a renewal, some unrelated ones earlier)",
    }


def kamwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kamwatch.cli", *args]
    print("$ kamwatch " + " ".join(args), file=sys.stderr)
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def has_command(env: dict[str, str], name: str) -> bool:
    """Whether `kamwatch --help` lists this command (`kamwatch backtest` lands with issue 10)."""
    lines = kamwatch(env, "--help").stdout.splitlines()
    return any(line.strip().split(" ", 1)[0] == name for line in lines if line.startswith("  "))


def latest_report(models: Path) -> tuple[str, dict[str, Any]] | None:
    """The version and report of the model `kamwatch train` just wrote."""
    reports = sorted(models.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return (reports[-1].parent.name, json.loads(reports[-1].read_text())) if reports else None


FIGURES = (
    ("ROC AUC", "roc_auc"),
    ("PR AUC", "pr_auc"),
    ("share of rows flagged", "flagged_share"),
    ("recall at the alert budget", "recall_at_budget"),
    ("precision at the alert budget", "precision_at_budget"),
    ("recall, top budget share per date", "recall_top_budget_per_date"),
    ("median lead (days)", "lead_days_median"),
)
SCORERS = (
    ("model", "trained model"),
    ("scorecard", "scorecard"),
    ("book_regression", "book-style regression"),
    ("naive_usage_level", "usage level only"),
)


def table(report: dict[str, Any]) -> str:
    """The scorers of one report side by side (those it has), on its identical rows."""
    scorers = [(key, name) for key, name in SCORERS if isinstance(report.get(key), dict)]
    if not scorers:
        return "(no scorer figures in this report)\n"
    first = report[scorers[0][0]]
    lines = [
        f"rows {first.get('rows', '?')}, base rate {first.get('base_rate', '?')}",
        "",
        "| figure | " + " | ".join(name for _, name in scorers) + " |",
        "|---|" + "---|" * len(scorers),
    ]
    for label, field in FIGURES:
        values = " | ".join(str(report[key].get(field, "-")) for key, _ in scorers)
        lines.append(f"| {label} | {values} |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict[str, Any]) -> str:
    data = summary["data"]
    parts = [
        f"# {data['source']}",
        "",
        f"{data['accounts']} accounts, {data['churned']} churned, {data['events']} events "
        f"({data['from'][:10]} .. {data['to'][:10]}); churn: {data['churn_definition']}. "
        f"Horizon {summary['horizon_days']} days; {summary['seconds']} s.",
        "",
    ]
    report = summary.get("train_report")
    if report:
        period = report.get("validation", {})
        span = f"{str(period.get('from'))[:10]} .. {str(period.get('to'))[:10]}"
        parts += [f"## kamwatch train: validation {span}"]
        parts += [f"chosen: {report.get('chosen', 'logistic')}", "", table(report)]
    backtest = (summary.get("backtest") or {}).get("report")
    if backtest:
        period = backtest.get("period", {})
        parts += [f"## kamwatch backtest: {str(period.get('from'))[:10]} .. {str(period.get('to'))[:10]}", ""]
        parts += [table(backtest)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("cdnow", "simulator", "behaviours"), default="cdnow")
    parser.add_argument("--customers", type=int, default=3000, help="cdnow: sample size, 0 = all (3000)")
    parser.add_argument("--accounts", type=int, default=300, help="simulator, behaviours: accounts (300)")
    parser.add_argument("--days", type=int, default=365, help="simulator: days (365)")
    parser.add_argument("--seed", type=int, default=None, help="sample / simulator seed")
    parser.add_argument("--horizon", type=int, default=90, help="label horizon in days (90)")
    parser.add_argument("--min-churns", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="default var/external/<data>")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the history loaded by an earlier run in --out: only train"
    )
    args = parser.parse_args(argv)
    out: Path = args.out or Path("var/external") / args.data
    if args.reuse:
        before = json.loads((out / "summary.json").read_text())
        return train_and_backtest(out, args, before["data"], before.get("loaded", {}))
    if out.exists():
        shutil.rmtree(out)
    data = out / "data"
    started = time.monotonic()
    if args.data == "cdnow":
        source = convert_cdnow(data, args.customers or None, 1997 if args.seed is None else args.seed)
    elif args.data == "behaviours":
        from bench.external import behaviours

        source = behaviours.write(data, args.accounts, args.days, 11 if args.seed is None else args.seed)
    else:
        source = convert_simulator(data, args.accounts, 42 if args.seed is None else args.seed, args.days)
    print(f"converted: {source}", file=sys.stderr)

    url = f"sqlite:///{(out / 'kamwatch.db').resolve()}"
    upgrade(url)
    engine = make_engine(url)
    try:
        now = datetime.fromisoformat(source["to"]) + timedelta(days=1)
        loaded = load_folder(make_sessionmaker(engine), data, now)
    finally:
        engine.dispose()
    print(f"loaded: {loaded}", file=sys.stderr)
    return train_and_backtest(out, args, source, loaded, started)


def train_and_backtest(
    out: Path, args: argparse.Namespace, source: dict[str, Any], loaded: dict[str, Any], started: float = 0.0
) -> int:
    """`kamwatch train`, then `kamwatch backtest` of the trained model, on the history in `out`."""
    started = started or time.monotonic()
    for old in ("models", "backtest"):
        shutil.rmtree(out / old, ignore_errors=True)
    url = f"sqlite:///{(out / 'kamwatch.db').resolve()}"
    env = CommonSettings(database_url=url).subprocess_env(dict(os.environ))
    env["KAMWATCH_SIGNALS_MODEL_DIR"] = str((out / "models").resolve())
    env["KAMWATCH_SIGNALS_HORIZON_DAYS"] = str(args.horizon)
    env["KAMWATCH_LOG_FORMAT"] = "console"
    summary: dict[str, Any] = {"data": source, "loaded": loaded, "horizon_days": args.horizon}
    trained = kamwatch(env, "train", "--quiet", "--min-churns", str(args.min_churns))
    print(trained.stdout + trained.stderr[-2000:], file=sys.stderr)
    summary["train"] = {"returncode": trained.returncode, "output": trained.stdout.strip()}
    trained_model = latest_report(out / "models")
    summary["train_report"] = trained_model[1] if trained_model else None
    if trained_model and has_command(env, "backtest"):
        # The trained model on the dates it never trained on: from its validation period on.
        version, report = trained_model
        since = str(report.get("validation", {}).get("from", ""))[:10]
        options = ["--model", version] + (["--since", since] if since else [])
        backtest = kamwatch(env, "backtest", "--quiet", "--out", str(out / "backtest"), *options)
        print(backtest.stdout + backtest.stderr[-2000:], file=sys.stderr)
        written = out / "backtest" / "report.json"
        summary["backtest"] = {
            "returncode": backtest.returncode,
            "output": backtest.stdout.strip(),
            "report": json.loads(written.read_text()) if written.exists() else None,
        }
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    print(summary_markdown(summary))
    print(f"summary: {out / 'summary.json'} and {out / 'summary.md'}")
    return 0 if trained.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
