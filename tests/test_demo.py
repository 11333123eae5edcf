"""`kamwatch run --demo` from an empty var/: within 3 minutes an account is red with drivers in
words, and a real e-mail and Slack message sit in the local sinks (issue 6, acceptance 1)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import httpx
import pytest

from kamwatch.dev.simulator.demo import DEMO_SPOTLIGHT, demo_config
from kamwatch.dev.simulator.generator import Simulation
from tests.helpers import wait_for
from tests.test_run import Stack

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path):
    instance = Stack(tmp_path / "var", demo=True)
    yield instance
    if instance.process.poll() is None:
        instance.process.kill()
        instance.process.wait()


def test_the_demo_turns_an_account_red_and_delivers_its_alerts(demo: Stack) -> None:
    wait_for(lambda: "API key:" in demo.output() or demo.process.poll() is not None, 120, "start-up")
    assert demo.process.poll() is None, demo.output()
    key = (demo.var / "api-key").read_text().strip()
    auth = {"Authorization": f"Bearer {key}"}

    def red_accounts() -> list[dict]:
        response = httpx.get(demo.url("signals") + "/v1/portfolio?band=red", headers=auth, timeout=10)
        return response.json()["items"] if response.status_code == 200 else []

    # 3 minutes is the promise to a new user; allow more here for a loaded CI machine.
    def red_risk() -> dict | None:
        # The demo is live: an account listed red a moment ago may have moved on; take one that
        # is still red when its risk is read.
        for item in red_accounts():
            url = demo.url("signals") + f"/v1/accounts/{item['account_id']}/risk"
            risk = httpx.get(url, headers=auth, timeout=10).json()
            if risk.get("band") == "red":
                return dict(risk)
        return None

    risk = wait_for(red_risk, 300, "a red account", interval_s=2)
    assert risk["drivers"] and all(d["text"] for d in risk["drivers"])
    outbox = demo.var / "outbox"
    wait_for(lambda: list((outbox / "mail").glob("*.eml")), 120, "an e-mail in the mail sink")
    wait_for(lambda: list((outbox / "slack").glob("*.json")), 120, "a message in the Slack receiver")
    check_spotlight_trends(demo, auth)
    check_the_episode_alert_and_noise(demo, auth)
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0


def check_the_episode_alert_and_noise(demo: Stack, auth: dict[str, str]) -> None:
    """Issue 14: a spotlight account whose champion left has one alert; its e-mail lists dated next
    steps, the renewal date and the escalation time, its Slack message @mentions the owner, and
    all its e-mails form one thread under its first message; open alerts never outnumber accounts at risk."""

    def alerts() -> list[dict]:
        response = httpx.get(demo.url("alerts") + "/v1/alerts?limit=1000", headers=auth, timeout=10)
        return list(response.json()["alerts"]) if response.status_code == 200 else []

    def spotlight() -> dict | None:
        return next(
            (a for a in alerts() if "key_contact_left" in {t["trigger"] for t in a["triggers"]}), None
        )

    alert = wait_for(spotlight, 300, "an alert for a champion who left", interval_s=2)
    # One alert per episode. The backfill streams 120 days in a few seconds, so an account can look
    # silent for a moment and flick red and back: an alert opened and resolved inside the grouping
    # window reaches nobody (level 0) and is not an episode anyone saw.
    seen = [
        a
        for a in alerts()
        if a["account_id"] == alert["account_id"] and (a["level"] > 0 or a["state"] != "resolved")
    ]
    assert len(seen) == 1, seen

    def its_mails() -> list[EmailMessage]:
        found = [
            message_from_bytes(f.read_bytes(), policy=default)
            for f in sorted((demo.var / "outbox" / "mail").glob("*.eml"))
        ]
        return [m for m in found if m["X-Kamwatch-Alert"] == str(alert["id"])]  # type: ignore[misc]

    first = wait_for(lambda: (its_mails() or [None])[0], 180, "the spotlight alert's e-mail")
    text = first.get_body(("plain",)).get_content()
    steps = text.split("Next steps:", 1)[1].split("\n\n", 1)[0] if "Next steps:" in text else ""
    assert steps.count(", due ") >= 2, text
    assert "Renewal: " in text and "Escalates to " in text, text
    slack = [json.loads(f.read_text()) for f in sorted((demo.var / "outbox" / "slack").glob("*.json"))]
    assert any(s["text"].startswith("<@") and f"#{alert['id']}" in str(s["blocks"]) for s in slack)
    # One thread: every reply names the same root, the alert's first message (which may arrive
    # after a later one: the owner's notice can wait for the end of their quiet hours while the
    # manager's goes out at once), and the root itself replies to nothing.
    mails = its_mails()
    roots = {m["In-Reply-To"] for m in mails if m["In-Reply-To"]}
    assert len(roots) <= 1, roots
    for mail in mails:
        if mail["In-Reply-To"]:
            assert mail["References"].split()[0] == mail["In-Reply-To"]
        else:
            assert not roots or mail["Message-ID"] in roots, (mail["Message-ID"], roots)

    def quiet() -> bool:
        active = [a for a in alerts() if a["state"] != "resolved"]
        items = httpx.get(demo.url("signals") + "/v1/portfolio?limit=500", headers=auth, timeout=10).json()
        at_risk = [i for i in items["items"] if i["band"] in ("amber", "red")]
        return len({a["account_id"] for a in active}) == len(active) and len(active) <= len(at_risk)

    wait_for(quiet, 60, "open alerts <= accounts in amber or red, one per account")


def check_spotlight_trends(demo: Stack, auth: dict[str, str]) -> None:
    """Issue 15: the weekly risk trend of a spotlight account (scripted to slide from 21 days
    before the live phase) has at least 16 points over the 120-day backfill, and where its band
    changes at the end it is amber or red from the turn on, never a false alarm from the quiet
    months. The turn may come up to three weeks before the slide: the simulated billing cycle can
    leave an invoice overdue then (a real risk signal, not the script), and on some calendar days
    it tips the score over amber early (on 2026-11-30: 33% of ARR overdue and a detractor NPS, two
    weeks early). The noise is seeded by the run's timeline, so how many end amber or red varies
    between runs (two ended near the amber threshold, 0.32 and 0.37, in one run): at least half.
    (The first weeks of a history may flag: no baseline yet.)"""
    now = datetime.now(UTC)
    config = demo_config(now)
    slide = config.live_start - timedelta(days=21)
    changed = 0
    for account in Simulation(config).accounts[:DEMO_SPOTLIGHT]:
        url = demo.url("signals") + f"/v1/accounts/{account.id}/risk/trend?weeks=16"
        points = httpx.get(url, headers=auth, timeout=60).json()["points"]
        assert len(points) >= 16, (account.id, points)
        seen = [(p["as_of"][:10], p["band"], p["score"]) for p in points]
        greens = [i for i, p in enumerate(points) if p["band"] == "green"]
        if points[-1]["band"] == "green" or not greens:
            continue
        turned = datetime.fromisoformat(points[greens[-1] + 1]["as_of"])
        assert turned >= slide - timedelta(days=21), f"{account.id}: slide {slide}, trend {seen}"
        changed += 1
    assert changed >= DEMO_SPOTLIGHT // 2, "at least half the spotlight accounts end amber or red"
