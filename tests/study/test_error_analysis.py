"""Error analysis (notebook 06) on planted predictions, and the playground widget reacting to input."""

import numpy as np
import pandas as pd
import pytest

from mtl_lab.course import widgets
from mtl_lab.data import TASKS, load_split
from mtl_lab.evaluate import write_predictions
from mtl_lab.study import analysis


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Dev prediction files equal to gold except planted mistakes; returns (folder, the mistakes)."""
    out = tmp_path_factory.mktemp("preds")
    dev = {t: load_split(t, "dev", warn=False) for t in TASKS}
    sst = dev["sst"]["label"].to_numpy().astype(int).copy()
    sst[:3] = np.where(sst[:3] == 0, 4, 0)  # three gross SST mistakes
    qqp = dev["qqp"]["label"].to_numpy().astype(int).copy()
    qqp[np.flatnonzero(qqp == 0)[:4]] = 1  # four false paraphrases
    sts = dev["sts"]["label"].to_numpy().astype(float).copy()
    sts[5] = 5.0 if sts[5] < 2.5 else 0.0  # one big STS miss
    for task, preds in (("sst", sst), ("qqp", qqp), ("sts", sts)):
        write_predictions(out, task, "dev", dev[task]["id"].tolist(), preds)
    return out, dev


def test_predictions_join_the_dev_data_and_errors_are_found(planted):
    out, dev = planted
    preds = analysis.dev_predictions(out)
    assert {t: len(df) for t, df in preds.items()} == {t: len(df) for t, df in dev.items()}
    over_under = analysis.worst_errors(preds, "sst", n=5)
    found = pd.concat(over_under.values())
    assert set(found["sentence"]) == set(dev["sst"]["sentence"][:3])  # exactly the planted ones
    assert (over_under["over-estimated"]["error"] > 0).all() and (over_under["under-estimated"]["error"] < 0).all()
    qqp = analysis.worst_errors(preds, "qqp", n=10)
    assert len(qqp["over-estimated"]) == 4 and qqp["under-estimated"].empty
    sts = analysis.worst_errors(preds, "sts", n=1)
    worst = pd.concat(sts.values()).iloc[0]
    assert worst["sentence1"] == dev["sts"]["sentence1"][5]


def test_per_class_accuracy_and_confusion_matrices(planted, tokenizer):
    out, dev = planted
    preds = analysis.dev_predictions(out)
    runs = {"planted": preds, "perfect": {t: df.assign(pred=df["gold"]) for t, df in preds.items()}}
    acc = analysis.per_class_accuracy(runs, "qqp")
    negatives = int((dev["qqp"]["label"] == 0).sum())
    assert acc.loc["0 not paraphrase", "planted"] == pytest.approx(1 - 4 / negatives)
    assert acc.loc["1 paraphrase", "planted"] == 1.0 and (acc["perfect"] == 1.0).all()
    fig = analysis.plot_confusion_matrices(runs, "sst")
    assert len(fig.axes) == 2
    assert len(analysis.plot_sts_scatter(runs).axes) == 2
    pieces = analysis.misclassified_wordpieces(preds, tokenizer, n=3)
    assert len(pieces) == 3 and pieces["wordpieces"].str.len().gt(0).all()


def test_missing_prediction_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="sst-dev-output.csv: no dev predictions"):
        analysis.dev_predictions(tmp_path)


def test_playground_answers_and_updates_live(make_model, tokenizer):
    model = make_model(encoder="mean", pair_head="ensemble")
    box = widgets.playground({"untrained": model}, tokenizer, sentence="a gorgeous , witty film .")
    first = box.result
    assert first["sentiment"].shape == (5,) and first["sentiment"].sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= first["paraphrase"] <= 1.0 and 0.0 <= first["similarity"] <= 5.0
    fields = {getattr(c, "description", None): c for c in box.children}  # the text boxes, wherever they sit
    text, pair_a, pair_b = fields["sentence"], fields["pair: a"], fields["pair: b"]
    text.value = "the worst , most boring film of the year ."  # typing triggers an update
    assert not np.allclose(box.result["sentiment"], first["sentiment"])
    pair_b.value = pair_a.value  # the same sentence twice: the cosine part of the similarity is maximal
    assert box.result["similarity"] > first["similarity"]


def test_wordpiece_text_wraps_between_words_and_never_cuts():
    table = pd.DataFrame(
        {
            "sentence": ["a long-winded , tiresomely grave film " * 6],
            "gold": [0],
            "pred": [3],
            "wordpieces": ["a long - wind ##ed , tires ##ome ##ly grave film " * 6],
        }
    )
    text = analysis.format_wordpieces(table, width=60)
    assert "..." not in text and "…" not in text
    assert "gold negative (0), predicted somewhat pos. (3)" in text
    words = set(table["sentence"][0].split()) | set(table["wordpieces"][0].split())
    for line in text.splitlines()[1:]:
        body = line.split(":", 1)[1] if ":" in line[:15] else line
        assert all(w in words for w in body.split()), f"a word was cut: {line!r}"
        assert len(line) <= 60 or " " not in line.strip()
