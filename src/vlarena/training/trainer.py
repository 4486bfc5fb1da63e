"""The training loop: one stage of one model, resumable, data-parallel under torchrun."""

import atexit
import dataclasses
import json
import math
import os
import pickle
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vlarena.data.dataset import DemoDataset
from vlarena.errors import ConfigError, UnknownNameError
from vlarena.policies.checkpoint import (
    CONFIG_FILE as MODEL_CONFIG_FILE,
)
from vlarena.policies.checkpoint import (
    NORM_STATS_FILE,
    read_metadata,
    read_section,
    read_weights,
    write_checkpoint,
)
from vlarena.policies.config import VLA_CONFIG_JSON, VLAConfig, get_preset
from vlarena.policies.native import NativeVLA, native_policy_types
from vlarena.policies.networks.tokenizer import replace_words, word_id
from vlarena.policies.normalization import NORM_STATS_JSON, NormStats
from vlarena.sim.world import COLORS
from vlarena.training.batches import Batch, BatchSampler, augment
from vlarena.training.config import TrainConfig
from vlarena.training.modules import TrainModule, add_lora, grounding_dims, plain_state_dict
from vlarena.training.plots import plot_losses

CHECKPOINT_DIR = "checkpoint"  # the policy checkpoint (LoRA merged): load_policy reads it
STATE_FILE = "train_state.pt"  # optimizer and step, for --resume (tensors only, weights_only)
CONFIG_FILE = "train_config.json"
LOG_FILE = "log.jsonl"
PLOT_FILE = "loss.png"
RESULT_FILE = "result.json"  # the TrainResult of the last run
CACHE_BATCH = 128  # frames per backbone call when caching features
# Words that word noise never replaces: the colours and the push sides, which tell the cubes and
# the directions apart (the verbs and prepositions that name a task can be replaced).
KEPT_WORD_IDS = torch.tensor([word_id(w) for w in (*COLORS, "left", "right")])


@dataclass(frozen=True)
class TrainResult:
    """What a run did."""

    checkpoint: Path  # the policy checkpoint written last
    steps: int  # optimizer steps done in total (also before a resume)
    first_loss: float  # mean loss of the first logged window of this run
    last_loss: float  # mean loss of the last logged window
    seconds: float  # wall time of this run
    world_size: int  # data-parallel processes
    replica_checksums: list[float]  # a parameter checksum per process: equal when in sync


@dataclass(frozen=True)
class _Dist:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed() -> _Dist:
    """torchrun's environment → a gloo process group (CPU), joined once per process and left at
    exit (re-creating a destroyed group can hang); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist(0, 1)
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        atexit.register(dist.destroy_process_group)
    return _Dist(dist.get_rank(), world)


def train(
    cfg: TrainConfig,
    dataset: Path,
    out: Path,
    *,
    init: Path | None = None,
    resume: bool = False,
    name: str | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train one stage on a dataset; checkpoints, the loss log and its plot go to `out`.

    `stop_at` ends the run after that step with a checkpoint, as an interruption would; the
    schedule stays that of `cfg.steps`, so `resume` later finishes the same run.
    """
    natives = native_policy_types()
    if cfg.family not in natives:
        raise UnknownNameError("native policy type", cfg.family, natives)
    ctx = _distributed()
    data = DemoDataset(dataset)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(cfg.seed)  # LoRA and grounding-head init draw from the global RNG
        # A resumed run keeps its own normalization, a run from a checkpoint that one's.
        kept = out / CHECKPOINT_DIR if resume and (out / CHECKPOINT_DIR).is_dir() else init
        run = _Run(cfg, data, out, ctx, name or f"{cfg.family}-{cfg.preset}", kept)
        return run.run(init, resume, progress, min(stop_at or cfg.steps, cfg.steps))


class _Run:
    def __init__(
        self,
        cfg: TrainConfig,
        data: DemoDataset,
        out: Path,
        ctx: _Dist,
        name: str,
        stats_from: Path | None,
    ) -> None:
        self.cfg, self.data, self.out, self.ctx = cfg, data, out, ctx
        config = get_preset(cfg.preset)
        if config.sensor_window:
            raise ConfigError(f"preset {cfg.preset!r} needs a sensor stream; the dataset has none")
        policy_cls = native_policy_types()[cfg.family]
        stats = data.action_stats(config.chunk_size, config.relative_dims)
        if stats_from is not None:
            stats = _kept_stats(stats_from, cfg.family, config, stats)
        self.policy = policy_cls.create(config, name, norm_stats=stats, seed=cfg.seed)
        self.model: NativeVLA = self.policy.model
        reuse = 1 if cfg.stage == "pretrain" else cfg.vlm_reuse_count
        self.sampler = BatchSampler(
            data, config.backbone, config.chunk_size, reuse, cfg.seed, grounding_dims(cfg), ctx.rank
        )

    def run(self, init: Path | None, resume: bool, progress: bool, last: int) -> TrainResult:
        cfg, ctx, model = self.cfg, self.ctx, self.model
        if init is not None:
            _load_init(model, init, cfg.family)
        model.train()
        if cfg.stage == "pretrain":
            model.head.requires_grad_(False)
        elif cfg.stage == "expert":
            model.backbone.requires_grad_(False)
        elif cfg.stage == "lora":
            add_lora(model, cfg.lora_rank, cfg.lora_alpha)
        module = TrainModule(model, cfg)
        if init is not None and module.grounding is not None:
            _carry_grounding(module, init)
        optimizer = torch.optim.AdamW(self._param_groups(module), weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        start = self._restore(module, optimizer, schedule) if resume else 0
        if ctx.main:
            self._write_config(fresh=start == 0)
        cache = self._cache_features() if cfg.stage == "expert" and start < last else None
        wrapped = DistributedDataParallel(module) if ctx.world > 1 else module
        started, window, logged = time.perf_counter(), [], []
        bar = tqdm(
            range(start, last),
            initial=start,
            total=cfg.steps,
            disable=not (progress and ctx.main),
            desc=f"{cfg.family} {cfg.stage}",
            dynamic_ncols=True,
        )
        for step in bar:
            batch = self._batch(step)
            cached = (
                None
                if cache is None
                else (cache[0][batch.anchors].float(), cache[1][batch.anchors])
            )
            loss = wrapped(batch, cached)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            window.append(float(loss.detach()))
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                mean = _mean_across(window, ctx)
                logged.append(mean)
                window = []
                bar.set_postfix(loss=f"{mean:.4f}")
                if ctx.main:
                    self._log(done, mean, float(schedule.get_last_lr()[0]))
            if done % cfg.checkpoint_every == 0 or done == last:
                self._save(module, optimizer, schedule, done)
        result = TrainResult(
            checkpoint=self.out / CHECKPOINT_DIR,
            steps=last,
            first_loss=logged[0] if logged else math.nan,
            last_loss=logged[-1] if logged else math.nan,
            seconds=time.perf_counter() - started,
            world_size=ctx.world,
            replica_checksums=_checksums(module, ctx),
        )
        if ctx.main:
            plot_losses(self.out / LOG_FILE, self.out / PLOT_FILE, f"{cfg.family} {cfg.stage}")
            summary = {**dataclasses.asdict(result), "checkpoint": str(result.checkpoint)}
            (self.out / RESULT_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return result

    def _batch(self, step: int) -> Batch:
        cfg = self.cfg
        batch = self.sampler.draw(step, cfg.batch_size)
        # Noise, flow times and augmentation: a function of (seed, rank, step), like the data,
        # so a resumed run continues exactly where the interrupted one would have gone.
        seed = int(self.sampler.rng(step).integers(2**62))
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + 1)
        if cfg.augment and cfg.stage != "expert":
            batch = dataclasses.replace(batch, images=augment(batch.images, gen))
        if cfg.word_noise:
            ids = replace_words(batch.text_ids, cfg.word_noise, KEPT_WORD_IDS, gen)
            batch = dataclasses.replace(batch, text_ids=ids)
        return batch

    def _param_groups(self, module: TrainModule) -> list[dict[str, object]]:
        cfg = self.cfg
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        adapters = [p for n, p in trainable if "lora_" in n]
        rest = [p for n, p in trainable if "lora_" not in n]
        groups: list[dict[str, object]] = [{"params": rest, "lr": cfg.lr}]
        if adapters:
            groups.append({"params": adapters, "lr": cfg.backbone_lr})
        return groups

    def _lr_factor(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _cache_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: the frozen backbone's features of every frame, computed once (float16)."""
        n = len(self.data)
        self.model.backbone.eval()
        tokens = pads = torch.empty(0)
        computed = frame_features(self.model, self.sampler, np.arange(n))
        for frames, feats, pad in tqdm(
            computed,
            total=math.ceil(n / CACHE_BATCH),
            desc="caching features",
            disable=not self.ctx.main,
            dynamic_ncols=True,
        ):
            if frames[0] == 0:  # allocated once: no second copy at the end
                tokens = torch.empty((n, *feats.shape[1:]), dtype=torch.float16)
                pads = torch.empty((n, pad.shape[1]), dtype=torch.bool)
            tokens[frames] = feats.half()
            pads[frames] = pad
        return tokens, pads

    def _restore(
        self,
        module: TrainModule,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LambdaLR,
    ) -> int:
        path = self.out / STATE_FILE
        if not path.exists():
            return 0
        try:
            saved = json.loads((self.out / CONFIG_FILE).read_text(encoding="utf-8"))
            state = torch.load(path, weights_only=True)  # tensors and numbers only: no code
        except (OSError, ValueError, pickle.UnpicklingError) as exc:
            raise ConfigError(f"cannot resume from {self.out}: {exc}") from None
        defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
        saved = {**defaults, **saved}  # a field added since that run took its default then
        if saved != json.loads(json.dumps(dataclasses.asdict(self.cfg))):
            raise ConfigError(
                f"{self.out} was trained with another config; resume needs the "
                f"same one ({CONFIG_FILE})"
            )
        try:
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot resume from {path}: {exc}") from None
        return int(state["step"])

    def _write_config(self, fresh: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if fresh:  # a new run (or nothing to resume): no stale log lines
            (self.out / LOG_FILE).unlink(missing_ok=True)
        text = json.dumps(dataclasses.asdict(self.cfg), indent=1)
        (self.out / CONFIG_FILE).write_text(text, encoding="utf-8")

    def _log(self, step: int, loss: float, lr: float) -> None:
        with (self.out / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "loss": loss, "lr": lr}) + "\n")

    def _save(
        self,
        module: TrainModule,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LambdaLR,
        step: int,
    ) -> None:
        if self.ctx.main:
            policy, cfg = self.policy, self.cfg
            meta = dataclasses.replace(
                policy.meta,
                description=(
                    f"{cfg.stage} stage, {step} steps on {self.data.path.name} "
                    f"({len(self.data.meta.episodes)} episodes)"
                ),
            )
            tmp = self.out / f"{CHECKPOINT_DIR}.tmp"
            write_checkpoint(
                tmp,
                meta,
                VLA_CONFIG_JSON.dumps(policy.config),
                NORM_STATS_JSON.dumps(policy.norm_stats),
                plain_state_dict(self.model),
            )
            shutil.rmtree(self.out / CHECKPOINT_DIR, ignore_errors=True)
            tmp.rename(self.out / CHECKPOINT_DIR)
            state = {
                "step": step,
                "module": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
            }
            torch.save(state, self.out / f"{STATE_FILE}.tmp")
            (self.out / f"{STATE_FILE}.tmp").replace(self.out / STATE_FILE)
        if self.ctx.world > 1:
            dist.barrier()


def frame_features(
    model: NativeVLA, sampler: BatchSampler, frames: np.ndarray
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The backbone's features of `frames`, CACHE_BATCH at a time and without gradients: the
    frame indices (as a tensor), their tokens and their padding mask."""
    for start in range(0, len(frames), CACHE_BATCH):
        chunk = frames[start : start + CACHE_BATCH]
        batch = sampler.make(chunk, np.zeros((len(chunk), sampler.reuse), np.int64))
        with torch.no_grad():
            feats, pad = model.features(batch.images, batch.text_ids, batch.text_pad)
        yield torch.as_tensor(chunk), feats, pad


def _load_init(model: NativeVLA, path: Path, family: str) -> None:
    """Start from a checkpoint: every tensor whose name and shape match. The backbone must fit,
    and so must the whole head when the checkpoint holds the same family (a head of another
    layout, such as one decoded step by step for one decoded in parallel, would half load)."""
    weights = read_weights(path)
    own = model.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    fitted = ("backbone.", "head.") if read_metadata(path).policy_type == family else ("backbone.",)
    unfit = [k for k in {*own, *weights} if k.startswith(fitted) and k not in matched]
    if unfit:
        raise ConfigError(
            f"{path} does not fit this model (missing, extra or reshaped: {sorted(unfit)[:3]}...)"
        )
    model.load_state_dict(matched, strict=False)


def _kept_stats(checkpoint: Path, family: str, config: VLAConfig, fitted: NormStats) -> NormStats:
    """The checkpoint's normalization when it holds a model of the same family and action layout:
    its weights were trained in those units, and fine-tuning on more data (recovery episodes)
    must not shift them. Otherwise (a new head on a borrowed trunk) the dataset's, `fitted`."""
    theirs = read_section(checkpoint, MODEL_CONFIG_FILE, VLA_CONFIG_JSON)
    layout = ("action_dim", "chunk_size", "state_dim", "sensor_dim", "action_space")
    same = read_metadata(checkpoint).policy_type == family and all(
        getattr(theirs, f) == getattr(config, f) for f in layout
    )
    return read_section(checkpoint, NORM_STATS_FILE, NORM_STATS_JSON) if same else fitted


def _carry_grounding(module: TrainModule, init: Path) -> None:
    """Continue with the grounding head of the run that wrote `init`, when its training state
    holds one (pretrain → full): a fresh head's first errors would flow into a trained trunk.
    Tensors of another shape (its output, when the run learns more targets) start fresh."""
    state_path = init.parent / STATE_FILE
    if not state_path.is_file():
        return
    try:
        saved = torch.load(state_path, weights_only=True)["module"]
    except (OSError, KeyError, pickle.UnpicklingError, RuntimeError):
        return  # no usable state: the head starts fresh
    prefix = "grounding."
    head = {k.removeprefix(prefix): v for k, v in saved.items() if k.startswith(prefix)}
    assert module.grounding is not None
    own = module.grounding.state_dict()
    kept = {k: v for k, v in head.items() if k in own and own[k].shape == v.shape}
    module.grounding.load_state_dict({**own, **kept})


def _mean_across(values: list[float], ctx: _Dist) -> float:
    mean = torch.tensor(sum(values) / max(1, len(values)))
    if ctx.world > 1:
        dist.all_reduce(mean)
        mean /= ctx.world
    return float(mean)


def _checksums(module: torch.nn.Module, ctx: _Dist) -> list[float]:
    total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum()
    if ctx.world == 1:
        return [float(total)]
    gathered = [torch.zeros_like(total) for _ in range(ctx.world)]
    dist.all_gather(gathered, total)
    return [float(t) for t in gathered]
