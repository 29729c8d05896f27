"""Training throughput (examples/s): the lab's loop vs Hugging Face Trainer vs a CS224N-starter loop.

All three train the same model (the [CLS] baseline, SST head) on the same SST training subset
with the same batch size for one epoch:

- ``mtl_lab``: mtl_lab.train.train -- length-bucketed dynamic padding, hand-written AdamW;
- ``hf-trainer``: transformers.Trainer, dynamic padding per batch (DataCollatorWithPadding),
  default random batches; and once more with its length-grouped sampler;
- ``pad128-fp32``: the CS224N starter's style -- every batch padded to 128 tokens, fp32, random order.

The lab's loop and the Trainer run in the precision the cpu profile picks on this machine
(``precision="auto"``: bf16 autocast only where the CPU has native bf16, else fp32), or ``--precision``.

Usage: python benchmarks/bench_training.py [--examples 1024] [--batch-size 32] [--precision auto|fp32|bf16]
"""

import argparse
import tempfile
import time

import numpy as np
import torch
from torch import nn

from mtl_lab.backbone import load_tokenizer
from mtl_lab.data import encode, load_split, subsample
from mtl_lab.evaluate import precision_choice
from mtl_lab.model import ModelConfig, MultitaskModel
from mtl_lab.train import cpu_name, profile_config, train


def ours(n: int, batch_size: int, precision: str) -> float:
    cfg = profile_config(
        "cpu",
        tasks=("sst",),
        epochs=1,
        train_limit=n,
        dev_limit=64,
        batch_size=batch_size,
        checkpoint_every=0,
        precision=precision,
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train(ModelConfig(), cfg, tmp, progress=False)
    return res["examples_per_s"]


class TrainerAdapter(nn.Module):
    """The MultitaskModel's SST path behind the (input_ids, attention_mask, labels) -> loss interface."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = MultitaskModel(ModelConfig(tasks=("sst",)))

    def forward(self, input_ids, attention_mask, labels=None, **_):
        out = self.inner({"task": "sst", "input_ids": input_ids, "attention_mask": attention_mask})
        return {"loss": self.inner.loss("sst", out, labels), "logits": out}


def hf_trainer(n: int, batch_size: int, group_by_length: bool, precision: str) -> float:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    tok = load_tokenizer()
    df = subsample(load_split("sst", "train", warn=False), n, 0)
    enc = tok(df["sentence"].tolist(), truncation=True, max_length=128)
    ds = Dataset.from_dict(
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": df["label"].tolist()}
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch_size,
            num_train_epochs=1,
            learning_rate=5e-5,
            weight_decay=0.01,
            warmup_steps=0.1,  # a float below 1 is a fraction of the steps (transformers 5)
            bf16=precision == "bf16",
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = Trainer(
            model=TrainerAdapter(), args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok)
        )
        out = trainer.train()
    return out.metrics["train_samples_per_second"]


def pad128_fp32(n: int, batch_size: int) -> float:
    tok = load_tokenizer()
    df = subsample(load_split("sst", "train", warn=False), n, 0)
    data = encode(df, "sst", tok, 128)
    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig(tasks=("sst",)))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    order = np.random.default_rng(0).permutation(len(data))
    t0 = time.perf_counter()
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        ids = torch.zeros((len(idx), 128), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, j in enumerate(idx):
            ids[r, : len(data.joint[j])] = torch.tensor(data.joint[j])
            mask[r, : len(data.joint[j])] = 1
        labels = torch.as_tensor(data.labels[idx], dtype=torch.long)
        loss = model.loss("sst", model({"task": "sst", "input_ids": ids, "attention_mask": mask}), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    """Run the three loops one after another and print examples/s and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    n, b = args.examples, args.batch_size
    precision, why = precision_choice(args.precision, torch.device("cpu"))
    ours_name = f"mtl_lab loop (bucketed, {precision})"
    results = {
        ours_name: ours(n, b, precision),
        f"HF Trainer ({precision})": hf_trainer(n, b, False, precision),
        f"HF Trainer ({precision}, length-grouped)": hf_trainer(n, b, True, precision),
        "pad-to-128 fp32 loop (CS224N starter style)": pad128_fp32(n, b),
    }
    base = results[ours_name]
    print(f"SST, {n} training examples, batch {b}, one epoch, {torch.get_num_threads()} threads")
    print(f"CPU: {cpu_name()}; precision {precision} ({why})")
    print("| loop | examples/s | mtl_lab / this |\n| --- | --- | --- |")
    for name, eps in results.items():
        print(f"| {name} | {eps:.1f} | {base / eps:.2f}x |")
    print("target: mtl_lab / HF Trainer >= 1.0x")


if __name__ == "__main__":
    main()
