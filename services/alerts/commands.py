"""`kamwatch alerts check-policy`: validate an alerts policy file."""

from __future__ import annotations

import argparse
from typing import Any


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
    check = actions["alerts"].add_parser("check-policy", help="validate the alerts policy YAML")
    check.add_argument("file", nargs="?", default=None)
    check.set_defaults(func=cmd_check_policy)
