"""The `kamwatch` command (click): the services, schema and topics, API keys, and the commands that
services (`services/<svc>/commands.py`) and the dev tools (`kamwatch/dev`) contribute."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from kamwatch.dev import commands as dev_commands
from kamwatch.dev.simulator import commands as sim_commands
from services.alerts import commands as alerts_commands
from services.signals import commands as signals_commands
from shared.auth import SCOPES
from shared.config import CommonSettings
from shared.errors import ConfigError
from shared.logging import configure_logging, get_logger

SERVICES = ("ingest", "signals", "alerts", "console")
log = get_logger("kamwatch.cli")
EXAMPLES = """\b
Examples:
  kamwatch run                      the whole system on one machine (dev extra)
  kamwatch ingest --port 8001       one service, as in its own container
  kamwatch migrate && kamwatch topics
  kamwatch keys create --scopes events:write risk:read --name crm
  kamwatch signals rebuild --check
  kamwatch train && kamwatch model promote <version>
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
def cli() -> None:
    """kamwatch: churn early warning for key accounts. Configuration is read from KAMWATCH_*
    environment variables (see docs/operations.md)."""


def _service_group(name: str) -> click.Group:
    @click.group(
        name=name,
        invoke_without_command=True,
        help=f"Run the {name} service (HTTP API + consumer loop) in the foreground, as in its own "
        f"container; or one of its subcommands.",
        epilog=f"\b\nExample:\n  KAMWATCH_DATABASE_URL=postgresql+psycopg://... kamwatch {name} --port 8080",
    )
    @click.option(
        "--port", type=int, default=None, help=f"listen here (default: KAMWATCH_{name.upper()}_PORT)"
    )
    @click.pass_context
    def group(ctx: click.Context, port: int | None) -> int:
        if ctx.invoked_subcommand is not None:
            return 0
        return run_service(name, port)

    return group


def run_service(name: str, port: int | None) -> int:
    """Run one service (API + consumer) until SIGTERM; the exit code says whether its loop crashed."""
    from shared.runtime import serve

    module = importlib.import_module(f"services.{name}.app")
    settings = module.load_settings()
    if port:
        settings.port = port
    configure_logging(settings.common.log_level, settings.common.log_format, name)
    app = module.create_app(settings)
    log.info("service.starting", url=f"http://{settings.host}:{settings.port}")
    return serve(app, settings.host, settings.port, app.state.consumer)


def _common(process: str) -> CommonSettings:
    common = CommonSettings()
    configure_logging(common.log_level, common.log_format, process)
    return common


@cli.command(
    epilog="\b\nExample:\n  KAMWATCH_DATABASE_URL=postgresql+psycopg://kamwatch@db/kamwatch kamwatch migrate"
)
def migrate() -> int:
    """Bring the database schema up to date (every Alembic branch: shared, ingest, signals, alerts)."""
    from shared.migrate import upgrade

    common = _common("migrate")
    upgrade(common.database_url)
    click.echo(f"database migrated: {_safe_url(common.database_url)}")
    return 0


@cli.command(epilog="\b\nExample:\n  KAMWATCH_KAFKA_BOOTSTRAP=kafka:9092 kamwatch topics --partitions 12")
@click.option(
    "--partitions",
    type=int,
    default=None,
    help="partitions per new topic (default KAMWATCH_TOPIC_PARTITIONS)",
)
def topics(partitions: int | None) -> int:
    """Create the Kafka topics that do not exist yet (the accounts topic compacted)."""
    from shared.kafka import ensure_topics

    common = _common("topics")
    created = ensure_topics(common, partitions=partitions)
    click.echo(f"topics ready on {common.kafka_bootstrap} (created: {', '.join(created) or 'none'})")
    return 0


@cli.group()
def keys() -> None:
    """Manage API keys: shown once at creation, stored as hashes, each with scopes."""


@keys.command(
    "create",
    epilog="\b\nExamples:\n  kamwatch keys create --scopes events:write --name stripe-relay\n"
    "  kamwatch keys create --scopes risk:read alerts:write --name dashboard",
)
@click.option("--scopes", "first_scope", required=True, help=f"one or more of: {' '.join(SCOPES)}")
@click.argument("more_scopes", nargs=-1, metavar="[SCOPE]...")
@click.option("--name", default="cli", show_default=True, help="who or what the key is for")
def keys_create(first_scope: str, more_scopes: tuple[str, ...], name: str) -> int:
    """Create a key and print it once (scopes may be separated by spaces or commas)."""
    from shared.auth import check_scopes, create_key
    from shared.db import make_engine, make_sessionmaker, transaction

    scopes = check_scopes([s for part in (first_scope, *more_scopes) for s in part.split(",") if s])
    engine = make_engine(_common("keys").database_url)
    with transaction(make_sessionmaker(engine)) as session:
        key = create_key(session, name, scopes)
    engine.dispose()
    click.echo(f"API key (shown once, store it now): {key}\nscopes: {' '.join(scopes)}")
    return 0


@keys.command("revoke", epilog="\b\nExample:\n  kamwatch keys revoke 1a2b3c4d")
@click.argument("key_id")
def keys_revoke(key_id: str) -> int:
    """Revoke a key by its id (the part after kw_, up to the next underscore)."""
    from shared.auth import revoke_key
    from shared.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(_common("keys").database_url)
    with transaction(make_sessionmaker(engine)) as session:
        revoked = revoke_key(session, key_id)
    engine.dispose()
    if not revoked:
        raise ConfigError(f"no active key with id {key_id!r}")
    click.echo(f"key {key_id} revoked")
    return 0


@cli.command(epilog="\b\nExample:\n  kamwatch schemas --check   (what make test runs)")
@click.option("--check", is_flag=True, help="only compare: exit 1 if the committed schemas are stale")
def schemas(check: bool) -> int:
    """Write the JSON Schemas of the event contract to shared/schemas/ (or check them)."""
    from shared.schema_files import check_schemas, write_schemas

    if not check:
        for path in write_schemas():
            click.echo(path)
        return 0
    stale = check_schemas()
    if stale:
        click.echo(
            f"committed JSON Schemas differ from the models: {', '.join(stale)}\n"
            "run `kamwatch schemas` and commit shared/schemas/",
            err=True,
        )
        return 1
    click.echo("JSON Schemas match the models")
    return 0


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _assemble() -> None:
    groups = {name: _service_group(name) for name in SERVICES}
    groups["signals"].add_command(signals_commands.rebuild_state)
    groups["alerts"].add_command(alerts_commands.check_policy)
    groups["alerts"].add_command(dev_commands.sinks)
    for group in groups.values():
        cli.add_command(group)
    for command in (
        signals_commands.train,
        signals_commands.backtest,
        signals_commands.model,
        signals_commands.postmortem,
        signals_commands.qualify,
        *dev_commands.COMMANDS,
        sim_commands.simulate,
    ):
        cli.add_command(command)


_assemble()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), "kamwatch")
    try:
        result: Any = cli.main(args, prog_name="kamwatch", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return 130
    except ConfigError as error:
        click.echo(f"kamwatch: {error}", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        log.error("command.failed", command=command, error_type=type(error).__name__, exc_info=error)
        click.echo(f"kamwatch {command}: {type(error).__name__}: {str(error)[:500]}", err=True)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
