"""How to train: ``TrainConfig``, the three profiles, and how a stored run's configuration compares with a new one.

The fields a user sets carry their command-line help and choices (``option``); ``python -m mtl_lab train``
builds its options from them, so a new option is written once, here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mtl_lab.data import SPLITS, TASK_NAMES, task_file
from mtl_lab.models.model import ModelConfig
from mtl_lab.runs import RunError
from mtl_lab.runtime import resolve_device
from mtl_lab.training.optim.aggregation import AGGREGATORS
from mtl_lab.training.sampling import SAMPLERS
from mtl_lab.training.simcse import MODES


class TrainingError(RunError):
    """Training cannot go on (a NaN loss, a run folder holding another configuration, ...)."""


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def option(default, help: str, choices: tuple | None = None, flag: str | None = None, metavar: str | None = None):
    """A TrainConfig field that is also a command-line option of ``train`` (``add_train_options`` reads it)."""
    meta = {"help": help, "choices": choices, "flag": flag, "metavar": metavar}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """How to train: tasks, schedule, sampler, precision, subsets, seeds."""

    tasks: tuple[str, ...] = option(TASK_NAMES, "tasks to train (default: all three)", choices=TASK_NAMES)
    epochs: int = option(3, "epochs (per task with --sequential)")
    batch_size: int = option(32, "examples per task batch")
    # None: the device's default (runtime.eval_batch_size: 32 on a CPU, 128 on a GPU). How fast dev
    # scoring runs, not what is trained: two runs differing only here are the same run (RUN_TIME_FIELDS).
    eval_batch_size: int | None = None
    lr: float = option(5e-5, "peak learning rate")
    weight_decay: float = 0.01
    warmup: float = 0.1
    sampler: str = option("proportional", "how each step's task is drawn", choices=SAMPLERS)
    sequential: bool = option(False, "train the tasks one after another, in --tasks order")
    max_length: int = option(128, "tokens per sentence (pair) at most")
    train_limit: int | None = option(None, "train examples per task (seeded subset)")
    train_fraction: float | None = option(None, "fraction of each task's train split (seeded subset)")
    dev_limit: int | None = option(None, "dev examples per task (seeded subset)")
    precision: str = option("auto", "autocast precision (auto: by the device, runtime.precision_choice)",
                            choices=PRECISIONS)  # fmt: skip
    grad_clip: float | None = 1.0
    layer_decay: float = option(1.0, "layer-wise LR decay factor (1.0 = off)")
    seed: int = option(0, "seed of the model's initialisation, the epoch plans and dropout")
    device: str = option("auto", "auto (default), cpu, cuda, cuda:1, ...")
    checkpoint_every: int = 200
    task_draws: int = option(1, "task batches per step (drawn by the sampler, with replacement)")
    aggregation: str = option("sum", "how the task gradients of a step combine on the shared parameters",
                              choices=tuple(AGGREGATORS))  # fmt: skip
    reduction: str = option("mean", "mean (default) or sum of the task gradients", choices=("mean", "sum"))
    monitor_every: int = option(0, "log task-gradient cosines every N steps (0 = off)")
    pretrain: str | None = option(None, "contrastive pre-training instead of the tasks: SimCSE on mined pairs, "
                                  "or NLI on SICK", choices=MODES)  # fmt: skip
    temperature: float = option(0.05, "SimCSE temperature")
    # The word-embedding matrix is half of MiniLM's weights, yet a batch reads a few hundred of its
    # 30,522 rows: trained, it costs a dense gradient and a dense AdamW update of 11.7M values a
    # step (about a third of a CPU step) for rows that barely move. Frozen by default.
    freeze_word_embeddings: bool = option(True, "train the word-embedding matrix too (frozen by default: faster "
                                          "on a CPU, same accuracy)", flag="--train-word-embeddings")  # fmt: skip
    # Freeze the lowest k transformer layers and every embedding beneath them: backward then stops above them
    # (less work a step, a small accuracy cost: docs/performance.md). 0 = every layer trains.
    freeze_layers: int = option(0, "keep the embeddings and the lowest K transformer layers fixed: backward stops "
                                "above them (faster steps)", metavar="K")  # fmt: skip
    # R-Drop (``mtl_lab.training.rdrop``): > 0 runs each labelled batch twice and adds this weight times the two
    # passes' disagreement to the loss (a second forward and backward pass a step); 0 = off. The lab's weight w is
    # the paper's alpha = 2 w (the paper sums the two passes' losses where the lab averages them). The run records
    # the task loss alone as train_loss and the disagreement under rdrop_consistency.
    rdrop: float = option(0.0, "R-Drop: weight of the two passes' symmetric KL beside their mean task loss "
                          "(the paper's alpha / 2; 0 = off)")  # fmt: skip
    # Weight averaging (``mtl_lab.training.ema``): > 0 keeps an exponential moving average of the weights with this
    # decay (e.g. 0.999) and scores dev / saves best.pt with it; 0 = off.
    ema: float = option(0.0, "weight averaging: the moving average's decay, e.g. 0.999 (0 = off); dev and best.pt "
                        "use it")  # fmt: skip

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
        if self.precision not in PRECISIONS:
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


# ----------------------------------------------------------------------------- stored runs


def run_config(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """The model and training configuration a run stores (results.json, checkpoints): the model trains cfg's tasks."""
    return {"model": replace(model_cfg, tasks=cfg.tasks).to_dict(), "train": cfg.to_dict()}


def data_files(cfg: TrainConfig) -> list[str]:
    """The data files a run reads: its tasks' train and dev files; pre-training reads what pair mining reads."""
    if cfg.pretrain is None:
        return [task_file(t, split) for t in cfg.tasks for split in ("train", "dev")]
    files = [task_file(t, split) for t in TASK_NAMES for split in SPLITS]
    return files + (["SICK.txt"] if cfg.pretrain == "nli" else [])


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


def check_same(where: Path, stored: dict, config: dict) -> None:
    """Refuse a run folder (or checkpoint) holding a run with another configuration, naming the fields."""
    diff = config_diff(stored, config)
    if diff:
        raise TrainingError(
            f"{where} holds a run with a different configuration ({'; '.join(diff)}): "
            "choose another run folder (--out), or start over (--no-resume / resume=False)"
        )
