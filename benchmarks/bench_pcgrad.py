"""PCGrad step time vs a plain multi-task step, and vs a naive flatten-and-copy PCGrad.

Same model (the [CLS] baseline, set up as the training loop sets it up), same three task batches (4 examples each, the paper's PCGrad
sampling), same optimizer; the three step kinds alternate so machine-load drift hits all alike:

- ``plain``: sum of the three task losses (mean reduction), one backward, AdamW step;
- ``pcgrad (mtl_lab)``: each task's backward writes into one K x D buffer (no copies),
  projection through the Gram matrix, the result viewed back as ``.grad``;
- ``pcgrad (naive)``: in the style of the paper's appendix listing -- per task, zero the grads,
  backward with retain_graph, copy every parameter's grad into a flat vector; project with a
  Python loop over task pairs on the flat vectors; copy the result back parameter by parameter.

The losses run in the precision the cpu profile picks on this machine (``precision="auto"``: bf16
autocast only where the CPU has native bf16 and a timed step is faster in it, else fp32), or ``--precision``.

Usage: python benchmarks/bench_pcgrad.py [--steps 20] [--batch 4] [--precision auto|fp32|bf16]
"""

import argparse
import random
import statistics
import time

import numpy as np
import torch

from mtl_lab.data import TASK_NAMES, collate, encode, load_split
from mtl_lab.models.backbone import load_tokenizer
from mtl_lab.models.model import ModelConfig, MultitaskModel
from mtl_lab.runtime import autocast_context, cpu_name, precision_choice
from mtl_lab.training.config import profile_config
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation import as_aggregator
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients
from mtl_lab.training.step import prepare_for_training

PRECISION = "fp32"  # set in main() from the machine's choice
PCGRAD = as_aggregator("pcgrad")  # "sum": the loss weights of losses_of took the mean


def losses_of(model: MultitaskModel, batches: dict[str, dict]) -> list[torch.Tensor]:
    """The three task losses (in the cpu profile's precision on this machine)."""
    out = []
    for task, batch in batches.items():
        with autocast_context(torch.device("cpu"), PRECISION):
            output = model(batch)
        out.append(model.loss(task, output, batch["labels"]) / len(batches))
    return out


def plain_step(model: MultitaskModel, opt: AdamW, batches: dict[str, dict], _: TaskGradients) -> None:
    """One backward of the summed task losses, then the optimizer step."""
    sum(losses_of(model, batches)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def pcgrad_step(model: MultitaskModel, opt: AdamW, batches: dict[str, dict], tg: TaskGradients) -> None:
    """The lab's PCGrad step: one backward per task into the K x D buffer, the projection, the optimizer step."""
    grads = tg.backward(losses_of(model, batches))
    tg.assign(PCGRAD(grads, None, tg.result))  # as the training loop does
    opt.step()
    opt.zero_grad(set_to_none=True)


def naive_pcgrad_step(model: MultitaskModel, opt: AdamW, batches: dict[str, dict], _: TaskGradients) -> None:
    """PCGrad as the paper's appendix listing does it: gradients copied out and back, projected in a Python loop."""
    shared = model.shared_parameters()
    losses = losses_of(model, batches)
    flat = []
    for loss in losses:
        for p in shared:
            p.grad = None
        loss.backward(retain_graph=True)
        flat.append(
            torch.cat([p.grad.clone().flatten() if p.grad is not None else torch.zeros(p.numel()) for p in shared])
        )
    projected = [g.clone() for g in flat]
    for i, gi in enumerate(projected):
        others = list(range(len(flat)))
        random.shuffle(others)
        for j in others:
            if j == i:
                continue
            dot = torch.dot(gi, flat[j])
            if dot < 0:
                gi -= dot / (flat[j].norm() ** 2) * flat[j]
    merged = torch.stack(projected).sum(0)
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = merged[offset : offset + n].view_as(p).clone()
        offset += n
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> None:
    """Print median step times and the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    global PRECISION
    PRECISION, why = precision_choice(args.precision, torch.device("cpu"))
    tok = load_tokenizer()
    batches = {}
    for task in TASK_NAMES:
        enc = encode(load_split(task, "train", warn=False).head(64), task, tok, 128)
        batches[task] = collate(enc, np.arange(args.batch), ("joint",))
    torch.manual_seed(0)
    cfg, cpu = profile_config("cpu"), torch.device("cpu")  # the lab's training set-up: frozen word embeddings, ...
    models = {
        name: prepare_for_training(MultitaskModel(ModelConfig()), cfg, cpu)
        for name in ("plain", "pcgrad (mtl_lab)", "pcgrad (naive)")
    }
    steps = {"plain": plain_step, "pcgrad (mtl_lab)": pcgrad_step, "pcgrad (naive)": naive_pcgrad_step}
    opts = {n: AdamW(m.parameters(), lr=1e-5) for n, m in models.items()}
    tgs = {n: TaskGradients(m.shared_parameters()) for n, m in models.items()}
    times = {n: [] for n in models}
    for i in range(args.steps + 3):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn(models[name], opts[name], batches, tgs[name])
            if i >= 3:  # warm-up steps allocate optimizer state and buffers
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"3 tasks x {args.batch} examples a step, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"CPU: {cpu_name()}; precision {PRECISION} ({why})")
    print("| step | median ms | / plain |\n| --- | --- | --- |")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m * 1e3:.0f} | {m / base:.2f}x |")
    print("target: pcgrad (mtl_lab) / plain <= 1.15x (the paper reports ~2x)")


if __name__ == "__main__":
    main()
