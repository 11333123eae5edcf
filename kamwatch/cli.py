"""The `kamwatch` command: run services, the embedded stack, migrations, topics and keys."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from kamwatch.dev import commands as dev_commands
from kamwatch.dev.simulator import commands as sim_commands
from services.alerts import commands as alerts_commands
from services.signals import commands as signals_commands
from shared.errors import ConfigError
from shared.logging import configure_logging, get_logger

SERVICES = ("ingest", "signals", "alerts")
log = get_logger("kamwatch.cli")


def _common() -> Any:
    from shared.config import CommonSettings

    return CommonSettings()


def cmd_service(args: argparse.Namespace) -> int:
    """Run one service (API + consumer) in the foreground, as it would in its own container."""
    module = importlib.import_module(f"services.{args.command}.app")
    settings = module.load_settings()
    if args.port:
        settings.port = args.port
    configure_logging(settings.common.log_level, settings.common.log_format, args.command)
    from shared.runtime import serve

    app = module.create_app(settings)
    log.info("service.starting", url=f"http://{settings.host}:{settings.port}")
    return serve(app, settings.host, settings.port, app.state.consumer)


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrate import upgrade

    common = _common()
    configure_logging(common.log_level, common.log_format, "migrate")
    upgrade(common.database_url)
    print(f"database migrated: {_safe_url(common.database_url)}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.kafka import ensure_topics

    common = _common()
    configure_logging(common.log_level, common.log_format, "topics")
    created = ensure_topics(common, partitions=args.partitions)
    print(f"topics ready on {common.kafka_bootstrap} (created: {', '.join(created) or 'none'})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from shared.auth import check_scopes, create_key, revoke_key
    from shared.db import make_engine, make_sessionmaker, transaction

    common = _common()
    configure_logging(common.log_level, common.log_format, "keys")
    sessions = make_sessionmaker(make_engine(common.database_url))
    with transaction(sessions) as session:
        if args.keys_command == "create":
            scopes = check_scopes([s for part in args.scopes for s in part.split(",") if s])
            key = create_key(session, args.name, scopes)
            print(f"API key (shown once, store it now): {key}\nscopes: {' '.join(scopes)}")
        elif not revoke_key(session, args.key_id):
            raise ConfigError(f"no active key with id {args.key_id!r}")
        else:
            print(f"key {args.key_id} revoked")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from shared.schema_files import check_schemas, write_schemas

    if args.check:
        stale = check_schemas()
        if stale:
            print(
                "committed JSON Schemas differ from the models: "
                + ", ".join(stale)
                + "\nrun `kamwatch schemas` and commit shared/schemas/",
                file=sys.stderr,
            )
            return 1
        print("JSON Schemas match the models")
        return 0
    for path in write_schemas():
        print(path)
    return 0


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser(extra: list[Callable[[Any, Any], None]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kamwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    actions = {}
    for name in SERVICES:
        service = sub.add_parser(name, help=f"run the {name} service (API + consumer)")
        service.add_argument("--port", type=int, default=None)
        service.set_defaults(func=cmd_service)
        actions[name] = service.add_subparsers(dest="action", required=False)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(func=cmd_migrate)
    topics = sub.add_parser("topics", help="create the Kafka topics")
    topics.add_argument("--partitions", type=int, default=None)
    topics.set_defaults(func=cmd_topics)
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument(
        "--scopes", nargs="+", required=True, help="events:write risk:read accounts:write alerts:write admin"
    )
    create.add_argument("--name", default="cli")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id (the part after kw_)")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)
    schemas = sub.add_parser("schemas", help="write the JSON Schemas of the event contract")
    schemas.add_argument("--check", action="store_true", help="fail if committed schemas are stale")
    schemas.set_defaults(func=cmd_schemas)
    for register in extra or _service_commands():
        register(sub, actions)
    return parser


def _service_commands() -> list[Callable[[Any, Any], None]]:
    """Subcommands contributed by services and the dev tools: `register(top_level, {service: its
    actions})` adds e.g. `kamwatch signals rebuild`, `kamwatch train` or `kamwatch run`."""
    return [alerts_commands.register, signals_commands.register, dev_commands.register, sim_commands.register]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as error:
        print(f"kamwatch: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        log.error("command.failed", command=args.command, error_type=type(error).__name__, exc_info=error)
        print(f"kamwatch {args.command}: {type(error).__name__}: {str(error)[:500]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
