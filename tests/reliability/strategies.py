"""Hypothesis strategies for hostile input: any JSON, and valid events with one thing broken."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.helpers import NOW
from tests.shared.examples import EXAMPLES

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "1.0", "2026-11-01T12:00:00Z", "1e400", "-1", "NaN", "\x00", "é" * 3])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


def valid_event(event_type: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "fuzz",
        "type": event_type,
        "time": NOW.isoformat(),
        "subject": "acme",
        "data": copy.deepcopy(EXAMPLES[event_type]),
    }


@st.composite
def broken_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of a random type, then 1-3 edits: a field replaced, dropped or added."""
    event = valid_event(draw(st.sampled_from(sorted(EXAMPLES))))
    for _ in range(draw(st.integers(1, 3))):
        target = event["data"] if draw(st.booleans()) and isinstance(event.get("data"), dict) else event
        names = sorted(target) + ["extra_field"]
        name = draw(st.sampled_from(names))
        if draw(st.integers(0, 3)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(json_values)
    return event
