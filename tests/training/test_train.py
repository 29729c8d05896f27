"""The training loop: samplers, schedule, resume after an interruption, NaN stop, a real smoke run."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RESUMABLE, tiny_config

from mtl_lab.data import subsample
from mtl_lab.models.model import ModelConfig, MultitaskModel, load_model
from mtl_lab.records import read_records
from mtl_lab.study.analysis import load_quietly
from mtl_lab.study.compare import dev_labels, epoch_predictions, score
from mtl_lab.training.config import TrainConfig, TrainingError, config_diff, profile_config
from mtl_lab.training.datasets import load_encoded
from mtl_lab.training.loop import train
from mtl_lab.training.sampling import epoch_plan, lr_multiplier, task_probabilities


class FakeTask:
    def __init__(self, n, seed=0):
        self.lengths = np.random.default_rng(seed).integers(5, 60, size=n)

    def __len__(self):
        return len(self.lengths)


def test_sampler_probabilities():
    sizes = {"sst": 100, "qqp": 400, "sts": 25}
    assert task_probabilities("proportional", sizes)["qqp"] == pytest.approx(400 / 525)
    assert task_probabilities("round_robin", sizes)["sts"] == pytest.approx(1 / 3)
    assert task_probabilities("sqrt", sizes)["sst"] == pytest.approx(10 / 35)
    # annealed: proportional in the first epoch, n ** 0.2 in the last
    assert task_probabilities("annealed", sizes, 0, 3) == pytest.approx(task_probabilities("proportional", sizes))
    last = task_probabilities("annealed", sizes, 2, 3)
    assert last["qqp"] == pytest.approx(400**0.2 / sum(n**0.2 for n in sizes.values()))


def test_proportional_plan_takes_every_batch_once():
    train = {"a": FakeTask(100), "b": FakeTask(37, 1)}
    plan = epoch_plan(train, ("a", "b"), "proportional", 8, seed=0, epoch=0, epochs=1)
    assert len(plan) == math.ceil(100 / 8) + math.ceil(37 / 8)
    for task, n in (("a", 100), ("b", 37)):
        seen = np.concatenate([idx for step in plan for t, idx in step if t == task])
        assert sorted(seen.tolist()) == list(range(n))


def test_round_robin_alternates_and_plans_are_reproducible():
    train = {"a": FakeTask(100), "b": FakeTask(37, 1)}
    plan = epoch_plan(train, ("a", "b"), "round_robin", 8, seed=3, epoch=1, epochs=2)
    assert [step[0][0] for step in plan[:4]] == ["a", "b", "a", "b"]
    again = epoch_plan(train, ("a", "b"), "round_robin", 8, seed=3, epoch=1, epochs=2)
    assert all(np.array_equal(x[0][1], y[0][1]) for x, y in zip(plan, again))
    other = epoch_plan(train, ("a", "b"), "round_robin", 8, seed=3, epoch=0, epochs=2)
    assert not all(np.array_equal(x[0][1], y[0][1]) for x, y in zip(plan, other))


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_multiplier(s, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(1 / 90)


def tiny(**kw):
    """The resumable tiny config (conftest)."""
    return tiny_config(**{**RESUMABLE, **kw})


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("straight")
    return path, train(ModelConfig(), tiny(), path, progress=False)


def test_a_job_checkpoints_by_the_clock_too_and_resumes_to_the_same_result(tmp_path, straight_run, monkeypatch):
    """Under Slurm ($MTL_LAB_CHECKPOINT_MINUTES) a checkpoint also follows the clock, between the step multiples."""
    straight_path, straight = straight_run
    monkeypatch.setenv("MTL_LAB_CHECKPOINT_MINUTES", "1e-9")  # every step, here

    def interrupt(step):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ModelConfig(), tiny(checkpoint_every=0), tmp_path, progress=False, on_step=interrupt)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["state"]["epoch"], ckpt["state"]["step"]) == (1, 3)  # step 12 of 9 a epoch: the one before it
    monkeypatch.delenv("MTL_LAB_CHECKPOINT_MINUTES")
    resumed = train(ModelConfig(), tiny(checkpoint_every=0), tmp_path, progress=False)
    assert [h["dev"] for h in resumed["history"]] == [h["dev"] for h in straight["history"]]


@pytest.mark.parametrize(
    "stop_at, checkpoint",
    [(12, (1, 0)), (17, (1, 5))],  # 9 steps an epoch, checkpoints every 5 steps and at epoch ends
    ids=["from-epoch-end", "from-mid-epoch"],
)
def test_resume_after_interrupt_gives_the_same_result(tmp_path, straight_run, stop_at, checkpoint):
    straight_path, straight = straight_run

    def interrupt(step):
        if step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ModelConfig(), tiny(), tmp_path, progress=False, on_step=interrupt)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["state"]["epoch"], ckpt["state"]["step"]) == checkpoint
    resumed = train(ModelConfig(), tiny(), tmp_path, progress=False)
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["dev"] == b["dev"]
        assert a["train_loss"] == b["train_loss"]
        assert a["examples"] == b["examples"]
    sa = load_model(straight_path).state_dict()
    sb = load_model(tmp_path).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not (tmp_path / "checkpoint.pt").exists()
    # the per-example dev records of every epoch: identical after resuming, and they reproduce the recorded metrics
    ra, rb = read_records(straight_path), read_records(tmp_path)
    assert ra.epochs == rb.epochs == [1, 2]
    for task in ra.tasks:
        assert (ra.ids[task] == rb.ids[task]).all()
        assert all(np.array_equal(ra.outputs[task][e], rb.outputs[task][e]) for e in ra.epochs)
    labels = dev_labels(ra.tasks)
    for h in straight["history"]:
        again = score(epoch_predictions(ra, h["epoch"]), labels)
        assert again == pytest.approx(h["dev"], abs=1e-6)


def test_finished_run_is_reused_and_other_config_refused(tmp_path):
    first = train(ModelConfig(), tiny(epochs=1), tmp_path, progress=False)
    again = train(ModelConfig(), tiny(epochs=1), tmp_path, progress=False)
    assert again == json.loads(json.dumps(first))
    with pytest.raises(TrainingError, match="different configuration"):
        train(ModelConfig(), tiny(epochs=1, lr=1e-3), tmp_path, progress=False)


def test_word_embeddings_are_frozen_by_default_and_everything_else_trains(tmp_path):
    assert TrainConfig().freeze_word_embeddings and profile_config("cpu").freeze_word_embeddings
    torch.manual_seed(0)
    before = MultitaskModel(ModelConfig(tasks=("sst",))).state_dict()
    train(
        ModelConfig(), tiny(epochs=1, tasks=("sst",), freeze_word_embeddings=True), tmp_path / "frozen", progress=False
    )
    after = load_model(tmp_path / "frozen").state_dict()
    word, position = "backbone.embeddings.word_embeddings.weight", "backbone.embeddings.position_embeddings.weight"
    assert torch.equal(before[word], after[word])
    assert not torch.equal(before[position], after[position])
    assert not torch.equal(
        before["backbone.encoder.layer.0.attention.self.query.weight"],
        after["backbone.encoder.layer.0.attention.self.query.weight"],
    )
    train(
        ModelConfig(), tiny(epochs=1, tasks=("sst",), freeze_word_embeddings=False), tmp_path / "wemb", progress=False
    )
    assert not torch.equal(before[word], load_model(tmp_path / "wemb").state_dict()[word])


def test_freezing_the_lowest_layers_keeps_them_and_the_embeddings_fixed(tmp_path):
    torch.manual_seed(0)
    before = MultitaskModel(ModelConfig(tasks=("sst",))).state_dict()
    train(ModelConfig(), tiny(epochs=1, tasks=("sst",), freeze_layers=2), tmp_path, progress=False)
    after = load_model(tmp_path).state_dict()
    fixed = [
        k
        for k in before
        if k.startswith(("backbone.embeddings.", "backbone.encoder.layer.0.", "backbone.encoder.layer.1."))
    ]
    assert len(fixed) == 5 + 2 * 16 and all(torch.equal(before[k], after[k]) for k in fixed)
    query = "backbone.encoder.layer.{}.attention.self.query.weight"
    assert not torch.equal(before[query.format(2)], after[query.format(2)])
    assert not torch.equal(before["heads.sst.weight"], after["heads.sst.weight"])
    with pytest.raises(ValueError, match="freeze_layers counts the lowest"):
        tiny(freeze_layers=-1)
    with pytest.raises(ValueError, match="between 0 and the backbone's 6 layers, got 7"):
        MultitaskModel(ModelConfig(tasks=("sst",))).freeze_lower_layers(7)


def test_a_run_stored_before_the_freezing_option_counts_as_trained_word_embeddings():
    stored = {"model": ModelConfig().to_dict(), "train": tiny().to_dict()}
    del stored["train"]["freeze_word_embeddings"]  # a results.json written before the option existed
    old_way = {"model": ModelConfig().to_dict(), "train": tiny(freeze_word_embeddings=False).to_dict()}
    assert config_diff(stored, old_way) == []
    assert config_diff(stored, {**old_way, "train": tiny(freeze_word_embeddings=True).to_dict()}) == [
        "train.freeze_word_embeddings: False -> True"
    ]


def test_fixed_seed_gives_the_same_metrics(tmp_path):
    a = train(ModelConfig(), tiny(epochs=1), tmp_path / "a", progress=False)
    b = train(ModelConfig(), tiny(epochs=1), tmp_path / "b", progress=False)
    c = train(ModelConfig(), tiny(epochs=1, seed=1), tmp_path / "c", progress=False)
    assert a["best"] == b["best"]
    assert a["best"] != c["best"]


def test_nan_loss_stops_with_a_message(tmp_path):
    with pytest.raises(TrainingError, match=r"loss is (nan|inf).*lower the learning rate"):
        train(ModelConfig(), tiny(lr=1e6, grad_clip=None, epochs=1), tmp_path, progress=False)


def test_sequential_training_evaluates_all_tasks_each_epoch(tmp_path):
    res = train(ModelConfig(), tiny(tasks=("sts", "sst"), sequential=True, epochs=1), tmp_path, progress=False)
    assert [h["stage"] for h in res["history"]] == ["sts", "sst"]
    assert all({"sst_acc", "sts_pearson"} <= set(h["dev"]) for h in res["history"])


@pytest.mark.parametrize(
    ("model_cfg", "epochs"),
    # the combined embedding's CNN/BiLSTM start from random weights: it needs a third smoke epoch for SST
    [(ModelConfig(), 2), (ModelConfig(encoder="sbert_cnn_bilstm", pair_head="ensemble"), 3)],
    ids=["cls-baseline", "sbert-cnn-bilstm-ensemble"],
)
def test_smoke_multitask_run_beats_the_majority_class(tmp_path, model_cfg, epochs):
    cfg = profile_config("smoke", epochs=epochs)
    res = train(model_cfg, cfg, tmp_path, progress=False)
    best = res["best"]
    for task in ("sst", "qqp"):
        dev = subsample(load_quietly(task, "dev"), cfg.dev_limit, 0)
        majority = dev["label"].value_counts(normalize=True).max()
        assert best[f"{task}_acc"] > majority + 0.02, (task, best, majority)
    assert best["sts_pearson"] > 0.2  # a constant (mean) predictor has r = 0
    assert res["examples_per_s"] > 0 and res["finished"]
    assert res["optimizer_path"] == "fused"  # the lab's AdamW took its fast path
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["history"][-1]["dev"] == res["history"][-1]["dev"]


def test_two_stored_configs_compare_by_what_they_trained_whichever_is_older():
    # publishing compares two stored configs: a run recorded before a field existed (here ``ema``, added with
    # its default 0.0 = off) is the same run as its published copy recorded after
    before = {"model": ModelConfig().to_dict(), "train": {k: v for k, v in tiny().to_dict().items() if k != "ema"}}
    after = {"model": ModelConfig().to_dict(), "train": tiny().to_dict()}
    assert config_diff(after, before) == [] and config_diff(before, after) == []
    assert config_diff(after, {**before, "train": {**before["train"], "lr": 1e-3}}) != []


def test_the_eval_batch_size_does_not_make_another_run():
    stored = {"model": ModelConfig().to_dict(), "train": {**tiny().to_dict(), "eval_batch_size": 128}}
    assert config_diff(stored, {"model": ModelConfig().to_dict(), "train": tiny().to_dict()}) == []
    assert config_diff(stored, {"model": ModelConfig().to_dict(), "train": tiny(lr=1e-3).to_dict()}) != []


def test_the_eval_batch_size_changes_how_fast_not_what_is_scored():
    from mtl_lab.evaluate import evaluate
    from mtl_lab.models.backbone import load_tokenizer
    from mtl_lab.runtime import eval_batch_size

    assert eval_batch_size(torch.device("cpu")) == 32
    tokenizer = load_tokenizer()
    dev = {t: load_encoded(t, "dev", tokenizer, 48, 40, 0) for t in ("sst", "qqp", "sts")}
    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig())
    small, big = evaluate(model, dev, 4, "fp32"), evaluate(model, dev, 128, "fp32")
    assert small.keys() == big.keys() and len(small) >= 3
    assert all(abs(small[k] - big[k]) < 1e-6 for k in small)


def test_the_train_command_freezes_layers_and_names_the_run_after_it(tmp_path, monkeypatch, capsys, tiny_backbone):
    from mtl_lab.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))  # train writes under the runs folder, as run does
    small = ["--train-limit", "16", "--dev-limit", "16", "--epochs", "1", "--batch-size", "8", "--max-length", "16"]
    args = ["train", "--profile", "smoke", "--model", tiny_backbone, "--tasks", "sst", "sts", "--freeze-layers", "1"]
    assert main([*args, *small]) == 0
    (run,) = (tmp_path / "runs" / "smoke").iterdir()
    assert run.name == f"{Path(tiny_backbone).name}-sst-sts-freeze1"  # the backbone's folder, the tasks, the option
    assert json.loads((run / "results.json").read_text())["config"]["train"]["freeze_layers"] == 1
    assert main(["train", "--profile", "smoke", "--model", tiny_backbone, "--freeze-layers", "3", *small]) == 2
    assert "between 0 and the backbone's 2 layers, got 3" in capsys.readouterr().err
