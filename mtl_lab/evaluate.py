"""Metrics, the overall score, batched prediction and leaderboard prediction files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score

from mtl_lab.data import TASKS, DataError, EncodedTask, bucket_batches, collate, encode, load_split, subsample

METRIC_NAMES = {"sst": "sst_acc", "qqp": "qqp_acc", "sts": "sts_pearson"}


def task_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy for SST and QQP; Pearson and Spearman r for STS."""
    if task == "sts":
        p, g = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        if np.std(p) == 0 or np.std(g) == 0:
            return {"sts_pearson": 0.0, "sts_spearman": 0.0}
        return {"sts_pearson": float(pearsonr(p, g)[0]), "sts_spearman": float(spearmanr(p, g)[0])}
    return {f"{task}_acc": float(accuracy_score(np.asarray(labels).astype(int), np.asarray(predictions).astype(int)))}


def task_score(task: str, metrics: dict[str, float]) -> float:
    """A task's contribution to the overall score, on a 0..1 scale (STS: (r + 1) / 2)."""
    value = metrics[METRIC_NAMES[task]]
    return (value + 1.0) / 2.0 if task == "sts" else value


def overall_score(metrics: dict[str, float]) -> float:
    """(SST acc + QQP acc + (STS r + 1) / 2) / 3; with fewer tasks, the mean over those present."""
    present = [t for t, m in METRIC_NAMES.items() if m in metrics]
    if not present:
        raise ValueError("no task metric to score")
    return float(np.mean([task_score(t, metrics) for t in present]))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> $MTL_LAB_DEVICE if set, else CUDA when present, else CPU."""
    if name == "auto":
        name = os.environ.get("MTL_LAB_DEVICE", "auto")  # set by the notebook runner's --device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def eval_batch_size(device: torch.device) -> int:
    """Batch size for scoring when none is given: 32 on a CPU (faster than 128 there: fewer pad tokens in each
    length bucket; ``benchmarks/bench_training.py``), 128 on a GPU (which wants big batches)."""
    return 128 if device.type == "cuda" else 32


# CPU flags that mean native bf16 matmuls (x86: AVX512-BF16 or AMX; Arm: the BF16 extension).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None = None) -> str | None:
    """The first /proc/cpuinfo field (or one of the given text) named one of ``names``; None where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (or the given text); None where they cannot be read."""
    flags = cpuinfo_field(("flags", "Features"), cpuinfo)
    return set(flags.split()) if flags is not None else None


def time_bf16_ratio(size: int = 384, repeats: int = 5) -> float:
    """Seconds of a bf16-autocast training step over seconds of the same step in fp32 on this CPU (< 1: bf16 is faster).

    The step is one transformer layer of MiniLM's width (forward and backward, batch 32 x 32 tokens): a bare
    matmul is not enough, since a CPU can multiply faster in bf16 and still train slower (docs/performance.md).
    """
    import time

    generator = torch.get_rng_state()
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(size, 12, 4 * size, dropout=0.0, activation="gelu", batch_first=True)
    x = torch.randn(32, 32, size)
    torch.set_rng_state(generator)  # the probe leaves the caller's random stream as it found it

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().square().mean().backward()

    def best(bf16: bool) -> float:
        step(bf16)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(bf16)
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(True) / best(False)


def cpu_precision_choice(flags: set[str] | None, timed_ratio=None) -> tuple[str, str]:
    """bf16 or fp32 for CPU training, and why: bf16 only where the CPU has native bf16 and it trains faster there.

    ``flags`` are the CPU's feature flags (None: unknown). Without a native bf16 flag: fp32 (bf16 would be
    emulated). With one, or unknown flags, ``timed_ratio()`` (bf16 time / fp32 time of a training step,
    ``time_bf16_ratio``) decides: bf16 when it is at least 1.15x faster, else fp32.
    """
    native = sorted(f for f in NATIVE_BF16_FLAGS if f in flags) if flags is not None else []
    if flags is not None and not native:
        return (
            "fp32",
            "CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag): bf16 would be emulated, many times slower",
        )
    ratio = (timed_ratio or time_bf16_ratio)()
    probe = f"a bf16 training step of a transformer layer took {ratio:.2f}x the fp32 time"
    has = f"CPU has native bf16 ({', '.join(native)}); " if native else "CPU flags unknown; "
    if ratio <= 1 / 1.15:
        return "bf16", f"{has}{probe}"
    return "fp32", f"{has}{probe}: fp32 is as fast or faster here"


_CPU_CHOICE: tuple[str, str] | None = None


def precision_choice(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision a run uses and why: an explicit choice as given; 'auto' by the device.

    'auto' on CUDA: bf16 where the GPU supports it, else fp16 (+ GradScaler). On a CPU: bf16 only
    where it is native and a timed training step says it is faster (``cpu_precision_choice``; decided once
    per process), else fp32.
    """
    global _CPU_CHOICE
    if precision != "auto":
        return precision, "set explicitly"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device supports bf16"
        return "fp16", "CUDA device without bf16: fp16 with a GradScaler"
    if device.type != "cpu":
        return "fp32", f"no autocast default for device {device.type}"
    if _CPU_CHOICE is None:
        _CPU_CHOICE = cpu_precision_choice(cpu_flags())
    return _CPU_CHOICE


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> the precision that is fast on this device (see ``precision_choice``); others as given."""
    return precision_choice(precision, device)[0]


def autocast_context(device: torch.device, precision: str):
    """torch.autocast for 'bf16'/'fp16', a no-op context for 'fp32'."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def map_batches(model, enc, views: tuple[str, ...], fn, batch_size: int = 64, precision: str = "fp32") -> list:
    """``[(indices, fn(batch)), ...]`` over length-bucketed batches of a split, in eval mode (state restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for idx in bucket_batches(enc.lengths, batch_size):
            batch = collate(enc, idx, views)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast_context(device, precision):
                out.append((idx, fn(batch)))
    finally:
        model.train(was_training)
    return out


def task_outputs(model, enc: EncodedTask, batch_size: int = 64, precision: str = "fp32") -> np.ndarray:
    """What an ensemble averages, per example in the split's order: SST class probabilities (N x 5),
    QQP P(paraphrase) (N), STS score (N)."""
    soft = {"sst": lambda o: torch.softmax(o.float(), -1), "qqp": lambda o: torch.sigmoid(o.float())}
    to_soft = soft.get(enc.task, lambda o: o.float())
    fn = lambda batch: to_soft(model(batch)).cpu().numpy()  # noqa: E731
    out = np.zeros((len(enc), 5) if enc.task == "sst" else len(enc), dtype=float)
    for idx, values in map_batches(model, enc, model.views(enc.task), fn, batch_size, precision):
        out[idx] = values
    return out


def outputs_to_predictions(task: str, outputs: np.ndarray) -> np.ndarray:
    """Leaderboard predictions from (averaged) outputs: SST argmax class, QQP P > 0.5, STS clipped to 0..5."""
    if task == "sst":
        return outputs.argmax(-1).astype(int)
    if task == "qqp":
        return (outputs > 0.5).astype(int)
    return np.clip(outputs, 0.0, 5.0)  # scored clipped too: the dev metric is the 0..5 file's (docs/running.md)


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
                precision = resolve_precision(train_cfg.get("precision", "fp32"), dev)
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
