"""The lab's one training loop: single-task, multi-task and sequential training.

A run is ``train(ModelConfig, TrainConfig, out_dir)``. It

1. loads and tokenizes the train/dev splits of the chosen tasks (once per process),
2. plans each epoch as a list of steps, a step being one task batch (or several, see below),
   drawn by a task sampler: ``proportional`` (every training batch once per epoch, in shuffled
   order), ``round_robin`` (tasks in turn), ``sqrt`` (p_k ~ sqrt(n_k)) or ``annealed``
   (Stickland & Murray, 2019: p_k ~ n_k ** alpha, alpha from 1 down to 0.2 over the epochs),
3. trains with the hand-written AdamW, linear warm-up + linear decay, gradient clipping,
   optional layer-wise LR decay, and autocast (precision "auto": bf16 on a CPU with native bf16 where
   a timed training step is faster in it, else fp32; bf16/fp16 + GradScaler on CUDA),
4. evaluates on dev after each epoch, keeps the best epoch by the overall score (``best.pt``;
   with ``ema`` > 0 both use a moving average of the weights, ``mtl_lab.training.ema``),
5. checkpoints atomically (``checkpoint.pt``) every ``checkpoint_every`` steps and at each epoch
   end; a run started again in the same folder resumes from there and ends where an
   uninterrupted run would have ended (the epoch plans are functions of seed and epoch, and the
   RNG state is saved), and a finished run is returned from its ``results.json`` untouched,
6. writes ``results.json``: configs, per-epoch metrics, wall time, examples/s.

``sequential=True`` trains the tasks one after another in the order of ``tasks`` (each with its
own warm-up/decay schedule) and evaluates every task after each epoch, which shows forgetting.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mtl_lab.checkpoint import atomic_save, safe_load
from mtl_lab.data import (
    SPLITS,
    TASK_NAMES,
    DataError,
    EncodedTask,
    collate,
    data_fingerprint,
    encode,
    file_fingerprint,
    fingerprint_changes,
    load_split,
    resolve_data_dir,
    subsample,
    task_file,
)
from mtl_lab.data import bucket_batches as _bucket_batches
from mtl_lab.evaluate import autocast_context, eval_batch_size, evaluate, precision_choice, resolve_device
from mtl_lab.models.backbone import backbone_path, load_tokenizer
from mtl_lab.models.fast.dropout import dropout_kind, use_fast_dropout
from mtl_lab.models.model import ModelConfig, MultitaskModel, checkpoint_path
from mtl_lab.records import write_epoch
from mtl_lab.training.ema import WeightAverage
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.pcgrad import AGGREGATORS, TaskGradients, cosine_matrix
from mtl_lab.training.rdrop import rdrop_terms
from mtl_lab.training.simcse import (
    MODES,
    EncodedPairs,
    collate_pairs,
    contrastive_loss,
    embedding_metrics,
    encode_pairs,
    mine_pairs,
)

SAMPLERS = ("proportional", "round_robin", "sqrt", "annealed", "uniform")


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a run folder holding another configuration, ...)."""


class StaleDataError(TrainingError):
    """A run folder holds a run trained on data files that have changed since."""


@dataclass
class TrainConfig:
    """How to train: tasks, schedule, sampler, precision, subsets, seeds."""

    tasks: tuple[str, ...] = field(default_factory=lambda: TASK_NAMES)
    epochs: int = 3
    batch_size: int = 32
    # None: the device's default (evaluate.eval_batch_size: 32 on a CPU, 128 on a GPU). How fast dev
    # scoring runs, not what is trained: two runs differing only here are the same run (RUN_TIME_FIELDS).
    eval_batch_size: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    sampler: str = "proportional"
    sequential: bool = False
    max_length: int = 128
    train_limit: int | None = None
    train_fraction: float | None = None
    dev_limit: int | None = None
    precision: str = "auto"
    grad_clip: float | None = 1.0
    layer_decay: float = 1.0
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200
    task_draws: int = 1
    aggregation: str = "sum"
    reduction: str = "mean"
    monitor_every: int = 0
    pretrain: str | None = None
    temperature: float = 0.05
    # The word-embedding matrix is half of MiniLM's weights, yet a batch reads a few hundred of its
    # 30,522 rows: trained, it costs a dense gradient and a dense AdamW update of 11.7M values a
    # step (about a third of a CPU step) for rows that barely move. Frozen by default.
    freeze_word_embeddings: bool = True
    # Freeze the lowest k transformer layers and every embedding beneath them: backward then stops above them
    # (less work a step, a small accuracy cost: docs/performance.md). 0 = every layer trains.
    freeze_layers: int = 0
    # R-Drop (``mtl_lab.training.rdrop``): > 0 runs each labelled batch twice and adds this weight times the two
    # passes' disagreement to the loss (a second forward and backward pass a step); 0 = off. The lab's weight w is
    # the paper's alpha = 2 w (the paper sums the two passes' losses where the lab averages them). The run records
    # the task loss alone as train_loss and the disagreement under rdrop_consistency.
    rdrop: float = 0.0
    # Weight averaging (``mtl_lab.training.ema``): > 0 keeps an exponential moving average of the weights with this
    # decay (e.g. 0.999) and scores dev / saves best.pt with it; 0 = off.
    ema: float = 0.0

    def __post_init__(self):
        if self.pretrain is not None:  # contrastive pre-training: the one pseudo-task "simcse"
            if self.pretrain not in MODES:
                raise ValueError(f"pretrain must be one of {MODES}, got {self.pretrain!r}")
            if self.monitor_every:
                raise ValueError("monitor_every compares the gradients of several tasks; pre-training has one (use 0)")
            self.tasks = ("simcse",)
        self.tasks = tuple(self.tasks)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
        if self.aggregation not in AGGREGATORS:
            raise ValueError(f"aggregation must be one of {tuple(AGGREGATORS)}, got {self.aggregation!r}")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.task_draws < 1:
            raise ValueError(f"task_draws must be >= 1, got {self.task_draws}")
        if self.freeze_layers < 0:
            raise ValueError(
                f"freeze_layers counts the lowest transformer layers kept fixed: >= 0, got {self.freeze_layers}"
            )
        if self.rdrop < 0:
            raise ValueError(f"rdrop weighs a consistency term and must be >= 0, got {self.rdrop}")
        if self.ema and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema is the weight average's decay: 0 (off) or strictly between 0 and 1, got {self.ema}")
        if self.rdrop and self.pretrain is not None:
            raise ValueError(
                "rdrop regularises the labelled tasks; contrastive pre-training already pairs dropout views"
            )
        self._refuse_no_ops()

    def _refuse_no_ops(self) -> None:
        """Options that would silently do nothing in this combination are refused, saying what to use."""
        several = len(self.tasks) > 1 and not self.sequential  # steps that can hold more than one task
        if self.aggregation != "sum" and not several:
            raise ValueError(
                f"aggregation {self.aggregation!r} combines the gradients of several tasks in a step, but "
                + ("sequential training has one task a step" if self.sequential else "only one task is trained")
                + ": use aggregation 'sum'"
            )
        if self.aggregation != "sum" and self.task_draws == 1:
            raise ValueError(
                f"aggregation {self.aggregation!r} needs several task batches per step, but task_draws is 1 "
                "(one task gradient: nothing to combine). Use --pcgrad (the paper's sampling: 3 task batches of 4 "
                "a step, tasks drawn uniformly) or --task-draws 3"
            )
        if self.reduction != "mean" and not (several and self.task_draws > 1):
            raise ValueError(
                "reduction 'sum' differs from 'mean' only when a step holds several tasks' losses (task_draws > 1)"
            )
        if self.monitor_every and not several:
            raise ValueError(
                "monitor_every compares the gradients of several tasks; this run trains one at a time (use 0)"
            )
        if self.sequential and self.sampler != "proportional":
            raise ValueError(
                f"sampler {self.sampler!r} chooses between tasks, but sequential training has one task per stage"
            )
        if self.sampler == "annealed" and self.epochs < 2:
            raise ValueError("the annealed sampler anneals over epochs: with 1 epoch it is the proportional sampler")

    def to_dict(self) -> dict:
        """Plain-dict form (for results.json and checkpoints)."""
        return asdict(self)


PROFILES: dict[str, dict] = {
    # seconds per run on 2 CPU cores; what nbval runs in CI
    "smoke": dict(
        epochs=2,
        batch_size=8,
        lr=2e-4,
        max_length=32,
        train_limit=96,
        dev_limit=100,
        precision="fp32",
        checkpoint_every=0,
        # batch 8: with 96 examples a task, 16 left too few steps to learn STS at all (r -0.08; the tests check > 0.2)
        # at this size freezing them saves nothing measurable, and training them keeps the committed notebook outputs
        freeze_word_embeddings=False,
    ),
    # all local data; bf16 autocast where the CPU has native bf16 and a timed step is faster in it, else fp32 ("auto")
    "cpu": dict(epochs=3, batch_size=32, lr=5e-5, max_length=128, precision="auto"),
    # the paper's settings
    "gpu": dict(epochs=3, batch_size=16, lr=1e-5, max_length=128, precision="auto", checkpoint_every=1000),
}


def require_device(profile: str, device: str = "auto") -> None:
    """The gpu profile needs CUDA: refused without one, unless the device is named explicitly (e.g. ``cpu``)."""
    if profile == "gpu" and (device or "auto") == "auto" and resolve_device("auto").type != "cuda":
        raise TrainingError(
            "--profile gpu needs a CUDA GPU and none was found: use --profile cpu, or pass --device cpu to run "
            "the gpu profile's settings (batch 16, lr 1e-5) on the CPU anyway"
        )


def profile_config(profile: str, **overrides) -> TrainConfig:
    """A TrainConfig from a profile name (smoke / cpu / gpu) plus explicit overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return TrainConfig(**{**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}})


# ----------------------------------------------------------------------------- data


_ENCODED: dict[tuple, EncodedTask] = {}


def load_encoded(
    task: str,
    split: str,
    tokenizer,
    max_length: int,
    limit: int | None,
    seed: int,
    data_dir=None,
    fraction: float | None = None,
) -> EncodedTask:
    """Read, subsample (at most ``limit`` rows, or a ``fraction`` of them) and tokenize one split.

    Memoised per process, so the runs of a notebook or sweep tokenize each split once.
    """
    key = (str(resolve_data_dir(data_dir)), task, split, tokenizer.name_or_path, max_length, limit, fraction, seed)
    if key not in _ENCODED:
        df = load_split(task, split, data_dir)
        if fraction is not None:
            limit = min(limit or len(df), max(1, round(fraction * len(df))))
        _ENCODED[key] = encode(subsample(df, limit, seed), task, tokenizer, max_length)
    return _ENCODED[key]


def load_task_data(cfg: TrainConfig, tokenizer, data_dir=None) -> tuple[dict, dict]:
    """Encoded train and dev splits of the configured tasks (subsets fixed by seed 0, not the run seed).

    Contrastive pre-training (``cfg.pretrain``) trains on the pairs mined from the training
    splits and is scored on STS dev by the cosine of the sentence embeddings.
    """
    if cfg.pretrain is not None:
        pairs = mine_pairs(cfg.pretrain, data_dir)
        if cfg.train_fraction is not None or cfg.train_limit is not None:
            n = len(pairs) if cfg.train_fraction is None else max(1, round(cfg.train_fraction * len(pairs)))
            pairs = subsample(pairs, min(n, cfg.train_limit or n), 0)
        dev = {"sts": load_encoded("sts", "dev", tokenizer, cfg.max_length, cfg.dev_limit, 0, data_dir)}
        return {"simcse": encode_pairs(pairs, tokenizer, cfg.max_length)}, dev
    train = {
        t: load_encoded(t, "train", tokenizer, cfg.max_length, cfg.train_limit, 0, data_dir, cfg.train_fraction)
        for t in cfg.tasks
    }
    dev = {t: load_encoded(t, "dev", tokenizer, cfg.max_length, cfg.dev_limit, 0, data_dir) for t in cfg.tasks}
    return train, dev


# ----------------------------------------------------------------------------- sampling


def task_probabilities(sampler: str, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
    """Probability of drawing each task for a step under a sampler (epoch counts from 0)."""
    n = np.array([sizes[t] for t in sizes], dtype=float)
    if sampler in ("round_robin", "uniform"):
        p = np.ones_like(n)
    elif sampler == "proportional":
        p = n
    elif sampler == "sqrt":
        p = np.sqrt(n)
    elif sampler == "annealed":
        alpha = 1.0 - 0.8 * (epoch / (epochs - 1) if epochs > 1 else 0.0)
        p = n**alpha
    else:
        raise ValueError(f"unknown sampler {sampler!r}")
    return dict(zip(sizes, p / p.sum()))


def epoch_plan(
    train: dict[str, EncodedTask],
    tasks: tuple[str, ...],
    sampler: str,
    batch_size: int,
    seed: int,
    epoch: int,
    epochs: int,
    draws: int = 1,
) -> list[tuple[tuple[str, np.ndarray], ...]]:
    """The steps of one epoch: each a tuple of ``draws`` (task, example indices) batches, fixed by seed and epoch.

    An epoch holds as many batches as the tasks have together. ``proportional`` takes every batch
    exactly once, in shuffled order; the other samplers draw the task of each batch (``uniform``
    at random with equal probabilities, ``round_robin`` in turn) and cycle through that task's
    re-shuffled batches, so small tasks may repeat and large ones may not finish. With
    ``draws > 1`` consecutive batches form one step (PCGrad's small per-task batches).
    """
    rng = np.random.default_rng([seed, epoch])
    pools = {t: _bucket_batches(train[t].lengths, batch_size, rng) for t in tasks}
    n_batches = sum(len(b) for b in pools.values())
    if sampler == "proportional":
        order = np.concatenate([[i] * len(pools[t]) for i, t in enumerate(tasks)])
        rng.shuffle(order)
    elif sampler == "round_robin":
        order = np.arange(n_batches) % len(tasks)
    else:
        probs = task_probabilities(sampler, {t: len(train[t]) for t in tasks}, epoch, epochs)
        order = rng.choice(len(tasks), size=n_batches, p=[probs[t] for t in tasks])
    cursor = dict.fromkeys(tasks, 0)
    batches = []
    for i in order:
        t = tasks[i]
        if cursor[t] == len(pools[t]):  # exhausted: a fresh shuffle of this task
            pools[t], cursor[t] = _bucket_batches(train[t].lengths, batch_size, rng), 0
        batches.append((t, pools[t][cursor[t]]))
        cursor[t] += 1
    return [tuple(batches[i : i + draws]) for i in range(0, len(batches), draws)]


def lr_multiplier(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then linear decay to zero."""
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


# ----------------------------------------------------------------------------- helpers


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo, else the platform), recorded with every run's timings."""
    from mtl_lab.evaluate import cpuinfo_field

    return cpuinfo_field(("model name",)) or platform.processor() or platform.machine()


def block_means(values: list[float], points: int = 25) -> list[float]:
    """A per-step loss series shortened to at most ``points`` means of consecutive blocks (learning curves)."""
    blocks = np.array_split(np.asarray(values, dtype=float), min(points, len(values)))
    return [round(float(b.mean()), 5) for b in blocks]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_write_json(obj, path: Path) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# Fields whose default changed what training does when they were added: a run stored before them
# trained with the value given here, not with today's default.
ADDED_FIELDS = {"train": {"freeze_word_embeddings": False}}
# Fields that set how fast a run is scored, not what it trains: a stored run differing only here is the same run.
RUN_TIME_FIELDS = {"train": ("eval_batch_size",)}


def stored_setting(config: dict, section: str, key: str):
    """A setting of a stored run config (results.json's ``config``): what the run trained with, also for a run
    stored before the field existed (``ADDED_FIELDS``, else today's default)."""
    return {**_stored_defaults(section), **config.get(section, {})}.get(key)


def _stored_defaults(section: str) -> dict:
    """What a stored run config's missing fields mean: today's defaults, except ``ADDED_FIELDS``."""
    defaults = {"model": ModelConfig, "train": TrainConfig}[section]().to_dict()
    return {**defaults, **ADDED_FIELDS.get(section, {})}


def config_diff(stored: dict, config: dict) -> list[str]:
    """Fields where a stored run config differs from ``config`` (empty when they match).

    Fields added to the dataclasses since the run was stored count as their defaults (or, for
    ``ADDED_FIELDS``, as what training did before them), so new options do not invalidate finished runs;
    ``RUN_TIME_FIELDS`` are not compared.
    """
    defaults = {section: _stored_defaults(section) for section in ("model", "train")}
    norm = lambda d: json.loads(json.dumps(d))  # noqa: E731 -- tuples and lists compare equal
    diff = []
    for section, fields_ in defaults.items():
        old, new = (norm({**fields_, **c.get(section, {})}) for c in (stored, config))  # either may be stored
        diff += [
            f"{section}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k not in RUN_TIME_FIELDS.get(section, ())
        ]
    return diff


def _check_same(where: Path, stored: dict, config: dict) -> None:
    diff = config_diff(stored, config)
    if diff:
        raise TrainingError(
            f"{where} holds a run with a different configuration ({'; '.join(diff)}): "
            "choose another run folder (--out), or start over (--no-resume / resume=False)"
        )


def data_files(cfg: TrainConfig) -> list[str]:
    """The data files a run reads: its tasks' train and dev files; pre-training reads what pair mining reads."""
    if cfg.pretrain is None:
        return [task_file(t, split) for t in cfg.tasks for split in ("train", "dev")]
    files = [task_file(t, split) for t in TASK_NAMES for split in SPLITS]
    return files + (["SICK.txt"] if cfg.pretrain == "nli" else [])


def check_data(where: Path, stored: dict, fingerprint: dict) -> None:
    """Refuse a stored run whose data files differ from today's (runs stored before fingerprints pass)."""
    if "data" not in stored:
        return
    changes = fingerprint_changes(stored["data"], fingerprint)
    if changes:
        raise StaleDataError(
            f"{where} was trained on other data: {'; '.join(changes)}. Its results do not describe today's "
            "files: train into another run folder (--out), or start over here (--no-resume / resume=False)"
        )


def stale_data(results: dict, data_dir=None) -> list[str]:
    """How the data files have changed since a stored run read them (empty: same data, or no fingerprint)."""
    stored = results.get("config", {})
    if "data" not in stored:
        return []
    try:
        current = data_fingerprint(list(stored["data"]), data_dir)  # the files it read, as they are today
    except DataError as exc:
        return [str(exc)]
    return fingerprint_changes(stored["data"], current)


def load_results(out_dir: str | os.PathLike) -> dict | None:
    """The results.json of a run folder, or None."""
    path = Path(out_dir) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


INIT_RECORD_FIELDS = ("config", "best", "wall_time_s", "environment", "precision")


def init_summary(init: str | os.PathLike, theirs: dict) -> dict:
    """A pre-training run as the runs that start from it record it: its name, configuration, score, minutes, CPU."""
    return {"run": str(init), **{k: theirs[k] for k in INIT_RECORD_FIELDS if k in theirs}}


def init_run_record(init: str | os.PathLike) -> dict:
    """What a run starts from, recorded as it starts: :func:`init_summary` of the pre-training run and the
    sha256 (first 16 hex digits) of the ``best.pt`` it loads."""
    path = checkpoint_path(init, "no pre-trained checkpoint (run the pre-training first)")
    return {**init_summary(init, load_results(path.parent) or {}), "best_pt_sha256": file_fingerprint(path)["sha256"]}


def supervised_loss(
    model,
    task: str,
    enc: EncodedTask,
    idx: np.ndarray,
    device: torch.device,
    rdrop: float = 0.0,
    terms: dict | None = None,
    **_,
) -> torch.Tensor:
    """A labelled task's loss on rows ``idx``: the model's head for the task and the task's loss
    (with ``rdrop`` > 0, the R-Drop loss of the rows passed twice: ``mtl_lab.training.rdrop``; ``terms``, if given,
    then receives its parts, detached: ``loss``, the task loss alone, and ``rdrop_consistency``)."""
    rows = np.concatenate([idx, idx]) if rdrop else idx  # R-Drop passes every row twice
    batch = _to_device(collate(enc, rows, model.views(task)), device)
    if rdrop:
        task_loss, agreement = rdrop_terms(model, task, batch)
        if terms is not None:
            terms.update(loss=task_loss.detach(), rdrop_consistency=agreement.detach())
        return task_loss + rdrop * agreement
    return model.loss(task, model(batch), batch["labels"])


def pair_contrastive_loss(
    model, task: str, enc: EncodedPairs, idx: np.ndarray, device: torch.device, temperature: float = 0.05, **_
) -> torch.Tensor:
    """Contrastive pairs' loss on rows ``idx``: info_nce over the sentence embeddings, in-batch negatives."""
    return contrastive_loss(model, _to_device(collate_pairs(enc, idx), device), temperature)


# Each kind of training set brings its objective; the loop below never asks which task it trains.
OBJECTIVES: dict[type, Callable[..., torch.Tensor]] = {
    EncodedTask: supervised_loss,
    EncodedPairs: pair_contrastive_loss,
}


def task_losses(
    model,
    step: tuple,
    train_sets: dict,
    device: torch.device,
    precision: str,
    temperature: float = 0.05,
    rdrop: float = 0.0,
    logged: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Loss of each task in a step (what is back-propagated); the batches of one task are joined into one forward pass.

    ``logged``, if given, receives for each task what a run records of the step: ``loss``, the task's own loss
    (with R-Drop without its consistency term, so loss curves compare with runs without it), and with R-Drop
    ``rdrop_consistency``."""
    by_task: dict[str, list[np.ndarray]] = {}
    for task, idx in step:
        by_task.setdefault(task, []).append(idx)
    out = {}
    for task, parts in by_task.items():
        enc = train_sets[task]
        objective = OBJECTIVES[type(enc)]
        terms: dict[str, torch.Tensor] = {}
        with autocast_context(device, precision):
            out[task] = objective(
                model, task, enc, np.concatenate(parts), device, temperature=temperature, rdrop=rdrop, terms=terms
            )
        if logged is not None:
            logged[task] = {"loss": out[task].detach(), **terms}
    return out


def probe_batches(train_sets: dict, model, cfg: TrainConfig) -> dict[str, dict]:
    """A fixed batch per task (seeded), on which the conflict monitor measures task gradients."""
    rng = np.random.default_rng([cfg.seed, 7919])
    return {
        t: collate(
            enc,
            rng.choice(len(enc), size=min(cfg.batch_size * cfg.task_draws, len(enc)), replace=False),
            model.views(t),
        )
        for t, enc in train_sets.items()
    }


def probe_gradients(model, probes: dict[str, dict], device: torch.device, precision: str) -> torch.Tensor:
    """K x D gradients of each task's probe loss w.r.t. the shared parameters (eval mode: no dropout).

    cuDNN's LSTM refuses a backward pass in eval mode, so the probe runs with cuDNN off (the BiLSTM
    of the sentence encoder then takes PyTorch's own kernels; a no-op on CPU).
    """
    shared = model.shared_parameters()
    model.eval()
    rows = []
    try:
        with torch.backends.cudnn.flags(enabled=False):
            for task, batch in probes.items():
                batch = _to_device(batch, device)
                with autocast_context(device, precision):
                    loss = model.loss(task, model(batch), batch["labels"])
                grads = torch.autograd.grad(loss, shared, allow_unused=True)
                rows.append(
                    torch.cat(
                        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared)]
                    )
                )
    finally:
        model.train()
    return torch.stack(rows)


def aggregate_backward(
    losses: list[torch.Tensor],
    aggregation: str | Callable,
    reduction: str,
    shared: TaskGradients | None,
    generator: torch.Generator | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Back-propagate one step's task losses, leaving the update direction in ``.grad``.

    ``sum``: one backward of the mean (or sum) of the losses. Otherwise each task's gradient of
    the SHARED parameters is collected separately (``shared``, a TaskGradients) and combined by
    the aggregator (PCGrad, IMTL-G); a task's head only ever receives its own loss's gradient.
    ``scale`` is the GradScaler's scaling on CUDA fp16 (unscaled before clipping and the step).
    """
    weight = 1.0 / len(losses) if reduction == "mean" else 1.0
    scaled = [(scale(loss) if scale is not None else loss) * weight for loss in losses]
    if aggregation == "sum":
        sum(scaled).backward()
        return
    if shared is None:
        raise ValueError(f"aggregation {aggregation!r} needs the TaskGradients of the shared parameters")
    combine = aggregation if callable(aggregation) else AGGREGATORS[aggregation]
    grads = shared.backward(scaled)  # K x D, one row per task
    # the weights above did the reduction; an aggregator that takes ``out`` (the built-in ones) writes into a
    # vector reused every step (no fresh memory to fault in), one of your own (grads, reduction, generator) -> D;
    # the signature lookup costs ~20 us against a step of 250+ ms
    out = {"out": shared.result} if "out" in inspect.signature(combine).parameters else {}
    shared.assign(combine(grads, "sum", generator, **out))


def optimizer_step(
    model,
    optimizer,
    losses: list[torch.Tensor],
    cfg: TrainConfig,
    shared: TaskGradients | None = None,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    aggregator: Callable | None = None,
) -> bool:
    """One update from a step's task losses: backward (aggregated), clip, step; returns whether it was applied.

    With a GradScaler (fp16) the losses are scaled before backward, the aggregation works on the
    scaled gradients (exact: PCGrad and IMTL-G are positively homogeneous), the gradients are
    unscaled before clipping, and a step whose gradients hold inf/NaN is skipped by the scaler,
    which then lowers its scale.
    """
    scale = scaler.scale if scaler is not None else None
    aggregate_backward(losses, aggregator or cfg.aggregation, cfg.reduction, shared, generator, scale)
    applied = True
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler is not None:
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        applied = scaler.get_scale() >= before  # update() lowers the scale only after a skipped step
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return applied


# ----------------------------------------------------------------------------- the loop


def prepare_for_training(model: MultitaskModel, cfg: TrainConfig, device: torch.device) -> MultitaskModel:
    """Freeze the word embeddings (``cfg.freeze_word_embeddings``), the lowest ``cfg.freeze_layers`` layers, and, on
    a CPU, use the plain ("eager") attention -- the same maths as PyTorch's fused SDPA kernels, which train slower on
    a CPU -- and dropout masks drawn 16 bits at a time (``mtl_lab.models.fast.dropout``: the same dropout, faster steps). On a
    CPU the model also runs its backbone over real tokens only (``mtl_lab.models.fast.unpad``, decided by
    ``MultitaskModel.unpadded``). ``benchmarks/bench_training.py`` measures each (docs/performance.md)."""
    if cfg.freeze_word_embeddings:
        model.freeze_word_embeddings()
    if cfg.freeze_layers:
        model.freeze_lower_layers(cfg.freeze_layers)
    if device.type == "cpu":
        use_fast_dropout(model)  # its attention is the eager one with this dropout
    return model


def run_config(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """The model and training configuration a run stores (results.json, checkpoints): the model trains cfg's tasks."""
    return {"model": replace(model_cfg, tasks=cfg.tasks).to_dict(), "train": cfg.to_dict()}


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    optimizer_cls: type | None = None,
    aggregator: Callable | None = None,
) -> dict:
    """Train (or resume, or return a finished run) and return the results dict (also in results.json).

    ``optimizer_cls`` replaces the hand-written AdamW (any ``torch.optim.Optimizer`` taking param
    groups, lr and weight_decay: a student's own AdamW); ``aggregator`` replaces the function of
    ``cfg.aggregation`` (same signature as ``mtl_lab.training.optim.pcgrad.project_conflicting``: a
    student's own PCGrad). results.json names what was used.
    """
    data_dir = resolve_data_dir(data_dir)  # a wrong data folder fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, best_path, results_path = out / "checkpoint.pt", out / "best.pt", out / "results.json"
    model_cfg = replace(model_cfg, tasks=cfg.tasks)
    config = {**run_config(model_cfg, cfg), "data": data_fingerprint(data_files(cfg), data_dir)}

    previous = load_results(out) if resume else None
    if previous is not None:
        _check_same(out, previous["config"], config)
        check_data(out, previous["config"], config["data"])
    if previous is not None and previous.get("finished"):
        if best_path.is_file():
            return previous
        if progress:
            tqdm.write(f"{out}: results.json says finished but best.pt is missing: training again")

    if aggregator is not None and cfg.aggregation == "sum":
        raise ValueError(
            "an aggregator replaces the function of cfg.aggregation: set aggregation='pcgrad' (or 'imtl_g') too"
        )
    device = resolve_device(cfg.device)
    precision, precision_reason = precision_choice(cfg.precision, device)
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(model_cfg.backbone)
    train_sets, dev_sets = load_task_data(cfg, tokenizer, data_dir)
    model = prepare_for_training(MultitaskModel(model_cfg).to(device), cfg, device)
    optimizer = (optimizer_cls or AdamW)(
        model.parameter_groups(cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None  # fp16 on any device (CPU: tests)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None

    stages = [(t,) for t in cfg.tasks] if cfg.sequential else [cfg.tasks]
    steps_per_epoch = {
        s: math.ceil(sum(math.ceil(len(train_sets[t]) / cfg.batch_size) for t in s) / cfg.task_draws) for s in stages
    }
    shared_grads = TaskGradients(model.shared_parameters()) if cfg.aggregation != "sum" else None
    probes = probe_batches(train_sets, model, cfg) if cfg.monitor_every else None
    conflicts: list[dict] = []

    state = {"stage": 0, "epoch": 0, "step": 0, "global_step": 0, "elapsed": 0.0}
    history: list[dict] = []
    best = {"overall": -math.inf}
    if resume and ckpt_path.is_file():
        ckpt = safe_load(ckpt_path, map_location=device)
        _check_same(ckpt_path, ckpt["config"], config)
        check_data(ckpt_path, ckpt["config"], config["data"])
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if average is not None:
            average.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        state, history, best = ckpt["state"], ckpt["history"], ckpt["best"]
        conflicts = ckpt.get("conflicts", [])
        if progress:
            tqdm.write(f"resuming {out} at stage {state['stage']} epoch {state['epoch']} step {state['step']}")

    if model_cfg.init and state["global_step"] == 0 and "init_run" not in state:  # not on resuming an older run
        state["init_run"] = init_run_record(model_cfg.init)
    eval_batch = cfg.eval_batch_size or eval_batch_size(device)
    if cfg.pretrain is not None and "initial" not in state:  # the geometry before pre-training
        state["initial"] = embedding_metrics(model, dev_sets["sts"], eval_batch, precision)

    def save_checkpoint() -> None:
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}
        atomic_save(
            {
                "config": config,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": average.state_dict() if average is not None else None,
                "rng": rng,
                "state": dict(state),
                "history": history,
                "best": best,
                "conflicts": conflicts,
            },
            ckpt_path,
        )

    def results(finished: bool) -> dict:
        train_time = sum(h["train_seconds"] for h in history)
        examples = sum(h["examples"] for h in history)
        return {
            "config": config,
            "precision": precision,
            "precision_reason": precision_reason,
            "device": str(device),
            "environment": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpu": cpu_name(),
                "backbone_path": backbone_path(model_cfg.backbone),
                "dropout": dropout_kind(model),
                "tokens": "unpadded" if model.unpadded() else "padded",  # mtl_lab.models.fast.unpad
            },
            "data": {
                "train": {t: len(enc) for t, enc in train_sets.items()},
                "dev": {t: len(enc) for t, enc in dev_sets.items()},
            },
            "history": history,
            "best": best,
            **({"initial": state["initial"]} if "initial" in state else {}),
            **({"init_run": state["init_run"]} if "init_run" in state else {}),
            "gradient_conflicts": conflicts,
            "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
            **({"aggregator": f"{aggregator.__module__}.{aggregator.__qualname__}"} if aggregator else {}),
            "skipped_steps": state.get("skipped_steps", 0),
            "wall_time_s": state["elapsed"],
            "examples_per_s": examples / train_time if train_time else None,
            "finished": finished,
        }

    model.train()
    start_time = time.perf_counter() - state["elapsed"]
    for stage_i in range(state["stage"], len(stages)):
        stage = stages[stage_i]
        total = steps_per_epoch[stage] * cfg.epochs
        for epoch in range(state["epoch"], cfg.epochs):
            global_epoch = stage_i * cfg.epochs + epoch
            plan = epoch_plan(
                train_sets, stage, cfg.sampler, cfg.batch_size, cfg.seed, global_epoch, cfg.epochs, cfg.task_draws
            )
            partial = state.pop("partial", None) or {"losses": {t: [] for t in stage}, "examples": 0, "seconds": 0.0}
            losses, examples = partial["losses"], partial["examples"]
            consistency = partial.get("rdrop_consistency", {})  # R-Drop's term, logged apart from the task losses
            t0 = time.perf_counter() - partial["seconds"]
            desc = f"{'/'.join(stage)} epoch {epoch + 1}/{cfg.epochs}"
            bar = tqdm(total=len(plan), initial=state["step"], desc=desc, disable=not progress, leave=False)
            for step in range(state["step"], len(plan)):
                if cfg.monitor_every and state["global_step"] % cfg.monitor_every == 0 and len(stage) > 1:
                    cos = cosine_matrix(probe_gradients(model, probes, device, precision))
                    conflicts.append(
                        {
                            "step": state["global_step"],
                            "epoch": global_epoch + 1,
                            **{
                                f"{a}-{b}": float(cos[i, j])
                                for (i, a), (j, b) in itertools.combinations(enumerate(stage), 2)
                            },
                        }
                    )
                mult = lr_multiplier(epoch * len(plan) + step, total, cfg.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * mult
                logged: dict[str, dict[str, torch.Tensor]] = {}
                step_losses = task_losses(
                    model, plan[step], train_sets, device, precision, cfg.temperature, cfg.rdrop, logged
                )
                for task, loss in step_losses.items():
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss is {loss.item()} at step {state['global_step']} (task {task}, epoch {global_epoch + 1}); "
                            f"lower the learning rate (now {cfg.lr}) or train in fp32"
                        )
                    losses[task].append(logged[task]["loss"].item())
                    if "rdrop_consistency" in logged[task]:
                        consistency.setdefault(task, []).append(logged[task]["rdrop_consistency"].item())
                examples += sum(len(idx) for _, idx in plan[step])
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state["global_step"])
                if not optimizer_step(
                    model, optimizer, list(step_losses.values()), cfg, shared_grads, generator, scaler, aggregator
                ):
                    state["skipped_steps"] = state.get("skipped_steps", 0) + 1  # fp16: inf/NaN gradients
                elif average is not None:
                    average.update(model)
                state["step"], state["global_step"] = step + 1, state["global_step"] + 1
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix({t: f"{np.mean(v[-50:]):.3f}" for t, v in losses.items() if v})
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and state["step"] < len(plan):
                    now = time.perf_counter()
                    state["elapsed"] = now - start_time
                    state["partial"] = {
                        "losses": losses,
                        "rdrop_consistency": consistency,
                        "examples": examples,
                        "seconds": now - t0,
                    }
                    save_checkpoint()
                    del state["partial"]
                if on_step is not None:
                    on_step(state["global_step"])
            bar.close()
            train_seconds = time.perf_counter() - t0
            with average.swapped_in(model) if average is not None else nullcontext(model) as scored:
                if cfg.pretrain is not None:
                    metrics = embedding_metrics(scored, dev_sets["sts"], eval_batch, precision)
                else:
                    outputs: dict = {}
                    metrics = evaluate(scored, dev_sets, eval_batch, precision, outputs)
                    write_epoch(out, global_epoch + 1, outputs)  # per-example dev records (mtl_lab.records)
                eval_end = time.perf_counter()
                if (
                    metrics["overall"] > best["overall"]
                ):  # saved here: the weights just scored (with cfg.ema, the average)
                    best = {"epoch": global_epoch + 1, **metrics}
                    atomic_save(
                        {
                            "model_config": model_cfg.to_dict(),
                            "train_config": cfg.to_dict(),
                            "state_dict": scored.state_dict(),
                            "metrics": best,
                        },
                        best_path,
                    )
            record = {
                "epoch": global_epoch + 1,
                "stage": "/".join(stage),
                "train_loss": {t: float(np.mean(v)) for t, v in losses.items() if v},
                "loss_curve": {t: block_means(v) for t, v in losses.items() if v},
                "dev": metrics,
                "train_seconds": train_seconds,
                "eval_seconds": eval_end - t0 - train_seconds,
                "examples": examples,
                "examples_per_s": examples / train_seconds if train_seconds else None,
            }
            if consistency:  # R-Drop: its consistency term (unweighted), apart from train_loss
                record["rdrop_consistency"] = {t: float(np.mean(v)) for t, v in consistency.items()}
                record["rdrop_consistency_curve"] = {t: block_means(v) for t, v in consistency.items()}
            history.append(record)
            if progress:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
                tqdm.write(f"[{desc}] dev: {shown} ({train_seconds:.0f}s train)")
            state.update(epoch=epoch + 1, step=0, elapsed=time.perf_counter() - start_time)
            save_checkpoint()
            atomic_write_json(results(finished=False), results_path)
        state.update(stage=stage_i + 1, epoch=0)
    state["elapsed"] = time.perf_counter() - start_time
    final = results(finished=True)
    atomic_write_json(final, results_path)
    if ckpt_path.is_file():
        ckpt_path.unlink()  # the run is complete: best.pt is what predict needs
    return final
