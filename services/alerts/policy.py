"""The alerts policy (YAML): triggers, routing, escalation levels, inhibition; validated with line numbers."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.contracts import CONTRACT_FEATURES
from shared.errors import ConfigError

Severity = Literal["info", "warning", "critical"]
Role = Literal["owner", "manager", "executive_sponsor"]
Channel = Literal["slack", "email"]
# churned ranks as green: an account reactivated after a churn enters amber/red as from green.
BAND_RANK = {"green": 0, "amber": 1, "red": 2, "churned": 0}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
KNOWN_FEATURES = CONTRACT_FEATURES
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def parse_duration(value: Any) -> Any:
    """'30s', '2m', '24h', '7d', '1w' or a number of seconds -> timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 2m, 24h or 7d")
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    return value


_DUE = re.compile(r"^\s*(?:within\s+)?(\d{1,3})\s+(business\s+days?|days?|hours?|weeks?)\s*$", re.I)
_DUE_UNITS = {"day": 86400, "hour": 3600, "week": 604800}


@dataclass(frozen=True)
class Due:
    """When a playbook step is due after its alert opened: business days (Monday to Friday, UTC)
    or a plain duration."""

    business_days: int = 0
    after: timedelta = timedelta(0)

    def at(self, opened: datetime) -> datetime:
        """The due time of a step of an alert opened at `opened`."""
        due, left = opened, self.business_days
        while left > 0:
            due += timedelta(days=1)
            if due.weekday() < 5:
                left -= 1
        return due + self.after

    def words(self) -> str:
        if self.business_days:
            return f"within {self.business_days} business day{'s' if self.business_days > 1 else ''}"
        return f"within {describe(self.after)}"


def describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} s"


def parse_due(value: Any) -> Any:
    """'within 2 business days', '3 days', 'within 4 hours', '1 week', or a duration ('24h')."""
    if isinstance(value, Due):
        return value
    if isinstance(value, str):
        match = _DUE.match(value)
        if match:
            count, unit = int(match.group(1)), match.group(2).lower()
            if unit.startswith("business"):
                return Due(business_days=count)
            return Due(after=timedelta(seconds=count * _DUE_UNITS[unit.rstrip("s")]))
        if _DURATION.match(value):
            return Due(after=parse_duration(value))
    raise ValueError(
        f"{value!r} is not a due offset; write e.g. 'within 2 business days', 'within 4 hours' or '3d'"
    )


def parse_condition(value: Any) -> Any:
    if isinstance(value, str) and _CONDITION.match(value):
        return value.strip()
    raise ValueError(f"{value!r} is not a condition; write e.g. '>= 60' or '== 1'")


def parse_clock_time(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(p) for p in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'{value!r} is not a time of day; write it quoted, e.g. "22:00"')


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ClockTime = Annotated[time, BeforeValidator(parse_clock_time)]
Condition = Annotated[str, BeforeValidator(parse_condition)]
DueOffset = Annotated[Due, BeforeValidator(parse_due)]
LINK_FIELDS = ("account_id", "alert_id", "console_url")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandTrigger(_Strict):
    band: Literal["amber", "red"]
    severity: Severity


MinBand = Literal["green", "amber", "red"]


class ScoreRise(_Strict):
    points: float = Field(gt=0, le=100, description="score rise in points (score x 100)")
    within: Duration
    severity: Severity = "warning"
    min_band: MinBand = Field(
        default="green", description="fires only while the account is at least this band"
    )


class CriticalSignal(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    severity: Severity = "critical"
    when: dict[str, Condition] = Field(min_length=1)
    min_band: MinBand = Field(
        default="green", description="fires only while the account is at least this band"
    )

    def holds(self, features: dict[str, float]) -> bool:
        """True when every condition holds; a missing feature never matches."""
        for feature, condition in self.when.items():
            if feature not in features:
                return False
            match = _CONDITION.match(condition)
            assert match is not None
            if not OPERATORS[match.group(1)](features[feature], float(match.group(2))):
                return False
        return True


class Triggers(_Strict):
    band_entered: list[BandTrigger] = Field(default_factory=list)
    score_rise: ScoreRise | None = None
    critical_signals: list[CriticalSignal] = Field(default_factory=list)


class QuietHours(_Strict):
    """Messages wait until `end` in the recipient's time zone, unless the alert is severe enough."""

    start: ClockTime
    end: ClockTime
    unless_severity: Severity = "critical"


class Inhibit(_Strict):
    source: str
    target: str


class Level(_Strict):
    role: Role
    after: Duration = timedelta(0)


class Escalation(_Strict):
    channels: list[Channel] = Field(default=["slack", "email"], min_length=1)
    repeat_interval: Duration | None = None
    levels: list[Level] = Field(min_length=1, max_length=10)


class RouteMatch(_Strict):
    tier: str | None = None
    segment: str | None = None
    owner: str | None = Field(default=None, description="owner e-mail")


class Route(_Strict):
    match: RouteMatch
    escalation: str


class PlaybookStep(_Strict):
    """One next step of a rescue plan: what, by whom, by when, and where to do it."""

    title: Annotated[str, Field(min_length=3, max_length=200)]
    role: Role
    due: DueOffset
    link: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="URL template; may use {account_id}, {alert_id}, {console_url}"
    )

    def url(self, **values: str) -> str | None:
        return self.link.format(**values) if self.link else None


class Policy(_Strict):
    version: Literal[1] = 1
    grouping_window: Duration = timedelta(minutes=2)
    link_ttl: Duration = timedelta(days=7)
    snooze_for: Duration = timedelta(hours=4)
    triggers: Triggers = Field(default_factory=Triggers)
    inhibit: list[Inhibit] = Field(default_factory=list)
    quiet_hours: QuietHours | None = None
    escalations: dict[str, Escalation] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    default_escalation: str = "default"
    # Per trigger, the ordered next steps that become the alert's tasks when the trigger fires.
    playbooks: dict[str, list[PlaybookStep]] = Field(default_factory=dict)

    def trigger_names(self) -> list[str]:
        names = [f"band_{t.band}" for t in self.triggers.band_entered]
        if self.triggers.score_rise is not None:
            names.append("score_rise")
        return names + [s.name for s in self.triggers.critical_signals]

    def route(self, tier: str | None, segment: str | None, owner_email: str | None) -> str:
        """The name of the escalation plan of the first matching route, else the default."""
        for route in self.routes:
            m = route.match
            if m.tier is not None and m.tier != tier:
                continue
            if m.segment is not None and m.segment != segment:
                continue
            if m.owner is not None and (owner_email or "").lower() != m.owner.lower():
                continue
            return route.escalation
        return self.default_escalation

    def plan(self, name: str) -> Escalation:
        """The named plan; the default one if a policy change removed it."""
        return self.escalations.get(name) or self.escalations[self.default_escalation]

    def muted_by(self, trigger: str) -> set[str]:
        """Triggers whose active alert mutes `trigger`."""
        return {rule.source for rule in self.inhibit if rule.target == trigger}


Path_ = tuple[str | int, ...]


def _cross_check(policy: Policy) -> list[tuple[Path_, str]]:
    """Checks across fields that pydantic cannot express: names that must refer to something."""
    problems: list[tuple[Path_, str]] = []
    names = policy.trigger_names()
    for i, signal in enumerate(policy.triggers.critical_signals):
        if names.count(signal.name) > 1:
            problems.append((("triggers", "critical_signals", i, "name"), f"{signal.name!r} is used twice"))
        for feature in signal.when:
            if feature not in KNOWN_FEATURES:
                where: Path_ = ("triggers", "critical_signals", i, "when", feature)
                problems.append((where, f"unknown feature {feature!r}; known: {', '.join(KNOWN_FEATURES)}"))
    for i, rule in enumerate(policy.inhibit):
        for side in ("source", "target"):
            if getattr(rule, side) not in names:
                problems.append((("inhibit", i, side), f"unknown trigger; choose from {', '.join(names)}"))
    for i, route in enumerate(policy.routes):
        if route.escalation not in policy.escalations:
            problems.append((("routes", i, "escalation"), f"no escalation named {route.escalation!r}"))
    if policy.default_escalation not in policy.escalations:
        problems.append((("default_escalation",), f"no escalation named {policy.default_escalation!r}"))
    for trigger, steps in policy.playbooks.items():
        if trigger not in names:
            problems.append((("playbooks", trigger), f"unknown trigger; choose from {', '.join(names)}"))
        for i, step in enumerate(steps):
            if step.link and (problem := _link_problem(step.link)):
                problems.append((("playbooks", trigger, i, "link"), problem))
    for name, plan in policy.escalations.items():
        if plan.levels[0].after:
            problems.append((("escalations", name, "levels", 0, "after"), "the first level has no delay"))
    return problems


def _link_problem(template: str) -> str | None:
    """Why a step's link template cannot be filled, or None."""
    try:
        filled = template.format(**dict.fromkeys(LINK_FIELDS, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        return f"cannot fill {template!r} ({type(exc).__name__}: {exc}); use {{{'}, {'.join(LINK_FIELDS)}}}"
    if not filled or not template.startswith(("https://", "http://", "{console_url}")):
        return "must be an http(s) URL or start with {console_url}"
    return None


def _line_index(node: yaml.Node, path: Path_ = (), index: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """Map each YAML path (keys and list indexes) to its 1-based line."""
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            index[child] = key.start_mark.line + 1
            _line_index(value, child, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), index)
    return index


def _line_of(index: dict[Path_, int], loc: Path_) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in index:
            return index[loc[:end]]
    return 1


def _field(loc: Path_) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_policy(text: str, source: str = "policy.yaml") -> Policy:
    """Parse and validate; raise ConfigError listing '<file>:<line>: <field>: <problem>' per problem."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or node is None:
        raise ConfigError(f"{source}:1: the policy must be a mapping (version, triggers, escalations, ...)")
    index = _line_index(node)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}:{_line_of(index, tuple(e['loc']))}: {_field(tuple(e['loc']))}: {_message(e)}"
            for e in exc.errors()
        ]
        raise ConfigError("invalid alerts policy:\n  " + "\n  ".join(lines)) from None
    problems = _cross_check(policy)
    if problems:
        lines = [f"{source}:{_line_of(index, loc)}: {_field(loc)}: {msg}" for loc, msg in problems]
        raise ConfigError("invalid alerts policy:\n  " + "\n  ".join(lines))
    return policy


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field (check the spelling)"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def load_policy(path: str | Path) -> Policy:
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"alerts policy file {file} does not exist; set KAMWATCH_ALERTS_POLICY_FILE")
    return parse_policy(file.read_text(), str(file))
