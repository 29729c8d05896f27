"""Metrics against hand-computed values, and the leaderboard file format."""

import numpy as np
import pandas as pd
import pytest

from mtl_lab.evaluate import overall_score, prediction_frame, task_metrics, write_predictions


def test_accuracy_by_hand():
    assert task_metrics("sst", np.array([0, 1, 2, 3, 4]), np.array([0, 1, 2, 0, 0])) == {"sst_acc": 0.6}
    assert task_metrics("qqp", np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])) == {"qqp_acc": 0.75}


def test_pearson_and_spearman_by_hand():
    # x = 1..4, y = 1, 3, 2, 4 -> Pearson r = 0.8 (cov 1.0 / var 1.25); Spearman the same (ranks equal values)
    m = task_metrics("sts", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert m["sts_pearson"] == pytest.approx(0.8)
    assert m["sts_spearman"] == pytest.approx(0.8)
    # monotone but not linear: Spearman 1, Pearson below 1
    m = task_metrics("sts", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 40.0]))
    assert m["sts_spearman"] == pytest.approx(1.0)
    assert m["sts_pearson"] < 0.9


def test_constant_predictions_give_zero_correlation_not_nan():
    m = task_metrics("sts", np.full(4, 2.5), np.array([1.0, 3.0, 2.0, 4.0]))
    assert m == {"sts_pearson": 0.0, "sts_spearman": 0.0}


def test_overall_score_formula():
    # the paper's best row: (.523 + .905 + (.875 + 1) / 2) / 3 = .78854
    m = {"sst_acc": 0.523, "qqp_acc": 0.905, "sts_pearson": 0.875}
    assert overall_score(m) == pytest.approx((0.523 + 0.905 + 0.9375) / 3)
    assert overall_score({"sts_pearson": 0.5}) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        overall_score({})


def test_prediction_files_follow_the_leaderboard_format(tmp_path):
    path = write_predictions(tmp_path, "qqp", "test", ["a b", " c "], np.array([1, 0]))
    assert path.name == "para-test-output.csv"
    # ids as in the input file, only surrounding spaces stripped (an interior space stays)
    assert path.read_text().splitlines() == ["id,Predicted_Is_Paraphrase", "a b,1", "c,0"]
    sts = prediction_frame("sts", ["x", "y"], np.array([-0.3, 5.7]))
    assert sts["Predicted_Similarity"].tolist() == [0.0, 5.0]
    path = write_predictions(tmp_path, "sst", "dev", ["x"], np.array([3.0]))
    assert pd.read_csv(path).to_dict("records") == [{"id": "x", "Predicted_Sentiment": 3}]


def test_the_reported_sts_pearson_is_the_pearson_of_the_written_dev_file(tmp_path, tiny_backbone, monkeypatch):
    """STS is scored on the scores clipped to 0..5 that the leaderboard file holds (docs/running.md), so the dev
    Pearson a run reports is the one of its sts-dev-output.csv against the dev labels."""
    import torch
    from conftest import tiny_config
    from scipy.stats import pearsonr

    from mtl_lab.evaluate import predict_files
    from mtl_lab.models.model import ModelConfig, MultitaskModel
    from mtl_lab.records import read_records
    from mtl_lab.study.compare import dev_labels
    from mtl_lab.training import loop as training

    class Shifted(MultitaskModel):  # the random tiny model's STS scores (5 x cosine, 4.5-5.0) moved across 5
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            torch.nn.init.constant_(self.heads["sts_cross"].bias, 0.2)

    monkeypatch.setattr(training, "MultitaskModel", Shifted)
    cfg = tiny_config(tasks=("sts",), dev_limit=40, lr=1e-7)  # a learning rate that leaves the scores where they are
    model = ModelConfig(encoder="mean", pair_head="ensemble", backbone=tiny_backbone)
    reported = training.train(model, cfg, tmp_path / "run", progress=False)["best"]
    records = read_records(tmp_path / "run")
    raw, raw_ids = records.outputs["sts"][1], list(records.ids["sts"])
    assert (raw > 5).sum() >= 5 and (raw < 5).sum() >= 5  # the clipping matters here
    predict_files(tmp_path / "run", tmp_path / "pred", splits=("dev",), limit=cfg.dev_limit)
    written = pd.read_csv(tmp_path / "pred" / "sts-dev-output.csv")
    assert len(written) == 40 and written["Predicted_Similarity"].between(0, 5).all()
    labels = dev_labels(["sts"])["sts"]
    file_r = pearsonr(written["Predicted_Similarity"], labels.loc[written["id"]])[0]
    assert reported["sts_pearson"] == pytest.approx(file_r, abs=1e-9)
    assert reported["sts_pearson"] != pytest.approx(pearsonr(raw, labels.loc[raw_ids])[0], abs=1e-3)  # not the raw r


def test_a_checkpoint_predicts_in_the_precision_its_run_was_scored_in(tmp_path):
    """An 'auto' run scored in fp32 on one CPU must not be predicted in bf16 on another: results.json says which."""
    import json

    from mtl_lab.models.model import _recorded_precision

    (tmp_path / "results.json").write_text(json.dumps({"precision": "fp32"}))
    assert _recorded_precision(tmp_path / "best.pt") == "fp32"
    assert _recorded_precision(tmp_path) == "fp32"
    assert _recorded_precision(tmp_path / "elsewhere" / "best.pt") is None


def test_one_autocast_context_per_split_scores_as_one_per_batch(tiny_backbone, tokenizer):
    """Scoring a split in one bf16 autocast context gives exactly the outputs of a context per batch."""
    import torch

    from mtl_lab.data import bucket_batches, collate, encode, load_split, subsample
    from mtl_lab.evaluate import task_outputs
    from mtl_lab.models.model import ModelConfig, MultitaskModel
    from mtl_lab.tasks import kind_of

    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig(backbone=tiny_backbone, encoder="sbert_cnn_bilstm", pair_head="bi")).eval()
    for task in ("sst", "sts"):
        enc = encode(subsample(load_split(task, "dev", warn=False), 40, 0), task, tokenizer, 32)
        got = task_outputs(model, enc, 8, "bf16")
        expected = np.zeros_like(got)
        with torch.no_grad():
            for idx in bucket_batches(enc.lengths, 8):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(collate(enc, idx, model.views(task)))
                expected[idx] = kind_of(task).soft(out).cpu().numpy()
        np.testing.assert_array_equal(got, expected)
