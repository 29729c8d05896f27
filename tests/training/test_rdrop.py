"""R-Drop (a recipe candidate): the consistency term, the doubled batch, the option and its run names."""

import numpy as np
import pytest
import torch

from mtl_lab.data import collate
from mtl_lab.study import experiments
from mtl_lab.training.config import profile_config
from mtl_lab.training.datasets import load_encoded
from mtl_lab.training.loop import train
from mtl_lab.training.objectives import supervised_loss, task_losses
from mtl_lab.training.rdrop import consistency, rdrop_loss


@pytest.mark.parametrize("task,shape", [("sst", (6, 5)), ("qqp", (6,)), ("sts", (6,))])
def test_consistency_is_zero_for_equal_outputs_and_symmetric_positive_otherwise(task, shape):
    torch.manual_seed(0)
    a, b = torch.randn(shape), torch.randn(shape)
    assert consistency(task, a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert consistency(task, a, b).item() > 0
    assert consistency(task, a, b).item() == pytest.approx(consistency(task, b, a).item(), rel=1e-6)


def test_qqp_consistency_is_the_kl_of_the_two_way_distributions():
    a, b = torch.tensor([0.3]), torch.tensor([-1.2])
    p, q = torch.sigmoid(a), torch.sigmoid(b)
    kl = lambda x, y: x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()  # noqa: E731
    assert consistency("qqp", a, b).item() == pytest.approx(0.5 * (kl(p, q) + kl(q, p)).item(), rel=1e-5)


@pytest.mark.parametrize("task", ["sst", "qqp", "sts"])
def test_without_dropout_rdrop_is_the_plain_loss(make_model, tokenizer, task):
    """Both passes agree when dropout is off: the doubled batch gives the plain loss, consistency 0."""
    model = make_model(encoder="mean", pair_head="ensemble").eval()
    enc = load_encoded(task, "train", tokenizer, 32, limit=64, seed=0)
    idx = np.arange(6)
    with torch.no_grad():
        plain = supervised_loss(model, task, enc, idx, torch.device("cpu"))
        doubled = supervised_loss(model, task, enc, idx, torch.device("cpu"), rdrop=1.0)
    assert doubled.item() == pytest.approx(plain.item(), rel=1e-4, abs=1e-5)
    model.train()  # dropout on: the two passes differ, so R-Drop's loss is the plain loss plus something
    torch.manual_seed(1)
    with torch.no_grad():
        regularised = supervised_loss(model, task, enc, idx, torch.device("cpu"), rdrop=100.0)
        consistency_only = regularised - supervised_loss(model, task, enc, idx, torch.device("cpu"), rdrop=0.0)
    assert regularised.item() > 0 and consistency_only.abs().item() > 0


def test_the_rdrop_option_is_checked_and_trains(tmp_path):
    with pytest.raises(ValueError, match="rdrop .* must be >= 0"):
        profile_config("smoke", rdrop=-1.0)
    with pytest.raises(ValueError, match="rdrop regularises the labelled tasks"):
        profile_config("smoke", pretrain="unsup", rdrop=1.0)
    from mtl_lab.models.model import ModelConfig

    cfg = profile_config("smoke", train_limit=16, dev_limit=16, epochs=1, batch_size=8, max_length=16, rdrop=1.0)
    res = train(ModelConfig(encoder="mean", pair_head="ensemble"), cfg, tmp_path, progress=False)
    assert res["finished"] and res["config"]["train"]["rdrop"] == 1.0
    assert np.isfinite(res["best"]["overall"])


def test_rdrop_run_names():
    model, cfg = experiments.experiment("full-mean-rdrop-s2", "cpu")
    assert (model.encoder, model.pair_head, cfg.seed, cfg.rdrop) == ("mean", "ensemble", 2, experiments.RDROP_ALPHA)
    _, plain = experiments.experiment("full-mean-s2", "cpu")
    assert plain.rdrop == 0.0 and {**cfg.to_dict(), "rdrop": 0.0} == plain.to_dict()


def test_a_step_logs_the_task_loss_apart_from_the_consistency_and_backpropagates_their_sum(make_model, tokenizer):
    """The loss back-propagated is R-Drop's as before; what a run records is its task part and the consistency."""
    model = make_model(encoder="mean", pair_head="ensemble").train()
    enc = load_encoded("sst", "train", tokenizer, 32, limit=64, seed=0)
    idx, cpu = np.arange(6), torch.device("cpu")
    logged: dict = {}
    torch.manual_seed(2)
    with torch.no_grad():
        total = task_losses(model, (("sst", idx),), {"sst": enc}, cpu, "fp32", rdrop=3.0, logged=logged)["sst"]
        torch.manual_seed(2)  # the same dropout masks: R-Drop's loss as the lab has always computed it
        before = rdrop_loss(model, "sst", collate(enc, np.concatenate([idx, idx]), model.views("sst")), 3.0)
    assert total.item() == before.item()
    task_part, agreement = logged["sst"]["loss"], logged["sst"]["rdrop_consistency"]
    assert agreement.item() > 0 and task_part.item() < total.item()
    assert (task_part + 3.0 * agreement).item() == pytest.approx(total.item(), rel=1e-6)
    plain: dict = {}
    with torch.no_grad():
        loss = task_losses(model, (("sst", idx),), {"sst": enc}, cpu, "fp32", logged=plain)["sst"]
    assert list(plain["sst"]) == ["loss"] and plain["sst"]["loss"].item() == loss.item()


def test_an_rdrop_run_records_its_task_loss_and_its_consistency_apart_and_resumes_exactly(tmp_path, tiny_backbone):
    from mtl_lab.models.model import ModelConfig

    model = ModelConfig(encoder="mean", pair_head="ensemble", backbone=tiny_backbone)
    small = dict(train_limit=16, dev_limit=16, epochs=2, batch_size=8, max_length=16, checkpoint_every=2)
    cfg = profile_config("smoke", **small, rdrop=1.0)  # 6 steps an epoch, checkpoints every 2
    straight = train(model, cfg, tmp_path / "straight", progress=False)
    for h in straight["history"]:
        assert set(h["rdrop_consistency"]) == set(h["train_loss"]) == {"sst", "qqp", "sts"}
        assert all(v > 0 for v in h["rdrop_consistency"].values())
        assert all(len(c) >= 1 for c in h["rdrop_consistency_curve"].values())

    def interrupt(step):
        if step == 9:  # epoch 2, step 3: resumes from the checkpoint after its step 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, cfg, tmp_path / "resumed", progress=False, on_step=interrupt)
    resumed = train(model, cfg, tmp_path / "resumed", progress=False)
    keys = ("train_loss", "loss_curve", "rdrop_consistency", "rdrop_consistency_curve", "dev")
    assert [[h[k] for k in keys] for h in resumed["history"]] == [[h[k] for k in keys] for h in straight["history"]]
    plain = train(model, profile_config("smoke", **small), tmp_path / "plain", progress=False)
    assert not any("rdrop_consistency" in h for h in plain["history"])
