"""Local delivery sinks for the embedded profile: a real SMTP server and a Slack-compatible receiver.

Mail lands as .eml files in <dir>/mail/, Slack payloads as .json files in <dir>/slack/, so a new
user sees real messages without any account. Tests use the knobs to refuse and throttle.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from kamwatch.dev.broker import free_port, port_in_use


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers never see half a file: write aside, then rename."""
    temp = path.with_suffix(path.suffix + ".part")
    temp.write_bytes(data)
    temp.rename(path)


class MailHandler:
    """aiosmtpd handler: store each message; answer 451 to the first `refuse_first` messages."""

    def __init__(self, directory: Path, refuse_first: int = 0) -> None:
        self.directory = directory
        self.refuse_left = refuse_first
        self.seq = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse_left > 0:
                self.refuse_left -= 1
                return "451 4.3.0 Mail sink refusing on purpose; try again later"
            number = next(self.seq)
        name = f"{time.time_ns()}-{number:05d}.eml"
        _write_atomic(self.directory / name, envelope.original_content or envelope.content)
        return "250 2.0.0 Stored"


class SlackHandler(BaseHTTPRequestHandler):
    server: SlackServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, headers = self.server.decide()
        if status == 200:
            try:
                json.loads(body)
            except ValueError:
                status = 400
        if status == 200:
            self.server.store(self.path, body)
        reply = b"ok" if status == 200 else (b"rate_limited" if status == 429 else b"invalid_payload")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class SlackServer(ThreadingHTTPServer):
    """Answers like a Slack incoming webhook; the first `throttle_first` posts get 429."""

    daemon_threads = True

    def __init__(self, port: int, directory: Path, throttle_first: int = 0, retry_after_s: int = 1) -> None:
        super().__init__(("127.0.0.1", port), SlackHandler)
        self.directory = directory
        self.throttle_left = throttle_first
        self.retry_after_s = retry_after_s
        self.seq = itertools.count(1)
        self.lock = threading.Lock()

    def decide(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                return 429, {"Retry-After": str(self.retry_after_s)}
        return 200, {}

    def store(self, path: str, body: bytes) -> None:
        slug = path.strip("/").replace("/", "_")[:80] or "root"
        with self.lock:
            number = next(self.seq)
        _write_atomic(self.directory / f"{time.time_ns()}-{number:05d}-{slug}.json", body)


class LocalSinks:
    """Both sinks in this process (threads); ports 0 pick free ones."""

    def __init__(
        self,
        directory: Path,
        smtp_port: int = 8025,
        http_port: int = 8026,
        refuse_first: int = 0,
        throttle_first: int = 0,
        retry_after_s: int = 1,
    ) -> None:
        self.mail_dir, self.slack_dir = directory / "mail", directory / "slack"
        self.smtp_port = smtp_port or free_port()
        self.http_port = http_port or free_port()
        self.refuse_first, self.throttle_first, self.retry_after_s = (
            refuse_first,
            throttle_first,
            retry_after_s,
        )
        self._controller: Controller | None = None
        self._http: SlackServer | None = None

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        for directory in (self.mail_dir, self.slack_dir):
            directory.mkdir(parents=True, exist_ok=True)
        handler = MailHandler(self.mail_dir, self.refuse_first)
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.smtp_port)
        self._controller.start()
        self._http = SlackServer(self.http_port, self.slack_dir, self.throttle_first, self.retry_after_s)
        threading.Thread(target=self._http.serve_forever, name="slack-sink", daemon=True).start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def start_for_stack(var: Path) -> LocalSinks | None:
    """`kamwatch run`: start the sinks and point the alerts service at them (dev profile only)."""
    if os.environ.get("KAMWATCH_PROFILE", "dev") == "prod" or os.environ.get("KAMWATCH_ALERTS_SMTP_HOST"):
        return None  # a real mail server is configured: leave it alone
    ports = [
        int(os.environ.get("KAMWATCH_ALERTS_SINK_SMTP_PORT", 8025)),
        int(os.environ.get("KAMWATCH_ALERTS_SINK_HTTP_PORT", 8026)),
    ]
    ports = [0 if port_in_use("127.0.0.1", p) else p for p in ports]
    sinks = LocalSinks(var / "outbox", ports[0], ports[1])
    sinks.start()
    os.environ["KAMWATCH_ALERTS_SMTP_HOST"] = "127.0.0.1"
    os.environ["KAMWATCH_ALERTS_SMTP_PORT"] = str(sinks.smtp_port)
    port = os.environ.get("KAMWATCH_ALERTS_PORT", "8003")
    os.environ.setdefault("KAMWATCH_ALERTS_PUBLIC_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault(
        "KAMWATCH_ALERTS_DEFAULT_SLACK_WEBHOOK", f"{sinks.slack_url}/services/local/kamwatch"
    )
    # Registry webhooks may point at the local receiver (loopback is refused otherwise).
    os.environ.setdefault("KAMWATCH_TRUSTED_WEBHOOK_HOSTS", sinks.slack_url.split("://", 1)[1])
    print(
        f"alerts:   mail sink smtp://127.0.0.1:{sinks.smtp_port} -> {sinks.mail_dir}/, "
        f"Slack receiver {sinks.slack_url} -> {sinks.slack_dir}/",
        flush=True,
    )
    return sinks
