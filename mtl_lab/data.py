"""Task data: CS224N-format files -> validated examples -> length-bucketed, padded batches.

The three tasks live in tab-separated files with a header row, a leading unnamed index
column, then ``id`` and the task's fields (see ``../shared/data/README.md``). Real data is
messy: a row with broken quoting, an empty sentence or an empty / out-of-range label is
skipped, and one warning per file says how many rows were skipped and why. A missing file
or column is one clear :class:`DataError` naming it.

Sentences are tokenized once per split with the backbone's (fast) tokenizer. A pair task keeps
both sentences separately (for bi-encoders) and their joint ``[CLS] a [SEP] b [SEP]``
encoding (for cross-encoders, truncated longest-first as Hugging Face does).
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


class DataError(ValueError):
    """A task file is missing or lacks a column the task needs."""


class DataWarning(UserWarning):
    """Rows of a task file were skipped as malformed."""


@dataclass(frozen=True)
class TaskSpec:
    """How one task's files look and what its labels mean."""

    name: str
    prefix: str
    text_cols: tuple[str, ...]
    label_col: str
    kind: str  # "multiclass" | "binary" | "regression"
    num_labels: int
    label_range: tuple[float, float]
    pred_file: str
    pred_col: str

    @property
    def is_pair(self) -> bool:
        """Whether the task compares two sentences."""
        return len(self.text_cols) == 2


TASKS: dict[str, TaskSpec] = {
    "sst": TaskSpec(
        "sst", "ids-sst", ("sentence",), "sentiment", "multiclass", 5, (0, 4), "sst", "Predicted_Sentiment"
    ),
    "qqp": TaskSpec(
        "qqp",
        "quora",
        ("sentence1", "sentence2"),
        "is_duplicate",
        "binary",
        1,
        (0, 1),
        "para",
        "Predicted_Is_Paraphrase",
    ),
    "sts": TaskSpec(
        "sts",
        "sts",
        ("sentence1", "sentence2"),
        "similarity",
        "regression",
        1,
        (0.0, 5.0),
        "sts",
        "Predicted_Similarity",
    ),
}
TASK_NAMES = tuple(TASKS)
SPLITS = {"train": "train", "dev": "dev", "test": "test-student"}


def task_file(task: str, split: str) -> str:
    """File name of a task split, e.g. ``quora-dev.csv``."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return f"{TASKS[task].prefix}-{SPLITS[split]}.csv"


def _holds_data(folder: Path) -> bool:
    return (folder / task_file("sst", "train")).is_file()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Data folder: explicit argument > $MTL_LAB_DATA > ./data (if it holds the files) > ../shared/data."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataError(f"data folder {path} does not exist")
        return path
    env = os.environ.get("MTL_LAB_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"MTL_LAB_DATA points to {path}, which does not exist")
        return path
    for folder in (Path.cwd() / "data", REPO_ROOT / "data"):
        if _holds_data(folder):
            return folder
    for folder in (Path.cwd() / ".." / "shared" / "data", REPO_ROOT / ".." / "shared" / "data"):
        if folder.is_dir():
            return folder.resolve()
    raise DataError(
        "no task data found: pass a data folder, set MTL_LAB_DATA, run "
        "`python -m mtl_lab data download` (writes ./data), or put the files in ../shared/data"
    )


def _parse_label(spec: TaskSpec, raw: str) -> float | None:
    """Label value, or None when it is not a valid label for the task."""
    try:
        value = float(raw)
    except ValueError:
        return None
    lo, hi = spec.label_range
    if not (lo <= value <= hi) or np.isnan(value):
        return None
    if spec.kind != "regression" and value != int(value):
        return None
    return value


def load_split(
    task: str, split: str, data_dir: str | os.PathLike | None = None, *, warn: bool = True, keep_malformed: bool = False
) -> pd.DataFrame:
    """Read one task split into a DataFrame (id, text columns, label), skipping malformed rows.

    The frame's ``attrs`` holds ``path``, ``skipped`` (count per reason) and ``skipped_lines``
    ((line number, reason) pairs; line numbers are 1-based physical lines of the file).
    Test-student files have no label column; their ``label`` is NaN.

    ``keep_malformed=True`` (prediction: every id of the file gets an answer) keeps a malformed row
    that has an id, with what text it has and a NaN label, and the warning names it; only rows
    without an id are dropped.
    """
    path = resolve_data_dir(data_dir) / task_file(task, split)
    spec = TASKS[task]
    if not path.is_file():
        raise DataError(f"{path}: file not found (task {task}, split {split})")
    needs_label = split != "test"
    wanted = ("id", *spec.text_cols) + ((spec.label_col,) if needs_label else ())
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: file is empty")
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
        pos = {c: header.index(c) for c in wanted}
        records, skipped, bad_lines = [], Counter(), []
        for row in reader:
            reason = None
            if len(row) != len(header):
                reason = "wrong number of fields (broken quoting)"
            else:
                fields = {c: row[pos[c]] for c in wanted}
                texts = [fields[c].strip() for c in spec.text_cols]
                if any("\t" in t or "\n" in t for t in texts):
                    reason = "broken quoting"
                elif not fields["id"].strip():
                    reason = "empty id"
                elif any(not t for t in texts):
                    reason = "empty sentence"
                elif needs_label and not fields[spec.label_col].strip():
                    reason = "empty label"
                elif needs_label and _parse_label(spec, fields[spec.label_col]) is None:
                    reason = "invalid or out-of-range label"
            if reason:
                skipped[reason] += 1
                bad_lines.append((reader.line_num, reason))
                if keep_malformed and (rec := _salvage(row, header, spec)) is not None:
                    records.append(rec)
                continue
            rec = {"id": fields["id"].strip()}
            for c, t in zip(spec.text_cols, texts):
                rec[c] = t
            rec["label"] = _parse_label(spec, fields[spec.label_col]) if needs_label else np.nan
            records.append(rec)
    df = pd.DataFrame.from_records(records, columns=["id", *spec.text_cols, "label"])
    if spec.kind != "regression" and needs_label and not df["label"].isna().any():
        df["label"] = df["label"].astype(int)
    df.attrs["path"] = str(path)
    df.attrs["skipped"] = dict(skipped)
    df.attrs["skipped_lines"] = bad_lines
    if skipped and warn:
        n = sum(skipped.values())
        why = ", ".join(f"{k}: {v}" for k, v in skipped.items())
        lines = ", ".join(str(n) for n, _ in bad_lines[:5]) + (" ..." if len(bad_lines) > 5 else "")
        what = "kept (predicted from the text they have)" if keep_malformed else "skipped"
        warnings.warn(
            f"{path.name}: {what} {n} malformed row{'s' if n > 1 else ''} ({why}; line {lines})",
            DataWarning,
            stacklevel=2,
        )
    return df


def _salvage(row: list[str], header: list[str], spec: TaskSpec) -> dict | None:
    """What a malformed row still says: its id and texts by position (missing ones empty), no label."""
    cells = dict(zip(header, row))
    ident = (cells.get("id") or "").strip()
    if not ident:
        return None
    rec = {"id": ident}
    for c in spec.text_cols:
        rec[c] = " ".join((cells.get(c) or "").split())
    rec["label"] = np.nan
    return rec


def load_sick(data_dir: str | os.PathLike | None = None, split: str | None = None) -> pd.DataFrame:
    """Read SICK.txt (premise, hypothesis, entailment label, relatedness); optionally one SemEval set."""
    path = resolve_data_dir(data_dir) / "SICK.txt"
    if not path.is_file():
        raise DataError(f"{path}: file not found (SICK)")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    cols = ["pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score", "SemEval_set"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    df = df[cols].copy()
    df["relatedness_score"] = pd.to_numeric(df["relatedness_score"], errors="coerce")
    ok = (
        df["sentence_A"].str.strip().astype(bool)
        & df["sentence_B"].str.strip().astype(bool)
        & df["entailment_label"].isin(["ENTAILMENT", "NEUTRAL", "CONTRADICTION"])
    )
    if (~ok).any():
        warnings.warn(f"{path.name}: skipped {(~ok).sum()} malformed rows", DataWarning, stacklevel=2)
    df = df[ok].reset_index(drop=True)
    if split is not None:
        sets = {"train": "TRAIN", "trial": "TRIAL", "test": "TEST"}
        df = df[df["SemEval_set"] == sets.get(split, split)].reset_index(drop=True)
    return df


def subsample(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of at most ``limit`` rows (all rows when limit is None)."""
    if limit is None or limit >= len(df):
        return df
    out = df.sample(n=limit, random_state=seed).reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


# ----------------------------------------------------------------------------- encoding


@dataclass
class EncodedTask:
    """One task split, tokenized: token ids per example (no padding) and labels."""

    task: str
    ids: list[str]
    joint: list[list[int]]  # [CLS] a [SEP] (b [SEP]) -- single sentence or cross-encoder pair
    joint_types: list[list[int]]
    a: list[list[int]] | None  # pair tasks: each sentence alone, [CLS] x [SEP]
    b: list[list[int]] | None
    labels: np.ndarray | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        """Joint token length of each example (used for length bucketing)."""
        return np.fromiter((len(x) for x in self.joint), dtype=np.int64, count=len(self.joint))


def encode(df: pd.DataFrame, task: str, tokenizer, max_length: int = 128) -> EncodedTask:
    """Tokenize a task frame once; pair tasks get both separate and joint encodings."""
    spec = TASKS[task]
    if df.empty:
        raise DataError(
            f"{df.attrs.get('path', task)}: no usable rows (the file holds only a header, or every row was malformed)"
        )
    labels = None if df["label"].isna().all() else df["label"].to_numpy()
    texts = [df[c].tolist() for c in spec.text_cols]
    single = dict(truncation=True, max_length=max_length)
    if spec.is_pair:
        a, b = (tokenizer(t, **single)["input_ids"] for t in texts)
        joint_enc = tokenizer(*texts, truncation="longest_first", max_length=max_length)
        joint, types = joint_enc["input_ids"], joint_enc["token_type_ids"]
    else:
        a = b = None
        joint = tokenizer(texts[0], **single)["input_ids"]
        types = [[0] * len(x) for x in joint]
    return EncodedTask(task, df["id"].tolist(), joint, types, a, b, labels, tokenizer.pad_token_id or 0)


# ----------------------------------------------------------------------------- batching


def bucket_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None, bucket_factor: int = 50
) -> list[np.ndarray]:
    """Split example indices into batches of similar length.

    With ``rng`` (training): shuffle, sort by length inside windows of
    ``batch_size * bucket_factor`` examples, then shuffle the batch order. Without (evaluation):
    sort everything by length, which pads least.
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    perm = rng.permutation(n)
    window = batch_size * bucket_factor
    batches = []
    for start in range(0, n, window):
        chunk = perm[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _pad(seqs: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def collate(enc: EncodedTask, idx: np.ndarray, views: Sequence[str] = ("joint",)) -> dict:
    """Padded tensors for examples ``idx``: ``joint`` view and/or ``pair`` view (a and b apart)."""
    batch: dict = {"task": enc.task, "index": np.asarray(idx)}
    if "joint" in views:
        batch["input_ids"], batch["attention_mask"] = _pad([enc.joint[i] for i in idx], enc.pad_id)
        batch["token_type_ids"], _ = _pad([enc.joint_types[i] for i in idx], 0)
    if "pair" in views:
        if enc.a is None:
            raise ValueError(f"task {enc.task} has no sentence pairs")
        batch["a_ids"], batch["a_mask"] = _pad([enc.a[i] for i in idx], enc.pad_id)
        batch["b_ids"], batch["b_mask"] = _pad([enc.b[i] for i in idx], enc.pad_id)
    if enc.labels is not None:
        dtype = torch.long if TASKS[enc.task].kind == "multiclass" else torch.float
        batch["labels"] = torch.as_tensor(enc.labels[idx], dtype=dtype)
    return batch


# ----------------------------------------------------------------------------- hub download


def stable_id(*parts: str) -> str:
    """25-hex-digit id from the given strings (the CS224N files use ids of this shape)."""
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:25]


def unique_ids(task: str, rows: Sequence[dict]) -> list[str]:
    """Ids for downloaded records: the hub's own ``idx``/``id`` where the data set has one, else a hash of the
    texts made unique by the row's position among identical texts (identical sentences must not share an id)."""
    spec = TASKS[task]
    seen: Counter = Counter()
    out = []
    for r in rows:
        hub = r.get("id", r.get("idx"))
        if hub is not None and str(hub).strip():
            ident = str(hub).strip()
        else:
            texts = tuple(str(r[c]) for c in spec.text_cols)
            seen[texts] += 1
            ident = stable_id(*texts, *([str(seen[texts])] if seen[texts] > 1 else []))
        out.append(ident)
    dupes = [i for i, n in Counter(out).items() if n > 1]
    if dupes:
        raise DataError(f"{task}: the hub records repeat the id(s) {', '.join(dupes[:3])}")
    return out


def to_cs224n_frame(task: str, rows: Sequence[dict], with_labels: bool = True) -> pd.DataFrame:
    """Records with the task's text fields (and ``label``) -> a frame in the CS224N column layout."""
    spec = TASKS[task]
    out = pd.DataFrame(
        {
            "id": unique_ids(task, rows),
            **{c: [" ".join(str(r[c]).split()) for r in rows] for c in spec.text_cols},
        }
    )
    if with_labels:
        labels = [r["label"] for r in rows]
        if spec.kind == "multiclass":
            out[spec.label_col] = [int(v) for v in labels]
        else:
            out[spec.label_col] = [float(v) for v in labels]
    return out


def write_cs224n_file(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a frame as a CS224N task file: tab-separated, header, leading unnamed index column."""
    frame.to_csv(path, sep="\t", index=True)


# Hub sources for `python -m mtl_lab data download`: (dataset, config, split) per task split, and
# how to read a record into our fields. SST-5 comes from SetFit/sst5; QQP and STS-B from GLUE.
HUB_SOURCES = {
    "sst": {
        "train": ("SetFit/sst5", None, "train"),
        "dev": ("SetFit/sst5", None, "validation"),
        "test": ("SetFit/sst5", None, "test"),
    },
    "qqp": {
        "train": ("nyu-mll/glue", "qqp", "train"),
        "dev": ("nyu-mll/glue", "qqp", "validation"),
        "test": ("nyu-mll/glue", "qqp", "test"),
    },
    "sts": {
        "train": ("nyu-mll/glue", "stsb", "train"),
        "dev": ("nyu-mll/glue", "stsb", "validation"),
        "test": ("nyu-mll/glue", "stsb", "test"),
    },
}
HUB_FIELDS = {
    "sst": {"sentence": "text", "label": "label"},
    "qqp": {"sentence1": "question1", "sentence2": "question2", "label": "label"},
    "sts": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
}


def hub_records(task: str, records) -> list[dict]:
    """Rename a hub data set's fields to ours (labels kept as given; the hub's ``idx`` becomes ``id``)."""
    fields = {**HUB_FIELDS[task], "id": "idx"}  # GLUE records carry their own index: keep it as the id
    return [{ours: rec[theirs] for ours, theirs in fields.items() if theirs in rec} for rec in records]


def download(out_dir: str | os.PathLike = "data") -> list[Path]:
    """Write the nine task files from the Hugging Face hub (needs internet and `datasets`)."""
    from datasets import load_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task, splits in HUB_SOURCES.items():
        for split, (name, config, hub_split) in splits.items():
            ds = load_dataset(name, config, split=hub_split)
            rows = hub_records(task, ds)
            with_labels = split != "test"
            frame = to_cs224n_frame(task, rows, with_labels=with_labels)
            path = out / task_file(task, split)
            write_cs224n_file(frame, path)
            written.append(path)
    return written


def summary(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per task file: rows kept, rows skipped as malformed, and the label balance."""
    rows = []
    for task, spec in TASKS.items():
        for split in SPLITS:
            df = load_split(task, split, data_dir, warn=False)
            if split == "test":
                labels = "-"
            elif spec.kind == "regression":
                labels = f"mean {df['label'].mean():.2f}, sd {df['label'].std():.2f}"
            else:
                labels = " / ".join(f"{v:.0%}" for v in df["label"].value_counts(normalize=True).sort_index())
            rows.append(
                {
                    "task": task,
                    "split": split,
                    "file": task_file(task, split),
                    "rows": len(df),
                    "skipped": sum(df.attrs["skipped"].values()),
                    "labels": labels,
                }
            )
    return pd.DataFrame(rows)
