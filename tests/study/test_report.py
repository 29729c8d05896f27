"""The results page: built from a runs folder, every section that has runs, figures written beside it."""

import json

import pytest

from mtl_lab.study import report


def _write(root, name, tasks, overall=0.7, **extra):
    best = {"sst_acc": 0.4, "qqp_acc": 0.75, "sts_pearson": 0.8, "overall": overall, "epoch": 1}
    res = {
        "config": {"train": {"tasks": tasks}},
        "best": best,
        "wall_time_s": 300.0,
        "examples_per_s": 10.0,
        "history": [],
        "finished": True,
        **extra,
    }
    folder = root / "cpu" / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))


def test_results_page_has_the_sections_of_its_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))  # the page reads the published results
    tasks = ["sst", "qqp", "sts"]
    conflicts = [
        {"step": s, "epoch": 1, "sst-qqp": c, "sst-sts": -0.1, "qqp-sts": 0.2} for s, c in enumerate([0.1, -0.2])
    ]
    _write(tmp_path / "runs", "baseline", tasks)
    _write(tmp_path / "runs", "agg-cls-sum", tasks, 0.68, gradient_conflicts=conflicts)
    _write(tmp_path / "runs", "agg-sbert-sum", tasks, 0.69)
    _write(tmp_path / "runs", "ft-sbert-qqp_sts", tasks, 0.71)
    _write(tmp_path / "runs", "ft-sbert-qqp_sts-s1", tasks, 0.69)  # further seeds: the seed check
    _write(tmp_path / "runs", "agg-sbert-sum-s1", tasks, 0.67)
    geometry = {"sts_cos_spearman": 0.8, "alignment": 0.15, "uniformity": -2.0, "overall": 0.8, "epoch": 1}
    _write(tmp_path / "runs", "pre-sbert-qqp_sts", ["simcse"], initial={**geometry, "uniformity": -1.7})
    json_path = tmp_path / "runs" / "cpu" / "pre-sbert-qqp_sts" / "results.json"
    res = json.loads(json_path.read_text())
    res["best"] = geometry
    json_path.write_text(json.dumps(res))

    page = report.build("cpu", tmp_path / "docs" / "results.md").read_text()
    assert "## Baselines (notebook 01)" in page and "## Contrastive pre-training, sbert (notebook 03)" in page
    assert "| SimCSE (QQP/STS)" in page and "0.7847" not in page  # paper values shown to 3 digits
    assert "0.785" in page  # the paper's SBERT + CNN-BiLSTM, SimCSE (QQP/STS) overall beside our row
    assert "3 of the grid's" in page and "Best configuration by dev overall: **ft-sbert-qqp_sts**" in page
    assert "### Seed check" in page and "the top row leads the next by 0.020" in page  # .700 vs .680
    assert "not committed yet" in page  # no prediction files: the error section says so
    assert "## Sentence encoders" not in page  # no enc- runs, no section
    for name in ("cpu_ablation", "cpu_alignment_uniformity_sbert"):
        assert (tmp_path / "docs" / "figures" / f"{name}.png").is_file() and f"figures/{name}.png" in page


def test_the_readme_headline_is_rewritten_from_the_full_budget_runs(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    tasks = ["sst", "qqp", "sts"]
    _write(tmp_path / "runs", "baseline", tasks, 0.74)
    _write(tmp_path / "runs", "full-cls-s1", tasks, 0.75, timing_note="shared the cores")
    readme = tmp_path / "README.md"
    readme.write_text(f"# lab\n\n{report.README_START}\nold table\n{report.README_END}\n\n## next\n")
    assert report.update_readme("cpu", readme)
    text = readme.read_text()
    assert "old table" not in text and text.endswith("## next\n")
    row = next(line for line in text.splitlines() if line.startswith("| the [CLS] baseline"))
    # seeds, the best epoch's mean; no records, so no selection-free score; minutes of the quiet run only
    assert "| 2 |" in row and "| 0.745 |" in row and "| 5 |" in row and "needs records" in row
    assert "not trained yet" in text and "0.785" in text  # rows still to train; the paper's Table 2 beside
    assert not report.update_readme("cpu", readme)  # unchanged the second time
    (tmp_path / "other.md").write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- headline:start -->"):
        report.update_readme("cpu", tmp_path / "other.md")


def test_stopped_candidates_are_not_listed_as_still_to_train(tmp_path, monkeypatch):
    from mtl_lab.study.full_budget import STOPPED_ROWS

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    tasks = ["sst", "qqp", "sts"]
    for name in ("baseline", "full-mean-llrd", "full-mean-ema"):
        _write(tmp_path / "runs", name, tasks, 0.74)
    _write(tmp_path / "runs", "full-mean", tasks, 0.753)
    page = report.build("cpu", tmp_path / "docs" / "results.md").read_text()
    still = next(line for line in page.splitlines() if line.startswith("Still to train"))
    assert "`full-cls-s1`" in still and "`full-mean-rdrop-e4-s2`" in still  # rows still being measured
    assert "llrd" not in still and "ema" not in still  # stopped after seed 0
    for row in STOPPED_ROWS:
        assert f"Not continued: {row}: " in page and "; no gain" in page
    # the scores come from the runs themselves (both seed 0s), not from text
    overall = {
        n: json.loads((tmp_path / "runs" / "cpu" / n / "results.json").read_text())["best"]["overall"]
        for n in ("full-mean-llrd", "full-mean")
    }
    assert f"seed 0 {overall['full-mean-llrd']:.4f} against {overall['full-mean']:.4f} for row (d); no gain" in page


def test_the_page_leads_with_its_tables_and_collects_timing_notes_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    tasks = ["sst", "qqp", "sts"]
    _write(tmp_path / "runs", "baseline", tasks, 0.74, timing_note="paused for a benchmark")
    _write(tmp_path / "runs", "full-cls-s1", tasks, 0.75)
    lines = report.build("cpu", tmp_path / "docs" / "results.md").read_text().splitlines()
    first_table = next(k for k, line in enumerate(lines) if line.startswith("|"))
    assert first_table < 15
    note = [k for k, line in enumerate(lines) if "paused for a benchmark" in line]
    assert len(note) == 1 and lines.index("<details>") < note[0] < lines.index("</details>")  # once, collapsed
    assert lines.index("## Timing notes") > max(k for k, line in enumerate(lines) if line.startswith("|"))
    footnotes = [line for line in lines if line.startswith("<sub>Timing: 1 of these 2 runs was paused")]
    assert footnotes and all("(#timing-notes)" in line for line in footnotes)  # one under each table with the run


def test_the_headline_states_each_difference_with_its_intervals_and_the_cross_fitted_score(tmp_path, monkeypatch):
    import numpy as np

    from mtl_lab.records import write_epoch
    from mtl_lab.study.compare import dev_labels

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    labels = dev_labels(("sst", "qqp", "sts"))
    rng = np.random.default_rng(0)
    for name in ("baseline", "full-cls-s1", "full-cls-s2", "recipe", "recipe-s1", "recipe-s2"):
        _write(tmp_path / "runs", name, ["sst", "qqp", "sts"], 0.74)
        for epoch in (1, 2):
            outputs = {
                "sst": (list(labels["sst"].index), rng.dirichlet(np.ones(5), len(labels["sst"]))),
                "qqp": (list(labels["qqp"].index), rng.uniform(size=len(labels["qqp"]))),
                "sts": (list(labels["sts"].index), labels["sts"].to_numpy() + rng.normal(0, 1, len(labels["sts"]))),
            }
            write_epoch(tmp_path / "runs" / "cpu" / name, epoch, outputs)
    readme = tmp_path / "README.md"
    readme.write_text(f"# lab\n\n{report.README_START}\n{report.README_END}\n")
    report.update_readme("cpu", readme)
    text = readme.read_text()
    line = next(line for line in text.splitlines() if line.startswith("- recipe vs baseline"))
    assert "two-way bootstrap: 3 seeds x dev examples" in line and "cross-fitted" in line
    assert "last epoch" in line and "9 candidates" in line and "99.4%" in line  # the recipe was chosen among 9
    assert line.count("[") == 2  # an interval beside each difference
    assert line.endswith(": inconclusive.")  # random predictions on both sides
    row = next(line for line in text.splitlines() if line.startswith("| the lab's recipe"))
    assert "needs records" not in row  # the cross-fitted score, from the records


def test_rows_without_per_example_records_get_no_verdict(tmp_path, monkeypatch):
    """Scores alone give a t interval over seeds (a description); the verdict needs records to resample."""
    from mtl_lab.study.compare import compare_runs, format_comparison

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    for k, (base, other) in enumerate(
        zip(("baseline", "full-cls-s1", "full-cls-s2"), ("recipe", "recipe-s1", "recipe-s2"))
    ):
        _write(tmp_path / "runs", base, ["sst", "qqp", "sts"], 0.74 + k / 1000)
        _write(tmp_path / "runs", other, ["sst", "qqp", "sts"], 0.75 + k / 1000 + (k == 1) / 1000)
    c = compare_runs("recipe", "baseline", "cpu", seeds=True)
    assert c.table is None and c.seed_row["n"] == 3 and c.seed_row["low"] > 0
    # the t interval excludes 0, and still decides nothing
    assert c.two_way is None and c.verdict.startswith("no verdict")
    text = format_comparison(c)
    assert "no per-example dev predictions" in text and "training noise only, a description" in text
    with pytest.raises(FileNotFoundError, match="neither dev records"):
        compare_runs("recipe", "baseline", "cpu")


def test_a_run_with_records_is_not_cross_fitted_against_one_scored_at_its_best_epoch(tmp_path, monkeypatch):
    import numpy as np

    from mtl_lab.records import write_epoch
    from mtl_lab.study.compare import compare_runs, dev_labels

    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    labels = dev_labels(("sst",))["sst"]
    rng = np.random.default_rng(1)
    for name in ("baseline", "recipe"):
        _write(tmp_path / "runs", name, ["sst"], 0.4)
    for epoch in (1, 2):
        probs = rng.dirichlet(np.ones(5), len(labels))
        write_epoch(tmp_path / "runs" / "cpu" / "baseline", epoch, {"sst": (list(labels.index), probs)})
    files = tmp_path / "runs" / "cpu" / "recipe" / "predictions"
    files.mkdir()
    (files / "sst-dev-output.csv").write_text(
        "id,Predicted_Sentiment\n" + "".join(f"{i},{int(v)}\n" for i, v in labels.items())
    )
    c = compare_runs("recipe", "baseline", "cpu", n_resamples=200)
    assert c.sources == ("best epoch (prediction files)", "best epoch (records)")
    assert c.table.loc["SST acc", "A"] == 1.0  # the recipe's file holds the gold labels


def test_the_headline_comparisons_are_computed_once_for_the_page_and_the_readme(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_LAB_RESULTS", str(tmp_path / "runs"))
    _write(tmp_path / "runs", "baseline", ["sst", "qqp", "sts"], 0.74)
    calls = []
    monkeypatch.setattr(report, "headline_comparisons", lambda profile: calls.append(profile) or [])
    comparisons = report.headline_comparisons("cpu")
    report.build("cpu", tmp_path / "docs" / "results.md", comparisons)
    readme = tmp_path / "README.md"
    readme.write_text(f"# lab\n\n{report.README_START}\n{report.README_END}\n")
    report.update_readme("cpu", readme, comparisons)
    assert calls == ["cpu"]
