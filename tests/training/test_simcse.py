"""SimCSE: the InfoNCE loss against its formula, and the mining of positive pairs (train splits only)."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from mtl_lab.data import load_sick, load_split
from mtl_lab.training import simcse


def _direct(a, p, tau, n=None):
    """-1/B sum_i log( exp(cos(a_i,p_i)/tau) / sum_j [exp(cos(a_i,p_j)/tau) + exp(cos(a_i,n_j)/tau)] )."""
    cos = torch.nn.functional.cosine_similarity
    total = 0.0
    for i in range(a.shape[0]):
        terms = [math.exp(float(cos(a[i], p[j], dim=0)) / tau) for j in range(a.shape[0])]
        if n is not None:
            terms += [math.exp(float(cos(a[i], n[j], dim=0)) / tau) for j in range(a.shape[0])]
        total -= math.log(math.exp(float(cos(a[i], p[i], dim=0)) / tau) / sum(terms))
    return total / a.shape[0]


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_info_nce_matches_the_formula(tau):
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    assert float(simcse.info_nce(a, p, tau)) == pytest.approx(_direct(a, p, tau), rel=1e-5)
    assert float(simcse.info_nce(a, p, tau, hard_negatives=n)) == pytest.approx(_direct(a, p, tau, n), rel=1e-5)


def test_info_nce_is_lower_when_positives_match_and_sharper_at_low_temperature():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(16, 32, generator=g)
    matched, shuffled = (
        simcse.info_nce(a, a + 0.01 * torch.randn(16, 32, generator=g)),
        simcse.info_nce(a, a.roll(1, 0)),
    )
    assert matched < shuffled
    assert simcse.info_nce(a, a, 0.05) < simcse.info_nce(a, a, 1.0)  # a matched batch: colder is more confident
    assert simcse.info_nce(a, a, 0.05, hard_negatives=a.roll(1, 0)) > simcse.info_nce(a, a, 0.05)


def test_info_nce_under_autocast_is_float32_and_close():
    g = torch.Generator().manual_seed(2)
    a, p = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = simcse.info_nce(a.bfloat16(), p.bfloat16())
    assert low.dtype == torch.float32
    assert float(low) == pytest.approx(float(simcse.info_nce(a, p)), rel=0.05)


def test_alignment_and_uniformity():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 16, generator=g)
    assert simcse.alignment(x, x) == pytest.approx(0.0, abs=1e-6)
    assert simcse.alignment(x, -x) == pytest.approx(4.0, rel=1e-5)  # |u - (-u)|^2 = 4 on the unit sphere
    collapsed = x[:1].repeat(64, 1)
    assert simcse.uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)  # all in one point: log(1)
    assert simcse.uniformity(x) < -1.0


def test_supervised_pairs_are_qqp_duplicates_and_sts_above_4_from_train_only():
    pairs = simcse.mine_pairs("qqp_sts")
    sts, qqp = load_split("sts", "train", warn=False), load_split("qqp", "train", warn=False)
    # every train pair above the threshold, less the few that also sit in a dev/test file
    assert 0.95 * (sts["label"] > 4.0).sum() < (pairs["source"] == "sts > 4").sum() <= (sts["label"] > 4.0).sum()
    assert 0.95 * (qqp["label"] == 1).sum() < (pairs["source"] == "qqp duplicate").sum() <= (qqp["label"] == 1).sum()
    above = sts[sts["label"] > 4.0]
    from_sts = pairs[pairs["source"] == "sts > 4"]
    assert set(zip(from_sts["anchor"], from_sts["positive"])) <= set(zip(above["sentence1"], above["sentence2"]))
    assert (sts["label"] == 4.0).sum() > 0  # the threshold is strict: such pairs exist and are left out
    for task in ("qqp", "sts"):
        for split in ("dev", "test"):
            held_out = load_split(task, split, warn=False)
            held_pairs = set(zip(held_out["sentence1"], held_out["sentence2"]))
            assert not held_pairs & set(zip(pairs["anchor"], pairs["positive"])), (task, split)


def test_sst_variant_adds_sst_train_sentences_as_their_own_positives():
    pairs = simcse.mine_pairs("sst_qqp_sts")
    sst = pairs[pairs["source"] == "sst (dropout)"]
    assert len(sst) == len(load_split("sst", "train", warn=False))
    assert (sst["anchor"] == sst["positive"]).all()
    assert set(sst["anchor"]) == set(load_split("sst", "train", warn=False)["sentence"])


def test_nli_triplets_come_from_sick_train_only():
    triplets = simcse.mine_pairs("nli")
    train = load_sick(split="train")
    train_pairs = set(zip(train["sentence_A"], train["sentence_B"], train["entailment_label"]))
    assert all((a, p, "ENTAILMENT") in train_pairs for a, p in zip(triplets["anchor"], triplets["positive"]))
    train_sentences = set(train["sentence_A"]) | set(train["sentence_B"])
    assert set(triplets["negative"].dropna()) <= train_sentences
    assert triplets["negative"].notna().sum() > 100
    other = load_sick(split="test")
    assert not set(zip(triplets["anchor"], triplets["positive"])) & set(zip(other["sentence_A"], other["sentence_B"]))


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown SimCSE mode 'nope'"):
        simcse.mine_pairs("nope")


def test_pretraining_with_the_conflict_monitor_is_a_clear_error():
    from mtl_lab.training.config import TrainConfig

    with pytest.raises(ValueError, match="pre-training has one"):
        TrainConfig(pretrain="nli", monitor_every=10)


def test_collated_nli_batch_masks_missing_hard_negatives(tokenizer):
    pairs = simcse.mine_pairs("nli")
    pairs = pairs.iloc[
        list(pairs.index[pairs["negative"].notna()][:2]) + list(pairs.index[pairs["negative"].isna()][:2])
    ]
    enc = simcse.encode_pairs(pairs, tokenizer, 32)
    batch = simcse.collate_pairs(enc, np.arange(4))
    assert batch["n_valid"].tolist() == [True, True, False, False]
    a, p, n = (torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    masked = simcse.info_nce(a, p, 0.05, n, batch["n_valid"])
    assert float(masked) == pytest.approx(_direct_masked(a, p, n[:2], 0.05), rel=1e-5)


def _direct_masked(a, p, n_kept, tau):
    cos = torch.nn.functional.cosine_similarity
    total = 0.0
    for i in range(a.shape[0]):
        terms = [math.exp(float(cos(a[i], c, dim=0)) / tau) for c in [*p, *n_kept]]
        total -= math.log(math.exp(float(cos(a[i], p[i], dim=0)) / tau) / sum(terms))
    return total / a.shape[0]


def test_pretraining_runs_through_the_loop_and_fine_tuning_starts_from_it(tmp_path):
    from mtl_lab.models.model import ModelConfig, MultitaskModel
    from mtl_lab.training.config import profile_config
    from mtl_lab.training.loop import train

    cfg = profile_config("smoke", pretrain="nli", epochs=1, train_limit=64, dev_limit=64, batch_size=16)
    assert cfg.tasks == ("simcse",)
    res = train(ModelConfig(encoder="mean"), cfg, tmp_path / "pre", progress=False)
    best = res["best"]
    assert {"sts_cos_pearson", "sts_cos_spearman", "alignment", "uniformity"} <= set(best)
    assert best["overall"] == best["sts_cos_spearman"] and 0.3 < best["sts_cos_spearman"] <= 1.0
    assert res["data"]["train"] == {"simcse": 64} and res["data"]["dev"] == {"sts": 64}

    tuned = MultitaskModel(ModelConfig(encoder="mean", init=str(tmp_path / "pre")))
    plain = MultitaskModel(ModelConfig(encoder="mean"))
    saved = torch.load(tmp_path / "pre" / "best.pt", weights_only=True)["state_dict"]
    word = "backbone.embeddings.word_embeddings.weight"
    assert torch.equal(tuned.state_dict()[word], saved[word])
    assert not torch.equal(plain.state_dict()[word], saved[word])
    with pytest.raises(ValueError, match="pre-trained with encoder='mean'"):
        MultitaskModel(ModelConfig(encoder="cls", init=str(tmp_path / "pre")))

    # the fine-tuning run records, as it starts, which pre-training it loaded: the best.pt's hash and its record
    ft = train(ModelConfig(encoder="mean", init=str(tmp_path / "pre")), tiny_config(), tmp_path / "ft", progress=False)
    record = ft["init_run"]
    assert record["best_pt_sha256"] == hashlib.sha256((tmp_path / "pre" / "best.pt").read_bytes()).hexdigest()[:16]
    assert record["run"] == str(tmp_path / "pre") and record["best"] == best
    assert record["config"]["train"]["pretrain"] == "nli" and record["wall_time_s"] == res["wall_time_s"]


def test_named_pretraining_chain_trains_its_prerequisites_and_records_the_geometry_before(tmp_path, monkeypatch):
    from mtl_lab.study.experiments import experiment, prerequisites, run_dir, run_experiment

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path))
    assert prerequisites("ft-cls-nli_qqp_sts", "smoke") == ["pre-cls-nli", "pre-cls-nli_qqp_sts"]
    model_cfg, train_cfg = experiment("pre-cls-nli_qqp_sts", "smoke")
    assert model_cfg.init == "smoke/pre-cls-nli" and train_cfg.pretrain == "qqp_sts"  # relative: portable
    with pytest.raises(ValueError, match="unknown pre-training 'simcse'"):
        experiment("ft-cls-simcse", "smoke")

    res = run_experiment("pre-cls-nli_qqp_sts", "smoke", progress=False)
    nli = json.loads((run_dir("smoke", "pre-cls-nli") / "results.json").read_text())
    # the chain starts from the NLI run's weights: its "before" geometry is the NLI run's "after"
    for key in ("sts_cos_spearman", "alignment", "uniformity"):
        assert res["initial"][key] == pytest.approx(nli["best"][key], abs=1e-5)
        assert nli["initial"][key] != pytest.approx(nli["best"][key], abs=1e-6)
    assert res["config"]["model"]["init"] == "smoke/pre-cls-nli"
