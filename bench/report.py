"""Turning results into a short markdown table and a PNG plot; summaries shared by the benchmarks."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MB = 1024 * 1024
TARGETS = {"throughput": 5000.0, "risk_p99_s": 1.0, "http_risk_p99_ms": 25.0, "latency_rate": 1000.0}


def memory_summary(samples: list[list[float]] | list[tuple[float, int]]) -> dict[str, Any]:
    """Signals' RSS over the throughput run. The first quarter is warm-up (every account seen once,
    caches filled); "flat" compares the end (last fifth) with the stretch right after warm-up."""
    if len(samples) < 10:
        return {"samples": len(samples)}
    values = [int(s[1]) for s in samples]
    fifth, quarter = max(1, len(values) // 5), max(1, len(values) // 4)
    start = statistics.median(values[:fifth])
    warm = statistics.median(values[quarter : quarter + fifth])
    end = statistics.median(values[-fifth:])
    return {
        "samples": len(values),
        "start_mb": round(start / MB, 1),
        "after_warmup_mb": round(warm / MB, 1),
        "end_mb": round(end / MB, 1),
        "max_mb": round(max(values) / MB, 1),
        "growth_pct": round((end - warm) / warm * 100, 1),
        "flat": abs(end - warm) / warm < 0.10,
        "series_mb": [[s[0], round(int(s[1]) / MB, 1)] for s in samples[:: max(1, len(samples) // 60)]],
    }


def project_rebuilds(sizes: list[dict[str, Any]]) -> None:
    """Where a rebuild was not run (time budget), project it from the largest measured ms/account."""
    measured = [s for s in sizes if "rebuild" in s]
    if not measured:
        return
    per_account = measured[-1]["rebuild"]["ms_per_account"]
    for size in sizes:
        if "rebuild" not in size and "skipped" not in size:
            size["rebuild_projected_s"] = round(per_account * size["accounts"] / 1000, 1)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        return text + unit
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# kamwatch benchmark results",
        "",
        f"{m['date']} · {results['mode']} run · {m['cores']} cores, {m['cpu_model']}, {m['memory_gb']} GB · "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}, kafka-python {m['packages']['kafka-python']}, "
        f"local broker: {m['broker']} · commit {m['git_commit']} · {results['elapsed_s']:.0f} s in all.",
        "",
        f"Command: `{results.get('command', 'make bench')}` (`make bench` runs `python -m bench.run`).",
        "",
    ]
    for rerun in results.get("reruns", []):
        lines += [
            f"Re-run of {', '.join(rerun['sections'])} on {rerun['machine']['date']} "
            f"(`{rerun['command']}`, {rerun['elapsed_s']:.0f} s): {rerun.get('reason', 'see results.json')}",
            "",
        ]
    if m.get("shared"):
        lines += [
            f"**The machine was shared**: other engineers' tests ran at the same time (load average "
            f"{m['load_average_start']} at the start, {m.get('load_average_end')} at the end), so the "
            "figures are noisy and on the low side. Broker, PostgreSQL, services and load generators "
            "all run on the same machine.",
            "",
        ]
    lines += [
        "| Benchmark | Measured (median) | Baseline, same run | Ratio | Target | Met |",
        "|---|---|---|---|---|---|",
    ]
    lines += _throughput_rows(results) + _latency_rows(results) + _http_rows(results)
    lines += _scale_table(results) + _scaleout_table(results) + _latency_table(results) + _notes(results)
    return "\n".join(lines) + "\n"


def _throughput_rows(results: dict[str, Any]) -> list[str]:
    t = results.get("throughput")
    if not t:
        return []
    rate = t["events_per_s"]
    mem = t["memory"]
    per_run = " / ".join(_fmt(r["events_per_s"]) for r in t.get("runs", []))
    scope = (
        f"all {t['events']:,} events"
        if t["complete"]
        else f"{_fmt(t['processed'])} of {t['events']:,} events processed in the time cap"
    )
    return [
        f"| 1. End-to-end throughput, raw topics → risk updated ({t['accounts']:,} accounts, {scope} "
        f"({_fmt(t['seconds'])} s); runs: {t['repeats']} ({per_run}), median of 5 windows "
        f"{_fmt(t['window_events_per_s_median'])}; ingest alone {_fmt(t['ingest_events_per_s'])}/s) | "
        f"{_fmt(rate)} events/s | kafka-python consume + json: {_fmt(t['baseline_events_per_s'])} events/s | "
        f"{_fmt(t['ratio_to_baseline'])} | ≥ 5,000 events/s | "
        f"{_met(rate is not None and rate >= TARGETS['throughput'])} |",
        f"| 1b. Signals memory over that run | {mem.get('start_mb')} MB at the start, "
        f"{mem.get('after_warmup_mb')} MB after warm-up (first quarter), {mem.get('end_mb')} MB at the end "
        f"(max {mem.get('max_mb')}) | - | {_fmt(mem.get('growth_pct'))} % after warm-up | flat | "
        f"{_met(mem.get('flat'))} |",
    ]


def _at_target_rate(results: dict[str, Any]) -> dict[str, Any] | None:
    rates = results.get("latency", {}).get("rates", [])
    return max(rates, key=lambda r: r["offered_events_per_s"]) if rates else None


def _latency_rows(results: dict[str, Any]) -> list[str]:
    r = _at_target_rate(results)
    if r is None:
        return []
    risk, note = r["risk_updated_s"], r["notified_s"]
    ok = risk["p99"] is not None and risk["p99"] <= TARGETS["risk_p99_s"] and r["processed"] == r["sent"]
    offered = r["offered_events_per_s"]
    return [
        f"| 2. Latency event produced → risk updated at {offered:g} events/s offered | p50 "
        f"{_fmt(risk['p50'], ' s')}, p99 {_fmt(risk['p99'], ' s')} | - | - | "
        f"p99 ≤ 1 s at 1,000/s | {_met(ok)} |",
        f"| 2b. → notification delivered (Slack/e-mail sink), {r['probes_notified']}/{r['probes']} probes | "
        f"p50 {_fmt(note['p50'], ' s')}, p99 {_fmt(note['p99'], ' s')} | - | - | - | - |",
    ]


def _http_rows(results: dict[str, Any]) -> list[str]:
    h = results.get("http")
    if not h:
        return []
    base = h["healthz"]
    rows = []
    for endpoint, label in (("risk", "GET /v1/accounts/{id}/risk"), ("portfolio", "GET /v1/portfolio")):
        e = h[endpoint]
        target = "p99 ≤ 25 ms" if endpoint == "risk" else "-"
        ok = (
            e["p99_ms"] is not None and e["p99_ms"] <= TARGETS["http_risk_p99_ms"]
            if endpoint == "risk"
            else None
        )
        rows.append(
            f"| 3. {label}, {h['concurrency']} clients (runs: {h['repeats']}) | "
            f"p50 {_fmt(e['p50_ms'])} ms, p99 {_fmt(e['p99_ms'])} ms, {_fmt(e['requests_per_s'])} req/s | "
            f"/healthz: p50 {_fmt(base['p50_ms'])} ms, p99 {_fmt(base['p99_ms'])} ms, "
            f"{_fmt(base['requests_per_s'])} req/s | p99 x{_fmt(e['p99_vs_healthz'])}, "
            f"req/s x{_fmt(e['rps_vs_healthz'])} | {target} | {_met(ok)} |"
        )
    return rows


def _scale_table(results: dict[str, Any]) -> list[str]:
    s = results.get("scale")
    if not s:
        return []
    lines = [
        "",
        f"## 4. Scale: `kamwatch signals rebuild` and the time-driven sweep ({s['history_days']} days of "
        "simulated history per account)",
        "",
        "| Accounts | Events | Rebuild | Rebuild peak RSS | Sweep (all accounts) | Sweep per account "
        "| Sweep peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in s["sizes"]:
        if "skipped" in size:
            lines.append(f"| {size['accounts']:,} | - | skipped: {size['skipped']} | - | - | - | - |")
            continue
        rebuild = size.get("rebuild")
        rebuild_text = (
            f"{rebuild['seconds']:.1f} s"
            if rebuild
            else f"not run (projected {size.get('rebuild_projected_s')} s)"
        )
        rss = f"{rebuild['peak_rss_bytes'] / MB:.0f} MB" if rebuild else "-"
        sweep = size["sweep"]
        sweep_text = (
            f"{sweep['seconds']:.1f} s"
            if sweep["complete"]
            else (
                f"{sweep['accounts']:,} accounts ({sweep['batches']} ticks) in {sweep['seconds']:.1f} s; "
                f"projected {sweep['projected_full_s']} s"
            )
        )
        lines.append(
            f"| {size['accounts']:,} | {size['events']:,} | {rebuild_text} | {rss} | {sweep_text} | "
            f"{sweep['ms_per_account']:.1f} ms | {sweep['peak_rss_bytes'] / MB:.0f} MB |"
        )
    return lines


def _scaleout_table(results: dict[str, Any]) -> list[str]:
    s = results.get("scaleout")
    if not s:
        return []
    lines = [
        "",
        f"## 5. Scale-out: one and two replicas of signals and alerts, the same stream "
        f"({s['accounts']:,} accounts, {s['one']['events']:,} events, PostgreSQL)",
        "",
        "| Replicas | Events/s end to end | Ratio to 1 replica "
        "| Per signals replica: events handled, peak RSS "
        "| Per alerts replica: risk changes handled, peak RSS |",
        "|---|---|---|---|---|",
    ]
    for run in (s["one"], s["two"]):
        signals = ", ".join(
            f"{r['events']:,} ({r['peak_rss_mb']:.0f} MB)" for r in run["per_replica"]["signals"]
        )
        alerts = ", ".join(
            f"{r['risk_changes']:,} ({r['peak_rss_mb']:.0f} MB)" for r in run["per_replica"]["alerts"]
        )
        ratio = "1" if run is s["one"] else _fmt(s["ratio_two_to_one"])
        done = "" if run["complete"] else f" (stopped at {run['processed']:,})"
        lines.append(
            f"| {run['replicas']} | {_fmt(run['events_per_s'])}{done} | {ratio} | {signals} | {alerts} |"
        )
    return lines


def _latency_table(results: dict[str, Any]) -> list[str]:
    rates = results.get("latency", {}).get("rates", [])
    if not rates:
        return []
    lines = [
        "",
        "## 2. Latency versus load",
        "",
        "| Offered events/s | Sent | Processed events/s | → ingest published p50/p99 "
        "| → risk updated p50/p99 | "
        "→ notified p50/p99 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rates:
        i, k, n = r["ingest_published_s"], r["risk_updated_s"], r["notified_s"]
        lines.append(
            f"| {r['offered_events_per_s']:g} | {r['sent']:,} | {_fmt(r['processed_events_per_s'])} | "
            f"{_fmt(i['p50'])} / {_fmt(i['p99'])} s | {_fmt(k['p50'])} / {_fmt(k['p99'])} s | "
            f"{_fmt(n['p50'])} / {_fmt(n['p99'])} s |"
        )
    return lines


def _hotspots(results: dict[str, Any]) -> list[str]:
    """Top project functions per profiled process (py-spy, inclusive share of active samples)."""
    sources = dict((results.get("throughput") or {}).get("runs", [{}])[0].get("profiles") or {})
    sources.update((results.get("http") or {}).get("profiles") or {})
    if not sources:
        return []
    lines = ["", "## Where the time goes (py-spy, share of the process's active samples)", ""]
    for name, found in sources.items():
        own = [f"`{f}` {share:.0%}" for f, share in found.get("inclusive", []) if _worth(f)][:6]
        leaf = [f"`{f}` {share:.0%}" for f, share in found.get("self", [])][:4]
        lines.append(f"- {name.removesuffix('.txt')}: {', '.join(own)}; self time: {', '.join(leaf)}")
    return lines


def _worth(function: str) -> bool:
    """Skip the frames every stack has (process entry, consumer loop plumbing)."""
    return not function.startswith(("kamwatch/cli.py", "shared/runtime.py", "shared/kafka.py:BatchLoop"))


def _notes(results: dict[str, Any]) -> list[str]:
    errors = results.get("registry_import_errors") or []
    seen = (
        [
            "",
            f"Note: `POST /v1/accounts:import` answered an error {len(errors)} time(s) during the run "
            f"and was retried (first: {errors[0][:160]!r}).",
        ]
        if errors
        else []
    )
    return [
        *_hotspots(results),
        *seen,
        "",
        "How each figure is measured: bench/README.md. Raw numbers: results.json. "
        "Plot: throughput_latency.png.",
    ]


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and latency versus offered load (benchmark 2), with benchmark 1's ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullLocator

    rates = results.get("latency", {}).get("rates", [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    offered = [r["offered_events_per_s"] for r in rates]
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.plot(offered, [r["processed_events_per_s"] for r in rates], "o-", label="processed (risk updated)")
    t = results.get("throughput")
    if t and t.get("events_per_s"):
        left.axhline(
            t["events_per_s"], color="tab:red", ls="--", label=f"backlog throughput {t['events_per_s']:.0f}/s"
        )
    left.axhline(TARGETS["throughput"], color="tab:green", ls="-.", label="target 5,000/s")
    if t and t.get("baseline_events_per_s"):
        left.axhline(
            t["baseline_events_per_s"], color="tab:purple", ls=":", label="kafka-python consume+json"
        )
    left.set(xlabel="offered load (events/s)", ylabel="events/s", title="Throughput vs load", yscale="log")
    if rates:
        left.set_xscale("log")
    left.legend(fontsize=8)
    for key, label, style in (("risk_updated_s", "risk updated", "o-"), ("notified_s", "notified", "s--")):
        for q in ("p50", "p99"):
            values = [r[key][q] for r in rates]
            if any(v is not None for v in values):
                right.plot(offered, values, style, label=f"{label} {q}")
    right.axhline(TARGETS["risk_p99_s"], color="tab:green", ls="-.", label="target p99 1 s")
    right.set(xlabel="offered load (events/s)", ylabel="seconds", title="Latency vs load", yscale="log")
    if rates:
        right.set_xscale("log")
        for axis in (left, right):
            axis.set_xticks(offered, [f"{r:g}" for r in offered])
            axis.xaxis.set_minor_locator(NullLocator())
        right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        right.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    right.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"kamwatch {results['mode']} bench, {m['date'][:10]}, {m['cores']} cores"
        + (" (shared)" if m.get("shared") else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
