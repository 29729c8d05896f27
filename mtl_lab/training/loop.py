"""The lab's one training loop: single-task, multi-task and sequential training.

A run is ``train(ModelConfig, TrainConfig, out_dir)``. It

1. loads and tokenizes the train/dev splits of the chosen tasks (``training.datasets``),
2. plans each epoch as a list of steps drawn by a task sampler (``training.sampling``),
3. takes each step (``training.step``): the task losses (``training.objectives``), their backward
   pass summed or aggregated (PCGrad, IMTL-G), clipping and the hand-written AdamW, with linear
   warm-up and decay and autocast (``runtime.precision_choice``),
4. scores dev after each epoch and keeps the best epoch by the overall score (``best.pt``; with
   ``ema`` > 0 both use a moving average of the weights, ``training.ema``), writing the per-example
   dev outputs (``records``),
5. checkpoints atomically every ``checkpoint_every`` steps (and every $MTL_LAB_CHECKPOINT_MINUTES) and at each epoch end
   (``training.run_state``): a run started again in the same folder resumes there and ends where an
   uninterrupted run would have ended, and a finished run is returned from its ``results.json``,
6. writes ``results.json``: configs, per-epoch metrics, wall time, examples/s.

``sequential=True`` trains the tasks one after another in the order of ``tasks`` (each a stage with
its own warm-up and decay) and scores every task after each epoch, which shows forgetting.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mtl_lab.checkpoint import atomic_save
from mtl_lab.data import resolve_data_dir
from mtl_lab.evaluate import evaluate
from mtl_lab.models.backbone import backbone_path, load_tokenizer
from mtl_lab.models.fast.dropout import dropout_kind
from mtl_lab.models.model import ModelConfig, MultitaskModel
from mtl_lab.records import write_epoch
from mtl_lab.runs import atomic_write_json, check_data, data_fingerprint, load_results
from mtl_lab.runtime import (
    apply_threads,
    cpu_name,
    eval_batch_size,
    precision_choice,
    progress_note,
    resolve_device,
    seed_everything,
)
from mtl_lab.training.config import TrainConfig, TrainingError, check_same, data_files, run_config
from mtl_lab.training.datasets import load_task_data
from mtl_lab.training.ema import WeightAverage
from mtl_lab.training.objectives import task_losses
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients
from mtl_lab.training.run_state import RunState, init_run_record, restore_checkpoint, save_checkpoint
from mtl_lab.training.sampling import epoch_plan, lr_multiplier
from mtl_lab.training.simcse import embedding_metrics
from mtl_lab.training.step import monitor_conflicts, optimizer_step, prepare_for_training, probe_batches


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
    ``cfg.aggregation`` (a student's own PCGrad: ``(grads, reduction, generator) -> vector``).
    results.json names what was used.
    """
    # 1. the run folder: refuse one holding another run, return a finished one as it is
    data_dir = resolve_data_dir(data_dir)  # a wrong data folder fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = replace(model_cfg, tasks=cfg.tasks)
    config = {**run_config(model_cfg, cfg), "data": data_fingerprint(data_files(cfg), data_dir)}
    finished = _finished_run(out, config, resume, progress)
    if finished is not None:
        return finished
    if aggregator is not None and cfg.aggregation == "sum":
        raise ValueError(
            "an aggregator replaces the function of cfg.aggregation: set aggregation='pcgrad' (or 'imtl_g') too"
        )

    # 2. everything it trains with, and where it stands (a checkpoint's state when resuming)
    run = _build(model_cfg, cfg, out, config, data_dir, progress, on_step, optimizer_cls, aggregator)
    state = RunState()
    if resume and run.checkpoint.is_file():
        state = restore_checkpoint(run.checkpoint, config, run.parts(), run.device)
        run.say(f"resuming {out} at stage {state.stage} epoch {state.epoch} step {state.step}")
    if model_cfg.init and state.global_step == 0 and state.init_run is None:  # not on resuming an older run
        state.init_run = init_run_record(model_cfg.init)
    if cfg.pretrain is not None and state.initial is None:  # the geometry before pre-training
        state.initial = embedding_metrics(run.model, run.dev_sets["sts"], run.eval_batch, run.precision)

    # 3. the stages and epochs: train, score, checkpoint
    run.model.train()
    start = time.perf_counter() - state.elapsed
    for stage_i in range(state.stage, len(run.stages)):
        for epoch in range(state.epoch, cfg.epochs):
            log = train_epoch(run, state, stage_i, epoch, start)
            score_epoch(run, state, stage_i, epoch, log)
            state.epoch, state.step, state.elapsed = epoch + 1, 0, time.perf_counter() - start
            run.save(state)
            atomic_write_json(run.results(state, finished=False), run.results_path)
        state.stage, state.epoch = stage_i + 1, 0

    # 4. the results; best.pt is what prediction needs, so the checkpoint goes
    state.elapsed = time.perf_counter() - start
    final = run.results(state, finished=True)
    atomic_write_json(final, run.results_path)
    if run.checkpoint.is_file():
        run.checkpoint.unlink()
    return final


@dataclass
class Run:
    """What a run trains with, built once: its folder and configuration, the model, optimizer and data."""

    out: Path
    model_cfg: ModelConfig
    cfg: TrainConfig
    config: dict  # what results.json and checkpoints store: run_config plus the data fingerprint
    device: torch.device
    precision: str
    precision_reason: str
    threads: dict  # OpenMP's wait policy and why (runtime.apply_threads)
    model: MultitaskModel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    average: WeightAverage | None
    train_sets: dict
    dev_sets: dict
    stages: list[tuple[str, ...]]
    shared_grads: TaskGradients | None
    probes: dict | None
    aggregator: Callable | None
    eval_batch: int
    progress: bool
    on_step: Callable[[int], None] | None

    @property
    def checkpoint(self) -> Path:
        """The checkpoint a run resumes from."""
        return self.out / "checkpoint.pt"

    @property
    def results_path(self) -> Path:
        """The run's results.json."""
        return self.out / "results.json"

    def parts(self) -> dict:
        """The stateful parts a checkpoint saves (None where the run has none)."""
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler, "ema": self.average}

    def save(self, state: RunState) -> None:
        """Checkpoint the run atomically."""
        save_checkpoint(self.checkpoint, self.config, self.parts(), state, self.device)

    def say(self, message: str) -> None:
        """A line above the progress bar (when progress is on)."""
        if self.progress:
            tqdm.write(message)

    def results(self, state: RunState, finished: bool) -> dict:
        """results.json's content: configs, environment, per-epoch history, best epoch, timings."""
        train_time = sum(h["train_seconds"] for h in state.history)
        examples = sum(h["examples"] for h in state.history)
        return {
            "config": self.config,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            **self.threads,
            "device": str(self.device),
            "environment": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "cpu": cpu_name(),
                "backbone_path": backbone_path(self.model_cfg.backbone),
                "dropout": dropout_kind(self.model),
                "tokens": "unpadded" if self.model.unpadded() else "padded",  # mtl_lab.models.fast.unpad
            },
            "data": {
                "train": {t: len(enc) for t, enc in self.train_sets.items()},
                "dev": {t: len(enc) for t, enc in self.dev_sets.items()},
            },
            "history": state.history,
            "best": state.best,
            **({"initial": state.initial} if state.initial is not None else {}),
            **({"init_run": state.init_run} if state.init_run is not None else {}),
            "gradient_conflicts": state.conflicts,
            "optimizer": f"{type(self.optimizer).__module__}.{type(self.optimizer).__qualname__}",
            # the lab's AdamW: the paths its updates took, its fused kernel and/or its readable _foreach update
            **({"optimizer_path": "+".join(sorted(self.optimizer.paths))} if isinstance(self.optimizer, AdamW) else {}),
            **({"aggregator": _qualified(self.aggregator)} if self.aggregator else {}),
            "skipped_steps": state.skipped_steps,
            "wall_time_s": state.elapsed,
            "examples_per_s": examples / train_time if train_time else None,
            "finished": finished,
        }


def _qualified(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _finished_run(out: Path, config: dict, resume: bool, progress: bool) -> dict | None:
    """The results of a finished run in ``out`` with this configuration; None when there is training to do."""
    previous = load_results(out) if resume else None
    if previous is None:
        return None
    check_same(out, previous["config"], config)
    check_data(out, previous["config"], config["data"])
    if not previous.get("finished"):
        return None
    if (out / "best.pt").is_file():
        return previous
    if progress:
        tqdm.write(f"{out}: results.json says finished but best.pt is missing: training again")
    return None


def _build(model_cfg, cfg, out, config, data_dir, progress, on_step, optimizer_cls, aggregator) -> Run:
    """Seed, load the data, build the model and optimizer of a run (fresh: a checkpoint is restored after)."""
    device = resolve_device(cfg.device)
    threads = apply_threads() if device.type == "cpu" else {}  # before the precision probe times a step
    precision, precision_reason = precision_choice(cfg.precision, device)
    seed_everything(cfg.seed)
    train_sets, dev_sets = load_task_data(cfg, load_tokenizer(model_cfg.backbone), data_dir)
    model = prepare_for_training(MultitaskModel(model_cfg).to(device), cfg, device)
    optimizer = (optimizer_cls or AdamW)(
        model.parameter_groups(cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return Run(
        out=out,
        model_cfg=model_cfg,
        cfg=cfg,
        config=config,
        device=device,
        precision=precision,
        precision_reason=precision_reason,
        threads=threads,
        model=model,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,  # fp16 on any device (CPU: tests)
        average=WeightAverage(model, cfg.ema) if cfg.ema else None,
        train_sets=train_sets,
        dev_sets=dev_sets,
        stages=[(t,) for t in cfg.tasks] if cfg.sequential else [cfg.tasks],
        shared_grads=TaskGradients(model.shared_parameters()) if cfg.aggregation != "sum" else None,
        probes=probe_batches(train_sets, model, cfg) if cfg.monitor_every else None,
        aggregator=aggregator,
        eval_batch=cfg.eval_batch_size or eval_batch_size(device),
        progress=progress,
        on_step=on_step,
    )


def _steps_per_epoch(run: Run, stage: tuple[str, ...]) -> int:
    cfg = run.cfg
    return math.ceil(sum(math.ceil(len(run.train_sets[t]) / cfg.batch_size) for t in stage) / cfg.task_draws)


def train_epoch(run: Run, state: RunState, stage_i: int, epoch: int, start: float) -> dict:
    """Train one epoch of a stage from ``state.step`` on; returns its log (losses, R-Drop terms, examples, seconds)."""
    cfg, stage = run.cfg, run.stages[stage_i]
    global_epoch = stage_i * cfg.epochs + epoch
    plan = epoch_plan(run.train_sets, stage, cfg.sampler, cfg.batch_size, cfg.seed, global_epoch, cfg.epochs,
                      cfg.task_draws)  # fmt: skip
    total = _steps_per_epoch(run, stage) * cfg.epochs
    log, state.partial = state.partial or {"losses": {t: [] for t in stage}, "examples": 0, "seconds": 0.0}, None
    log.setdefault("rdrop_consistency", {})  # R-Drop's term, logged apart from the task losses
    t0 = time.perf_counter() - log["seconds"]
    desc = f"{'/'.join(stage)} epoch {epoch + 1}/{cfg.epochs}"
    bar = tqdm(total=len(plan), initial=state.step, desc=desc, disable=not run.progress, leave=False)
    # a job that may be requeued (Slurm) also checkpoints every few minutes, so a requeue loses little
    every_s, last_save = 60 * float(os.environ.get("MTL_LAB_CHECKPOINT_MINUTES") or 0), time.perf_counter()
    for step in range(state.step, len(plan)):
        if cfg.monitor_every and state.global_step % cfg.monitor_every == 0 and len(stage) > 1:
            cosines = monitor_conflicts(run.model, run.probes, stage, run.device, run.precision)
            state.conflicts.append({"step": state.global_step, "epoch": global_epoch + 1, **cosines})
        for group in run.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_multiplier(epoch * len(plan) + step, total, cfg.warmup)
        losses = _step_losses(run, plan[step], state, global_epoch, log)
        log["examples"] += sum(len(idx) for _, idx in plan[step])
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.global_step)
        if not optimizer_step(run.model, run.optimizer, losses, cfg, run.shared_grads, generator, run.scaler,
                              run.aggregator):  # fmt: skip
            state.skipped_steps += 1  # fp16: inf/NaN gradients
        elif run.average is not None:
            run.average.update(run.model)
        state.step, state.global_step = step + 1, state.global_step + 1
        bar.update(1)
        progress_note(f"{run.out.name}: {desc}, step {state.step}/{len(plan)}, {time.perf_counter() - start:.0f} s")
        if step % 20 == 0:
            bar.set_postfix({t: f"{np.mean(v[-50:]):.3f}" for t, v in log["losses"].items() if v})
        by_steps = cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
        by_time = every_s and time.perf_counter() - last_save >= every_s
        if (by_steps or by_time) and state.step < len(plan):
            now = last_save = time.perf_counter()
            state.elapsed, state.partial = now - start, {**log, "seconds": now - t0}
            run.save(state)
            state.partial = None
        if run.on_step is not None:
            run.on_step(state.global_step)
    bar.close()
    return {**log, "seconds": time.perf_counter() - t0, "t0": t0, "desc": desc}


def _step_losses(run: Run, step: tuple, state: RunState, global_epoch: int, log: dict) -> list[torch.Tensor]:
    """A step's task losses (refusing a non-finite one), logged per task."""
    logged: dict[str, dict[str, torch.Tensor]] = {}
    cfg = run.cfg
    losses = task_losses(run.model, step, run.train_sets, run.device, run.precision, cfg.temperature, cfg.rdrop,
                         logged)  # fmt: skip
    for task, loss in losses.items():
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {loss.item()} at step {state.global_step} (task {task}, epoch {global_epoch + 1}); "
                f"lower the learning rate (now {cfg.lr}) or train in fp32"
            )
        log["losses"][task].append(logged[task]["loss"].item())
        if "rdrop_consistency" in logged[task]:
            log["rdrop_consistency"].setdefault(task, []).append(logged[task]["rdrop_consistency"].item())
    return list(losses.values())


def score_epoch(run: Run, state: RunState, stage_i: int, epoch: int, log: dict) -> None:
    """Score dev after an epoch, keep it as best.pt if it is the best so far, and append the epoch to the history."""
    cfg, stage = run.cfg, run.stages[stage_i]
    global_epoch = stage_i * cfg.epochs + epoch
    with run.average.swapped_in(run.model) if run.average is not None else nullcontext(run.model) as scored:
        if cfg.pretrain is not None:
            metrics = embedding_metrics(scored, run.dev_sets["sts"], run.eval_batch, run.precision)
        else:
            outputs: dict = {}
            metrics = evaluate(scored, run.dev_sets, run.eval_batch, run.precision, outputs)
            write_epoch(run.out, global_epoch + 1, outputs)  # per-example dev records (mtl_lab.records)
        eval_end = time.perf_counter()
        if metrics["overall"] > state.best["overall"]:  # saved here: the weights just scored (with ema, the average)
            state.best = {"epoch": global_epoch + 1, **metrics}
            # the precision it was scored in: prediction from best.pt uses the same, on any machine
            weights = {
                "model_config": run.model_cfg.to_dict(),
                "train_config": cfg.to_dict(),
                "precision": run.precision,
            }
            atomic_save({**weights, "state_dict": scored.state_dict(), "metrics": state.best}, run.out / "best.pt")
    losses, consistency, seconds = log["losses"], log["rdrop_consistency"], log["seconds"]
    record = {
        "epoch": global_epoch + 1,
        "stage": "/".join(stage),
        "train_loss": {t: float(np.mean(v)) for t, v in losses.items() if v},
        "loss_curve": {t: block_means(v) for t, v in losses.items() if v},
        "dev": metrics,
        "train_seconds": seconds,
        "eval_seconds": eval_end - log["t0"] - seconds,
        "examples": log["examples"],
        "examples_per_s": log["examples"] / seconds if seconds else None,
    }
    if consistency:  # R-Drop: its consistency term (unweighted), apart from train_loss
        record["rdrop_consistency"] = {t: float(np.mean(v)) for t, v in consistency.items()}
        record["rdrop_consistency_curve"] = {t: block_means(v) for t, v in consistency.items()}
    state.history.append(record)
    run.say(f"[{log['desc']}] dev: {epoch_line(metrics)} ({seconds:.0f}s train)")


# short names for the line printed after each epoch, so that it fits a notebook's output area
SHORT_NAMES = {
    "sst_acc": "sst",
    "qqp_acc": "qqp",
    "sts_pearson": "sts r",
    "sts_spearman": "rho",
    "sts_cos_pearson": "cos r",  # SimCSE pre-training: STS by the cosine of the two embeddings
    "sts_cos_spearman": "cos rho",
    "alignment": "align",
    "uniformity": "unif",
}


def epoch_line(metrics: dict[str, float]) -> str:
    """The dev metrics of one epoch in one short line: ``sst 0.512, qqp 0.845, sts r 0.868, rho 0.866, overall 0.747``."""
    return ", ".join(f"{SHORT_NAMES.get(k, k)} {v:.3f}" for k, v in metrics.items())


def block_means(values: list[float], points: int = 25) -> list[float]:
    """A per-step loss series shortened to at most ``points`` means of consecutive blocks (learning curves)."""
    blocks = np.array_split(np.asarray(values, dtype=float), min(points, len(values)))
    return [round(float(b.mean()), 5) for b in blocks]
