"""Every committed prediction file re-scores to its run's recorded dev score; seed ensembles vote as documented."""

import json

import numpy as np
import pytest

from mtl_lab.data import TASKS
from mtl_lab.runs import results_root
from mtl_lab.study import compare, ensemble

PUBLISHED = sorted(
    p for p in (results_root() / "cpu").iterdir() if (p / "predictions" / "sst-dev-output.csv").is_file()
)


@pytest.fixture(scope="module")
def labels():
    return compare.dev_labels(TASKS)


@pytest.mark.parametrize("folder", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_a_runs_dev_files_score_what_its_results_json_records(folder, labels):
    recorded = json.loads((folder / "results.json").read_text())["best"]
    files = compare.score(compare._prediction_files(folder), labels)
    for key in ("sst_acc", "qqp_acc", "sts_pearson", "overall"):
        assert files[key] == pytest.approx(recorded[key], abs=1e-4), (folder.name, key)


def test_the_vote():
    assert ensemble.vote("sst", [np.array([0, 4, 2]), np.array([0, 1, 3]), np.array([4, 1, 1])]).tolist() == [0, 1, 2]
    assert ensemble.vote("qqp", [np.array([1, 0]), np.array([1, 1]), np.array([0, 0])]).tolist() == [1, 0]
    assert ensemble.vote("qqp", [np.array([1, 0]), np.array([0, 1])]).tolist() == [0, 0]  # a tie: not a paraphrase
    assert ensemble.vote("sts", [np.array([1.0, 5.0]), np.array([2.0, 3.0])]).tolist() == [1.5, 4.0]


def test_an_ensembles_records_vote_at_every_epoch(tmp_path):
    ids = {"sst": np.array(["a", "b"]), "qqp": np.array(["c", "d"]), "sts": np.array(["e", "f"])}

    def run(sst, qqp, sts):
        return compare.DevRecords(
            ids, {"sst": {1: np.eye(5)[sst]}, "qqp": {1: np.array(qqp)}, "sts": {1: np.array(sts)}}
        )

    members = [
        run([0, 4], [0.9, 0.1], [1.0, 2.0]),
        run([2, 4], [0.8, 0.7], [3.0, 2.0]),
        run([2, 0], [0.2, 0.6], [2.0, 5.0]),
    ]
    voted = ensemble.ensemble_records(members)
    assert voted.outputs["sst"][1].argmax(1).tolist() == [2, 4]
    assert (voted.outputs["qqp"][1] > 0.5).tolist() == [True, True]
    assert voted.outputs["sts"][1].tolist() == [2.0, 3.0]
