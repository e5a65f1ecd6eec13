"""deploy/'s files checked against their published schemas, with tools from PyPI that ship
the schemas (nothing is fetched): kubernetes-validate for the Kubernetes manifests,
check-jsonschema's copy of the Compose specification for compose.yaml, and HAProxy's own
parser for haproxy.cfg. Each check is also shown to refuse a broken file, so a validator
that accepts anything cannot pass for one that works."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.cluster import HAPROXY_CONFIG, REPO

DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
BIN = Path(sys.executable).parent


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(path)]
    return subprocess.run(command, capture_output=True, text=True)


def compose_validate(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, str(path)], capture_output=True, text=True)


def test_the_kubernetes_manifests_are_deployment_service_storage_and_autoscaler():
    names = {path.name for path in MANIFESTS}
    assert names == {"deployment.yaml", "service.yaml", "models-pvc.yaml", "autoscaler.yaml"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_each_kubernetes_manifest_fits_the_published_schema(manifest: Path):
    checked = kubernetes_validate(manifest)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kubernetes_validate_refuses_a_misspelt_field(tmp_path: Path):
    broken = tmp_path / "deployment.yaml"
    text = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    broken.write_text(text.replace("readinessProbe:", "readynessProbe:"))
    assert kubernetes_validate(broken).returncode != 0


def test_the_compose_file_fits_the_compose_specification():
    checked = compose_validate(DEPLOY / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_check_refuses_a_misspelt_field(tmp_path: Path):
    broken = tmp_path / "compose.yaml"
    text = (DEPLOY / "compose.yaml").read_text()
    broken.write_text(text.replace("stop_grace_period:", "stop_grace_periode:"))
    assert compose_validate(broken).returncode != 0


def test_the_drain_fits_in_the_termination_grace():
    """Kubernetes kills a pod terminationGracePeriodSeconds after the preStop hook starts,
    Compose stop_grace_period after SIGTERM: the drain must end before."""
    deployment = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    compose = (DEPLOY / "compose.yaml").read_text()
    assert '"--drain-timeout", "30"' in deployment and '"--drain-timeout", "30"' in compose
    assert "terminationGracePeriodSeconds: 40" in deployment  # 30 + preStop 5 + margin
    assert "stop_grace_period: 40s" in compose


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is installed by make test")
def test_haproxy_accepts_its_configuration():
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
