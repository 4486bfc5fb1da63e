"""The `vlarena` command: wires the layers together, holds no logic of its own."""

import statistics
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vlarena.errors import VLArenaError
from vlarena.policies import (
    PRESETS,
    DeviceConfig,
    Policy,
    get_preset,
    load_policy,
    native_policy_types,
    policy_types,
)
from vlarena.policies.synthetic import synthetic_observation
from vlarena.types import ModelInfo

app = typer.Typer(help="VLArena: serve, run, train and compare VLA robot policies.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # fmt: skip
console = Console()

DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, bf16 or fp16")]


def _fail(exc: VLArenaError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
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
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory")],
    device: DeviceOpt = "cpu",
) -> None:
    """Load a checkpoint and print its input/output contract."""
    try:
        policy = load_policy(checkpoint, DeviceConfig(device=device))
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
