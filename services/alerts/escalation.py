"""Pure alert logic: which triggers fire, inhibition, and the escalation schedule (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.alerts.policy import BAND_RANK, SEVERITY_RANK, Escalation, Policy, QuietHours
from shared.contracts import RiskChange


@dataclass(frozen=True)
class Fired:
    """A trigger that fired for one risk change."""

    trigger: str
    severity: str


def returned_to_green(change: RiskChange) -> bool:
    return change.band == "green" and change.previous_band not in (None, "green")


def band_triggers(policy: Policy, change: RiskChange) -> list[Fired]:
    """Entering a band from a lower one (red -> amber is not 'entering amber')."""
    before = BAND_RANK[change.previous_band or "green"]
    return [
        Fired(f"band_{t.band}", t.severity)
        for t in policy.triggers.band_entered
        if change.band == t.band and before < BAND_RANK[t.band]
    ]


def score_rise_trigger(policy: Policy, change: RiskChange, earlier_scores: list[float]) -> list[Fired]:
    """The score rose by at least `points` against the lowest score within the window."""
    rule = policy.triggers.score_rise
    if rule is None:
        return []
    if BAND_RANK[change.band] < BAND_RANK[rule.min_band]:
        return []
    baseline = [*earlier_scores, *([change.previous_score] if change.previous_score is not None else [])]
    if not baseline or (change.score - min(baseline)) * 100 < rule.points:
        return []
    return [Fired("score_rise", rule.severity)]


def evaluate(policy: Policy, change: RiskChange, earlier_scores: list[float]) -> list[Fired]:
    """All triggers that fire for this change; none when the account just returned to green."""
    if returned_to_green(change):
        return []
    fired = band_triggers(policy, change) + score_rise_trigger(policy, change, earlier_scores)
    fired += [
        Fired(s.name, s.severity)
        for s in policy.triggers.critical_signals
        if BAND_RANK[change.band] >= BAND_RANK[s.min_band] and s.holds(change.features)
    ]
    return fired


def unmuted(policy: Policy, triggers: list[Fired], active: set[str]) -> tuple[list[Fired], list[Fired]]:
    """Split into (kept, muted): a trigger is muted while one of its inhibitors is active."""
    present = active | {f.trigger for f in triggers}
    kept = [f for f in triggers if not (policy.muted_by(f.trigger) & present)]
    return kept, [f for f in triggers if f not in kept]


def top_severity(triggers: list[Fired]) -> str:
    return max((f.severity for f in triggers), key=SEVERITY_RANK.__getitem__, default="info")


@dataclass(frozen=True)
class Position:
    """Where an alert stands on its escalation plan."""

    level: int  # 0 = nobody notified yet
    level_since: datetime | None
    last_notified_at: datetime | None


def next_escalation_at(plan: Escalation, at: Position) -> datetime | None:
    """When the next step (next level or a repeat at this level) is due; None at the end."""
    if at.level == 0 or at.level_since is None or at.last_notified_at is None:
        return None
    candidates = []
    if at.level < len(plan.levels):
        candidates.append(at.level_since + plan.levels[at.level].after)
    if plan.repeat_interval:
        candidates.append(at.last_notified_at + plan.repeat_interval)
    return min(candidates, default=None)


def due_step(plan: Escalation, at: Position, now: datetime) -> tuple[str, int]:
    """The step to take now: ('notify', 1), ('escalation', level + 1) or ('repeat', level)."""
    if at.level == 0:
        return "notify", 1
    due = at.level < len(plan.levels) and at.level_since is not None
    if due and at.level_since is not None and at.level_since + plan.levels[at.level].after <= now:
        return "escalation", at.level + 1
    return "repeat", at.level


def step_name(kind: str, level: int, repeats: int) -> str:
    """The step part of the outbox key: L1, L2, L2.r1 (first repeat at level 2)."""
    return f"L{level}.r{repeats}" if kind == "repeat" else f"L{level}"


def describe_wait(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{delta.total_seconds():g} s"


@dataclass(frozen=True)
class Recipient:
    channel: str  # slack|email
    address: str  # webhook URL or e-mail address
    name: str
    role: str
    timezone: str | None = None
    handle: str | None = None  # Slack member ID, mentioned in Slack messages


def quiet_until(
    now: datetime, timezone: str | None, quiet: QuietHours | None, severity: str
) -> datetime | None:
    """The end of the recipient's quiet hours if `now` falls inside them (and the alert may wait)."""
    if quiet is None or SEVERITY_RANK[severity] >= SEVERITY_RANK[quiet.unless_severity]:
        return None
    try:
        zone: tzinfo = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a 300-character name raises OSError
        zone = UTC
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    overnight = quiet.start > quiet.end
    inside = (clock >= quiet.start or clock < quiet.end) if overnight else quiet.start <= clock < quiet.end
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if overnight and clock >= quiet.start else local.date()
    return datetime.combine(day, quiet.end, tzinfo=zone).astimezone(UTC)


def recipients(
    people: dict[str, dict[str, str | None] | None],
    role: str,
    channels: Sequence[str],
    default_webhook: str | None,
) -> list[Recipient]:
    """Where the person in `role` can be reached on the plan's channels (none if not in the registry)."""
    person = people.get(role)
    if not person:
        return []
    name, zone = str(person.get("name") or role), person.get("timezone")
    found = []
    if "slack" in channels and (person.get("slack_webhook") or default_webhook):
        webhook = str(person.get("slack_webhook") or default_webhook)
        found.append(Recipient("slack", webhook, name, role, zone, person.get("slack_handle")))
    if "email" in channels and person.get("email"):
        found.append(Recipient("email", str(person["email"]), name, role, zone))
    return found
