"""The Kubernetes manifests pass a strict schema check (kubernetes-validate, schemas shipped in the
PyPI package, offline) and carry the probes, Job, ConfigMaps and Secrets operators rely on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSIONS = ["1.29.0", "1.31.0"]


def _documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [(name, doc) for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_a_strict_schema_check(version: str) -> None:
    for name, doc in _documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {error.message}")


def test_deployments_probe_readyz_and_healthz_and_read_config_and_secrets() -> None:
    deployments = _by_kind("Deployment")
    assert set(deployments) == {"kamwatch-ingest", "kamwatch-signals", "kamwatch-alerts"}
    services = _by_kind("Service")
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [name.removeprefix("kamwatch-")]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"kamwatch-env", "kamwatch-secrets"}
        assert name in services


def test_migration_job_migrates_then_creates_topics() -> None:
    job = _by_kind("Job")["kamwatch-migrate"]["spec"]["template"]["spec"]
    assert job["initContainers"][0]["args"] == ["migrate"]
    assert job["containers"][0]["args"] == ["topics"]


def test_policy_and_scorecard_configmaps_match_the_service_files() -> None:
    spec = importlib.util.spec_from_file_location("sync_configmaps", K8S / "sync_configmaps.py")
    assert spec is not None and spec.loader is not None
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    for filename, (name, source) in sync.CONFIGMAPS.items():
        assert (K8S / filename).read_text() == sync.render(name, source), "run deploy/k8s/sync_configmaps.py"
        data = _by_kind("ConfigMap")[name]["data"]
        assert data[source.name] == source.read_text()


def test_secrets_hold_every_secret_setting() -> None:
    secret = _by_kind("Secret")["kamwatch-secrets"]["stringData"]
    for key in (
        "KAMWATCH_DATABASE_URL",
        "KAMWATCH_INGEST_STRIPE_WEBHOOK_SECRETS",
        "KAMWATCH_INGEST_ZENDESK_WEBHOOK_SECRETS",
        "KAMWATCH_INGEST_CLOUDEVENTS_WEBHOOK_SECRETS",
        "KAMWATCH_ALERTS_LINK_SECRET",
        "KAMWATCH_ALERTS_SMTP_PASSWORD",
    ):
        assert key in secret
