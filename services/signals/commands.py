"""CLI: `kamwatch signals rebuild`, `kamwatch train`, `kamwatch model list|promote|rollback`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.signals.config import SignalsSettings
from services.signals.engine import RiskEngine
from services.signals.modelstore import SCORECARD, ModelHolder, ModelStore
from services.signals.rebuild import RebuildResult, rebuild
from services.signals.scoring import load_scorecard
from shared.clock import Clock, clock_from_env
from shared.db import make_engine, make_sessionmaker
from shared.logging import configure_logging


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


def cmd_rebuild(args: argparse.Namespace) -> int:
    settings = _settings()
    result = run_rebuild(
        settings, clock_from_env(settings.clock_file), check=args.check, progress=not args.quiet
    )
    if args.check:
        for line in result.differences:
            print(f"differs: {line}")
        verdict = "differs from" if result.differences else "equals"
        print(f"replayed {result.events} events of {result.accounts} accounts: {verdict} the live state")
        return 1 if result.differences else 0
    print(f"rebuilt state from {result.events} events of {result.accounts} accounts and re-scored them")
    return 0


def run_train(settings: SignalsSettings, clock: Clock, progress: bool = True) -> tuple[str, dict[str, Any]]:
    from services.signals.training import train  # scikit-learn loads only when training

    engine = make_engine(settings.common.database_url)
    try:
        scorecard = load_scorecard(settings.scorecard_path)
        return train(settings, make_sessionmaker(engine), scorecard, clock.now(), progress)
    finally:
        engine.dispose()


def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.min_churns is not None:
        settings.min_churns = args.min_churns
    version, report = run_train(settings, clock_from_env(settings.clock_file), progress=not args.quiet)
    folder = Path(settings.model_dir) / version
    model, card = report["model"], report["scorecard"]
    print(
        f"trained {version}: ROC AUC {model['roc_auc']} (scorecard {card['roc_auc']}), "
        f"PR AUC {model['pr_auc']}, Brier {model['brier']}, top-decile lift {model['top_decile_lift']}, "
        f"median lead {model['median_alert_lead_days']} days"
    )
    print(f"report: {folder / 'report.md'} and {folder / 'report.json'}")
    if not report["beats_scorecard"]:
        print("note: this model does not beat the scorecard on the validation dates; keep the scorecard")
    print(f"promote it with: kamwatch model promote {version}")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    settings = _settings()
    store = ModelStore(Path(settings.model_dir))
    if args.model_command == "promote":
        store.promote(args.version)
        print(f"promoted {args.version}; running signals workers switch to it within one tick")
    elif args.model_command == "rollback":
        print(f"rolled back; now in use: {store.rollback()}")
    else:
        _list_models(store)
    return 0


def _list_models(store: ModelStore) -> None:
    current = store.current() or SCORECARD
    print(f"{'*' if current == SCORECARD else ' '} {SCORECARD} (day-one scorecard)")
    for version in store.versions():
        metrics = store.metadata(version).get("metrics", {})
        mark = "*" if version == current else " "
        print(f"{mark} {version}  roc_auc={metrics.get('roc_auc')} brier={metrics.get('brier')}")


def register(top: Any, actions: dict[str, Any]) -> None:
    rebuild_cmd = actions["signals"].add_parser(
        "rebuild", help="replay stored events into fresh state tables"
    )
    rebuild_cmd.add_argument(
        "--check", action="store_true", help="only compare the replay with the live state"
    )
    rebuild_cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    rebuild_cmd.set_defaults(func=cmd_rebuild)
    train_cmd = top.add_parser("train", help="train a churn model on the stored history")
    train_cmd.add_argument("--min-churns", type=int, default=None, help="refuse below this many churns")
    train_cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    train_cmd.set_defaults(func=cmd_train)
    model_cmd = top.add_parser("model", help="list, promote or roll back trained models")
    model_sub = model_cmd.add_subparsers(dest="model_command", required=True)
    promote = model_sub.add_parser("promote", help="use this version in every signals worker")
    promote.add_argument("version")
    model_sub.add_parser("rollback", help="back to the previously promoted version (or the scorecard)")
    model_sub.add_parser("list", help="versions with their validation metrics; * = in use")
    model_cmd.set_defaults(func=cmd_model)
