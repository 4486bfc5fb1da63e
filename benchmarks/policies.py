"""Native VLA policies: latency per preset and batch size, and the split-API stage times."""

from functools import partial

from rich.progress import Progress

from benchmarks.common import time_calls
from vlarena.policies import PRESETS, NativeVLAPolicy, native_policy_types
from vlarena.policies.synthetic import synthetic_observation

CPU_PRESETS = ("tiny", "small", "film")
BATCH_SIZES = (1, 4, 8)


def run(samples: int, progress: Progress) -> str:
    """Markdown section: predict latency table and split-stage table."""
    natives = list(native_policy_types().values())
    latency = [
        "| policy | preset | params | batch | p50 ms | p99 ms | obs/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    split = [
        "| policy | preset | features p50 ms | features p99 ms | expert p50 ms "
        "| expert p99 ms | features / expert |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    task = progress.add_task("policies", total=len(natives) * len(CPU_PRESETS))
    for cls in natives:
        for preset in CPU_PRESETS:
            rows, split_row = _measure(
                cls.create(PRESETS[preset], f"{cls.policy_type}-{preset}"), preset, samples
            )
            latency += rows
            split.append(split_row)
            progress.advance(task)
    params = ", ".join(
        f"{cls.policy_type} {cls.parameter_count(PRESETS['pi0-scale']) / 1e9:.2f} B"
        for cls in natives
    )
    return "\n".join(
        [
            "## Native VLA policies (CPU, fp32)",
            "",
            f"`predict` wall time per call over {samples} calls after 3 warm-up calls; "
            "synthetic observations matching each model (2 cameras, 9 joints).",
            "",
            *latency,
            "",
            "Split API at batch 1: `extract_features` (vision-language stage) vs "
            "`predict_from_features` (action stage on cached features: every Euler step for "
            "`vla-flow`, every chunk step for `vla-ar`, "
            "or one pass when it decodes in parallel as `film` does).",
            "",
            *split,
            "",
            f"`pi0-scale` ({params} parameters, counted on the meta device) is for GPU runs "
            "and is not timed on this CPU.",
        ]
    )


def _measure(policy: NativeVLAPolicy, preset: str, samples: int) -> tuple[list[str], str]:
    """Latency rows for every batch size and the split-stage row of one policy."""
    info = policy.info
    obs = [synthetic_observation(info, seed=i) for i in range(max(BATCH_SIZES))]
    rows = []
    for batch in BATCH_SIZES:
        t = time_calls(partial(policy.predict, obs[:batch]), samples)
        rows.append(
            f"| {info.policy_type} | {preset} | {info.num_params:,} | {batch} "
            f"| {t.p50:.1f} | {t.p99:.1f} | {batch * 1000 / t.p50:.0f} |"
        )
    features = policy.extract_features(obs[:1])
    f = time_calls(partial(policy.extract_features, obs[:1]), samples)
    e = time_calls(partial(policy.predict_from_features, features, [obs[0].state]), samples)
    split_row = (
        f"| {info.policy_type} | {preset} | {f.p50:.1f} | {f.p99:.1f} | {e.p50:.1f} "
        f"| {e.p99:.1f} | {f.p50 / e.p50:.2f} |"
    )
    return rows, split_row
