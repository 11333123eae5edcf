"""Console security: sign-in wall, CSRF, the key's scopes, escaping, cookie flags."""

from __future__ import annotations

import re
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.console.conftest import XSS_NAME, Stack, shot, sign_in

pytestmark = pytest.mark.slow
PAGES = ["/", "/portfolio", "/accounts/acme", "/accounts/acme/plan", "/accounts/acme/qbr", "/alerts"]


def _signed_in(stack: Stack, key: str) -> httpx.Client:
    client = httpx.Client(base_url=stack.console, timeout=10)
    form = client.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text
    response = client.post("/signin", data={"api_key": key, "csrf": token.group(1), "next": "/portfolio"})
    assert response.status_code == 303 and response.headers["location"] == "/portfolio"
    return client


def _csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_sign_in(stack: Stack, path: str) -> None:
    response = httpx.get(stack.console + path, timeout=10)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")
    forged = httpx.get(stack.console + path, cookies={"kw_session": "abc.def"}, timeout=10)
    assert forged.status_code == 303


def test_posts_without_a_session_or_a_csrf_token_are_refused(stack: Stack) -> None:
    alert_id = stack.alert_ids["evil"]
    anonymous = httpx.post(f"{stack.console}/alerts/{alert_id}/ack", data={}, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/signin")
    with closing(_signed_in(stack, stack.key)) as client:
        for data in ({}, {"csrf": "not-the-token"}):
            refused = client.post(f"/alerts/{alert_id}/ack", data=data)
            assert refused.status_code == 403 and "security token" in refused.text
        plan = client.post("/accounts/acme/plan/objectives", data={"title": "x", "version": "0"})
        assert plan.status_code == 403
    assert stack.api(stack.alerts, f"/v1/alerts/{alert_id}")["state"] == "open"


def test_sign_in_form_needs_its_token_and_a_valid_key(stack: Stack) -> None:
    no_token = httpx.post(f"{stack.console}/signin", data={"api_key": stack.key}, timeout=10)
    assert no_token.status_code == 403 and "kw_session" not in no_token.headers.get("set-cookie", "")
    client = httpx.Client(base_url=stack.console, timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    assert token
    wrong = client.post("/signin", data={"api_key": "kw_0000_nope", "csrf": token.group(1)})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
    open_redirect = _signed_in_to(stack, "//evil.example.com/")
    assert open_redirect == "/portfolio"


def _signed_in_to(stack: Stack, next_path: str) -> str:
    client = httpx.Client(base_url=stack.console, timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    assert token
    response = client.post("/signin", data={"api_key": stack.key, "csrf": token.group(1), "next": next_path})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    return response.headers["location"]


def test_a_read_only_key_sees_no_actions_and_its_direct_posts_are_refused(page: Any, stack: Stack) -> None:
    alert_id = stack.alert_ids["evil"]
    sign_in(page, stack, key=stack.reader_key, start="/accounts/evil")
    assert page.locator(f"article[data-alert-id='{alert_id}']").count() == 1
    assert page.locator("button.ack").count() == 0 and page.locator("form[action$='/snooze']").count() == 0
    page.goto(stack.console + "/alerts")
    assert page.locator("#bulk button.ack").count() == 0
    page.goto(stack.console + "/accounts/evil/plan")
    assert page.locator("#add-objective").count() == 0 and "Read only" in page.inner_text("main")
    shot(page, "read-only")

    with closing(_signed_in(stack, stack.reader_key)) as client:
        csrf = _csrf(client, "/portfolio")
        refused = client.post(f"/alerts/{alert_id}/ack", data={"csrf": csrf, "back": "/alerts"})
        assert refused.status_code == 403 and "alerts:write" in refused.text
        plan = client.post(
            "/accounts/evil/plan/objectives", data={"csrf": csrf, "title": "x", "version": "0"}
        )
        assert plan.status_code == 403 and "accounts:write" in plan.text
    assert stack.api(stack.alerts, f"/v1/alerts/{alert_id}")["state"] == "open"
    assert stack.api(stack.signals, "/v1/accounts/evil/plan")["objectives"] == []


def test_account_names_with_html_or_script_are_shown_as_text(page: Any, stack: Stack) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, stack)
    for path in ("/portfolio", "/accounts/evil", "/accounts/evil/qbr", "/alerts?view=all"):
        page.goto(stack.console + path)
        assert XSS_NAME in page.inner_text("main"), path  # shown literally, as text
        assert page.evaluate("window.pwned") is None, path  # and never run
        assert page.locator("main b").count() == 0, path
    shot(page, "escaped")
    assert dialogs == []
    with closing(_signed_in(stack, stack.key)) as client:
        html = client.get("/portfolio").text
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html and "<script>window.pwned" not in html
        assert "script-src 'self'" in client.get("/portfolio").headers["content-security-policy"]
