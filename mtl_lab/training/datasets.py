"""The training and dev splits a run reads: read, subsampled by the profile, tokenized once per process."""

from __future__ import annotations

from mtl_lab.data import EncodedTask, encode, load_split, resolve_data_dir, subsample
from mtl_lab.training.config import TrainConfig
from mtl_lab.training.simcse import encode_pairs, mine_pairs

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
