"""A real Prometheus (Debian's `prometheus` binary) on a free loopback port, for tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kamwatch.dev.broker import free_port
from tests.helpers import wait_for

HINT = "promtool/prometheus not found: run `bash deploy/ensure-tools.sh` (Debian package 'prometheus')"


def require_binary(name: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(HINT)
    return path


def local_config(deploy_dir: Path, ports: dict[str, int], name: str = "prometheus.yml") -> dict[str, Any]:
    """A config from deploy/prometheus/ with the targets moved to the test's ports and 1 s scrapes."""
    config: dict[str, Any] = yaml.safe_load((deploy_dir / name).read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(deploy_dir / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            service = static["labels"]["service"]
            static["targets"] = [f"127.0.0.1:{ports[service]}"]
    return config


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, deploy_dir: Path, ports: dict[str, int], workdir: Path, name: str = "prometheus.yml"
    ) -> Prometheus:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(local_config(deploy_dir, ports, name)))
        port = free_port()
        with (workdir / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    require_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running = cls(f"http://127.0.0.1:{port}", process)
        wait_for(running.ready, 30, f"prometheus ready (log: {workdir / 'prometheus.log'})", interval_s=0.2)
        return running

    def ready(self) -> bool:
        assert self.process.poll() is None, "prometheus exited; see its log"
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else []

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
