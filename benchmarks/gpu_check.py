"""GPU check: is this machine ready for the gpu profile, and how long would the paper's runs take?

One script for a person with a CUDA machine (about 5-8 minutes there):

1. verifies CUDA (device, memory, bf16 support);
2. runs the smoke notebooks on the GPU (papermill, ``--skip-notebooks`` to leave them out);
3. trains a few hundred multi-task steps in fp16 (+ GradScaler) and in bf16 through the lab's one
   training loop and checks that the loss is finite and falls;
4. measures training and inference examples/s of the [CLS] baseline on the gpu profile's settings
   (batch 16, max length 128, real task data) for the packaged backbone and for a BERT-base-sized
   model built from a config (random weights: no download), and projects the gpu profile's wall
   time (all local data, 3 epochs, dev evaluation after each) for each;
5. prints a table, and writes everything it measured into one JSON (``--json``).

On a machine without CUDA it says so and does the CPU half (2-3: no notebooks, a few steps in the
CPU's own precision, small measurements), so CI keeps the script alive:

    python benchmarks/gpu_check.py [--json gpu_check.json] [--steps 300] [--skip-notebooks]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from mtl_lab.data import TASK_NAMES, load_split, resolve_data_dir
from mtl_lab.models.backbone import backbone_path, load_tokenizer, quiet_transformers
from mtl_lab.models.model import ModelConfig
from mtl_lab.runtime import cpu_name, precision_choice, resolve_device
from mtl_lab.training.config import PROFILES, profile_config
from mtl_lab.training.loop import train


def device_info(device: torch.device) -> dict:
    """What the device is: name, memory, bf16 support (CUDA) or the CPU's model and threads."""
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
            bf16=torch.cuda.is_bf16_supported(),
            cuda=torch.version.cuda,
        )
    else:
        info.update(name=cpu_name(), threads=torch.get_num_threads(), auto_precision=precision_choice("auto", device))
    return info


def bert_base_folder(folder: Path) -> str:
    """A BERT-base-sized model (12 layers, hidden 768, random weights) with the packaged tokenizer, as a local folder."""
    from transformers import BertConfig, BertModel

    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def training_check(precision: str, steps: int, device: str, out: Path) -> dict:
    """About ``steps`` multi-task steps (2 epochs) in one precision: loss finite and falling from epoch 1 to 2."""
    batch = 16
    per_task = max(8, steps * batch // (2 * len(TASK_NAMES)))
    cfg = profile_config(
        "gpu", precision=precision, device=device, epochs=2, train_limit=per_task, dev_limit=256, checkpoint_every=0
    )
    t0 = time.perf_counter()
    res = train(ModelConfig(), cfg, out, progress=False)
    first, last = (sum(h["train_loss"].values()) for h in (res["history"][0], res["history"][-1]))
    return {
        "precision": res["precision"],
        "steps": sum(h["examples"] for h in res["history"]) // batch,
        "loss_epoch1": round(first, 4),
        "loss_epoch2": round(last, 4),
        "finite_and_falling": math.isfinite(first) and math.isfinite(last) and last < first,
        "skipped_steps": res["skipped_steps"],
        "dev_overall": round(res["best"]["overall"], 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def data_sizes() -> dict:
    """Training and dev examples per task of the local data (what the gpu profile trains on)."""
    return {split: {t: len(load_split(t, split, warn=False)) for t in TASK_NAMES} for split in ("train", "dev")}


def throughput(
    backbone: str | None, label: str, per_task: int, device: str, out: Path, sizes: dict, dev_limit: int | None
) -> dict:
    """Training and inference examples/s of the [CLS] baseline (gpu profile) and the projected gpu-profile run."""
    cfg = profile_config("gpu", device=device, epochs=1, train_limit=per_task, dev_limit=dev_limit, checkpoint_every=0)
    model = ModelConfig(backbone=backbone) if backbone else ModelConfig()
    res = train(model, cfg, out, progress=False)
    h = res["history"][0]
    train_rate = h["examples"] / h["train_seconds"]
    dev_examples = sum(sizes["dev"].values())
    eval_rate = sum(res["data"]["dev"].values()) / h["eval_seconds"]
    epochs = PROFILES["gpu"]["epochs"]
    projected = epochs * (sum(sizes["train"].values()) / train_rate + dev_examples / eval_rate)
    return {
        "model": label,
        "precision": res["precision"],
        "train_examples": h["examples"],
        "train_ex_per_s": round(train_rate, 1),
        "inference_ex_per_s": round(eval_rate, 1),
        "projected_gpu_profile_min": round(projected / 60, 1),
    }


def run_smoke_notebooks(out: Path, only: list[str] | None = None) -> dict:
    """The smoke notebook series (or the ``only`` ones) on this device with papermill, with its wall time."""
    from mtl_lab.course.runner import run_notebooks

    t0 = time.perf_counter()
    code = run_notebooks("smoke", only=only or None, out=str(out), device="cuda")
    rows = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else []
    return {"exit_code": code, "minutes": round((time.perf_counter() - t0) / 60, 1), "notebooks": rows}


def main(argv: list[str] | None = None) -> int:
    """Run the checks, print the table, write the JSON; exit 1 if a check failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="gpu_check.json", help="where to write everything measured")
    p.add_argument("--steps", type=int, help="training steps of each precision check (default 300 GPU, 12 CPU)")
    p.add_argument(
        "--per-task", type=int, help="training examples per task of each throughput run (default 1500 GPU, 16 CPU)"
    )
    p.add_argument("--skip-notebooks", action="store_true", help="leave out the smoke notebooks")
    p.add_argument("--skip-bert-base", action="store_true", help="leave out the BERT-base-sized model")
    p.add_argument(
        "--notebooks-only",
        nargs="*",
        metavar="NB",
        help="only run the smoke notebooks on the GPU (optionally only these, e.g. 02 03)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_transformers()
    import pandas as pd

    device = resolve_device("auto")
    gpu = device.type == "cuda"
    report: dict = {"device": device_info(device), "data_dir": str(resolve_data_dir()), "backbone": backbone_path()}
    if gpu:
        print(
            f"CUDA: {report['device']['name']}, {report['device']['memory_gib']} GiB, bf16 {report['device']['bf16']}"
        )
    else:
        print(f"no CUDA GPU here ({report['device']['name']}): doing the CPU half (no notebooks, few steps)")
    steps = args.steps or (300 if gpu else 12)
    per_task = args.per_task or (1500 if gpu else 16)
    sizes = data_sizes()
    report["data"] = sizes
    ok = True

    def save() -> None:  # after every stage: a run cut short still leaves what it measured
        Path(args.json).write_text(json.dumps({**report, "ok": bool(ok)}, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        precisions = ["fp16", "bf16"] if gpu else [precision_choice("auto", device)[0]]
        if args.notebooks_only is not None:
            if not gpu:
                print("--notebooks-only needs a CUDA GPU")
                return 2
            report["notebooks"] = run_smoke_notebooks(tmp / "notebooks", args.notebooks_only)
            ok = report["notebooks"]["exit_code"] == 0
            save()
            print(
                f"smoke notebooks on the GPU: exit {report['notebooks']['exit_code']}, {report['notebooks']['minutes']} min"
            )
            return 0 if ok else 1
        report["training"] = []
        for precision in precisions:
            check = training_check(precision, steps, str(device), tmp / f"train-{precision}")
            report["training"].append(check)
            ok &= check["finite_and_falling"]
            print(f"training check {precision}: {check}", flush=True)
            save()
        models = [(None, "all-MiniLM-L6-v2 (packaged)")]
        if not args.skip_bert_base:
            models.append((bert_base_folder(tmp / "bert-base"), "BERT-base size (12x768, random weights)"))
        report["throughput"] = []
        for backbone, label in models:
            folder = tmp / f"speed-{len(report['throughput'])}"
            row = throughput(backbone, label, per_task, str(device), folder, sizes, None if gpu else 32)
            report["throughput"].append(row)
            print(f"throughput {label}: {row}", flush=True)
            save()
        if gpu and not args.skip_notebooks:
            report["notebooks"] = run_smoke_notebooks(tmp / "notebooks")
            ok &= report["notebooks"]["exit_code"] == 0
    print()
    print(pd.DataFrame(report["training"]).to_string(index=False))
    print()
    print(pd.DataFrame(report["throughput"]).to_string(index=False))
    if "notebooks" in report:
        print(
            f"\nsmoke notebooks on the GPU: exit {report['notebooks']['exit_code']}, {report['notebooks']['minutes']} min"
        )
    save()
    print(f"\n{'all checks passed' if ok else 'A CHECK FAILED'}; everything measured: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
