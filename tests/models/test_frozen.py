"""The playground's model with sense at smoke cost: frozen MiniLM sentence embeddings plus heads fitted in seconds.

The "Try this" prompts of notebook 06 are checked against it: negation and a clearly negative
sentence move the sentiment the right way; a paraphrase scores above an unrelated pair.
"""

import ipywidgets
import numpy as np
import pytest

from mtl_lab.course import widgets
from mtl_lab.data import TASK_NAMES
from mtl_lab.models import frozen

CLASSES = np.arange(5)


@pytest.fixture(scope="module")
def quick(frozen_runs):
    runs = frozen_runs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTL_LAB_RUNS", str(runs))
        model = frozen.frozen_model()
        assert len(list((runs / "frozen").glob("heads-*.npz"))) == 1, "the fitted heads are cached in runs/frozen/"
        again = frozen.frozen_model()  # read back, not fitted again
    for task in TASK_NAMES:
        np.testing.assert_array_equal(again.heads[task]["coef"], model.heads[task]["coef"])
    return model


def mean_class(model, sentence: str) -> float:
    return float(model.answer(sentence, ("a", "b"))["sentiment"] @ CLASSES)


def test_negation_and_a_clearly_negative_sentence_move_the_sentiment_the_right_way(quick):
    assert mean_class(quick, "it is n't funny .") < mean_class(quick, "it is funny .") - 0.3
    assert mean_class(quick, "the movie is not good .") < mean_class(quick, "the movie is good .") - 0.5
    disaster = quick.answer("This film is a total disaster .", ("a", "b"))["sentiment"]
    assert disaster[:2].sum() > 0.5 and disaster[:2].sum() > disaster[3:].sum()
    gorgeous = quick.answer("a gorgeous , witty , seductive movie .", ("a", "b"))["sentiment"]
    assert gorgeous[3:].sum() > 0.7


def test_a_paraphrase_scores_above_an_unrelated_pair(quick):
    para = quick.answer("x", ("How do I learn to cook?", "What is the best way to learn cooking?"))
    other = quick.answer("x", ("How do I learn to cook?", "What is the capital of France?"))
    assert para["paraphrase"] > 0.5 > other["paraphrase"]
    assert para["similarity"] > 3.0 > 1.0 > other["similarity"]


def test_its_dev_scores_are_far_above_chance_and_kept_beside_its_heads(quick, monkeypatch):
    scores = quick.dev_scores(limit=200)
    assert scores["sst_acc"] > 0.3 and scores["qqp_acc"] > 0.7 and scores["sts_pearson"] > 0.7
    kept = list(quick.cache_path.parent.glob(f"{quick.cache_path.stem}-dev-*.json"))
    assert len(kept) == 1  # a second Run All of notebook 06 reads them instead of embedding again
    monkeypatch.setattr(quick, "_dev_scores", lambda *a: pytest.fail("scored again"))
    assert quick.dev_scores(limit=200) == scores


def test_the_playground_offers_it_beside_trained_checkpoints(quick, make_model, tokenizer):
    box = widgets.playground({"frozen": quick, "untrained": make_model()}, tokenizer, sentence="it is funny .")
    first = box.result["sentiment"]
    dropdown = next(c for c in box.children if isinstance(c, ipywidgets.Dropdown))
    dropdown.value = "untrained"  # the dropdown switches the model answering
    assert not np.allclose(box.result["sentiment"], first)
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and bundle["text/plain"].startswith("Playground")  # a picture, never 'VBox(...)'
