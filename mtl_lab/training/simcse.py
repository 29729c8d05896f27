"""SimCSE (Gao et al., 2021): contrastive learning of sentence embeddings, and what it is trained on.

The objective, for a batch of B (anchor, positive) embedding pairs and optional hard negatives::

    s_ij = cos(a_i, p_j) / tau            (B x B: the diagonal holds the positives, every other
    h_ij = cos(a_i, n_j) / tau             column of row i is an in-batch negative for anchor i)
    loss = cross_entropy([s | h], target = i for row i)

Positive pairs (``mine_pairs``), always from TRAINING splits only:

- ``qqp_sts``: the paper's supervised SimCSE -- Quora duplicates and STS pairs scored above 4;
- ``sst_qqp_sts``: the same plus every SST training sentence paired with itself; with dropout on,
  its two encodings differ slightly, which is unsupervised SimCSE's positive (SST has no pairs);
- ``unsup``: unsupervised SimCSE -- every distinct training sentence of the three tasks with itself;
- ``nli``: SICK's TRAIN set (the offline stand-in for SNLI + MNLI): a premise with an entailed
  hypothesis as the positive and a contradicted hypothesis of the same premise as the hard negative.

``alignment`` and ``uniformity`` (Wang & Isola, 2020) measure the geometry the objective shapes:
positives close together, and all embeddings spread over the sphere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mtl_lab.data import load_sick, load_split

MODES = ("qqp_sts", "sst_qqp_sts", "unsup", "nli")
STS_POSITIVE_ABOVE = 4.0


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    temperature: float = 0.05,
    hard_negatives: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The SimCSE loss: cosine similarities / temperature, in-batch negatives, cross-entropy to the diagonal.

    ``anchors``, ``positives`` (and ``hard_negatives``) are B x D; computed in float32 so it is
    safe under autocast. Every hard negative is a candidate for every anchor (as in SimCSE);
    ``negative_mask`` (B booleans) leaves out the rows that have none.
    """
    if anchors.shape != positives.shape:
        raise ValueError(f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} differ in shape")
    a = F.normalize(anchors.float(), dim=-1)
    candidates = [F.normalize(positives.float(), dim=-1)]
    if hard_negatives is not None:
        if hard_negatives.shape != anchors.shape:
            raise ValueError(f"hard_negatives {tuple(hard_negatives.shape)} must match anchors {tuple(anchors.shape)}")
        candidates.append(F.normalize(hard_negatives.float(), dim=-1))
    logits = a @ torch.cat(candidates).T / temperature  # B x B (or B x 2B)
    if hard_negatives is not None and negative_mask is not None:
        keep = torch.cat([torch.ones_like(negative_mask, dtype=torch.bool), negative_mask.bool()])
        logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def alignment(u: torch.Tensor, v: torch.Tensor, alpha: float = 2.0) -> float:
    """Mean distance^alpha between the normalised embeddings of positive pairs (lower = better aligned)."""
    u, v = F.normalize(u.float(), dim=-1), F.normalize(v.float(), dim=-1)
    return float((u - v).norm(dim=-1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """log of the mean Gaussian potential exp(-t |x_i - x_j|^2) over all pairs (lower = more spread out)."""
    x = F.normalize(x.float(), dim=-1)
    return float(torch.pdist(x).pow(2).mul(-t).exp().mean().log())


def _pairs(a: pd.Series, b: pd.Series, source: str) -> pd.DataFrame:
    return pd.DataFrame({"anchor": a.to_numpy(), "positive": b.to_numpy(), "source": source})


def mine_pairs(mode: str, data_dir=None) -> pd.DataFrame:
    """Contrastive training pairs of a mode (columns anchor, positive[, negative], source), train splits only."""
    if mode not in MODES:
        raise ValueError(f"unknown SimCSE mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "nli":
        return _nli_triplets(data_dir)
    qqp = load_split("qqp", "train", data_dir, warn=False)
    sts = load_split("sts", "train", data_dir, warn=False)
    sst = load_split("sst", "train", data_dir, warn=False)
    if mode == "unsup":
        sentences = pd.concat([sst["sentence"], qqp["sentence1"], qqp["sentence2"], sts["sentence1"], sts["sentence2"]])
        sentences = sentences.drop_duplicates().reset_index(drop=True)
        return _pairs(sentences, sentences, "same sentence (dropout)")
    dup = _drop_held_out(qqp[qqp["label"] == 1], data_dir)
    similar = _drop_held_out(sts[sts["label"] > STS_POSITIVE_ABOVE], data_dir)
    parts = [
        _pairs(dup["sentence1"], dup["sentence2"], "qqp duplicate"),
        _pairs(similar["sentence1"], similar["sentence2"], "sts > 4"),
    ]
    if mode == "sst_qqp_sts":
        parts.append(_pairs(sst["sentence"], sst["sentence"], "sst (dropout)"))
    return pd.concat(parts, ignore_index=True)


def _drop_held_out(pairs: pd.DataFrame, data_dir=None) -> pd.DataFrame:
    """Drop training pairs that also occur (in either order) in a dev or test file of Quora or STS.

    The CS224N files share some pairs between splits; a contrastive objective must not pull
    together exactly the pairs the dev and test scores are measured on.
    """
    held = set()
    for task in ("qqp", "sts"):
        for split in ("dev", "test"):
            df = load_split(task, split, data_dir, warn=False)
            held |= set(zip(df["sentence1"], df["sentence2"])) | set(zip(df["sentence2"], df["sentence1"]))
    keep = [(a, b) not in held for a, b in zip(pairs["sentence1"], pairs["sentence2"])]
    return pairs[keep]


def _nli_triplets(data_dir=None) -> pd.DataFrame:
    """SICK TRAIN entailment pairs (premise, entailed hypothesis), each with a contradicted sentence if known.

    Contradiction is symmetric, and if A entails B and B contradicts C then A contradicts C, so
    A's hard negative is any sentence contradicting A or B in SICK's TRAIN set; where none is
    known, ``negative`` is None (such pairs train with in-batch negatives only).
    """
    sick = load_sick(data_dir, "train")
    contradicts: dict[str, str] = {}
    for a, b in sick.loc[sick["entailment_label"] == "CONTRADICTION", ["sentence_A", "sentence_B"]].itertuples(
        index=False
    ):
        contradicts.setdefault(a, b)
        contradicts.setdefault(b, a)
    entail = sick[sick["entailment_label"] == "ENTAILMENT"]
    negatives = [contradicts.get(a, contradicts.get(b)) for a, b in zip(entail["sentence_A"], entail["sentence_B"])]
    return pd.DataFrame(
        {
            "anchor": entail["sentence_A"].to_numpy(),
            "positive": entail["sentence_B"].to_numpy(),
            "negative": negatives,
            "source": "sick entailment",
        }
    )


# ----------------------------------------------------------------------------- pre-training data


@dataclass
class EncodedPairs:
    """Tokenized contrastive pairs: anchor, positive and (where known) hard-negative token ids."""

    anchor: list[list[int]]
    positive: list[list[int]]
    negative: list[list[int] | None]
    pad_id: int
    task: str = "simcse"

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def lengths(self) -> np.ndarray:
        """Longest sentence of each row (used for length bucketing)."""
        return np.array(
            [max(len(a), len(p), len(n or ())) for a, p, n in zip(self.anchor, self.positive, self.negative)],
            dtype=np.int64,
        )


def encode_pairs(pairs: pd.DataFrame, tokenizer, max_length: int = 128) -> EncodedPairs:
    """Tokenize mined pairs once (each sentence alone, ``[CLS] x [SEP]``)."""
    kw = dict(truncation=True, max_length=max_length)
    anchor = tokenizer(pairs["anchor"].tolist(), **kw)["input_ids"]
    positive = tokenizer(pairs["positive"].tolist(), **kw)["input_ids"]
    negative: list[list[int] | None] = [None] * len(pairs)
    if "negative" in pairs:
        known = [i for i, n in enumerate(pairs["negative"]) if isinstance(n, str) and n]
        for i, ids in zip(known, tokenizer([pairs["negative"].iloc[i] for i in known], **kw)["input_ids"]):
            negative[i] = ids
    return EncodedPairs(anchor, positive, negative, tokenizer.pad_token_id or 0)


def collate_pairs(enc: EncodedPairs, idx: np.ndarray) -> dict:
    """Padded anchors, positives and hard negatives (``n_valid`` marks the rows that have one)."""
    from mtl_lab.data import _pad

    batch: dict = {"task": enc.task, "index": np.asarray(idx)}
    batch["a_ids"], batch["a_mask"] = _pad([enc.anchor[i] for i in idx], enc.pad_id)
    batch["b_ids"], batch["b_mask"] = _pad([enc.positive[i] for i in idx], enc.pad_id)
    negs = [enc.negative[i] for i in idx]
    if any(n is not None for n in negs):
        batch["n_ids"], batch["n_mask"] = _pad([n if n is not None else [enc.pad_id] for n in negs], enc.pad_id)
        batch["n_valid"] = torch.tensor([n is not None for n in negs])
    return batch


def contrastive_loss(model, batch: dict, temperature: float = 0.05) -> torch.Tensor:
    """info_nce of one collated batch: every sentence through the model's sentence encoder in one pass."""
    parts = [(batch["a_ids"], batch["a_mask"]), (batch["b_ids"], batch["b_mask"])]
    if "n_ids" in batch:
        parts.append((batch["n_ids"], batch["n_mask"]))
    emb = model.embed_many(parts)
    negatives = emb[2] if len(emb) > 2 else None
    return info_nce(emb[0], emb[1], temperature, negatives, batch.get("n_valid"))


# ----------------------------------------------------------------------------- geometry


def pair_embeddings(model, enc, batch_size: int = 128, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence embeddings u, v (float32, in the split's order) of a pair task split, in eval mode."""
    from mtl_lab.evaluate import map_batches

    us, vs, order = [], [], []
    for idx, (u, v) in map_batches(model, enc, ("pair",), model.embed_pair, batch_size, precision):
        us.append(u.float().cpu())
        vs.append(v.float().cpu())
        order.append(idx)
    inverse = np.argsort(np.concatenate(order))
    return torch.cat(us)[inverse], torch.cat(vs)[inverse]


def embedding_metrics(model, sts_dev, batch_size: int = 128, precision: str = "fp32") -> dict[str, float]:
    """STS dev as SimCSE scores it: Pearson/Spearman of cos(u, v) with the gold score (no head), plus
    alignment of the pairs scored above 4 and uniformity of all dev sentences; ``overall`` = Spearman."""
    from scipy.stats import pearsonr, spearmanr

    u, v = pair_embeddings(model, sts_dev, batch_size, precision)
    cos = F.cosine_similarity(u, v, dim=-1).numpy()
    gold = np.asarray(sts_dev.labels, dtype=float)
    positive = torch.as_tensor(gold > STS_POSITIVE_ABOVE)
    spearman = float(spearmanr(cos, gold).statistic)
    return {
        "sts_cos_pearson": float(pearsonr(cos, gold).statistic),
        "sts_cos_spearman": spearman,
        "alignment": alignment(u[positive], v[positive]),
        "uniformity": uniformity(torch.cat([u, v])),
        "overall": spearman,
    }
