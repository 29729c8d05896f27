"""Issue 13's full-budget experiment names, the rows of its study and the lab's recipe (an ensemble of those rows)."""

import pytest

from mtl_lab.study import experiments, full_budget, publish, recipe


def test_full_cls_is_the_baseline_with_another_seed():
    base_model, base_train = experiments.experiment("baseline", "cpu")
    model, train = experiments.experiment("full-cls-s1", "cpu")
    assert model == base_model and train.seed == 1
    assert {**train.to_dict(), "seed": 0} == base_train.to_dict()
    assert train.train_fraction is None and train.train_limit is None  # every training example


def test_wemb_names_the_runs_made_before_the_word_embeddings_were_frozen():
    _, frozen = experiments.experiment("full-cls-s1", "cpu")
    model, train = experiments.experiment("full-sbert-wemb-s1", "cpu")
    assert frozen.freeze_word_embeddings and not train.freeze_word_embeddings
    assert (model.encoder, train.seed) == ("sbert_cnn_bilstm", 1)
    _, pcgrad = experiments.experiment("full-sbert-qqp_sts-pcgrad-wemb", "cpu")
    assert pcgrad.aggregation == "pcgrad" and not pcgrad.freeze_word_embeddings


def test_publishing_a_run_again_drops_the_replaced_runs_predictions(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "results"))
    src = tmp_path / "runs" / "cpu" / "baseline"
    (src / "predictions").mkdir(parents=True)
    (src / "results.json").write_text('{"finished": true, "best": {"overall": 0.7}}')
    (src / "predictions" / "sst-dev-output.csv").write_text("id,Predicted_Sentiment\n")
    publish.publish("cpu", ["baseline"])
    assert (tmp_path / "results" / "cpu" / "baseline" / "predictions" / "sst-dev-output.csv").is_file()
    (src / "results.json").write_text('{"finished": true, "best": {"overall": 0.8}}')  # retrained
    publish.publish("cpu", ["baseline"], predictions=False)
    dst = tmp_path / "results" / "cpu" / "baseline"
    assert "0.8" in (dst / "results.json").read_text() and not (dst / "predictions").exists()


def test_publish_keeps_a_published_run_of_another_configuration_and_records_the_pretraining(tmp_path, monkeypatch):
    import json
    import os

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "results"))

    def write(root, name, frozen, **extra):
        model, train = experiments.experiment(name, "cpu", freeze_word_embeddings=frozen)
        folder = tmp_path / root / "cpu" / name
        folder.mkdir(parents=True, exist_ok=True)
        record = {"config": {"model": model.to_dict(), "train": train.to_dict()}, "finished": True, **extra}
        (folder / "results.json").write_text(json.dumps(record))
        return folder

    pre = write("results", "pre-sbert-qqp_sts", frozen=False, best={"overall": 0.78})  # what others started from
    write("runs", "pre-sbert-qqp_sts", frozen=True, best={"overall": 0.79}, wall_time_s=90.0)
    with pytest.raises(ValueError, match=r"another configuration \(train.freeze_word_embeddings: False -> True\)"):
        publish.publish("cpu", ["pre-sbert-qqp_sts"])
    assert json.loads((pre / "results.json").read_text())["best"]["overall"] == 0.78  # untouched

    run = write("runs", "full-sbert-qqp_sts-pcgrad-s1", frozen=True, best={"overall": 0.745}, wall_time_s=60.0)
    now = (run / "results.json").stat().st_mtime
    os.utime(tmp_path / "runs" / "cpu" / "pre-sbert-qqp_sts" / "results.json", (now - 120, now - 120))
    publish.publish("cpu", ["full-sbert-qqp_sts-pcgrad-s1"])
    published = json.loads((tmp_path / "results" / "cpu" / "full-sbert-qqp_sts-pcgrad-s1" / "results.json").read_text())
    init = published["init_run"]
    assert init["run"] == "cpu/pre-sbert-qqp_sts" and init["best"]["overall"] == 0.79
    assert init["config"]["train"]["freeze_word_embeddings"] is True and init["wall_time_s"] == 90.0

    os.utime(tmp_path / "runs" / "cpu" / "pre-sbert-qqp_sts" / "results.json", (now, now))  # retrained since
    publish.publish("cpu", ["full-sbert-qqp_sts-pcgrad-s1"])
    published = json.loads((tmp_path / "results" / "cpu" / "full-sbert-qqp_sts-pcgrad-s1" / "results.json").read_text())
    assert "init_run" not in published  # no record rather than a wrong one

    own = {"run": "cpu/pre-sbert-qqp_sts", "best_pt_sha256": "ab12", "best": {"overall": 0.78}}
    write("runs", "full-sbert-qqp_sts-pcgrad-s2", frozen=True, best={"overall": 0.746}, init_run=own)
    publish.publish("cpu", ["full-sbert-qqp_sts-pcgrad-s2"])  # recorded as it started: kept, whatever the times
    published = json.loads((tmp_path / "results" / "cpu" / "full-sbert-qqp_sts-pcgrad-s2" / "results.json").read_text())
    assert published["init_run"] == own

    publish.publish("cpu", ["pre-sbert-qqp_sts"], replace=True)
    assert json.loads((pre / "results.json").read_text())["best"]["overall"] == 0.79


def test_the_papers_best_row_pretrains_and_uses_pcgrad():
    model, train = experiments.experiment("full-sbert-qqp_sts-pcgrad-s2", "cpu")
    assert model.encoder == "sbert_cnn_bilstm" and model.pair_head == "ensemble"
    assert model.init == "cpu/pre-sbert-qqp_sts" and train.seed == 2
    assert (train.aggregation, train.sampler, train.task_draws, train.batch_size) == ("pcgrad", "uniform", 3, 8)


def test_the_layer_wise_lr_decay_candidate_is_row_d_with_llrd():
    model, train = experiments.experiment("full-mean-llrd-s2", "cpu")
    plain_model, plain = experiments.experiment("full-mean-s2", "cpu")
    assert model == plain_model and train.seed == 2
    assert train.lr == pytest.approx(2 * plain.lr) and train.layer_decay == experiments.LLRD["layer_decay"] < 1
    assert {**train.to_dict(), "lr": plain.lr, "layer_decay": 1.0} == plain.to_dict()
    # the suffixes combine in the documented order; out of order the name is refused
    assert experiments.experiment("full-mean-llrd-rdrop", "cpu")[1].rdrop == experiments.RDROP_ALPHA
    with pytest.raises(ValueError, match="unknown pre-training 'rdrop'"):
        experiments.experiment("full-sbert-rdrop-llrd", "cpu")


def test_an_epochs_suffix_stretches_the_run_and_nothing_else():
    model, train = experiments.experiment("full-mean-rdrop-e4-s1", "cpu")
    plain_model, plain = experiments.experiment("full-mean-rdrop-s1", "cpu")
    assert model == plain_model and (train.epochs, plain.epochs, train.seed) == (4, 3, 1)
    assert {**train.to_dict(), "epochs": 3} == plain.to_dict()
    assert experiments.experiment("full-mean-e4", "cpu")[1].epochs == 4
    # a bare "e4" is not a model, and the suffix comes after the others
    with pytest.raises(ValueError, match="full-budget runs are"):
        experiments.experiment("full-e4", "cpu")
    with pytest.raises(ValueError, match="unknown pre-training 'e4' in 'full-sbert-e4-rdrop'"):
        experiments.experiment("full-sbert-e4-rdrop", "cpu")


def test_a_freeze_suffix_freezes_the_lowest_layers_and_nothing_else():
    model, train = experiments.experiment("full-cls-f2-s1", "cpu")
    plain_model, plain = experiments.experiment("full-cls-s1", "cpu")
    assert model == plain_model and (train.freeze_layers, plain.freeze_layers) == (2, 0)
    assert {**train.to_dict(), "freeze_layers": 0} == plain.to_dict()
    assert experiments.experiment("full-mean-rdrop-f1-e4", "cpu")[1].freeze_layers == 1
    with pytest.raises(ValueError, match="full-budget runs are"):
        experiments.experiment("full-f2", "cpu")


def test_the_mean_pooling_recipe_candidate():
    model, train = experiments.experiment("full-mean-s1", "cpu")
    assert (model.encoder, model.pair_head, train.seed, train.epochs) == ("mean", "ensemble", 1, 3)
    with pytest.raises(ValueError, match="pre-training runs exist for"):
        experiments.experiment("full-mean-qqp_sts", "cpu")
    with pytest.raises(ValueError, match=r"full-budget runs are full-<cls\|sbert\|mean>"):
        experiments.experiment("full-bert", "cpu")


def test_notebook_06_compares_the_best_full_budget_run_with_committed_predictions(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path))

    def publish_run(name, overall, train_fraction=None, predictions=True, frozen=True):
        folder = tmp_path / "cpu" / name
        (folder / "predictions").mkdir(parents=True)
        if predictions:
            (folder / "predictions" / "sst-dev-output.csv").write_text("id,Predicted_Sentiment\n")
        train = {"tasks": ["sst", "qqp", "sts"], "train_fraction": train_fraction, "train_limit": None, "epochs": 3}
        if frozen is not None:  # None: a run stored before the option existed (it trained them)
            train["freeze_word_embeddings"] = frozen
        (folder / "results.json").write_text(
            json.dumps({"finished": True, "best": {"overall": overall}, "config": {"train": train}})
        )

    publish_run("baseline", 0.742)
    publish_run("full-cls-s2", 0.744)
    publish_run("full-mean", 0.760, predictions=False)  # no committed predictions: not analysable
    publish_run("ft-sbert-nli", 0.99, train_fraction=0.15)  # a study-budget run never counts
    publish_run("full-cls-wemb", 0.95, frozen=False)  # trained word embeddings: not today's model
    publish_run("old-full", 0.95, frozen=None)
    assert experiments.best_published_with_predictions("cpu", exclude=("baseline",)) == "full-cls-s2"
    assert experiments.best_published_with_predictions("cpu", exclude=("baseline", "full-cls-s2")) is None


def test_the_recipe_command_trains_missing_members_then_writes_averaged_files(tmp_path, monkeypatch, tiny_backbone):
    from mtl_lab.__main__ import main

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    small = dict(train_limit=16, dev_limit=16, epochs=1, batch_size=8, max_length=16)
    out = recipe.recipe_predictions(
        tmp_path / "pred", "smoke", ["full-mean", "full-mean-s1"], tiny_backbone, False, ("dev",), **small
    )
    for name in ("full-mean", "full-mean-s1"):  # both members were trained from nothing
        assert (experiments.run_dir("smoke", name) / "best.pt").is_file()
        assert set(out["members"][name]) >= {"sst_acc", "qqp_acc", "sts_pearson", "overall"}
    assert out["members"]["full-mean"] != out["members"]["full-mean-s1"]
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.csv")) == [
        "para-dev-output.csv",
        "sst-dev-output.csv",
        "sts-dev-output.csv",
    ]
    # the CLI: one member, the smoke profile's own settings, trained from nothing in a fresh runs folder
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "cli-runs"))
    args = ["recipe", "--profile", "smoke", "--out", str(tmp_path / "cli"), "--splits", "dev"]
    assert main([*args, "--members", "full-mean", "--model", tiny_backbone]) == 0
    assert (tmp_path / "cli" / "sst-dev-output.csv").is_file()
    assert (tmp_path / "cli-runs" / "smoke" / "full-mean" / "best.pt").is_file()


def test_the_recipe_records_each_seed_as_an_ensemble_run_of_its_rows(tmp_path, monkeypatch, tiny_backbone):
    from mtl_lab.study.analysis import full_budget_table

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "results"))
    assert recipe.recipe_members(0) == ["full-mean-rdrop-e4"]
    assert recipe.recipe_members(2) == ["full-mean-rdrop-e4-s2"]
    # the recorded ensemble of several rows (the recipe's machinery, whatever RECIPE holds today)
    monkeypatch.setitem(recipe.RECIPE, "rows", ["(a) [CLS] baseline", "(d) mean pooling + ensembled pair heads"])
    assert recipe.recipe_members(0) == ["baseline", "full-mean"]
    small = dict(train_limit=16, dev_limit=16, epochs=1, batch_size=8, max_length=16)
    out = recipe.recipe_predictions(tmp_path / "pred", "smoke", None, tiny_backbone, False, ("dev",), **small)
    record = experiments.load_results(experiments.run_dir("smoke", "recipe"))
    assert record["best"] == out["metrics"] and record["config"]["members"] == recipe.recipe_members(0)
    member_runs = [experiments.load_results(experiments.run_dir("smoke", n)) for n in recipe.recipe_members(0)]
    assert record["wall_time_s"] == sum(r["wall_time_s"] for r in member_runs)
    assert experiments.is_full_budget(record) == experiments.is_full_budget(member_runs[0])
    assert record["config"]["train"]["tasks"] == member_runs[0]["config"]["train"]["tasks"]
    frozen = [r["config"]["train"]["freeze_word_embeddings"] for r in member_runs]  # smoke trains them: False
    assert record["config"]["train"]["freeze_word_embeddings"] is all(frozen)
    assert {n: m["best"] for n, m in record["members"].items()} == out["members"]
    publish.publish("smoke", ["recipe", *recipe.recipe_members(0)])
    assert len(list((tmp_path / "results" / "smoke" / "recipe" / "predictions").glob("*.csv"))) == 3
    table = full_budget_table(experiments.finished_results("smoke"), full_budget.full_budget_rows())
    row = table.loc[full_budget.HEADLINE_ROWS["the lab's recipe"][0]]
    assert row["seeds"] == 1 and row["overall"] == out["metrics"]["overall"]
    assert row["minutes"] == record["wall_time_s"] / 60


def test_publish_writes_a_full_budget_runs_leaderboard_files_and_copies_its_records(tmp_path, monkeypatch):
    import json

    from mtl_lab import evaluate

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "results"))
    model, train = experiments.experiment("full-cls-s1", "cpu")
    src = tmp_path / "runs" / "cpu" / "full-cls-s1"
    src.mkdir(parents=True)
    record = {"config": {"model": model.to_dict(), "train": train.to_dict()}, "finished": True, "best": {}}
    (src / "results.json").write_text(json.dumps(record))
    (src / "best.pt").write_bytes(b"weights")
    (src / "dev-records.npz").write_bytes(b"records")
    calls = []

    def fake_predict(checkpoint, out):
        calls.append((checkpoint, out))
        out.mkdir()
        (out / "sst-test-output.csv").write_text("id,Predicted_Sentiment\n")

    monkeypatch.setattr(evaluate, "predict_files", fake_predict)
    publish.publish("cpu", ["full-cls-s1"])
    dst = tmp_path / "results" / "cpu" / "full-cls-s1"
    assert calls == [(src, src / "predictions")]  # the best epoch's dev and test files, from best.pt
    assert (dst / "predictions" / "sst-test-output.csv").is_file() and (dst / "dev-records.npz").is_file()
    publish.publish("cpu", ["full-cls-s1"])
    assert len(calls) == 1  # written once: the run's files are reused
