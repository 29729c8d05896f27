"""MultitaskModel: one shared BERT backbone, a sentence encoder, and a head per task.

Every variant of the lab is this one class with a different :class:`ModelConfig`:

- ``encoder`` picks the sentence representation used by SST and by the bi-encoder pair heads
  (``cls`` baseline, ``mean`` = SBERT, ``sbert_cnn_bilstm`` = the paper's combined embedding, ...).
- ``init`` starts the backbone and sentence encoder from a pre-training run (``best.pt`` of a
  SimCSE / NLI run, see ``mtl_lab.training.simcse``) instead of the plain backbone; the heads start fresh.
- ``pair_head`` picks how QQP and STS compare two sentences:

  * ``cross``: a cross-encoder -- ``[CLS] a [SEP] b [SEP]`` through the backbone, the [CLS]
    state -> dropout -> linear (QQP: one logit; STS: a score).
  * ``bi``: a conjoined (bi-)encoder -- u, v = encoder(a), encoder(b). QQP: ``W [u; v; |u-v|]``
    -> logit; STS: ``5 * cos(u, v)`` (SBERT's cosine regression, on the 0..5 scale).
  * ``ensemble``: both. QQP logit = mean of the two logits; STS score = ``5 * cos(u, v)`` + a
    linear projection of the cross-encoder [CLS] (initialised at zero, so training starts from
    the bi-encoder's cosine and learns a correction).

SST is always dropout + linear on the sentence encoding (5 logits, cross-entropy); QQP uses
binary cross-entropy on its logit; STS uses MSE against the 0..5 gold score.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtl_lab.checkpoint import safe_load
from mtl_lab.data import TASK_NAMES, TASKS
from mtl_lab.models.backbone import DEFAULT_BACKBONE, load_backbone
from mtl_lab.models.encoders import ENCODERS, FIRST_TOKEN_ONLY, build_encoder
from mtl_lab.models.fast import unpad
from mtl_lab.runs import runs_root
from mtl_lab.tasks import kind_of

PAIR_HEADS = ("cross", "bi", "ensemble")


@dataclass
class ModelConfig:
    """What the multi-task model is made of."""

    backbone: str = DEFAULT_BACKBONE
    encoder: str = "cls"
    pair_head: str = "cross"
    dropout: float = 0.1
    cnn_filters: int = 128
    lstm_hidden: int = 128
    tasks: tuple[str, ...] = field(default_factory=lambda: TASK_NAMES)
    init: str | None = None

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        # checked here, before any weights load: a typo fails at once, not after the backbone is read
        _check_choice("encoder", self.encoder, ENCODERS)
        _check_choice("pair_head", self.pair_head, PAIR_HEADS)
        unknown = [t for t in self.tasks if t not in TASKS and t != "simcse"]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; expected some of {list(TASKS)}")

    def to_dict(self) -> dict:
        """Plain-dict form (for results.json and checkpoints)."""
        return asdict(self)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming the ModelConfig field, its bad value and the choices, unless value is a choice."""
    if value not in choices:
        raise ValueError(f"ModelConfig.{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


class MultitaskModel(nn.Module):
    """Shared backbone + sentence encoder + SST / paraphrase / STS heads."""

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else load_backbone(config.backbone)
        hidden = self.backbone.config.hidden_size
        self.num_layers = self.backbone.config.num_hidden_layers
        self.encoder = build_encoder(config.encoder, hidden, config.cnn_filters, config.lstm_hidden, config.dropout)
        dim = self.encoder.out_dim
        self.dropout = nn.Dropout(config.dropout)
        heads: dict[str, nn.Module] = {}
        if "sst" in config.tasks:
            heads["sst"] = nn.Linear(dim, TASKS["sst"].num_labels)
        for task in ("qqp", "sts"):
            if task not in config.tasks:
                continue
            if config.pair_head in ("cross", "ensemble"):
                heads[f"{task}_cross"] = nn.Linear(hidden, 1)
            if task == "qqp" and config.pair_head in ("bi", "ensemble"):
                heads["qqp_bi"] = nn.Linear(3 * dim, 1)
        if config.pair_head == "ensemble" and "sts_cross" in heads:
            nn.init.zeros_(heads["sts_cross"].weight)
            nn.init.zeros_(heads["sts_cross"].bias)
        self.heads = nn.ModuleDict(heads)
        self.unpad: bool | None = None  # None: unpadded on a CPU (see unpadded())
        if config.init:
            self.load_pretrained(config.init)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load backbone and sentence-encoder weights from a pre-training run (``best.pt`` or its folder)."""
        path, ckpt = read_checkpoint(path, "no pre-trained checkpoint (run the pre-training first)")
        theirs = ckpt["model_config"]
        for key in ("backbone", "encoder", "cnn_filters", "lstm_hidden"):
            if theirs.get(key) != getattr(self.config, key):
                raise ValueError(
                    f"{path}: pre-trained with {key}={theirs.get(key)!r}, this model has {getattr(self.config, key)!r}"
                )
        shared = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(("backbone.", "encoder."))}
        missing = [k for k in self.state_dict() if k.startswith(("backbone.", "encoder.")) and k not in shared]
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {len(missing)} shared weights, e.g. {missing[0]}")
        self.load_state_dict(shared, strict=False)

    # -- what each task reads -------------------------------------------------------------
    def views(self, task: str) -> tuple[str, ...]:
        """Which batch views a task needs: ``joint`` (cross / single sentence) and/or ``pair``."""
        if task == "sst":
            return ("joint",)
        return {"cross": ("joint",), "bi": ("pair",), "ensemble": ("joint", "pair")}[self.config.pair_head]

    def freeze_word_embeddings(self) -> None:
        """Stop training the word-embedding matrix (positions, token types and everything else still train)."""
        self.backbone.get_input_embeddings().weight.requires_grad_(False)

    def freeze_lower_layers(self, k: int) -> None:
        """Stop training the embeddings and the lowest ``k`` transformer layers (backward stops above them)."""
        if not 0 <= k <= self.num_layers:
            raise ValueError(f"freeze_layers must be between 0 and the backbone's {self.num_layers} layers, got {k}")
        for module in (self.backbone.embeddings, *self.backbone.encoder.layer[:k]):
            module.requires_grad_(False)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task uses: the backbone and the sentence encoder."""
        return [p for p in (*self.backbone.parameters(), *self.encoder.parameters()) if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only ``task`` uses: its head(s)."""
        return [p for name, head in self.heads.items() if name.split("_")[0] == task for p in head.parameters()]

    # -- encoding ---------------------------------------------------------------------------
    def unpadded(self) -> bool:
        """Whether the backbone runs over real tokens only (``mtl_lab.models.fast.unpad``): ``self.unpad``, or by
        default on a CPU (a GPU keeps the padded passes and their fused attention kernels)."""
        if self.unpad is not None:
            return self.unpad
        return self.backbone.get_input_embeddings().weight.device.type == "cpu"

    def _encode(
        self, groups: list[tuple], first_only: list[bool] | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(token states [B, L, H], pooler output) of each (ids, mask, types) batch: one unpadded pass for
        them all, or a padded backbone pass each. ``first_only[i]``: batch i is read at its first token alone,
        which the unpadded pass uses to skip the rest of the last layer (its states are then [B, 1, H])."""
        if self.unpadded():
            return unpad.encode(self.backbone, groups, first_only)
        outs = []
        for ids, mask, types in groups:
            out = self.backbone(input_ids=ids, attention_mask=mask, token_type_ids=types)
            outs.append((out.last_hidden_state, getattr(out, "pooler_output", None)))
        return outs

    def _states(self, ids, mask, types=None, first_only: bool = False):
        return self._encode([(ids, mask, types)], [first_only])[0]

    @property
    def reads_first_token(self) -> bool:
        """Whether the sentence encoder reads the first ([CLS]) token's state alone."""
        return self.config.encoder in FIRST_TOKEN_ONLY

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings [B, D] of single sentences."""
        hidden, pooled = self._states(ids, mask, first_only=self.reads_first_token)
        return self.encoder(hidden, mask, pooled)

    @staticmethod
    def _one_width(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Several (ids, mask) sentence batches padded to one width and stacked into one batch."""
        width = max(ids.shape[1] for ids, _ in parts)
        ids = torch.cat([F.pad(i, (0, width - i.shape[1])) for i, _ in parts])
        mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for _, m in parts])
        return ids, mask

    def embed_many(self, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Embeddings of several (ids, mask) sentence batches, padded to one width and encoded in one pass."""
        return list(self.embed(*self._one_width(parts)).split([i.shape[0] for i, _ in parts]))

    def _pair_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sentences of a pair batch as one batch of single sentences (the a's, then the b's)."""
        return self._one_width([(batch["a_ids"], batch["a_mask"]), (batch["b_ids"], batch["b_mask"])])

    def embed_pair(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """u, v for the two sentences of a pair batch, encoded together in one backbone pass."""
        u, v = self.embed(*self._pair_batch(batch)).split(batch["a_ids"].shape[0])
        return u, v

    # -- heads ------------------------------------------------------------------------------
    def forward(self, batch: dict) -> torch.Tensor:
        """Task output: SST logits [B, 5]; QQP logit [B]; STS score [B] (0..5 scale)."""
        task = batch["task"]
        if task == "sst":
            hidden, pooled = self._states(
                batch["input_ids"], batch["attention_mask"], first_only=self.reads_first_token
            )
            return self.heads["sst"](self.dropout(self.encoder(hidden, batch["attention_mask"], pooled)))
        mode = self.config.pair_head
        cross, bi = mode in ("cross", "ensemble"), mode in ("bi", "ensemble")
        groups = [(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))] if cross else []
        if bi:  # both sentences as one batch of single sentences
            pair_ids, pair_mask = self._pair_batch(batch)
            groups.append((pair_ids, pair_mask, None))
        first_only = [True] * cross + [self.reads_first_token] * bi  # the cross-encoder reads [CLS] alone
        states = self._encode(groups, first_only)  # the ensemble's two views: one unpadded pass
        outs = []
        if cross:
            hidden, _ = states.pop(0)
            outs.append(self.heads[f"{task}_cross"](self.dropout(hidden[:, 0])).squeeze(-1))
        if bi:
            hidden, pooled = states.pop(0)
            u, v = self.encoder(hidden, pair_mask, pooled).split(batch["a_ids"].shape[0])
            if task == "qqp":
                feats = torch.cat([u, v, (u - v).abs()], dim=-1)
                outs.append(self.heads["qqp_bi"](self.dropout(feats)).squeeze(-1))
            else:
                outs.append(5.0 * F.cosine_similarity(u.float(), v.float(), dim=-1))
        if task == "qqp":
            return torch.stack([o.float() for o in outs]).mean(0)
        return torch.stack([o.float() for o in outs]).sum(0)

    def loss(self, task: str, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Task loss: cross-entropy (SST), binary cross-entropy (QQP), MSE (STS) (``tasks.kind_of(task).loss``)."""
        return kind_of(task).loss(output, labels)

    # -- optimisation -----------------------------------------------------------------------
    def layer_of(self, name: str) -> int:
        """Depth of a parameter for layer-wise LR decay: embeddings 0, layer i -> i+1, rest top."""
        if name.startswith("backbone.embeddings"):
            return 0
        if name.startswith("backbone.encoder.layer."):
            return int(name.split(".")[3]) + 1
        return self.num_layers + 1

    def parameter_groups(self, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """Optimizer groups: no decay on biases/LayerNorm; LR scaled by layer_decay ** (depth from top)."""
        groups: dict[tuple[int, bool], dict] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            depth = self.num_layers + 1 - self.layer_of(name)
            key = (depth, no_decay)
            if key not in groups:
                groups[key] = {
                    "params": [],
                    "lr": lr * layer_decay**depth,
                    "weight_decay": 0.0 if no_decay else weight_decay,
                }
            groups[key]["params"].append(p)
        return list(groups.values())


def read_checkpoint(path: str | os.PathLike, missing: str) -> tuple[Path, dict]:
    """The path and contents of a ``best.pt`` (given itself or its run folder); ``missing`` explains its absence.

    A relative path that does not exist from the working directory is looked up under the runs
    folder (``runs_root()``), so configs can name a run as ``cpu/pre-cls-nli`` on any machine.
    """
    path = checkpoint_path(path, missing)
    return path, safe_load(path)


def checkpoint_path(path: str | os.PathLike, missing: str) -> Path:
    """Where a ``best.pt`` given itself or by its run folder lies (see :func:`read_checkpoint`)."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (runs_root() / path).exists():
        path = runs_root() / path
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    return path


def _recorded_precision(path: str | os.PathLike) -> str | None:
    """The precision a checkpoint's run scored dev in, from the results.json beside it (older best.pt files lack it)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        return json.loads((folder / "results.json").read_text()).get("precision")
    except (OSError, ValueError):
        return None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> MultitaskModel:
    """A MultitaskModel in eval mode from a ``best.pt`` (or a run folder holding one)."""
    _, ckpt = read_checkpoint(path, "no such checkpoint (train a model first, or give a run folder with best.pt)")
    known = {f.name for f in fields(ModelConfig)}
    # the checkpoint holds every weight: do not load the pre-training run it once started from
    config = {k: v for k, v in ckpt["model_config"].items() if k in known and k != "init"}
    model = MultitaskModel(ModelConfig(**config))
    model.load_state_dict(ckpt["state_dict"])
    model.checkpoint_meta = {
        "train_config": ckpt.get("train_config", {}),
        "metrics": ckpt.get("metrics", {}),
        "precision": ckpt.get("precision") or _recorded_precision(path),
    }
    return model.to(device).eval()
