"""The Kubernetes manifests, compose roles, image and lock file: validated offline.

Schemas come from the kubernetes-validate wheel (no network). Every rendered resource
passes the strict schema; each role has its own probes and resources; secrets only
come from the Secret; the commands exist in the CLI.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from test_deploy_files import _cli_paths

from core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def _resources() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _resources() if d["kind"] == kind}


def _containers() -> dict[str, dict]:
    out = {}
    for kind in ("Deployment", "Job"):
        for name, d in _by_kind(kind).items():
            (container,) = d["spec"]["template"]["spec"]["containers"]
            out[name] = container
    return out


@pytest.mark.parametrize("doc", _resources(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_resource_passes_the_strict_schema(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_secret_example_passes_too_and_is_not_applied():
    doc = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert (
        "secret.example.yaml" not in (K8S / "kustomization.yaml").read_text().split("resources:")[1]
    )


def test_web_worker_beat_and_the_upgrade_job_exist():
    assert {"twinbill-web", "twinbill-worker", "twinbill-beat"} <= set(_by_kind("Deployment"))
    (job,) = _by_kind("Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["twinbill", "db", "upgrade"]


def test_each_role_has_its_own_probes_and_resources():
    c = _containers()
    web = c["twinbill-web"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = c["twinbill-worker"]
    assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])
    assert c["twinbill-beat"]["livenessProbe"]["httpGet"]["port"] == "metrics"
    for name, container in c.items():
        assert {"requests", "limits"} <= set(container["resources"]), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_a_pod_disruption_budget_protects_the_workers():
    pdbs = _by_kind("PodDisruptionBudget")
    worker_labels = _by_kind("Deployment")["twinbill-worker"]["spec"]["selector"]["matchLabels"]
    assert any(p["spec"]["selector"]["matchLabels"] == worker_labels for p in pdbs.values())


def test_secrets_come_only_from_the_secret():
    secretish = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|DATABASE_URL|REDIS_URL")
    for d in _by_kind("ConfigMap").values():
        assert not [k for k in d["data"] if secretish.search(k)]
    for name, container in _containers().items():
        assert {"secretRef": {"name": "twinbill-secrets"}} in container["envFrom"], name
        assert not container.get("env"), name


def test_config_names_only_real_settings_and_beat_writes_to_tmp():
    fields = {f"TWINBILL_{n.upper()}" for n in Settings.model_fields}
    fields.add("TWINBILL_LOG_LEVEL")  # read by core.observability.configure_logging
    for d in _by_kind("ConfigMap").values():
        assert set(d["data"]) <= fields
        assert d["data"]["TWINBILL_BEAT_SCHEDULE_FILE"].startswith("/tmp/")
    mounts = _containers()["twinbill-beat"]["volumeMounts"]
    assert {"name": "tmp", "mountPath": "/tmp"} in mounts


def test_every_command_exists_in_the_cli():
    cli = _cli_paths()
    for name, container in _containers().items():
        words = tuple(w for w in container["command"][1:] if not w.startswith("-"))
        words = tuple(w for w in words if not w.isdigit() and "." not in w)
        assert any(words[: len(p)] == p for p in cli if len(p) <= len(words)), name


def test_compose_checks_each_role_its_own_way_and_the_image_checks_none():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert "8000" in " ".join(services["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "8000" not in " ".join(services["beat"]["healthcheck"]["test"])
    assert "HEALTHCHECK" not in (DEPLOY / "Dockerfile").read_text().replace("No HEALTHCHECK", "")


def test_the_image_installs_a_pinned_lock_while_pyproject_keeps_ranges():
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    assert not [d for d in deps if "==" in d]
    lock = (DEPLOY / "requirements.lock").read_text()
    pinned = {
        m.group(1).lower().replace("_", "-")
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock, re.M)
    }
    for dep in deps:
        name = re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, dep
    assert "requirements.lock" in (DEPLOY / "Dockerfile").read_text()
