"""`kamwatch alerts check-policy`: validate an alerts policy file."""

from __future__ import annotations

import click


@click.command("check-policy", epilog="\b\nExample:\n  kamwatch alerts check-policy deploy/k8s/policy.yaml")
@click.argument("file", required=False)
def check_policy(file: str | None) -> int:
    """Validate an alerts policy YAML (default: KAMWATCH_ALERTS_POLICY_FILE or the bundled one)."""
    from services.alerts.config import AlertsSettings
    from services.alerts.policy import load_policy

    path = file or AlertsSettings().policy_file
    policy = load_policy(path)  # ConfigError names file:line: field
    steps = sum(len(v) for v in policy.playbooks.values())
    click.echo(
        f"{path}: valid ({len(policy.trigger_names())} triggers, {len(policy.escalations)} escalation plans, "
        f"{steps} playbook steps)"
    )
    without = [t for t in policy.trigger_names() if not policy.playbooks.get(t)]
    if without:
        click.echo(f"note: no playbook for {', '.join(without)}: their alerts carry no next steps")
    return 0
