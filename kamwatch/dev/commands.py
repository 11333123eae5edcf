"""Commands of the development tools: `kamwatch run`, `kamwatch broker`, `kamwatch alerts sinks`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kamwatch.dev import require_dev_extra
from kamwatch.dev.local import until_stopped


def cmd_run(args: argparse.Namespace) -> int:
    require_dev_extra("kamwatch run")
    from kamwatch.dev.stack import run_stack

    return run_stack(demo=args.demo, broker_port=args.broker_port, external_broker=args.no_broker)


def cmd_broker(args: argparse.Namespace) -> int:
    require_dev_extra("kamwatch broker")
    from kamwatch.dev.stack import run_broker_foreground

    return run_broker_foreground(args.port)


def cmd_sinks(args: argparse.Namespace) -> int:
    require_dev_extra("kamwatch alerts sinks")
    from kamwatch.dev.sinks import LocalSinks

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
    until_stopped().wait()
    sinks.stop()
    return 0


def register(top: Any, actions: dict[str, Any]) -> None:
    run = top.add_parser("run", help="start the whole system on its embedded default")
    run.add_argument("--demo", action="store_true", help="also stream a simulated portfolio")
    run.add_argument("--broker-port", type=int, default=None)
    run.add_argument(
        "--no-broker",
        action="store_true",
        help="use the broker at KAMWATCH_KAFKA_BOOTSTRAP instead of starting one",
    )
    run.set_defaults(func=cmd_run)
    broker = top.add_parser("broker", help="run the embedded Kafka-compatible broker")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=cmd_broker)
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
