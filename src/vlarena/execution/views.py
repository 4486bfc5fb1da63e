"""What the service answers, made from what the simulator and the job store hold: fields named
alike are read as they are (a field added to both needs no code here, and one the source lacks
fails validation); only those the answer names or shapes differently are spelled out."""

from vlarena.execution.jobs import Job
from vlarena.execution.schemas import EpisodeStatus, ExecuteResponse
from vlarena.sim import Episode


def episode_view(episode: Episode) -> ExecuteResponse:
    """The response of an episode."""
    steps = episode.steps
    return ExecuteResponse.model_validate(
        vars(episode)
        | {
            "actions": [step.action for step in steps],
            "states": [vars(step) | {"time": step.time_s} for step in steps],
            "metadata": vars(episode) | {"num_steps": len(steps)},
            "timing": {
                "inference_ms": episode.inference_ms,
                "simulation_ms": max(0.0, episode.duration_ms - episode.inference_ms),
            },
        },
        from_attributes=True,  # `task`: the parsed sim.Task, read as a TaskOut
    )


def job_view(episode_id: str, job: Job) -> EpisodeStatus:
    """Where a background episode stands, with its result or error once it has one."""
    return EpisodeStatus.model_validate(vars(job) | {"episode_id": episode_id})
