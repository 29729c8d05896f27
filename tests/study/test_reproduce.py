"""'Reproduce' reproduces: published results apart from a user's runs, no silent no-op option, a prediction per id."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from mtl_lab.__main__ import main
from mtl_lab.data import DataError, resolve_data_dir
from mtl_lab.evaluate import predict_files
from mtl_lab.models.model import ModelConfig
from mtl_lab.study import experiments
from mtl_lab.study.publish import publish
from mtl_lab.training.config import TrainingError, profile_config, require_device
from mtl_lab.training.loop import train

tiny = tiny_config


# -- published results vs the user's own runs ------------------------------------------------------


def test_published_results_are_read_but_never_returned_as_a_fresh_run(tmp_path, monkeypatch, tiny_backbone):
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "results"))
    published = experiments.published_dir("smoke", "single-sst")
    published.mkdir(parents=True)
    fake = {"finished": True, "best": {"overall": 0.99, "epoch": 1}, "config": {"train": {"tasks": ["sst"]}}}
    (published / "results.json").write_text(json.dumps(fake))
    assert experiments.finished_results("smoke")["single-sst"]["best"]["overall"] == 0.99
    assert experiments.finished_results("smoke", source="own") == {}
    res = experiments.run_experiment("single-sst", "smoke", backbone=tiny_backbone, progress=False, train_limit=16)
    assert res["best"]["overall"] != 0.99 and (experiments.run_dir("smoke", "single-sst") / "best.pt").is_file()
    assert experiments.finished_results("smoke", source="own")["single-sst"]["best"] == res["best"]
    assert experiments.finished_results("smoke")["single-sst"]["best"]["overall"] == 0.99  # untouched
    publish("smoke", ["single-sst"])
    assert experiments.finished_results("smoke")["single-sst"]["best"] == json.loads(json.dumps(res["best"]))


def test_the_repository_publishes_results_and_ignores_runs():
    from mtl_lab.data import REPO_ROOT

    assert (REPO_ROOT / "results" / "cpu" / "baseline" / "results.json").is_file()
    assert "runs/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_the_best_model_command_needs_weights_and_prefers_the_full_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path))

    def fake(name, overall, fraction, weights=True):
        folder = tmp_path / "cpu" / name
        folder.mkdir(parents=True)
        cfg = {"train": {"tasks": ["sst", "qqp", "sts"], "train_fraction": fraction, "train_limit": None, "epochs": 3}}
        (folder / "results.json").write_text(
            json.dumps({"finished": True, "best": {"overall": overall}, "config": cfg})
        )
        if weights:
            (folder / "best.pt").write_bytes(b"")

    with pytest.raises(ValueError, match="no finished multi-task run with its best.pt"):
        experiments.best_model("cpu")
    fake("study", 0.80, 0.15)
    fake("nofile", 0.90, None, weights=False)
    assert experiments.best_model("cpu")[0] == "study"
    fake("full", 0.74, None)
    name, why = experiments.best_model("cpu")
    assert name == "full" and "full budget" in why and "0.7400" in why


def test_sweep_predict_writes_the_best_full_budget_run_even_without_grid_runs(tmp_path, monkeypatch, capsys):
    import mtl_lab.evaluate

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path))
    folder = tmp_path / "cpu" / "full-mean-rdrop-e4"  # a full-budget run, none of notebook 05's grid
    folder.mkdir(parents=True)
    cfg = {"train": {"tasks": ["sst", "qqp", "sts"], "train_fraction": None, "train_limit": None, "epochs": 4}}
    (folder / "results.json").write_text(json.dumps({"finished": True, "best": {"overall": 0.75}, "config": cfg}))
    (folder / "best.pt").write_bytes(b"")
    written = []
    monkeypatch.setattr(
        mtl_lab.evaluate, "predict_files", lambda ckpt, out, splits: written.append(ckpt) or {"overall": 0.75}
    )
    assert main(["sweep", "--profile", "cpu", "--no-train"]) == 1  # nothing to tabulate, nothing asked to write
    assert written == []
    assert main(["sweep", "--profile", "cpu", "--no-train", "--predict", str(tmp_path / "pred")]) == 0
    assert written == [folder / "best.pt"]
    out = capsys.readouterr().out
    assert "no finished run of yours in the grid" in out and "writing the predictions of full-mean-rdrop-e4" in out


# -- options that would do nothing are refused -----------------------------------------------------


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(aggregation="pcgrad"), "task_draws is 1"),
        (dict(aggregation="imtl_g"), "task_draws is 1"),
        (dict(aggregation="pcgrad", task_draws=3, tasks=("sst",)), "only one task"),
        (dict(aggregation="pcgrad", task_draws=3, sequential=True), "sequential"),
        (dict(reduction="sum"), "reduction 'sum'"),
        (dict(monitor_every=5, tasks=("sst",)), "monitor_every"),
        (dict(sampler="sqrt", sequential=True), "one task per stage"),
        (dict(sampler="annealed", epochs=1), "annealed"),
    ],
)
def test_a_combination_that_would_do_nothing_is_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        profile_config("smoke", **kw)


def test_pcgrad_with_several_task_batches_is_accepted():
    cfg = profile_config("smoke", aggregation="pcgrad", task_draws=3, sampler="uniform", reduction="sum")
    assert cfg.aggregation == "pcgrad"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--aggregation", "pcgrad"], "task_draws is 1"),
        (["--temperature", "0.1"], "needs --pretrain"),
        (["--tasks", "sst", "--pair-head", "bi"], "neither task"),
        (["--tasks", "qqp", "--encoder", "mean"], "--encoder is not used"),
        (["--pretrain", "qqp_sts", "--tasks", "sst"], "contrastive objective alone"),
    ],
)
def test_the_cli_refuses_options_it_would_ignore(argv, message, capsys):
    assert main(["train", "--profile", "smoke", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_gpu_profile_refuses_a_machine_without_cuda(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingError, match="needs a CUDA GPU.*--device cpu"):
        require_device("gpu")
    require_device("gpu", "cpu")  # explicitly on the CPU: allowed
    require_device("cpu")
    assert main(["train", "--profile", "gpu"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert main(["run", "baseline", "--profile", "gpu"]) == 2


# -- a prediction for every test id ----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_backbone):
    path = tmp_path_factory.mktemp("ckpt")
    train(ModelConfig(backbone=tiny_backbone), tiny(), path, progress=False)
    return path


def _data_with(tmp_path, name, text):
    folder = tmp_path / "data"
    shutil.copytree(resolve_data_dir(), folder, ignore=shutil.ignore_patterns("*.txt"))
    (folder / name).write_text(text)
    return folder


def test_every_test_id_gets_a_prediction_in_input_order(tmp_path, checkpoint):
    quora = (
        "\tid\tsentence1\tsentence2\n"
        "0\tab cd\tHow do I cook rice?\tHow to cook rice?\n"
        "1\tq-empty\t\tWhat is love?\n"  # an empty sentence
        "2\tq-extra\tWhy?\tWhy not?\textra field\n"  # broken quoting: a field too many
        "3\t  padded  \tIs it?\tIs it not?\n"
    )
    data = _data_with(tmp_path, "quora-test-student.csv", quora)
    with pytest.warns(UserWarning, match=r"quora-test-student\.csv: kept .* 2 malformed rows"):
        predict_files(checkpoint, tmp_path / "out", data_dir=data, splits=("test",))
    out = pd.read_csv(tmp_path / "out" / "para-test-output.csv", dtype=str)
    assert out["id"].tolist() == ["ab cd", "q-empty", "q-extra", "padded"]
    assert out["Predicted_Is_Paraphrase"].isin(["0", "1"]).all()


def test_dev_predictions_cover_the_malformed_row_and_score_the_rest(tmp_path, checkpoint):
    metrics = predict_files(checkpoint, tmp_path / "out", splits=("dev",))
    dev_ids = pd.read_csv(resolve_data_dir() / "quora-dev.csv", sep="\t", dtype=str, usecols=["id"])["id"]
    out = pd.read_csv(tmp_path / "out" / "para-dev-output.csv", dtype=str)
    assert out["id"].tolist() != [] and len(out) == len(dev_ids) and set(out["id"]) == set(dev_ids.str.strip())
    assert 0 <= metrics["qqp_acc"] <= 1


def test_a_header_only_file_is_one_clear_error(tmp_path, checkpoint):
    data = _data_with(tmp_path, "ids-sst-test-student.csv", "\tid\tsentence\n")
    with pytest.raises(DataError, match=r"ids-sst-test-student\.csv: no rows to predict"):
        predict_files(checkpoint, tmp_path / "out", data_dir=data, splits=("test",))
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o"),
                "--data",
                str(data),
                "--splits",
                "test",
            ]
        )
        == 2
    )


# -- an ensemble of checkpoints ----------------------------------------------------------------------


def test_an_ensemble_averages_its_members_probabilities_and_scores(tmp_path, checkpoint, tiny_backbone):
    other = tmp_path / "other"
    train(ModelConfig(backbone=tiny_backbone), tiny(seed=1), other, progress=False)
    members: dict = {}
    metrics = predict_files([checkpoint, other], tmp_path / "ens", splits=("dev",), members=members)
    alone = [predict_files(p, tmp_path / f"m{i}", splits=("dev",)) for i, p in enumerate((checkpoint, other))]
    assert [members[str(p)] for p in (checkpoint, other)] == alone  # each member's own score, shown beside
    # the files hold the decision on the members' averaged probabilities (SST) and scores (STS)
    from mtl_lab.data import encode, load_split
    from mtl_lab.evaluate import outputs_to_predictions, task_outputs
    from mtl_lab.models.backbone import load_tokenizer
    from mtl_lab.models.model import load_model

    models = [load_model(p) for p in (checkpoint, other)]
    for task, col in (("sst", "Predicted_Sentiment"), ("sts", "Predicted_Similarity")):
        enc = encode(load_split(task, "dev", keep_malformed=True), task, load_tokenizer(tiny_backbone), 16)
        mean = np.mean([task_outputs(m, enc) for m in models], axis=0)
        written = pd.read_csv(tmp_path / "ens" / f"{task}-dev-output.csv")[col].to_numpy()
        np.testing.assert_allclose(written, outputs_to_predictions(task, mean), atol=1e-6)
    assert set(metrics) == set(alone[0])
    out = tmp_path / "cli"
    assert main(["predict", "--checkpoint", str(checkpoint), str(other), "--out", str(out), "--splits", "dev"]) == 0
    assert (out / "sst-dev-output.csv").is_file()


def test_an_ensemble_refuses_members_of_different_tasks(tmp_path, checkpoint, tiny_backbone):
    sst_only = tmp_path / "sst"
    train(ModelConfig(backbone=tiny_backbone, tasks=("sst",)), tiny(tasks=("sst",)), sst_only, progress=False)
    with pytest.raises(ValueError, match="must share tasks and backbone"):
        predict_files([checkpoint, sst_only], tmp_path / "out", splits=("dev",))


def test_a_run_with_the_same_configuration_under_another_name_is_shared_not_retrained(
    tmp_path, monkeypatch, tiny_backbone
):
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path))
    small = dict(train_limit=16, dev_limit=16, epochs=1, max_length=16)
    base = experiments.run_experiment("baseline", "smoke", backbone=tiny_backbone, progress=False, **small)
    calls = []
    real_train = experiments.train
    monkeypatch.setattr(experiments, "train", lambda *a, **k: calls.append(a[2]) or real_train(*a, **k))
    # in the smoke profile the proportional sampler IS the baseline's configuration
    shared = experiments.run_experiment(
        "sampler-proportional", "smoke", backbone=tiny_backbone, progress=False, **small
    )
    assert shared["best"] == base["best"] and shared["config"] == json.loads(json.dumps(base["config"]))
    folder = experiments.run_dir("smoke", "sampler-proportional")
    assert (folder / "best.pt").read_bytes() == (experiments.run_dir("smoke", "baseline") / "best.pt").read_bytes()
    assert not list(tmp_path.glob("smoke/*.sharing"))
    # a different configuration trains: the identical one came back from train() without training
    other = experiments.run_experiment("sampler-sqrt", "smoke", backbone=tiny_backbone, progress=False, **small)
    assert other["config"]["train"]["sampler"] == "sqrt"
    assert experiments.identical_run("smoke", "x", *experiments.experiment("sampler-annealed", "smoke")) is None
    assert len(calls) == 2 and "wall_time_s" in other


def test_limited_dev_predictions_cover_the_subset_training_scores(tmp_path, checkpoint, tokenizer):
    from mtl_lab.study import analysis
    from mtl_lab.training.datasets import load_encoded

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(checkpoint / "best.pt", run / "best.pt")
    preds = analysis.run_dev_predictions(run, limit=20)
    assert (run / "predictions-dev20" / "sst-dev-output.csv").is_file() and not (run / "predictions").exists()
    assert {t: len(df) for t, df in preds.items()} == {"sst": 20, "qqp": 20, "sts": 20}
    scored = load_encoded("qqp", "dev", tokenizer, 16, 20, 0)  # what training with dev_limit 20 evaluates
    assert set(preds["qqp"]["id"]) == {i.replace(" ", "") for i in scored.ids}
    assert preds["qqp"]["gold"].notna().all()
