"""`make bench` / `python -m bench.run [--quick]`: the kamwatch benchmark suite.

Runs the four benchmarks of issue 6 on the local broker and a fresh PostgreSQL schema (database
`test`), each against a baseline measured in the same run, and writes bench/results/results.json,
results.md and throughput_latency.png. `--quick` is a small run for development (about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import console_pages, endpoints, latency, machine, report, scale, scaleout, throughput
from bench.env import WORK_DIR
from bench.stats import median
from bench.workload import IMPORT_ERRORS, build
from kamwatch.dev.broker import LocalBroker, free_port

RESULTS_DIR = Path("bench/results")
BUDGET_S = 19 * 60


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (full or quick)."""

    mode: str
    accounts: int
    events: int
    throughput_repeats: int
    throughput_cap_s: float
    reserve_s: float  # time kept for latency and scale: another throughput run only if it fits
    http_seconds: float
    http_repeats: int
    latency_accounts: int
    latency_rates: tuple[tuple[float, float], ...]  # (events/s, seconds)
    probes_per_rate: int
    scale_sizes: tuple[int, ...]
    rebuild_max: int  # larger portfolios: rebuild projected from the largest measured
    sweep_full_max: int  # larger portfolios: `sweep_ticks` ticks timed, the full sweep projected
    sweep_ticks: int = 4
    scaleout_accounts: int = 2_000
    scaleout_events: int = 40_000
    extra: dict[str, Any] = field(default_factory=dict)


FULL = Plan(
    mode="full",
    accounts=10_000,
    events=200_000,
    throughput_repeats=3,
    throughput_cap_s=450,
    reserve_s=660,
    http_seconds=4,
    http_repeats=3,
    latency_accounts=500,
    latency_rates=((50, 15), (150, 15), (400, 10), (1000, 8)),
    probes_per_rate=5,
    scale_sizes=(1_000, 10_000, 100_000),
    rebuild_max=100_000,
    sweep_full_max=10_000,
)
QUICK = Plan(
    mode="quick",
    accounts=500,
    events=10_000,
    throughput_repeats=1,
    throughput_cap_s=120,
    reserve_s=180,
    http_seconds=2,
    http_repeats=1,
    latency_accounts=100,
    latency_rates=((50, 5), (200, 5)),
    probes_per_rate=2,
    scale_sizes=(100, 500, 2_000),
    rebuild_max=500,
    sweep_full_max=500,
    sweep_ticks=2,
    scaleout_accounts=200,
    scaleout_events=3_000,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, about 3 minutes")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("throughput", "latency", "scale", "console", "scaleout"),
        default=None,
        help="run some benchmarks only (HTTP runs with throughput)",
    )
    parser.add_argument("--profile", default=None, help="py-spy binary: profile the services in benchmark 1")
    parser.add_argument("--shared", action="store_true", help="note that other work ran on the machine")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite results.md and the PNG from OUT/results.json"
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def run_throughput(plan: Plan, broker: LocalBroker, work: Path, profiler: str | None) -> dict[str, Any]:
    """Up to `throughput_repeats` runs (HTTP on the first one's state), while the budget allows."""
    begun = time.monotonic()
    log(f"building the simulated stream: {plan.accounts} accounts, >= {plan.events} events")
    workload = build(plan.accounts, plan.events)
    log(f"stream ready: {workload.events} events; running the pipeline")
    runs: list[dict[str, Any]] = []
    while len(runs) < plan.throughput_repeats:
        run_started = time.monotonic()
        after = None if runs else _http_after(plan, workload, work, profiler)
        runs.append(
            throughput.run_once(broker, workload, work / "logs", plan.throughput_cap_s, profiler, after)
        )
        took = time.monotonic() - run_started
        log(f"throughput run {len(runs)}: {runs[-1]['events_per_s']} events/s ({took:.0f} s)")
        if time.monotonic() - begun + took + plan.reserve_s > BUDGET_S:
            break
        profiler = None  # profile the first run only
    http = runs[0].pop("after", None)
    return {"throughput": throughput_summary(runs), "http": http}


def _http_after(plan: Plan, workload: Any, work: Path, profiler: str | None) -> Any:
    def after(signals: Any, key: str, ids: list[str]) -> Any:
        log("HTTP: /healthz, /v1/accounts/{id}/risk, /v1/portfolio at 50 concurrent clients")
        return endpoints.measure(
            signals, key, ids, work, seconds=plan.http_seconds, repeats=plan.http_repeats, profiler=profiler
        )

    return after


def throughput_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    windows = [w for r in runs for w in r["window_events_per_s"]]
    baselines = [r["baseline"]["events_per_s"] for r in runs]
    overall = median([r["events_per_s"] for r in runs])
    base = median(baselines)
    return {
        "events": runs[0]["events"],
        "accounts": runs[0]["accounts"],
        "processed": median([r["processed"] for r in runs]),
        "complete": all(r["complete"] for r in runs),
        "seconds": median([r["seconds"] for r in runs]),
        "ingest_events_per_s": median([r["ingest_events_per_s"] for r in runs]),
        "repeats": len(runs),
        "events_per_s": overall,
        "window_events_per_s_median": median(windows),
        "baseline_events_per_s": base,
        "ratio_to_baseline": round(overall / base, 4) if overall and base else None,
        "memory": report.memory_summary(runs[-1]["rss_samples"]),
        "runs": [{k: v for k, v in r.items() if k != "rss_samples"} for r in runs],
    }


def run_latency(plan: Plan, broker: LocalBroker, work: Path) -> dict[str, Any]:
    live = int(sum(rate * seconds for rate, seconds in plan.latency_rates))
    workload = build(plan.latency_accounts, live + plan.latency_accounts * 20)
    history, stream = latency.split_history(workload, live)
    now = latency.now_utc()
    probes = [latency.make_probe(n, now) for n in range(len(plan.latency_rates) * plan.probes_per_rate)]
    log(f"latency: warm-up with {len(history)} events of {plan.latency_accounts} accounts")
    stack = latency.start_stack(broker, work)
    results = []
    try:
        latency.warm_up(stack, workload, history, probes)
        offset = 0
        for n, (rate, seconds) in enumerate(plan.latency_rates):
            count = int(rate * seconds)
            mine = probes[n * plan.probes_per_rate : (n + 1) * plan.probes_per_rate]
            log(f"latency at {rate:g} events/s for {seconds:g} s")
            results.append(latency.run_rate(stack, rate, stream[offset : offset + count], mine, work, 300))
            offset += count
            log(f"  risk p50/p99 {results[-1]['risk_updated_s']} notified {results[-1]['notified_s']}")
    finally:
        stack.close()
    return {"accounts": plan.latency_accounts, "history_events": len(history), "rates": results}


def run_scaleout(plan: Plan, broker: LocalBroker, work: Path) -> dict[str, Any]:
    workload = build(plan.scaleout_accounts, plan.scaleout_events, seed=11)
    log(f"scale-out: {workload.events} events of {plan.scaleout_accounts} accounts, 1 then 2 replicas")
    result = scaleout.run(broker, workload, work, cap_s=plan.throughput_cap_s)
    log(f"  1 replica {result['one']['events_per_s']}/s, 2 replicas {result['two']['events_per_s']}/s")
    return {"accounts": plan.scaleout_accounts, **result}


def run_scale(plan: Plan, started: float) -> dict[str, Any]:
    data = scale.template(datetime.now(UTC))
    sizes: list[dict[str, Any]] = []
    for size in plan.scale_sizes:
        left = BUDGET_S - (time.monotonic() - started)
        if sizes and left < 150:
            log(f"scale: {size} accounts skipped ({left:.0f} s left of the time budget)")
            sizes.append({"accounts": size, "skipped": f"{left:.0f} s left of the 20-minute budget"})
            continue
        rebuild = size <= plan.rebuild_max and _rebuild_fits(sizes, size, left)
        ticks = 0 if size <= plan.sweep_full_max else plan.sweep_ticks
        log(f"scale: {size} accounts (rebuild: {rebuild}, sweep ticks: {ticks or 'all'}; {left:.0f} s left)")
        sizes.append(scale.run_size(size, data, rebuild_too=rebuild, sweep_batches=ticks))
    report.project_rebuilds(sizes)
    return {"sizes": sizes, "history_days": scale.HISTORY_DAYS}


def _rebuild_fits(sizes: list[dict[str, Any]], size: int, left: float) -> bool:
    """Run a rebuild only if its projection (from the largest one measured) fits the time left."""
    measured = [s for s in sizes if "rebuild" in s]
    if not measured:
        return True
    projected = measured[-1]["rebuild"]["ms_per_account"] * size / 1000
    return projected * 1.3 + 120 < left


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        write(json.loads((args.out / "results.json").read_text()), args.out)
        return 0
    plan = QUICK if args.quick else FULL
    only = set(args.only or ("throughput", "latency", "scale", "console", "scaleout"))
    started = time.monotonic()
    work = WORK_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"mode": plan.mode, "plan": asdict(plan), "machine": machine.describe()}
    results["command"] = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    broker = LocalBroker(free_port(), log_path=work / "broker.log")
    broker.start()
    try:
        if "throughput" in only:
            results.update(run_throughput(plan, broker, work, args.profile))
        if "latency" in only:
            results["latency"] = run_latency(plan, broker, work)
        if "scaleout" in only:
            results["scaleout"] = run_scaleout(plan, broker, work)
    finally:
        broker.stop()
    if "scale" in only:
        results["scale"] = run_scale(plan, started)
    if "console" in only:  # the console's pages at portfolio size (bench/console_pages.py)
        log(f"console pages at {plan.accounts} accounts")
        results["console_pages"] = console_pages.run(plan.accounts, 20, work)
    results["machine"]["load_average_end"] = machine.load_average()
    results["machine"]["shared"] = args.shared or machine.looks_shared(results["machine"])
    results["registry_import_errors"] = IMPORT_ERRORS
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write(_merged(results, args.out) if args.only else results, args.out)
    if not args.profile:
        shutil.rmtree(work, ignore_errors=True)
    log(f"done in {results['elapsed_s']:.0f} s; results in {args.out}/")
    return 0


def _merged(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """--only: the new sections replace theirs in an existing results.json; the rest is kept."""
    path = out / "results.json"
    if not path.exists():
        return results
    merged = json.loads(path.read_text())
    sections = ("throughput", "http", "latency", "scale", "console_pages", "scaleout")
    fresh = {k: v for k, v in results.items() if k in sections}
    merged.update(fresh)
    merged.setdefault("reruns", []).append(
        {
            "sections": sorted(fresh),
            "command": results["command"],
            "machine": results["machine"],
            "elapsed_s": results["elapsed_s"],
        }
    )
    return merged


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(report.markdown(results))
    report.plot(results, out / "throughput_latency.png")


if __name__ == "__main__":
    sys.exit(main())
