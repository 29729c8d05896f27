"""The ablation grid (notebook 05): run names, the Table-2 layout over seeds, the best run."""

import math

import pandas as pd
import pytest

from mtl_lab.study import analysis, experiments


def _result(tasks, sst, qqp, sts, minutes=1.0):
    best = {"sst_acc": sst, "qqp_acc": qqp, "sts_pearson": sts, "epoch": 1}
    best["overall"] = (sst + qqp + (sts + 1) / 2) / 3
    return {"config": {"train": {"tasks": list(tasks)}}, "best": best, "wall_time_s": 60 * minutes, "history": []}


def test_grid_rows_cover_the_paper_strategies_and_parse():
    rows = experiments.ablation_rows("sbert")
    assert list(rows)[:5] == [
        "initial",
        "NLI",
        "SimCSE (QQP/STS)",
        "SimCSE (SST/QQP/STS)",
        "NLI + SimCSE (QQP/STS)",
    ]
    assert rows["PCGrad"] == "agg-sbert-pcgrad" and rows["PCGrad + SimCSE (QQP/STS)"] == "ft-sbert-qqp_sts-pcgrad"
    assert rows["sequential SST → STS → QQP"] == "seq-sbert-sst-sts-qqp"
    names = experiments.ablation_names(("cls", "sbert"), seeds=2)
    assert len(names) == 2 * 2 * len(rows) and "ft-cls-nli-pcgrad-s1" in names
    for name in names:  # every name is a valid experiment
        model_cfg, train_cfg = experiments.experiment(name, "cpu")
        assert train_cfg.seed == (1 if name.endswith("-s1") else 0)
    _, seq = experiments.experiment("seq-cls-qqp-sts-sst", "cpu")
    assert seq.sequential and seq.tasks == ("qqp", "sts", "sst") and seq.monitor_every == 0
    model_cfg, ft = experiments.experiment("ft-sbert-nli_qqp_sts-pcgrad", "cpu")
    assert ft.aggregation == "pcgrad" and model_cfg.init == "cpu/pre-sbert-nli_qqp_sts"


def test_ablation_table_averages_seeds_and_puts_the_paper_beside():
    results = {
        "agg-sbert-sum": _result("sst qqp sts".split(), 0.40, 0.70, 0.80, 9.0),
        "agg-sbert-sum-s1": _result("sst qqp sts".split(), 0.42, 0.72, 0.82, 11.0),
        "ft-sbert-qqp_sts-pcgrad": _result("sst qqp sts".split(), 0.45, 0.75, 0.85),
        "agg-cls-sum": _result("sst qqp sts".split(), 0.38, 0.76, 0.81),
        "seq-cls-sst-sts-qqp": _result("sst sts qqp".split(), 0.30, 0.76, 0.70),
    }
    table = analysis.ablation_table(results, experiments.ablation_grid())
    initial = table.loc[("SBERT + CNN-BiLSTM", "initial")]
    assert initial["seeds"] == 2 and initial["SST"] == pytest.approx(0.41) and initial["minutes"] == pytest.approx(10.0)
    # the two seeds' overall scores differ by (.02 + .02 + .02 / 2) / 3; the sample std of two is that / sqrt 2
    assert initial["overall std"] == pytest.approx(0.05 / 3 / math.sqrt(2), rel=1e-6)
    assert initial["paper overall"] == pytest.approx(0.7827)
    assert table.loc[("SBERT + CNN-BiLSTM", "PCGrad + SimCSE (QQP/STS)")]["paper overall"] == pytest.approx(0.7885)
    assert table.loc[("BERT [CLS] multi-task", "sequential SST → STS → QQP")]["paper overall"] == pytest.approx(0.7307)
    assert math.isnan(table.loc[("SBERT + CNN-BiLSTM", "PCGrad + SimCSE (QQP/STS)")]["overall std"])
    assert experiments.best_run(results) == "ft-sbert-qqp_sts-pcgrad"
    assert len(analysis.plot_ablation(table).axes) == 2
    check = analysis.seed_check(table)
    assert list(check["run"]) == ["agg-sbert-sum"] and check["gap to best"].iloc[0] == 0


def test_split_seed_reads_only_a_trailing_seed_suffix():
    assert analysis.split_seed("agg-cls-sum-s2") == ("agg-cls-sum", 2)
    assert analysis.split_seed("ft-sbert-nli-pcgrad") == ("ft-sbert-nli-pcgrad", None)
    assert analysis.split_seed("seq-cls-sst-sts-qqp") == ("seq-cls-sst-sts-qqp", None)


def test_full_budget_table_pairs_seeds_against_the_baseline():
    def res(sst, qqp, sts, minutes, cpu="AMD EPYC"):
        overall = (sst + qqp + (sts + 1) / 2) / 3
        best = {"sst_acc": sst, "qqp_acc": qqp, "sts_pearson": sts, "overall": overall}
        return {"best": best, "wall_time_s": minutes * 60, "environment": {"cpu": cpu}}

    rows = {"(a)": ["baseline", "a-s1"], "(c)": ["c", "c-s1"], "(d)": ["d"]}
    results = {
        "baseline": res(0.47, 0.82, 0.85, 30),
        "a-s1": res(0.48, 0.83, 0.85, 32),
        "c": res(0.50, 0.82, 0.86, 60),
        "c-s1": res(0.49, 0.83, 0.87, 62),
    }
    table = analysis.full_budget_table(results, rows)
    assert table.loc["(a)", "seeds"] == 2 and table.loc["(d)", "seeds"] == 0
    c_minus_a = [
        results[c]["best"]["overall"] - results[a]["best"]["overall"] for c, a in (("c", "baseline"), ("c-s1", "a-s1"))
    ]
    assert table.loc["(c)", "paired diff vs baseline"] == pytest.approx(sum(c_minus_a) / 2)
    assert table.loc["(c)", "minutes"] == pytest.approx(61) and table.loc["(c)", "CPU"] == "AMD EPYC"
    assert math.isnan(table.loc["(a)", "paired diff vs baseline"])
    results["a-s1"]["timing_note"] = "shared the cores"  # a contended wall time is left out of the minutes
    assert analysis.full_budget_table(results, rows).loc["(a)", "minutes"] == pytest.approx(30)
    assert table.loc["(c)", "dropout"] == "torch"
    # a row of other seeds (trained with the lab's dropout) has no paired difference: no baseline of its seeds
    later = {**res(0.48, 0.83, 0.86, 25), "config": {"train": {"seed": 3}}}
    later["environment"]["dropout"] = "mtl_lab.models.fast.dropout"
    table = analysis.full_budget_table({**results, "a-s3": later}, {**rows, "(a*)": ["a-s3"]})
    assert math.isnan(table.loc["(a*)", "paired diff vs baseline"]) and table.loc["(a*)", "dropout"] == "16-bit"
    later["environment"]["dropout"] = "mtl_lab.dropout"  # what runs recorded before the subpackages
    table = analysis.full_budget_table({**results, "a-s3": later}, {**rows, "(a*)": ["a-s3"]})
    assert table.loc["(a*)", "dropout"] == "16-bit"
    fig = analysis.plot_full_budget(results, rows)
    assert len(fig.axes[0].patches) >= 2  # a bar per trained row (plus the baseline's band)
    assert "not trained yet" in [t.get_text() for t in fig.axes[0].texts]


def _width_px(fig) -> int:
    """The figure's width in pixels as a notebook shows it (the notebooks' dpi, cropped to what is drawn)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=analysis.NOTEBOOK_DPI, bbox_inches="tight")
    return Image.open(buf).size[0]


def test_figures_fit_jupyterlab_with_their_legends_beside_the_data():
    import matplotlib.pyplot as plt
    import numpy as np

    names = ["3 single-task models", "baseline", "sequential-sst-sts-qqp"] + [f"sampler-{k}" for k in range(6)]
    runs = {}
    for k, name in enumerate(names):
        res = _result("sst qqp sts".split(), 0.4 + k / 100, 0.7, 0.8)
        res["history"] = [{"epoch": e, "stage": "all", "dev": res["best"]} for e in (1, 2, 3)]
        res["gradient_conflicts"] = [{"step": s, "epoch": 1, "sst-qqp": 0.1, "sst-sts": -0.1} for s in range(5)]
        runs[name] = res
    table = analysis.results_table(runs, paper={"baseline": "BERT [CLS] multi-task, initial"})
    noted = {**runs["baseline"], "timing_note": "paused for a benchmark"}  # a contended wall time is not shown
    assert math.isnan(analysis.results_row(noted)["minutes"]) and analysis.results_row(runs["baseline"])["minutes"] > 0
    grid = analysis.ablation_table({**runs, "agg-cls-sum": runs["baseline"]}, experiments.ablation_grid())
    figures = {
        "results": analysis.plot_results(table),
        "learning curves": analysis.plot_learning_curves(runs),
        "gradient conflicts": analysis.plot_gradient_conflicts(runs),
        "ablation": analysis.plot_ablation(grid),
        "full budget": analysis.plot_full_budget(runs, {"(a) the baseline, a long row label": names}),
        "in-batch logits": analysis.plot_in_batch_similarities(
            pd.DataFrame(np.zeros((9, 9)), index=[f"an anchor sentence of thirty-two {k}" for k in range(9)])
        ),
    }
    for name, fig in figures.items():
        assert _width_px(fig) <= 1100, name
        for ax in fig.axes:  # a legend sits outside every axes' data area
            legend = ax.get_legend()
            if legend is not None:
                fig.canvas.draw()
                box, frame = legend.get_window_extent(), ax.get_window_extent()
                assert box.x0 >= frame.x1 or box.y1 <= frame.y0, f"{name}: a legend over the data"
        for legend in fig.legends:  # a figure's legend: under (or beside) all its panels
            fig.canvas.draw()
            box = legend.get_window_extent()
            assert all(box.y1 <= ax.get_window_extent().y0 or box.x0 >= ax.get_window_extent().x1 for ax in fig.axes)
        plt.close(fig)


def test_tables_for_students_show_three_decimals_and_no_nan():
    table = pd.DataFrame(
        {"SST": [0.48312, float("nan")], "seeds": [3.0, 1.0], "minutes": [12.345, float("nan")], "CPU": ["x", None]},
        index=["a", "b"],
    )
    shown = analysis.format_table(table)
    assert shown.to_dict("list") == {
        "run": ["a", "b"],
        "SST": ["0.483", ""],
        "seeds": ["3", "1"],
        "minutes": ["12.3", ""],
        "CPU": ["x", ""],
    }
    assert "nan" not in analysis.markdown(table).lower()
