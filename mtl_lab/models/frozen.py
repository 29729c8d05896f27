"""A model with sense in seconds: the backbone's frozen sentence embeddings, with small fitted heads.

all-MiniLM-L6-v2 was trained (before this lab) to put sentences with the same meaning close
together, so its mean-pooled, normalised embeddings already answer two of the lab's questions
without any fine-tuning:

- **similarity**: the cosine of the two sentences, mapped linearly onto STS's 0..5 scale (a
  least-squares fit on a few hundred STS training pairs: it changes the scale, not the Pearson);
- **paraphrase**: a logistic regression on that one cosine (fitted on Quora training pairs);
- **sentiment**: a multinomial logistic regression on the 384 numbers of the sentence's
  embedding (fitted on SST training sentences) -- the only head with more than two weights.

Fitting all three takes seconds on a CPU; the result is cached under ``runs/frozen/``. The
playground of notebook 06 offers this model beside the fine-tuned checkpoints, so a student
without an hour of CPU still meets a model that answers sensibly.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtl_lab.data import TASK_NAMES, TASKS
from mtl_lab.models.backbone import load_backbone, load_tokenizer
from mtl_lab.models.encoders import masked_mean
from mtl_lab.runtime import cpu_name
from mtl_lab.tasks import kind_of

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase


@dataclass
class FrozenConfig:
    """How many training examples each head is fitted on (small: seconds, not minutes)."""

    backbone: str | None = None
    sst_examples: int = 3000
    pair_examples: int = 300
    seed: int = 0


class FrozenSentenceModel:
    """Frozen mean-pooled backbone embeddings plus three fitted heads; ``answer`` is what the playground asks."""

    def __init__(self, config: FrozenConfig | None = None, tokenizer=None, backbone=None):
        self.config = config or FrozenConfig()
        self.tokenizer = tokenizer or load_tokenizer(self.config.backbone)
        self.backbone = (backbone or load_backbone(self.config.backbone)).eval()
        self.heads: dict[str, dict] = {}
        self.fit_seconds = 0.0
        self.fit_cpu, self.cached = "", False  # where the heads were fitted; whether they were read from the cache

    @torch.no_grad()
    def embed(self, sentences: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length mean-pooled embeddings, N x H (sentences sorted by length for tight batches; on a CPU,
        batches of 32 run faster than 128: less padding in each)."""
        order = np.argsort([len(s) for s in sentences], kind="stable")
        out = np.zeros((len(sentences), self.backbone.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [sentences[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = self.backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            pooled = torch.nn.functional.normalize(masked_mean(hidden, enc["attention_mask"]), dim=-1)
            out[idx] = pooled.numpy()
        return out

    def cosine(self, first: list[str], second: list[str]) -> np.ndarray:
        """Cosine similarity of each pair (first[i], second[i])."""
        a, b = self.embed(list(first)), self.embed(list(second))
        return (a * b).sum(1)

    def fit(self, data_dir: str | os.PathLike | None = None) -> FrozenSentenceModel:
        """Fit the three heads on small training subsets (seconds); returns self."""
        from sklearn.linear_model import LogisticRegression

        from mtl_lab.data import load_split, subsample

        start = time.perf_counter()
        cfg = self.config
        sst = subsample(load_split("sst", "train", data_dir, warn=False), cfg.sst_examples, cfg.seed)
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(self.embed(sst["sentence"].tolist()), sst["label"])
        self.heads["sst"] = {"coef": clf.coef_, "intercept": clf.intercept_}
        qqp = subsample(load_split("qqp", "train", data_dir, warn=False), cfg.pair_examples, cfg.seed)
        cos = self.cosine(qqp["sentence1"].tolist(), qqp["sentence2"].tolist())
        clf = LogisticRegression().fit(cos[:, None], qqp["label"].astype(int))
        self.heads["qqp"] = {"coef": clf.coef_, "intercept": clf.intercept_}
        sts = subsample(load_split("sts", "train", data_dir, warn=False), cfg.pair_examples, cfg.seed)
        cos = self.cosine(sts["sentence1"].tolist(), sts["sentence2"].tolist())
        slope, intercept = np.polyfit(cos, sts["label"].to_numpy(float), 1)
        self.heads["sts"] = {"coef": np.array([[slope]]), "intercept": np.array([intercept])}
        self.fit_seconds, self.fit_cpu = time.perf_counter() - start, cpu_name()
        return self

    def predict(self, task: str, frame: pd.DataFrame) -> np.ndarray:
        """Per-row answers for a task frame: SST class probabilities (N x 5), QQP P(paraphrase), STS score 0..5."""
        head, spec = self.heads[task], TASKS[task]
        if spec.is_pair:  # the cosine of the two sentences, scaled by the fitted head
            value = self.cosine(frame["sentence1"].tolist(), frame["sentence2"].tolist()) * head["coef"][0, 0]
            value = value + head["intercept"][0]
        else:  # a linear head on the sentence embedding
            value = self.embed(frame["sentence"].tolist()) @ head["coef"].T + head["intercept"]
        soft = kind_of(task).soft(torch.as_tensor(value)).numpy()
        return np.clip(soft, *spec.label_range)  # STS's score to 0..5; probabilities are inside their range

    def answer(self, sentence: str, pair: tuple[str, str]) -> dict:
        """The playground's answers: sentiment distribution, paraphrase probability, similarity 0..5."""
        import pandas as pd

        one = pd.DataFrame({"sentence": [sentence]})
        two = pd.DataFrame({"sentence1": [pair[0]], "sentence2": [pair[1]]})
        return {
            "sentiment": self.predict("sst", one)[0],
            "paraphrase": float(self.predict("qqp", two)[0]),
            "similarity": float(self.predict("sts", two)[0]),
        }

    def dev_scores(self, limit: int | None = None, data_dir: str | os.PathLike | None = None) -> dict[str, float]:
        """The heads on the dev sets (or a seeded subset of ``limit`` rows each): SST acc, QQP acc, STS Pearson.

        Kept beside the cached heads (``frozen_model``), keyed by the dev files' fingerprint: a second Run All of
        notebook 06 reads them instead of embedding the dev sentences again."""
        from mtl_lab.data import task_file
        from mtl_lab.runs import data_fingerprint

        cache = getattr(self, "cache_path", None)
        if cache is not None:
            files = [task_file(t, "dev") for t in ("sst", "qqp", "sts")]
            key = hashlib.sha256(json.dumps([limit, data_fingerprint(files, data_dir)], sort_keys=True).encode())
            cache = cache.with_name(f"{cache.stem}-dev-{key.hexdigest()[:12]}.json")
            if cache.is_file():
                return json.loads(cache.read_text())
        scores = self._dev_scores(limit, data_dir)
        if cache is not None:
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(scores))
            os.replace(tmp, cache)
        return scores

    def _dev_scores(self, limit: int | None, data_dir: str | os.PathLike | None) -> dict[str, float]:
        from scipy.stats import pearsonr

        from mtl_lab.data import load_split, subsample

        sst, qqp, sts = (subsample(load_split(t, "dev", data_dir, warn=False), limit, 0) for t in ("sst", "qqp", "sts"))
        return {
            "sst_acc": float((self.predict("sst", sst).argmax(1) == sst["label"].to_numpy()).mean()),
            "qqp_acc": float(((self.predict("qqp", qqp) > 0.5) == qqp["label"].to_numpy().astype(bool)).mean()),
            "sts_pearson": float(pearsonr(self.predict("sts", sts), sts["label"].to_numpy(float))[0]),
        }


def _cache_path(config: FrozenConfig, data_dir: str | os.PathLike | None = None) -> Path:
    from mtl_lab.data import task_file
    from mtl_lab.models.backbone import backbone_path
    from mtl_lab.runs import data_fingerprint, runs_root

    files = [task_file(t, "train") for t in ("sst", "qqp", "sts")]
    key = json.dumps(
        [asdict(config), backbone_path(config.backbone), data_fingerprint(files, data_dir)], sort_keys=True
    )
    return runs_root() / "frozen" / f"heads-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def frozen_model(
    config: FrozenConfig | None = None,
    data_dir: str | os.PathLike | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> FrozenSentenceModel:
    """The frozen model with its heads: read from ``runs/frozen/`` when fitted before, else fitted now and cached."""
    config = config or FrozenConfig()
    model = FrozenSentenceModel(config, tokenizer=tokenizer)
    path = _cache_path(config, data_dir)
    model.cache_path = path
    if path.is_file():
        with np.load(path) as stored:
            model.heads = {t: {"coef": stored[f"{t}_coef"], "intercept": stored[f"{t}_intercept"]} for t in TASK_NAMES}
            model.fit_seconds = float(stored["fit_seconds"])
            model.fit_cpu = str(stored["cpu"]) if "cpu" in stored else "an unrecorded CPU"
        model.cached = True
        return model
    model.fit(data_dir)
    model.cached = False
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{t}_{k}": v for t, head in model.heads.items() for k, v in head.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, fit_seconds=model.fit_seconds, cpu=np.array(model.fit_cpu), **arrays)
    os.replace(tmp, path)
    return model
