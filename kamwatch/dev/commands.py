"""Commands of the development tools: `kamwatch run`, `kamwatch broker`, `kamwatch alerts sinks`.
Each says, with the fix, when the dev extra is not installed."""

from __future__ import annotations

from pathlib import Path

import click

from kamwatch.dev import require_dev_extra
from kamwatch.dev.local import until_stopped


@click.command(
    epilog="\b\nExamples:\n  kamwatch run              (what `make run` does)\n"
    "  kamwatch run --demo       (what `make demo` does)\n"
    "  KAMWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 kamwatch run --no-broker"
)
@click.option("--demo", is_flag=True, help="also stream a simulated portfolio of 36 accounts")
@click.option("--broker-port", type=int, default=None, help="port of the embedded broker (default 9092)")
@click.option(
    "--no-broker", is_flag=True, help="use the broker at KAMWATCH_KAFKA_BOOTSTRAP instead of starting one"
)
def run(demo: bool, broker_port: int | None, no_broker: bool) -> int:
    """Start the whole system on one machine: embedded broker, SQLite under var/, every service,
    the local mail and Slack sinks; Ctrl-C stops everything."""
    require_dev_extra("kamwatch run")
    from kamwatch.dev.stack import run_stack

    return run_stack(demo=demo, broker_port=broker_port, external_broker=no_broker)


@click.command(epilog="\b\nExample:\n  kamwatch broker --port 19092")
@click.option("--port", type=int, default=9092, show_default=True, help="listen on 127.0.0.1:PORT")
def broker(port: int) -> int:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground."""
    require_dev_extra("kamwatch broker")
    from kamwatch.dev.stack import run_broker_foreground

    return run_broker_foreground(port)


@click.command(epilog="\b\nExample:\n  kamwatch alerts sinks --dir var/outbox --smtp-port 0 --http-port 0")
@click.option(
    "--dir",
    "directory",
    default="var/outbox",
    show_default=True,
    help="messages go to DIR/mail and DIR/slack",
)
@click.option("--smtp-port", type=int, default=8025, show_default=True, help="0 picks a free port")
@click.option("--http-port", type=int, default=8026, show_default=True, help="0 picks a free port")
@click.option("--refuse-first", type=int, default=0, help="answer 451 to the first N mails (tests)")
@click.option("--throttle-first", type=int, default=0, help="answer 429 to the first N posts (tests)")
@click.option(
    "--retry-after", type=int, default=1, show_default=True, help="Retry-After seconds sent with 429"
)
def sinks(
    directory: str, smtp_port: int, http_port: int, refuse_first: int, throttle_first: int, retry_after: int
) -> int:
    """Run the local SMTP sink and Slack-compatible receiver that keep every message as a file."""
    require_dev_extra("kamwatch alerts sinks")
    from kamwatch.dev.sinks import LocalSinks

    local = LocalSinks(
        Path(directory),
        smtp_port,
        http_port,
        refuse_first=refuse_first,
        throttle_first=throttle_first,
        retry_after_s=retry_after,
    )
    local.start()
    click.echo(
        f"mail sink smtp://127.0.0.1:{local.smtp_port} -> {local.mail_dir}/\n"
        f"Slack receiver {local.slack_url}/<any path> -> {local.slack_dir}/\nready"
    )
    until_stopped().wait()
    local.stop()
    return 0


COMMANDS = (run, broker)
