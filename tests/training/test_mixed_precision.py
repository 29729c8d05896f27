"""The fp16 + GradScaler branch of the loop, run on the CPU (torch.autocast("cpu", float16) works)."""

import copy

import pytest
import torch
from conftest import tiny_config

from mtl_lab.data import collate
from mtl_lab.models.model import ModelConfig
from mtl_lab.training.datasets import load_encoded
from mtl_lab.training.loop import train
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients
from mtl_lab.training.step import optimizer_step


def tiny(**kw):
    """fp16 on this CPU is emulated (slow): a few short steps."""
    return tiny_config(**{"train_limit": 24, "dev_limit": 24, "epochs": 3, "lr": 5e-4, "checkpoint_every": 4,
                          "precision": "fp16", **kw})  # fmt: skip


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_backbone):
    return train(ModelConfig(backbone=tiny_backbone), tiny(), tmp_path_factory.mktemp("fp16"), progress=False)


def test_fp16_training_on_cpu_runs_and_the_loss_falls(straight):
    assert straight["precision"] == "fp16"
    first, last = straight["history"][0]["train_loss"], straight["history"][-1]["train_loss"]
    assert sum(last.values()) < sum(first.values())
    # the scaler skips a few steps while it halves its initial 2 ** 16 to a scale that fits; 27 steps in all
    assert straight["skipped_steps"] < 9


@pytest.fixture(scope="module")
def batches(tokenizer):
    """One small real batch per task, in the joint view."""
    out = {}
    for task in ("sst", "qqp", "sts"):
        enc = load_encoded(task, "train", tokenizer, 24, 8, 0)
        out[task] = collate(enc, list(range(8)), ("joint",))
    return out


def losses_of(model, batches):
    return [model.loss(t, model(b), b["labels"]) for t, b in batches.items()]


def test_an_inf_gradient_skips_the_step_and_lowers_the_scale(make_model, batches):
    model = make_model()
    model.eval()  # no dropout: deterministic
    opt = AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scale = scaler.get_scale()
    losses = losses_of(model, batches)
    losses[0] = losses[0] * float("inf")
    applied = optimizer_step(model, opt, losses, tiny(), scaler=scaler)
    assert not applied
    assert scaler.get_scale() == scale / 2
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the next, finite step goes through
    assert optimizer_step(model, opt, losses_of(model, batches), tiny(), scaler=scaler)
    assert any(not torch.equal(before[k], model.state_dict()[k]) for k in before)


@pytest.mark.parametrize("aggregation", ["pcgrad", "imtl_g"])
def test_aggregation_on_scaled_gradients_gives_the_unscaled_update(make_model, batches, aggregation):
    cfg = tiny(aggregation=aggregation, task_draws=3, sampler="uniform", grad_clip=None)
    updates = []
    for use_scaler in (False, True):
        model = make_model()
        model.eval()
        start = copy.deepcopy(model.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is the aggregated gradient itself
        shared = TaskGradients(model.shared_parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14) if use_scaler else None
        generator = torch.Generator().manual_seed(0)
        assert optimizer_step(model, opt, losses_of(model, batches), cfg, shared, generator, scaler)
        updates.append({k: model.state_dict()[k] - start[k] for k in start})
    plain, scaled = updates
    for k in plain:
        diff = (plain[k] - scaled[k]).abs().max().item()
        assert diff <= 1e-3 * plain[k].abs().max().item() + 1e-12, (
            k,
            diff,
            plain[k].abs().max().item(),
        )  # lstsq rounding
    assert any(plain[k].abs().max() > 0 for k in plain)


def test_resume_restores_the_scaler(tmp_path, straight, tiny_backbone):
    def interrupt(step):
        if step == 14:
            raise KeyboardInterrupt

    run = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(ModelConfig(backbone=tiny_backbone), tiny(), run, progress=False, on_step=interrupt)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 0
    resumed = train(ModelConfig(backbone=tiny_backbone), tiny(), run, progress=False)
    assert [h["dev"] for h in resumed["history"]] == [h["dev"] for h in straight["history"]]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
