"""The hidden satisfaction of one account: a mean-reverting random walk with shocks.

Nobody observes it. It drives every channel through noise (kamwatch/dev/simulator/account.py), and
it decides whether the account renews. Pure and deterministic: its own `random.Random`.

The process, one step a day (z is about 0 for an ordinary account, lower is unhappier):

    z <- z + THETA * (m - z) + N(0, SIGMA)            mean reversion to the account's own level m
    z <- z - Exp(SHOCK_SIZE)     with rate SHOCK_RATE  a bad surprise that fades (an outage, a
                                                       champion who leaves, a failed project)
    m <- m + N(SHIFT_MEAN, SHIFT_SD) with SHIFT_RATE   a lasting change (a new executive, a
                                                       reorganisation, a competitor's pitch)
    m <- m + (m0 - m) / MEAN_MEMORY                    lasting changes wear off over a year or so

Some `DECISION_DAYS` before each renewal the customer decides, on its mean satisfaction over
the previous month: it churns with probability `UNRELATED + (1 - UNRELATED) * sigmoid(A + B z)`.
A share `UNRELATED` of renewals churn whatever the satisfaction (an acquisition, a budget freeze,
a global vendor consolidation): those churns have no preceding signal. An account that decided
to leave checks out: its level m drops and it drifts away until the renewal.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DAY = timedelta(days=1)
BURN_IN_DAYS = 150  # the process runs this long before the simulated span (no events)
THETA = 1 / 30
SIGMA = 0.045
SHOCK_RATE = 2.0 / 365
SHOCK_SIZE = 0.35
SHIFT_RATE = 0.5 / 365
SHIFT_MEAN, SHIFT_SD = -0.12, 0.22
MEAN_MEMORY = 365.0
LEVEL_SD = 0.16  # spread of the accounts' own levels m0
DECISION_DAYS = (40, 90)  # the customer decides this many days before the renewal
MOOD_WINDOW = 30  # days of satisfaction the decision looks at
UNRELATED = 0.03  # share of renewals that churn whatever the signals
A, B = -3.6, -6.0  # churn log-odds at the decision: A + B * mean z
CHECK_OUT = (0.3, 1.0)  # how far m drops once the customer decided to leave


def health_of(z: float) -> float:
    """Satisfaction on the channels' scale: about 0.93 for an ordinary account, 0.03 .. 1.1."""
    return min(1.1, max(0.03, 0.93 + 0.42 * z))


@dataclass
class Shock:
    day: int  # index into the path
    kind: str  # "shock" (fades) or "shift" (lasts)
    size: float


@dataclass
class Fate:
    """What the satisfaction path decided: a churn at one renewal, or renewals all along."""

    churn_renewal: int | None = None  # 0 = the first renewal in the span, 1 = the next, ...
    cause: str = ""  # "signals" (it decided on its satisfaction) or "unrelated"
    decided: datetime | None = None
    shocks: list[Shock] = field(default_factory=list)


def simulate_path(
    rng: random.Random, origin: datetime, days: int, renewals: list[datetime]
) -> tuple[array[float], Fate]:
    """Daily satisfaction z for `days` days from `origin` (day 0), and the fate it led to.

    `renewals` are the renewal dates in order; the customer decides before each one in turn
    and stops at the first churn.
    """
    level = rng.gauss(0.0, LEVEL_SD)
    mean, z = level, level + rng.gauss(0.0, SIGMA / math.sqrt(2 * THETA))
    decisions = {}
    for number, renewal in enumerate(renewals):
        decision_day = (renewal - origin).days - rng.randint(*DECISION_DAYS)
        decisions[decision_day] = (number, rng.random(), rng.uniform(*CHECK_OUT))
    fate = Fate()
    path: array[float] = array("d")
    window: deque[float] = deque(maxlen=MOOD_WINDOW)
    for day in range(-BURN_IN_DAYS, days):
        if rng.random() < SHOCK_RATE:
            size = rng.expovariate(1 / SHOCK_SIZE)
            z -= size
            fate.shocks.append(Shock(day, "shock", size))
        if rng.random() < SHIFT_RATE:
            size = rng.gauss(SHIFT_MEAN, SHIFT_SD)
            mean += size
            fate.shocks.append(Shock(day, "shift", size))
        mean += (level - mean) / MEAN_MEMORY if fate.churn_renewal is None else 0.0
        z += THETA * (mean - z) + rng.gauss(0.0, SIGMA)
        window.append(z)
        if day in decisions and fate.churn_renewal is None:
            number, roll, drop = decisions[day]
            mood = sum(window) / len(window)
            p_signal = 1 / (1 + math.exp(-(A + B * mood)))
            if roll < UNRELATED:
                fate.churn_renewal, fate.cause = number, "unrelated"
            elif roll < UNRELATED + (1 - UNRELATED) * p_signal:
                fate.churn_renewal, fate.cause = number, "signals"
                mean -= drop
            if fate.churn_renewal is not None:
                fate.decided = origin + day * DAY
        if day >= 0:
            path.append(z)
    fate.shocks = [s for s in fate.shocks if s.day >= 0]
    return path, fate
