"""SSRF through the registry (issue 11 Medium #3): a Slack webhook may not point at loopback,
link-local (cloud metadata), private or reserved addresses in any profile: refused when stored
(PUT, CSV import) and, after DNS resolution, before every post; the allow-list is checked at PUT
time in prod; reply bodies are never stored."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from services.alerts.channels import send_slack
from services.alerts.config import AlertsSettings
from services.alerts.delivery import DeliveryWorker
from services.signals.app import create_app
from services.signals.config import SignalsSettings
from shared.clock import ManualClock
from shared.config import CommonSettings
from tests.helpers import NOW
from tests.security.apps import make_key

INTERNAL = [
    "http://127.0.0.1:8080/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f.0.0.1/hook",
    "https://10.0.0.5/hook",
    "https://192.168.1.1/hook",
    "https://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://0.0.0.0:9/hook",
    "http://localhost:8080/hook",
    "http://api.localhost/hook",
]


class Receiver:
    """A real HTTP server on loopback that answers every POST with `status` and a body."""

    def __init__(self, status: int, body: bytes) -> None:
        self.posts: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.posts.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(403, b"internal-secret-page: db password hunter2")
    yield running
    running.close()


def _signals(common: CommonSettings, tmp_path: Path, **extra: object) -> TestClient:
    settings = SignalsSettings(common=common, model_dir=str(tmp_path / "models"), **extra)
    return TestClient(create_app(settings, clock=ManualClock(NOW), with_consumer=False))


def _body(url: str) -> dict[str, object]:
    return {"name": "Acme", "arr": "1", "owner": {"name": "Olivia", "slack_webhook": url}}


def test_put_refuses_internal_webhook_addresses_in_the_dev_profile(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    key = make_key(common_settings.database_url, ["accounts:write"])
    auth = {"Authorization": f"Bearer {key}"}
    with _signals(common_settings, tmp_path) as api:
        for url in INTERNAL:
            response = api.put("/v1/accounts/acme", json=_body(url), headers=auth)
            assert response.status_code == 422, (url, response.text)
            assert [p["field"] for p in response.json()["problems"]] == ["owner.slack_webhook"], url
        assert (
            api.put(
                "/v1/accounts/acme", json=_body("https://hooks.slack.com/services/T/B/x"), headers=auth
            ).status_code
            == 200
        )
        csv = "id,name,arr,owner_name,owner_slack_webhook\nacme,Acme,1,Olivia,http://169.254.169.254/x\n"
        refused = api.post("/v1/accounts:import", content=csv, headers={**auth, "Content-Type": "text/csv"})
        assert refused.status_code == 422 and "owner_slack_webhook" in refused.text


def test_a_trusted_local_receiver_may_be_stored(common_settings: CommonSettings, tmp_path: Path) -> None:
    trusted = common_settings.model_copy(update={"trusted_webhook_hosts": ["127.0.0.1:8026"]})
    key = make_key(common_settings.database_url, ["accounts:write"])
    with _signals(trusted, tmp_path) as api:
        ok = api.put(
            "/v1/accounts/acme",
            json=_body("http://127.0.0.1:8026/hooks/x"),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert ok.status_code == 200, ok.text
        other_port = api.put(
            "/v1/accounts/acme",
            json=_body("http://127.0.0.1:8027/hooks/x"),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert other_port.status_code == 422


def test_prod_checks_the_allow_list_when_the_webhook_is_stored(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    prod = common_settings.model_copy(update={"profile": "prod"})
    key = make_key(common_settings.database_url, ["accounts:write"])
    auth = {"Authorization": f"Bearer {key}"}
    with _signals(prod, tmp_path) as api:
        off_list = api.put("/v1/accounts/acme", json=_body("https://evil.example/hook"), headers=auth)
        assert off_list.status_code == 422 and "SLACK_ALLOWED_HOSTS" in off_list.text
        plain_http = api.put(
            "/v1/accounts/acme", json=_body("http://hooks.slack.com/services/x"), headers=auth
        )
        assert plain_http.status_code == 422
        on_list = api.put(
            "/v1/accounts/acme", json=_body("https://hooks.slack.com/services/T/B/x"), headers=auth
        )
        assert on_list.status_code == 200, on_list.text


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(receiver: Receiver) -> None:
    """The URL passed the stored check (a name), but it resolves to this machine: not posted."""
    name = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(name, receiver.port)}
    if not any(a.startswith("127.") or a == "::1" for a in resolved):
        pytest.skip(f"{name} does not resolve to loopback here ({resolved})")
    worker = DeliveryWorker(AlertsSettings(), sessions=None, clock=ManualClock(NOW))  # type: ignore[arg-type]
    row = SimpleNamespace(channel="slack", recipient=f"http://{name}:{receiver.port}/hook", payload="{}")
    result = worker._send(row)  # type: ignore[arg-type]
    assert result.outcome == "failed" and "loopback" in result.detail
    assert receiver.posts == []


def test_a_reply_body_is_never_kept(receiver: Receiver) -> None:
    result = send_slack(f"http://127.0.0.1:{receiver.port}/hook", "{}", 5, require_https=False)
    assert receiver.posts == [b"{}"]
    assert result.outcome == "failed" and result.detail == "HTTP 403"
