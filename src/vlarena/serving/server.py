"""The inference server's lifecycle: load, bind, warm up, serve, drain."""

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from vlarena.errors import ConfigError, UnavailableError
from vlarena.policies import DeviceConfig, Policy, native_policy_types
from vlarena.policies.checkpoint import read_metadata
from vlarena.policies.registry import get_policy_type
from vlarena.policies.shipped import shipped_checkpoints
from vlarena.policies.specs import parse_spec, resolve_policy
from vlarena.runtime import DualRateConfig, DynamicBatcher, warmup
from vlarena.serving.auth import TokenAuthInterceptor
from vlarena.serving.handlers import add_service
from vlarena.serving.metrics import ServerMetrics
from vlarena.serving.openpi.server import WebsocketListener
from vlarena.serving.servicer import InferenceServicer, Pools, ServedModel, ServerState
from vlarena.serving.settings import ServerSettings
from vlarena.serving.v1 import inference_pb2 as pb

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["VLAInference"]
SERVICE_NAME = SERVICE.full_name


def load_policies(settings: ServerSettings) -> list[Policy]:
    """The default model (first) and any extra ones, as the settings describe them.

    Without VLA_MODEL_PATH the checkpoints shipped in the package are served, the one of
    VLA_MODEL_TYPE (default vla-flow) first; random weights only if none is installed.
    """
    device = DeviceConfig(device=settings.device, precision=settings.precision)
    extras: list[str] = []
    if settings.model_path is None:
        name = settings.model_type or "vla-flow"
        natives = native_policy_types()
        if name not in natives:
            get_policy_type(name)  # unknown names list the valid ones
            raise ConfigError(f"policy type {name!r} needs VLA_MODEL_PATH (no built-in preset)")
        shipped = shipped_checkpoints()
        own = [p for p in shipped if read_metadata(p).policy_type == name]
        if own:
            default = resolve_policy(str(own[0]), device)
            listed = [parse_spec(spec) for spec in settings.extra_models]
            local = {
                Path(s.source).resolve() for s in listed if s.kind in ("shipped", "checkpoint")
            }
            extras = [str(p) for p in shipped if p != own[0] and p.resolve() not in local]
        else:
            log.warning(
                "VLA_MODEL_PATH unset and no shipped %s checkpoint: serving random weights "
                "(small preset)",
                name,
            )
            default = resolve_policy(f"{name}:small", device)
    else:
        default = resolve_policy(str(settings.model_path), device)
        if settings.model_type and default.info.policy_type != settings.model_type:
            raise ConfigError(
                f"VLA_MODEL_TYPE={settings.model_type} but {settings.model_path} holds a "
                f"{default.info.policy_type} checkpoint"
            )
    _check_contract(default, settings)
    more = [*extras, *settings.extra_models]
    return [default, *(resolve_policy(spec, device) for spec in more)]


def _check_contract(policy: Policy, settings: ServerSettings) -> None:
    info = policy.info
    expected = {
        "VLA_CHUNK_SIZE": (settings.chunk_size, info.chunk_size),
        "VLA_ACTION_DIM": (settings.action_dim, info.action_dim),
        "VLA_IMAGE_WIDTH": (settings.image_width, info.image_width),
        "VLA_IMAGE_HEIGHT": (settings.image_height, info.image_height),
    }
    for var, (wanted, actual) in expected.items():
        if wanted is not None and wanted != actual:
            raise ConfigError(f"{var}={wanted} but model {info.name!r} has {actual}")


class InferenceServer:
    """One gRPC server, its models, batchers, health and metrics."""

    def __init__(self, settings: ServerSettings, policies: list[Policy] | None = None) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.state = ServerState()
        self.inference_pool = ThreadPoolExecutor(1, thread_name_prefix="vla-infer")  # per device
        self._pools = Pools(
            decode=ThreadPoolExecutor(settings.max_workers, thread_name_prefix="vla-decode"),
            inference=self.inference_pool,
            features=ThreadPoolExecutor(1, thread_name_prefix="vla-features"),
        )
        self._policies = policies
        self._health = health.aio.HealthServicer()
        self.models: dict[str, ServedModel] = {}
        self.port = 0
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_http: WSGIServer | None = None
        self._websocket: WebsocketListener | None = None
        self.websocket_port: int | None = None
        self._warmup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load models, bind, start answering (health NOT_SERVING) and begin the warm-up."""
        loop = asyncio.get_running_loop()
        policies = self._policies
        if policies is None:
            policies = await loop.run_in_executor(None, load_policies, self.settings)
        for policy in policies:
            name = policy.info.name
            if name in self.models:
                raise ConfigError(f"two served models are named {name!r}")
            batcher = DynamicBatcher(
                policy,
                self.inference_pool,
                self.settings.batch_size,
                self.settings.max_queue_delay_ms / 1000.0,
                self.settings.max_queue_size,
                on_batch=self._batch_observer(name),
            )
            self.models[name] = ServedModel(policy, batcher)
        self.metrics.queue_depth.set_function(
            lambda: sum(m.batcher.depth for m in self.models.values())
        )
        self.metrics.model.info(
            {
                "models": ",".join(self.models),
                "device": self.settings.device,
                "precision": self.settings.precision,
            }
        )
        servicer = self._servicer(next(iter(self.models)))
        self._server = self._build_server(servicer)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        if self.settings.websocket_port is not None:
            await self._start_websocket(servicer)
        self.state.started = time.monotonic()
        if self.settings.metrics_enabled:
            self._metrics_http, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.host, registry=self.metrics.registry
            )
            self.metrics_port = self._metrics_http.server_port
        for served in self.models.values():
            served.batcher.start()
        self._warmup = asyncio.create_task(self._warm_up())
        self._warmup.add_done_callback(self._warmup_done)
        log.info(
            "listening on %s:%d (websocket %s, metrics %s)",
            self.settings.host,
            self.port,
            self.websocket_port,
            self.metrics_port,
        )

    def _servicer(self, default_model: str) -> InferenceServicer:
        s = self.settings
        dual_rate = DualRateConfig(
            vlm_update_hz=s.dual_rate_vlm_hz,
            max_feature_age_s=s.dual_rate_max_feature_age_s,
            vlm_threads=None,
            expert_threads=None,
        )
        return InferenceServicer(
            self.models,
            default_model,
            self.state,
            self.metrics,
            self._pools,
            s.timeout_ms / 1000.0,
            s.device,
            s.precision,
            dual_rate,
        )

    async def _start_websocket(self, servicer: InferenceServicer) -> None:
        s = self.settings
        token = s.auth_token.get_secret_value() if s.auth_token else None
        self._websocket = WebsocketListener(
            servicer, self.state, s.websocket_profile, token, s.max_message_bytes
        )
        assert s.websocket_port is not None
        await self._websocket.start(s.host, s.websocket_port)
        self.websocket_port = self._websocket.port

    def _build_server(self, servicer: InferenceServicer) -> grpc.aio.Server:
        s = self.settings
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
        ]
        interceptors = (
            [TokenAuthInterceptor(s.auth_token.get_secret_value())] if s.auth_token else []
        )
        server = grpc.aio.server(options=options, interceptors=interceptors)
        add_service(servicer, SERVICE, server, servicer.refused)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = f"{s.host}:{s.grpc_port}"
        if s.host not in ("127.0.0.1", "localhost", "::1") and s.tls_cert is None:
            log.warning("serving on %s without TLS: requests and tokens travel in clear", s.host)
        if s.tls_cert is not None and s.tls_key is not None:
            creds = grpc.ssl_server_credentials([(s.tls_key.read_bytes(), s.tls_cert.read_bytes())])
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise ConfigError(f"cannot bind {address}")
        return server

    def _batch_observer(self, name: str) -> Callable[[int, float], None]:
        def observe(size: int, compute_s: float) -> None:
            self.metrics.batch_size.labels(name).observe(size)
            self.metrics.compute_time.labels(name).observe(compute_s)

        return observe

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    def _warmup_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("warm-up failed; the server stays NOT_SERVING", exc_info=task.exception())
            self.state.status = "FAILED"

    async def _warm_up(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for served in self.models.values():
            await loop.run_in_executor(
                self.inference_pool, warmup, served.policy, self.settings.batch_size
            )
        if self.state.status != "STARTING":  # stopped while warming up
            return
        self.state.status = "SERVING"
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("warm after %.2f s; serving %s", time.perf_counter() - started, list(self.models))

    async def wait_ready(self) -> None:
        """Return once the warm-up has finished (raises what made it fail)."""
        if self._warmup is not None:
            await self._warmup

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING, refuse new RPCs, let in-flight ones finish (up to the grace), shut down."""
        self.state.status = "DRAINING"
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        await self._health.enter_graceful_shutdown()
        if self._websocket is not None:
            await self._websocket.stop()
        if self._server is not None:
            grace = self.settings.drain_timeout_s if grace_s is None else grace_s
            await self._server.stop(grace)
        for served in self.models.values():
            await served.batcher.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        for pool in (self._pools.decode, self._pools.inference, self._pools.features):
            pool.shutdown(wait=False, cancel_futures=True)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(settings: ServerSettings) -> None:
    """Run until SIGTERM/SIGINT, then drain and exit; a failed warm-up stops it too."""
    server = InferenceServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    ready = asyncio.create_task(server.wait_ready())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    failed = ready.done() and not ready.cancelled() and ready.exception() is not None
    if not failed:
        await stopped
        log.info("signal received: draining")
    stopped.cancel()
    await server.stop()
    if failed:
        raise UnavailableError(f"warm-up failed: {ready.exception()!r}")
