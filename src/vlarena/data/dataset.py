"""The demonstration dataset on disk: one .npy array per field, memory-mapped when read.

Layout of a dataset directory (no pickle anywhere; `np.load(..., allow_pickle=False)`):

    meta.json            format version, cameras, image size, control rate, the episode table
                         (task, instruction, scene, seed, first frame, length), dropped counts
    norm_stats.json      NormStats of states and actions (the checkpoint format)
    images.<camera>.npy  (N, S, S, 3) uint8, the observation before each action
    state.npy            (N, 18) float32, joint positions then velocities
    action.npy           (N, 8) float32, the expert's action (7 joint targets, gripper)
    target.npy           (N, 11) float32, grounding targets: GROUNDING_DIM then PLACE_DIM
                         (datasets written before the place targets: GROUNDING_DIM only)
    episode.npy          (N,) int32, the episode each frame belongs to

Frames of an episode are contiguous and in time order.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from vlarena.errors import ConfigError, describe_validation
from vlarena.policies.normalization import NORM_STATS_JSON, NormStats
from vlarena.sim.world import CONTROL_HZ

FORMAT = "vlarena-demos"
VERSION = 1
META_FILE = "meta.json"
NORM_FILE = "norm_stats.json"
FIELDS = ("state", "action", "target", "episode")
GROUNDING_DIM = 8  # grounding targets: the named cube's xyz, sin/cos of 4·yaw, the grip's xyz...
PLACE_DIM = 3  # ...then where the task places the cube, xyz (datagen.grounding_target)


@dataclass
class EpisodeRecord:
    """One demonstration in memory, as a rollout worker returns it."""

    task: str
    instruction: str
    scene_id: str
    seed: int
    images: dict[str, NDArray[np.uint8]]  # camera → (T, S, S, 3)
    states: NDArray[np.float32]  # (T, 18)
    actions: NDArray[np.float32]  # (T, 8)
    targets: NDArray[np.float32]  # (T, GROUNDING_DIM + PLACE_DIM), or older: GROUNDING_DIM
    takeover: int = 0  # recovery data: policy steps before the expert took over (0: a demo)


class EpisodeMeta(BaseModel):
    """A row of the episode table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str
    instruction: str
    scene_id: str
    seed: int
    start: int  # first frame
    length: int  # frames
    takeover: int = 0  # recovery data: policy steps before the expert took over (0: a demo)


class DatasetMeta(BaseModel):
    """meta.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["vlarena-demos"]
    version: Literal[1]
    cameras: tuple[str, ...]
    image_size: int
    control_hz: float
    frames: int
    episodes: list[EpisodeMeta]
    dropped: dict[str, int]  # failed expert episodes per task, not in the dataset
    datagen: dict[str, object]  # the generator's config


def write_dataset(
    out: Path,
    records: list[EpisodeRecord],
    image_size: int,
    cameras: tuple[str, ...],
    datagen: dict[str, object],
    dropped: dict[str, int],
) -> None:
    """Write episodes as a dataset directory (fields are streamed, never concatenated)."""
    if not records:
        raise ConfigError("no episodes to write")
    widths = {(r.states.shape[1], r.actions.shape[1], r.targets.shape[1]) for r in records}
    if len(widths) > 1:
        raise ConfigError(f"episodes of different layouts (state, action, target widths): {widths}")
    out.mkdir(parents=True, exist_ok=True)
    total = sum(len(r.actions) for r in records)
    episodes, start = [], 0
    for r in records:
        episodes.append(
            EpisodeMeta(
                task=r.task,
                instruction=r.instruction,
                scene_id=r.scene_id,
                seed=r.seed,
                start=start,
                length=len(r.actions),
                takeover=r.takeover,
            )
        )
        start += len(r.actions)
    columns: dict[str, tuple[tuple[int, ...], type]] = {
        **{f"images.{c}": ((image_size, image_size, 3), np.uint8) for c in cameras},
        "state": ((records[0].states.shape[1],), np.float32),
        "action": ((records[0].actions.shape[1],), np.float32),
        "target": ((records[0].targets.shape[1],), np.float32),
        "episode": ((), np.int32),
    }
    for name, (shape, dtype) in columns.items():
        array = np.lib.format.open_memmap(out / f"{name}.npy", "w+", dtype, (total, *shape))
        for i, (r, ep) in enumerate(zip(records, episodes, strict=True)):
            rows = slice(ep.start, ep.start + ep.length)
            if name == "episode":
                array[rows] = i
            elif name.startswith("images."):
                array[rows] = r.images[name.removeprefix("images.")]
            else:
                array[rows] = {"state": r.states, "action": r.actions, "target": r.targets}[name]
        array.flush()
        del array
    stats = NormStats.from_data(
        np.concatenate([r.states for r in records]), np.concatenate([r.actions for r in records])
    )
    (out / NORM_FILE).write_bytes(NORM_STATS_JSON.dumps(stats))
    meta = DatasetMeta(
        format=FORMAT,
        version=VERSION,
        cameras=cameras,
        image_size=image_size,
        control_hz=CONTROL_HZ,
        frames=total,
        episodes=episodes,
        dropped=dropped,
        datagen=datagen,
    )
    (out / META_FILE).write_text(meta.model_dump_json(indent=1), encoding="utf-8")


class DemoDataset:
    """A dataset directory, memory-mapped: indexing reads only the frames asked for."""

    def __init__(self, path: Path) -> None:
        try:
            self.meta = DatasetMeta.model_validate_json((path / META_FILE).read_bytes())
            self.norm_stats = NORM_STATS_JSON.loads((path / NORM_FILE).read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path} is not a dataset: {exc.filename} is missing") from None
        except ValidationError as exc:
            raise ConfigError(f"{path / META_FILE}: {describe_validation(exc)}") from None
        self.path = path
        arrays = {name: self._load(name) for name in FIELDS}
        self.images = {c: self._load(f"images.{c}") for c in self.meta.cameras}
        self.state, self.action = arrays["state"], arrays["action"]
        self.target, self.episode = arrays["target"], arrays["episode"]
        ends = np.array([e.start + e.length for e in self.meta.episodes], dtype=np.int64)
        self.episode_end = ends[
            np.asarray(self.episode)
        ]  # (N,) exclusive end of each frame's episode

    def _load(self, name: str) -> NDArray[np.generic]:
        try:
            array = np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read {name}.npy ({exc})") from None
        if len(array) != self.meta.frames:
            raise ConfigError(
                f"{self.path}: {name}.npy has {len(array)} rows, not {self.meta.frames}"
            )
        return array

    def __len__(self) -> int:
        return self.meta.frames

    def records(self) -> Iterator[EpisodeRecord]:
        """Each episode as a record whose arrays are views of the memory-mapped files."""
        for e in self.meta.episodes:
            rows = slice(e.start, e.start + e.length)
            yield EpisodeRecord(
                task=e.task,
                instruction=e.instruction,
                scene_id=e.scene_id,
                seed=e.seed,
                images={c: np.asarray(self.images[c][rows], np.uint8) for c in self.meta.cameras},
                states=np.asarray(self.state[rows], np.float32),  # views: no copy of the same dtype
                actions=np.asarray(self.action[rows], np.float32),
                targets=np.asarray(self.target[rows], np.float32),
                takeover=e.takeover,
            )

    def action_chunks(self, frames: NDArray[np.int64], chunk: int) -> NDArray[np.float32]:
        """(B, chunk, D) actions from each frame on; past the episode's end its last one repeats."""
        steps = frames[:, None] + np.arange(chunk)[None]
        steps = np.minimum(steps, self.episode_end[frames][:, None] - 1)
        return np.asarray(self.action[steps.ravel()]).reshape(len(frames), chunk, -1)

    def action_stats(self, chunk: int, relative_dims: int) -> NormStats:
        """The dataset's stats, the action ones fitted per chunk step and dimension to the chunks
        a model of `chunk` actions predicts, whose first `relative_dims` values are relative to
        the joint positions (a delta grows with its step: each step gets its own scale)."""
        if not relative_dims:
            return self.norm_stats
        frames = np.arange(len(self), dtype=np.int64)
        chunks = self.action_chunks(frames, chunk).copy()
        chunks[..., :relative_dims] -= np.asarray(self.state)[:, None, :relative_dims]
        return NormStats.from_data(self.state, chunks.reshape(len(frames), -1))

    def later_frames(
        self, frames: NDArray[np.int64], offsets: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Frames `offsets` steps after `frames`, stopping at each episode's last frame."""
        return np.minimum(frames + offsets, self.episode_end[frames] - 1)
