"""Metrics, the overall score, batched prediction and leaderboard prediction files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtl_lab.data import TASKS, DataError, EncodedTask, bucket_batches, collate, encode, load_split, subsample
from mtl_lab.runtime import autocast_context, eval_batch_size, precision_choice, resolve_device, to_device
from mtl_lab.tasks import kind_of

METRIC_NAMES = {"sst": "sst_acc", "qqp": "qqp_acc", "sts": "sts_pearson"}


def task_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy for SST and QQP; Pearson and Spearman r for STS (``tasks.kind_of(task).metrics``)."""
    return kind_of(task).metrics(task, predictions, labels)


def task_score(task: str, metrics: dict[str, float]) -> float:
    """A task's contribution to the overall score, on a 0..1 scale (STS: (r + 1) / 2)."""
    return kind_of(task).score(metrics[METRIC_NAMES[task]])


def overall_score(metrics: dict[str, float]) -> float:
    """(SST acc + QQP acc + (STS r + 1) / 2) / 3; with fewer tasks, the mean over those present."""
    present = [t for t, m in METRIC_NAMES.items() if m in metrics]
    if not present:
        raise ValueError("no task metric to score")
    return float(np.mean([task_score(t, metrics) for t in present]))


@torch.no_grad()
def map_batches(model, enc, views: tuple[str, ...], fn, batch_size: int = 64, precision: str = "fp32") -> list:
    """``[(indices, fn(batch)), ...]`` over length-bucketed batches of a split, in eval mode (state restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        # one autocast context for the whole split: each trainable weight is cast to bf16 once, not once a batch
        with autocast_context(device, precision):
            for idx in bucket_batches(enc.lengths, batch_size):
                out.append((idx, fn(to_device(collate(enc, idx, views), device))))
    finally:
        model.train(was_training)
    return out


def task_outputs(model, enc: EncodedTask, batch_size: int = 64, precision: str = "fp32") -> np.ndarray:
    """What an ensemble averages, per example in the split's order: SST class probabilities (N x 5),
    QQP P(paraphrase) (N), STS score (N) (``tasks.kind_of(task).soft``)."""
    soft = kind_of(enc.task).soft
    fn = lambda batch: soft(model(batch)).cpu().numpy()  # noqa: E731
    out = None
    for idx, values in map_batches(model, enc, model.views(enc.task), fn, batch_size, precision):
        if out is None:
            out = np.zeros((len(enc), *values.shape[1:]), dtype=float)
        out[idx] = values
    return out


def outputs_to_predictions(task: str, outputs: np.ndarray) -> np.ndarray:
    """Leaderboard predictions from (averaged) outputs: SST argmax class, QQP P > 0.5, STS clipped to 0..5."""
    return kind_of(task).predict(outputs)


def evaluate(
    model,
    splits: dict[str, EncodedTask],
    batch_size: int = 64,
    precision: str = "fp32",
    outputs: dict | None = None,
) -> dict[str, float]:
    """Dev metrics of every given task and their overall score.

    ``outputs``, if given, receives each task's per-example outputs as ``{task: (ids, task_outputs)}``
    (the run's dev records, ``mtl_lab.records``).
    """
    metrics: dict[str, float] = {}
    for task, enc in splits.items():
        if enc.labels is None:
            raise ValueError(f"{task}: cannot evaluate a split without labels")
        values = task_outputs(model, enc, batch_size, precision)
        metrics.update(task_metrics(task, outputs_to_predictions(task, values), enc.labels))
        if outputs is not None:
            outputs[task] = (list(enc.ids), values)
    metrics["overall"] = overall_score(metrics)
    return metrics


def prediction_frame(task: str, ids: list[str], predictions: np.ndarray) -> pd.DataFrame:
    """Leaderboard frame: ``id`` (surrounding spaces stripped, as in the input) and the task's prediction column."""
    spec = TASKS[task]
    values = np.asarray(predictions)
    if spec.kind == "regression":
        values = np.clip(values.astype(float), 0.0, 5.0)
    else:
        values = values.astype(int)
    return pd.DataFrame({"id": [i.strip() for i in ids], spec.pred_col: values})


def write_predictions(out_dir: str | os.PathLike, task: str, split: str, ids: list[str], predictions) -> Path:
    """Write ``<out>/{sst,para,sts}-{dev,test}-output.csv`` (comma-separated, with header)."""
    path = prediction_path(out_dir, task, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    prediction_frame(task, ids, predictions).to_csv(path, index=False)
    return path


def prediction_path(out_dir: str | os.PathLike, task: str, split: str) -> Path:
    """Where a task's leaderboard file lies: ``<out>/{sst,para,sts}-{dev,test}-output.csv``."""
    return Path(out_dir) / f"{TASKS[task].pred_file}-{split}-output.csv"


def read_predictions(out_dir: str | os.PathLike, task: str, split: str = "dev") -> pd.Series:
    """A leaderboard file read back: the predictions indexed by id (surrounding spaces stripped)."""
    df = pd.read_csv(prediction_path(out_dir, task, split), dtype={"id": str})
    return pd.Series(df[TASKS[task].pred_col].to_numpy(), index=df["id"].str.strip(), name="pred")


def predict_files(
    checkpoint: str | os.PathLike | list,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    splits: tuple[str, ...] = ("dev", "test"),
    device: str = "auto",
    batch_size: int | None = None,
    members: dict | None = None,
    limit: int | None = None,
) -> dict[str, float]:
    """Write leaderboard prediction files of a checkpoint -- or of an ensemble of several, averaging their
    probabilities / scores -- for every task they know; return dev metrics.

    With several checkpoints, ``members`` (a dict, if given) receives each member's own dev metrics
    by checkpoint path, so an ensemble's score can be shown beside its members'. ``limit``: predict only
    that many examples a task (the seeded subset a profile's ``dev_limit`` picks), not leaderboard files.
    ``batch_size``: None for the device's default (``eval_batch_size``).
    """
    from mtl_lab.models.backbone import load_tokenizer
    from mtl_lab.models.model import load_model

    paths = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint]
    dev = resolve_device(device)
    models = [load_model(p, dev) for p in paths]
    tasks = models[0].config.tasks
    for path, model in zip(paths[1:], models[1:]):
        if model.config.tasks != tasks or model.config.backbone != models[0].config.backbone:
            raise ValueError(
                f"{path}: an ensemble's members must share tasks and backbone "
                f"({model.config.tasks}, {model.config.backbone} vs {tasks}, {models[0].config.backbone})"
            )
    tokenizer = load_tokenizer(models[0].config.backbone)
    batch_size = batch_size or eval_batch_size(dev)
    metrics: dict[str, float] = {}
    own: dict[str, dict[str, float]] = {str(p): {} for p in paths}
    for split in splits:
        for task in tasks:
            # every id gets a prediction; a subset (``limit``) is drawn from the well-formed rows, as training's dev is
            df = subsample(
                load_split(task, split, data_dir, keep_malformed=limit is None, warn=limit is None), limit, 0
            )
            if df.empty:
                raise DataError(f"{df.attrs['path']}: no rows to predict (the file holds only a header)")
            outputs = []
            for path, model in zip(paths, models):
                train_cfg = model.checkpoint_meta["train_config"]
                enc = encode(df, task, tokenizer, train_cfg.get("max_length", 128))
                # the precision the run was scored in (an 'auto' run may have picked another on this machine)
                recorded = model.checkpoint_meta.get("precision") if dev.type == "cpu" else None
                recorded = recorded if recorded in ("fp32", "bf16") else None
                precision = recorded or precision_choice(train_cfg.get("precision", "fp32"), dev)[0]
                outputs.append(task_outputs(model, enc, batch_size, precision))
                if split == "dev" and len(paths) > 1:
                    own[str(path)].update(_scored(task, df, outputs_to_predictions(task, outputs[-1])))
            preds = outputs_to_predictions(task, np.mean(outputs, axis=0))
            write_predictions(out_dir, task, split, enc.ids, preds)
            if split == "dev":
                metrics.update(_scored(task, df, preds))
    if metrics:
        metrics["overall"] = overall_score(metrics)
    if members is not None and len(paths) > 1:
        for path, m in own.items():
            if m:
                m["overall"] = overall_score(m)
            members[path] = m
    return metrics


def _scored(task: str, df: pd.DataFrame, preds: np.ndarray) -> dict[str, float]:
    """Dev metrics on the labelled rows (malformed rows are predicted, not scored)."""
    scored = df["label"].notna().to_numpy()
    return task_metrics(task, preds[scored], df["label"].to_numpy()[scored])
