"""The `vlarena` command: wires the layers together, holds no logic of its own."""

import asyncio
import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import numpy as np
import typer
from PIL import Image
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.table import Table

from vlarena.errors import UnknownNameError, VLArenaError, describe_validation
from vlarena.policies import (
    PRESETS,
    DeviceConfig,
    Policy,
    get_preset,
    load_policy,
    native_policy_types,
    policy_types,
)
from vlarena.policies.specs import resolve_policy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving.client import DEFAULT_TARGET, ClientOptions, VLAClient
from vlarena.serving.server import serve as run_server
from vlarena.serving.settings import ServerSettings
from vlarena.types import ModelInfo, Observation, RobotState

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(
    help="VLArena: serve, run, train and compare VLA robot policies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], prefix: str) -> S:
    """Settings from the environment; a readable error and exit code 2 if they are invalid."""
    try:
        return cls()
    except ValidationError as exc:
        console.print(f"[red]error:[/red] invalid {prefix}* settings: {describe_validation(exc)}")
        raise typer.Exit(code=2) from None


DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto")]
TargetOpt = Annotated[str, typer.Option(help="inference server host:port")]
TokenOpt = Annotated[
    str | None, typer.Option(envvar="VLA_AUTH_TOKEN", help="bearer token, if the server needs one")
]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, bf16 or fp16")]


def _fail(exc: VLArenaError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc.wire.name}: {exc}")
    return typer.Exit(code=2)


def _info_table(info: ModelInfo) -> Table:
    table = Table(title=f"{info.name} ({info.policy_type})", show_header=False)
    for key, value in vars(info).items():
        table.add_row(key, str(value))
    return table


@app.command()
def models() -> None:
    """List the registered policy types and the parameter count of every native preset."""
    table = Table(title="Native VLA presets (parameters)")
    table.add_column("preset")
    natives = native_policy_types()
    for name in natives:
        table.add_column(name, justify="right")
    for preset, config in PRESETS.items():
        counts = [cls.parameter_count(config) for cls in natives.values()]
        table.add_row(preset, *(f"{n:,}" for n in counts))
    console.print(f"policy types: {', '.join(policy_types())}")
    console.print(table)


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory (ours or LeRobot's)")],
    device: DeviceOpt = "cpu",
) -> None:
    """Load a checkpoint and print its input/output contract."""
    try:
        policy = resolve_policy(str(checkpoint), DeviceConfig(device=device))
    except VLArenaError as exc:
        raise _fail(exc) from None
    console.print(_info_table(policy.info))


@app.command()
def demo(
    preset: Annotated[str, typer.Option(help="size preset: " + ", ".join(PRESETS))] = "small",
    checkpoint: Annotated[Path | None, typer.Option(help="load this instead of a preset")] = None,
    device: DeviceOpt = "cpu",
    precision: PrecisionOpt = "fp32",
    calls: Annotated[int, typer.Option(min=1, help="timed calls per model")] = 10,
) -> None:
    """Run each native VLA family (random weights) or a checkpoint on a synthetic observation."""
    try:
        where = DeviceConfig(device=device, precision=precision)
        if checkpoint is not None:
            policies: list[Policy] = [load_policy(checkpoint, where)]
        else:
            config = get_preset(preset)
            policies = [
                cls.create(config, f"{name}-{preset}", device=where)
                for name, cls in native_policy_types().items()
            ]
    except VLArenaError as exc:
        raise _fail(exc) from None
    for policy in policies:
        obs = synthetic_observation(policy.info)
        policy.predict([obs], seeds=[0])  # warm-up
        times_ms = []
        for _ in range(calls):
            started = time.perf_counter()
            chunk = policy.predict([obs], seeds=[0])[0]
            times_ms.append((time.perf_counter() - started) * 1000)
        console.print(_info_table(policy.info))
        console.print(f"first action: {[round(float(a), 3) for a in chunk.actions[0]]}")
        console.print(
            f"chunk {chunk.actions.shape}, confidence {chunk.confidence}, "
            f"median latency {statistics.median(times_ms):.1f} ms over {calls} calls\n"
        )


@app.command()
def serve() -> None:
    """Start the gRPC inference server, configured by VLA_* environment variables."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(ServerSettings, "VLA_")
    try:
        asyncio.run(run_server(settings))
    except (VLArenaError, OSError) as exc:  # OSError: unreadable TLS files, port in use
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None


def _remote_call(fn: Callable[[VLAClient], T], target: str, token: str | None) -> T:
    try:
        with VLAClient(ClientOptions(target=target, token=token)) as client:
            return fn(client)
    except VLArenaError as exc:
        raise _fail(exc) from None


@app.command()
def health(target: TargetOpt = DEFAULT_TARGET, token: TokenOpt = None) -> None:
    """Ask a server whether it is ready; exits 0 if it is, 1 if not."""
    status = _remote_call(lambda c: c.health(), target, token)
    console.print(
        f"{status.status} ready={status.ready} queue_depth={status.queue_depth} "
        f"uptime={status.uptime_seconds:.1f}s models={list(status.models)}"
    )
    raise typer.Exit(code=0 if status.ready else 1)


@app.command()
def predict(
    image: Annotated[list[str], typer.Option(help="CAMERA=PATH (or PATH for the first camera)")],
    instruction: Annotated[str, typer.Option(help="task in words")],
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    model: Annotated[str, typer.Option(help="served model; default: the server's")] = "",
    seed: Annotated[int | None, typer.Option(help="noise seed")] = None,
) -> None:
    """Send one observation (images resized to the model's input; joints at zero)."""

    def call(client: VLAClient) -> None:
        info = client.model_info(model)
        images = {}
        for spec in image:
            camera, _, path = spec.rpartition("=")
            try:
                with Image.open(path) as img:
                    size = (info.image_width, info.image_height)
                    rgb = np.asarray(img.convert("RGB").resize(size))
            except (OSError, ValueError) as exc:  # missing file, not an image
                console.print(f"[red]error:[/red] cannot read image {path!r}: {exc}")
                raise typer.Exit(code=2) from None
            images[camera or info.camera_names[0]] = rgb
        zeros = np.zeros(info.state_dim, np.float32)
        try:
            obs = Observation(images, RobotState(zeros, zeros), instruction, info.embodiments[0])
        except VLArenaError as exc:
            raise _fail(exc) from None
        chunk = client.predict(obs, model=model, seed=seed)
        timing = ", ".join(f"{layer} {ms:.1f}" for layer, ms in chunk.timing_ms.items())
        console.print(
            f"{chunk.model_id}: {chunk.actions.shape[0]} actions (batch {chunk.batch_size}); "
            f"ms: {timing}"
        )
        for row in chunk.actions:
            console.print(" ".join(f"{v:+.3f}" for v in row))

    _remote_call(call, target, token)


def _serve_http(asgi: "FastAPI | str", host: str, port: int, workers: int = 1) -> None:
    """uvicorn, trusting no forwarded headers itself (the app's trusted proxies decide) and
    naming no server; several worker processes take an app factory's import path."""
    import uvicorn

    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,
        server_header=False,
        workers=workers if workers > 1 else None,
        factory=isinstance(asgi, str),
    )


@app.command()
def execute() -> None:
    """Start the execution service (POST /execute), configured by VLA_EXEC_* variables; with
    VLA_QUEUE_URL it is also an execution worker of the arena's turn queue."""
    from vlarena.broker import QueueSettings
    from vlarena.execution.app import create_app
    from vlarena.execution.settings import ExecutionSettings

    settings = load_settings(ExecutionSettings, "VLA_EXEC_")
    queue = load_settings(QueueSettings, "VLA_QUEUE_")
    _serve_http(create_app(settings, queue), settings.host, settings.port)


@app.command()
def arena(
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="processes serving the API (several need a queue)")
    ] = 1,
) -> None:
    """Start the arena backend (battles, votes, leaderboard), configured by VLA_ARENA_* variables
    and the execution service's VLA_SERVER_URL / VLA_REQUEST_TIMEOUT; with VLA_QUEUE_URL, turns
    run on execution workers behind the durable queue."""
    from vlarena.arena.app import create_app
    from vlarena.arena.settings import ArenaSettings
    from vlarena.broker import QueueSettings

    settings = load_settings(ArenaSettings, "VLA_ARENA_")
    queue = load_settings(QueueSettings, "VLA_QUEUE_")
    if workers == 1:
        _serve_http(create_app(settings, queue), settings.host, settings.port)
        return
    if queue.url is None:  # each process would fail the others' turns as its own leftovers
        console.print("[red]error:[/red] --workers above 1 needs the turn queue (VLA_QUEUE_URL)")
        raise typer.Exit(code=2)
    _serve_http("vlarena.arena.app:create_app", settings.host, settings.port, workers)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="the arena + web UI port")] = 8000,
    execution_port: Annotated[int, typer.Option(help="the execution service's port")] = 8001,
    inference_port: Annotated[int, typer.Option(help="the inference server's gRPC port")] = 50051,
    metrics_port: Annotated[int, typer.Option(help="the inference server's metrics port")] = 9090,
    database_url: Annotated[str, typer.Option(help="the arena's database")] = (
        "sqlite+aiosqlite:///arena.db"
    ),
) -> None:
    """Start the whole stack on 127.0.0.1 (inference server, execution service, arena + UI)."""
    from vlarena.stack import StackPorts, run

    def announce(url: str) -> None:
        console.print(f"[bold green]VLArena is up:[/bold green] {url}  (Ctrl-C stops it)")

    try:
        dead = run(
            StackPorts(inference_port, metrics_port, execution_port, port), database_url, announce
        )
    except (ValueError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None
    if dead is not None:
        console.print(f"[red]error:[/red] `vlarena {dead}` stopped; the stack is down")
        raise typer.Exit(code=1)
    console.print("stopped")


@app.command(name="profile")
def profile_command(
    family: Annotated[str, typer.Option(help="native policy type")] = "vla-flow",
    preset: Annotated[str, typer.Option(help="size preset")] = "small",
    views: Annotated[str, typer.Option(help="camera counts, e.g. 1..5 or 1,3")] = "1..5",
    samples: Annotated[int, typer.Option(min=1, help="timed calls per stage")] = 50,
    expert_hz: Annotated[float, typer.Option(help="wanted action-expert rate")] = 10.0,
    sensor_hz: Annotated[float, typer.Option(help="rate of the high-rate sensor")] = 650.0,
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
) -> None:
    """Time feature extraction and the action expert per view count (dual-rate); JSON out."""
    import json

    from vlarena.runtime.profiler import profile

    natives = native_policy_types()
    try:
        if family not in natives:
            raise UnknownNameError("native policy type", family, natives)
        low, _, high = views.partition("..")
        counts = (
            list(range(int(low), int(high) + 1)) if high else [int(v) for v in views.split(",")]
        )
        report = profile(natives[family], get_preset(preset), counts, samples, expert_hz, sensor_hz)
    except VLArenaError as exc:
        raise _fail(exc) from None
    except ValueError:
        raise typer.BadParameter(f"views {views!r}: use N..M or N,M,...") from None
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


@app.command()
def datagen(
    out: Annotated[Path, typer.Argument(help="dataset directory to write")],
    episodes: Annotated[int, typer.Option(min=1, help="successful episodes to keep")] = 600,
    tasks: Annotated[str, typer.Option(help="comma-separated; repeat one to weight it")] = "all",
    image_size: Annotated[int, typer.Option(help="camera image side, pixels")] = 96,
    workers: Annotated[int, typer.Option(min=0, help="rollout processes")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="first episode seed")] = 0,
    max_steps: Annotated[int, typer.Option(min=1, help="expert budget per episode")] = 80,
) -> None:
    """Record scripted-expert demonstrations (front + wrist cameras, proprio) as a dataset."""
    from rich.progress import Progress

    from vlarena.data import TASK_NAMES, DatagenConfig, generate

    try:
        cfg = DatagenConfig(
            episodes=episodes,
            tasks=_names(tasks, TASK_NAMES),
            image_size=image_size,
            max_steps=max_steps,
            seed=seed,
            workers=workers,
        )
        with Progress(console=console) as bar:
            job = bar.add_task("episodes", total=episodes)
            report = generate(cfg, out, lambda n: bar.update(job, completed=n))
    except VLArenaError as exc:
        raise _fail(exc) from None
    console.print(
        f"{report.episodes} episodes, {report.frames} frames → {out}; "
        f"failed expert episodes dropped: {report.dropped}"
    )


@app.command()
def dagger(
    base: Annotated[Path, typer.Argument(help="dataset to extend (vlarena datagen)")],
    out: Annotated[Path, typer.Argument(help="dataset directory to write: BASE + recovery")],
    model: Annotated[str, typer.Option(help="the learning policy: checkpoint or model spec")],
    episodes: Annotated[int, typer.Option(min=1, help="policy episodes to roll out")] = 300,
    tasks: Annotated[str, typer.Option(help="comma-separated; repeat one to weight it")] = "all",
    takeovers: Annotated[int, typer.Option(min=1, help="expert takeovers per episode")] = 3,
    horizon: Annotated[int, typer.Option(min=1, help="policy actions run per chunk")] = 4,
    ensemble: Annotated[
        bool, typer.Option(help="the policy runs the mean of the chunks that predict each step")
    ] = False,
    workers: Annotated[int, typer.Option(min=0, help="rollout processes")] = 2,
    seed: Annotated[int, typer.Option(min=0, help="first policy episode seed")] = 500_000,
) -> None:
    """Recovery data: the policy drives, the scripted expert takes over from states it reached
    and is recorded; writes BASE plus the successful takeovers (DAgger-style aggregation)."""
    from rich.progress import Progress

    from vlarena.data import TASK_NAMES
    from vlarena.training.dagger import DaggerConfig, collect

    try:
        cfg = DaggerConfig(
            model=model,
            episodes=episodes,
            tasks=_names(tasks, TASK_NAMES),
            takeovers=takeovers,
            horizon=horizon,
            ensemble=ensemble,
            seed=seed,
            workers=workers,
        )
        with Progress(console=console) as bar:
            job = bar.add_task("policy episodes", total=episodes)
            report = collect(cfg, base, out, lambda n: bar.update(job, completed=n))
    except VLArenaError as exc:
        raise _fail(exc) from None
    rates = ", ".join(f"{t} {done}/{run}" for t, (done, run) in report.policy_success.items())
    console.print(
        f"policy success: {rates}; {report.episodes} recovery episodes, {report.frames} frames "
        f"({report.failed_takeovers} failed takeovers dropped) → {out}"
    )


def _names(text: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """'all' or a comma-separated list of names."""
    return valid if text == "all" else tuple(n.strip() for n in text.split(",") if n.strip())


@app.command(name="train")
def train_command(
    dataset: Annotated[Path, typer.Argument(help="dataset directory (vlarena datagen)")],
    out: Annotated[Path, typer.Argument(help="run directory: checkpoint, log, loss.png")],
    family: Annotated[str, typer.Option(help="native policy type")] = "vla-flow",
    recipe: Annotated[str | None, typer.Option(help="run a named recipe's stages in order")] = None,
    from_stage: Annotated[
        str | None, typer.Option(help="recipe: start at this stage (with --init)")
    ] = None,
    preset: Annotated[str, typer.Option(help="size preset")] = "small",
    stage: Annotated[
        str, typer.Option(help="pretrain, expert (stage 1), lora (stage 2), full")
    ] = "full",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 2000,
    batch_size: Annotated[int, typer.Option(help="anchor frames per step")] = 32,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 3e-4,
    vlm_reuse_count: Annotated[int, typer.Option(help="steps each feature is reused for")] = 3,
    grounding_weight: Annotated[
        float, typer.Option(help="full / lora: weight of the auxiliary grounding loss")
    ] = 0.0,
    grounding_place: Annotated[
        bool, typer.Option(help="grounding also learns where the task places the cube")
    ] = False,
    word_noise: Annotated[
        float, typer.Option(help="film: chance an instruction word is replaced by a random one")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="weights, data order, noise")] = 0,
    init: Annotated[Path | None, typer.Option(help="start from this checkpoint")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run in OUT")] = False,
    name: Annotated[str | None, typer.Option(help="model name in the checkpoint")] = None,
) -> None:
    """Train a native VLA (one stage, or a recipe's stages); multi-process under torchrun.

    A recipe brings its own preset, steps and learning rates; the stage options are ignored.
    """
    from vlarena.training import TrainConfig, get_recipe, train

    try:
        if from_stage is not None and (recipe is None or init is None):
            raise typer.BadParameter("--from-stage needs --recipe and --init (the earlier stage)")
        if recipe is not None:
            stages = get_recipe(recipe, family, from_stage)
        else:
            stages = (
                TrainConfig(
                    family=family,
                    preset=preset,
                    stage=stage,  # type: ignore[arg-type]
                    steps=steps,
                    batch_size=batch_size,
                    lr=lr,
                    vlm_reuse_count=vlm_reuse_count,
                    grounding_weight=grounding_weight,
                    grounding_place=grounding_place,
                    word_noise=word_noise,
                    seed=seed,
                ),
            )
        for cfg in stages:
            where = out / cfg.stage if recipe is not None else out
            result = train(cfg, dataset, where, init=init, resume=resume, name=name)
            init = result.checkpoint
            console.print(
                f"{cfg.stage}: loss {result.first_loss:.4f} → {result.last_loss:.4f} "
                f"in {result.steps} steps, {result.seconds:.0f} s; "
                f"checkpoint {result.checkpoint}"
            )
    except VLArenaError as exc:
        raise _fail(exc) from None


@app.command(name="eval")
def eval_command(
    model: Annotated[
        str,
        typer.Option(
            help="scripted-expert, a shipped model, a checkpoint "
            "directory, or TYPE:PRESET (random weights)"
        ),
    ],
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or all")] = "all",
    episodes: Annotated[int, typer.Option(min=1, help="episodes per task")] = 20,
    horizon: Annotated[int, typer.Option(min=1, help="actions run per chunk")] = 1,
    ensemble: Annotated[
        bool, typer.Option(help="run each step's mean over the chunks that predict it")
    ] = True,
    workers: Annotated[int, typer.Option(min=0, help="worker processes")] = 2,
    use_ray: Annotated[
        bool, typer.Option("--ray", help="run the episodes on a Ray cluster")
    ] = False,
    videos: Annotated[int, typer.Option(min=0, help="MP4s of the first episodes per task")] = 0,
    wordings: Annotated[
        str, typer.Option(help="instructions worded as in training (trained) or never (held-out)")
    ] = "trained",
    feature_reuse: Annotated[
        int, typer.Option(min=1, help="model calls per vision-language feature refresh")
    ] = 1,
    out: Annotated[
        Path | None, typer.Option(help="write results.json/.md, success.png here")
    ] = None,
) -> None:
    """Success rate per task with Wilson 95% CIs on fixed seeds; JSON, markdown, a plot."""
    from rich.progress import Progress

    from vlarena.data import TASK_NAMES
    from vlarena.evaluation import EvalConfig, evaluate, markdown_table, summarize, write_report

    try:
        cfg = EvalConfig(
            tasks=_names(tasks, TASK_NAMES),
            episodes=episodes,
            horizon=horizon,
            ensemble=ensemble,
            workers=workers,
            videos=videos,
            wordings=wordings,
            feature_reuse=feature_reuse,
        )
        if videos and out is None:
            raise typer.BadParameter("--videos needs --out")
        with Progress(console=console) as bar:
            job = bar.add_task(model, total=episodes * len(cfg.tasks))
            results = evaluate(
                model,
                cfg,
                out / "videos" if out else None,
                lambda n: bar.update(job, completed=n),
                use_ray,
            )
    except VLArenaError as exc:
        raise _fail(exc) from None
    rows = write_report(out, model, results, dataclasses.asdict(cfg)) if out else summarize(results)
    console.print(markdown_table(model, rows))
