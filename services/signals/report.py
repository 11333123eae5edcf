"""Accuracy reports in words and pictures: report.md for people, PNG plots beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from services.signals.evaluation import calibration_curve, lift_by_decile

SCORERS = ("model", "current_model", "scorecard", "book_regression", "naive_usage_level")
ROWS = (
    ("rows", "rows (fully observed)"),
    ("base_rate", "base rate (churn within the horizon)"),
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("brier", "Brier (lower is better)"),
    ("top_decile_lift", "lift in the top decile"),
    ("flagged_share", "share flagged amber/red"),
    ("flagged_share_max_date", "largest share flagged on one date"),
    ("recall_at_budget", "recall at the alert budget"),
    ("precision_at_budget", "precision at the alert budget"),
    ("recall_top_budget_per_date", "recall, top budget share of each date"),
    ("precision_top_budget_per_date", "precision, top budget share of each date"),
    ("churners_flagged", "churners flagged before they left"),
    ("churners", "churners with rows"),
    ("lead_days_median", "lead time, median days"),
    ("lead_days_p25", "lead time, 25th percentile days"),
)


def report_markdown(title: str, report: dict[str, Any]) -> str:
    scorers = [s for s in SCORERS if s in report]
    header = " | ".join(_label(s, report) for s in scorers)
    lines = [
        f"# {title}",
        "",
        *_intro(report),
        "",
        f"| figure | {header} |",
        "|---" * (len(scorers) + 1) + "|",
    ]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(report[s].get(key)) for s in scorers) + " |")
    if "candidates" in report:
        lines += ["", "Candidates on the validation rows (the best ROC AUC is kept):", ""]
        lines += [
            f"- {name}: ROC AUC {figures['roc_auc']}, PR AUC {figures['pr_auc']}, Brier {figures['brier']}"
            for name, figures in report["candidates"].items()
        ]
    lines += ["", *_notes(report)]
    return "\n".join(lines) + "\n"


def _label(scorer: str, report: dict[str, Any]) -> str:
    if scorer == "model" and report.get("chosen"):
        return f"model ({report['chosen']})"
    if scorer == "scorecard":
        return str(report["scorecard"].get("version", "scorecard"))
    return scorer.replace("_", " ")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _intro(report: dict[str, Any]) -> list[str]:
    lines = [f"Horizon {report['horizon_days']} days."]
    if "validation" in report:
        lines.append(
            f"Trained on as-of dates {report['train']['from']} .. {report['train']['to']} "
            f"(base rate {report['train']['base_rate']}); validated on {report['validation']['from']} .. "
            f"{report['validation']['to']} (base rate {report['validation']['base_rate']}); a purge gap of "
            f"{report['purge_days']} days separates them. Base rate over all fully observed rows: "
            f"{report['observed']['base_rate']}."
        )
    if "selection" in report:
        selection = report["selection"]
        lines.append(
            f"Model kept: {report.get('chosen')} ({selection['method']}: {selection.get('roc_auc', '-')})."
        )
    if "deployed" in report:
        deployed = report["deployed"]
        lines.append(
            f"Deployed: {report.get('chosen')} refitted on all {deployed['observations']} observed rows "
            f"({deployed['from']} .. {deployed['to']}, base rate {deployed['base_rate']}); the figures "
            "below are those of its fit on the training rows, on validation rows it never saw."
        )
    if "versus_current" in report:
        versus = report["versus_current"]
        lines.append(
            f"Against the model in use on the {versus['rows']} validation rows after its last fitted "
            f"date ({versus['after']}): ROC AUC {_cell(versus['model_roc_auc'])} against "
            f"{_cell(versus['current_roc_auc'])}."
        )
    if "period" in report:
        period = report["period"]
        lines.append(
            f"Backtest of {report.get('scorer_in_use', 'the scorer in use')} at weekly as-of dates "
            f"{period['from']} .. {period['to']}: {period['dates']} dates, {period['accounts']} accounts."
        )
        if report.get("fit") == "validated":
            lines.append(
                "The model was scored with its fit on the training rows only: its deployed fit "
                "learned from these dates."
            )
        card = report.get("scorecard", {})
        if card.get("as_of"):
            lines.append(
                f"The scorecard is {card.get('version')}: its peer reference fitted again as of "
                f"{card['as_of']}, on the accounts observed then and the churns known by then (the "
                f"one in use, {card.get('in_use')}, learned from churns these dates measure)."
            )
    if "thresholds" in report:
        bands = report["thresholds"]
        lines.append(
            f"Alert budget {bands.get('budget')}: amber at score >= {bands['amber']}, "
            f"red at >= {bands['red']} "
            "(the budget's share of the portfolio at the last dates of the history)."
        )
    return lines


def _notes(report: dict[str, Any]) -> list[str]:
    return [
        "Every figure is measured on rows whose whole label window lies inside the history, the same "
        "rows for every column. Each baseline is flagged at its own threshold for the same budget. "
        "Lead time: days from the first amber/red flag to the churn, over churners flagged.",
        "",
        f"Figures as JSON: {json.dumps({k: report[k].get('roc_auc') for k in SCORERS if k in report})}",
    ]


def write_plots(
    folder: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], leads: list[float]
) -> list[Path]:
    """roc.png, calibration.png, lift.png and lead_time.png for the scorers in `curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    written = []
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (scores, labels) in curves.items():
        if labels.min() != labels.max():
            fpr, tpr, _ = roc_curve(labels, scores)
            axis.plot(fpr, tpr, label=name.replace("_", " "))
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    _finish(axis, "ROC (fully observed rows)", "false positive rate", "true positive rate")
    written.append(_save(figure, folder / "roc.png"))

    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (scores, labels) in curves.items():
        points = calibration_curve(scores, labels)
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=name.replace("_", " "))
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    _finish(axis, "Calibration (score deciles)", "mean predicted", "observed churn rate")
    written.append(_save(figure, folder / "calibration.png"))

    figure, axis = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(1, len(curves))
    for n, (name, (scores, labels)) in enumerate(curves.items()):
        lifts = lift_by_decile(scores, labels)
        axis.bar(np.arange(1, len(lifts) + 1) + n * width, lifts, width=width, label=name.replace("_", " "))
    axis.axhline(1.0, color="k", linewidth=0.8)
    _finish(axis, "Lift by score decile (1 = riskiest)", "decile", "churn rate / base rate")
    written.append(_save(figure, folder / "lift.png"))

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(leads, bins=20, color="tab:red") if leads else axis.text(0.3, 0.5, "no churner was flagged")
    _finish(axis, "Lead time: first flag to churn", "days", "churners", legend=False)
    written.append(_save(figure, folder / "lead_time.png"))
    return written


def _finish(axis: Any, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if legend and axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
