"""`kamwatch alerts sinks` (local mail + Slack receivers) and `kamwatch alerts check-policy`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any


def cmd_sinks(args: argparse.Namespace) -> int:
    from services.alerts.sinks import LocalSinks

    sinks = LocalSinks(
        Path(args.dir),
        args.smtp_port,
        args.http_port,
        refuse_first=args.refuse_first,
        throttle_first=args.throttle_first,
        retry_after_s=args.retry_after,
    )
    sinks.start()
    print(
        f"mail sink smtp://127.0.0.1:{sinks.smtp_port} -> {sinks.mail_dir}/\n"
        f"Slack receiver {sinks.slack_url}/<any path> -> {sinks.slack_dir}/\nready",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    sinks.stop()
    return 0


def cmd_check_policy(args: argparse.Namespace) -> int:
    from services.alerts.config import AlertsSettings
    from services.alerts.policy import load_policy

    path = args.file or AlertsSettings().policy_file
    policy = load_policy(path)  # ConfigError names file:line: field
    print(
        f"{path}: valid ({len(policy.trigger_names())} triggers, {len(policy.escalations)} escalation plans)"
    )
    return 0


def register(top: Any, actions: dict[str, Any]) -> None:
    sinks = actions["alerts"].add_parser(
        "sinks", help="run the local SMTP sink and Slack-compatible receiver"
    )
    sinks.add_argument("--dir", default="var/outbox", help="messages go to <dir>/mail and <dir>/slack")
    sinks.add_argument("--smtp-port", type=int, default=8025, help="0 picks a free port")
    sinks.add_argument("--http-port", type=int, default=8026, help="0 picks a free port")
    sinks.add_argument("--refuse-first", type=int, default=0, help="answer 451 to the first N mails (tests)")
    sinks.add_argument(
        "--throttle-first", type=int, default=0, help="answer 429 to the first N posts (tests)"
    )
    sinks.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429")
    sinks.set_defaults(func=cmd_sinks)
    check = actions["alerts"].add_parser("check-policy", help="validate the alerts policy YAML")
    check.add_argument("file", nargs="?", default=None)
    check.set_defaults(func=cmd_check_policy)
