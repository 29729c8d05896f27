"""The class leaderboard on synthetic test labels: real submissions scored, malformed ones named and skipped."""

import csv
import shutil

import numpy as np
import pandas as pd
import pytest

from mtl_lab.course import leaderboard
from mtl_lab.data import TASKS, load_split
from mtl_lab.evaluate import prediction_path, read_predictions
from mtl_lab.runs import results_root

PUBLISHED = results_root() / "cpu"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Synthetic labels for the real test ids, the lab's published files as teams, and broken teams."""
    root = tmp_path_factory.mktemp("board")
    rng = np.random.default_rng(0)
    labels = root / "labels"
    labels.mkdir()
    for task, name in leaderboard.LABEL_FILES.items():
        ids = load_split(task, "test", keep_malformed=True, warn=False)["id"]
        base = read_predictions(PUBLISHED / "baseline" / "predictions", task, "test")[ids].to_numpy(dtype=float)
        if TASKS[task].kind == "regression":  # labels near the baseline's scores, so real files score sensibly
            gold = np.clip(base + rng.normal(0, 1.0, len(ids)), 0, 5).round(1)
        else:
            flip = rng.random(len(ids)) < 0.3
            gold = np.where(flip, rng.integers(0, 5 if task == "sst" else 2, len(ids)), base).astype(int)
        pd.DataFrame({"id": ids, TASKS[task].label_col: gold}).to_csv(labels / name, sep="\t")
    subs = root / "subs"
    for team, run in (("baseline-again", "baseline"), ("recipe", "recipe"), ("vote", "ensemble-cls-x3")):
        shutil.copytree(PUBLISHED / run / "predictions", subs / team)
    perfect = subs / "perfect"
    perfect.mkdir(parents=True)
    for task, name in leaderboard.LABEL_FILES.items():
        gold = pd.read_csv(labels / name, sep="\t", dtype={"id": str})
        pd.DataFrame({"id": gold["id"], TASKS[task].pred_col: gold[TASKS[task].label_col]}).to_csv(
            prediction_path(perfect, task, "test"), index=False
        )

    def broken(team, task, edit):
        shutil.copytree(PUBLISHED / "baseline" / "predictions", subs / team)
        path = prediction_path(subs / team, task, "test")
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")

    broken("bad-header", "sst", lambda ls: ["id,sentiment"] + ls[1:])
    broken("missing-ids", "qqp", lambda ls: ls[:-5])
    broken("duplicated", "sts", lambda ls: ls + ls[1:2])
    broken("unknown-id", "sst", lambda ls: ls + ["not-an-id,3"])
    broken("not-numbers", "qqp", lambda ls: ls[:1] + [ls[1].split(",")[0] + ",yes"] + ls[2:])
    broken("out-of-range", "sst", lambda ls: ls[:1] + [ls[1].split(",")[0] + ",7"] + ls[2:])
    shutil.copytree(PUBLISHED / "baseline" / "predictions", subs / "no-sts")
    prediction_path(subs / "no-sts", "sts", "test").unlink()
    table, problems = leaderboard.leaderboard(subs, labels, root / "board.html", n_resamples=2000)
    return root, table, problems


def test_every_wellformed_team_is_scored_with_intervals(course):
    _, table, _ = course
    assert set(table["team"]) == {"(reference)", "baseline-again", "recipe", "vote", "perfect"}
    row = table.set_index("team")
    assert row.loc["perfect", "overall"] == pytest.approx(1.0)
    assert row.loc["perfect", "rank low"] == row.loc["perfect", "rank high"] == 1
    assert row.loc["baseline-again", "vs reference"] == 0 and row.loc["baseline-again", "low"] == 0
    assert (table["low"] <= table["vs reference"]).all() and (table["vs reference"] <= table["high"]).all()
    teams = table[table["team"] != "(reference)"]
    assert sorted(teams["rank"]) == [1, 2, 3, 4]  # the reference takes no rank
    assert (teams["rank low"] <= teams["rank"]).all() and (teams["rank"] <= teams["rank high"]).all()
    assert row.loc["(reference)", "rank"] == 0


def test_each_malformed_team_gets_one_clear_line(course):
    _, _, problems = course
    said = {t.name: t.problem for t in problems}
    assert "header 'id,sentiment'" in said["bad-header"]
    assert "5 of" in said["missing-ids"] and "missing" in said["missing-ids"]
    assert "duplicated" in said["duplicated"]
    assert "unknown id" in said["unknown-id"] and "not-an-id" in said["unknown-id"]
    assert "'yes' is not a number" in said["not-numbers"]
    assert "7 is not a whole number in 0..4" in said["out-of-range"]
    assert "sts-test-output.csv: missing" in said["no-sts"]
    assert all("\n" not in p for p in said.values())


def test_the_page_and_the_csv_hold_the_same_numbers(course):
    root, table, problems = course
    page = (root / "board.html").read_text()
    assert "data:image/png;base64," in page and "Not scored" in page
    with (root / "board.csv").open() as f:
        rows = list(csv.DictReader(f))
    scored = {r["team"]: float(r["overall"]) for r in rows if r["status"] == "scored"}
    assert scored == pytest.approx(dict(zip(table["team"], table["overall"])))
    assert {r["team"] for r in rows if r["status"] != "scored"} == {t.name for t in problems}
    for team, overall in scored.items():
        assert f"{overall:.4f}" in page, team


def test_rank_intervals_are_whole_ranks_seen_in_the_resamples():
    """Two teams that swap places in some resamples get rank intervals that overlap; a clear winner keeps rank 1."""
    rng = np.random.default_rng(1)
    n = 400
    classes = {"sst": 5, "qqp": 2}
    gold = {
        t: pd.Series(
            rng.uniform(0, 5, n) if t == "sts" else rng.integers(0, classes[t], n), index=[f"{t}{i}" for i in range(n)]
        )
        for t in TASKS
    }

    def team(name, flip):
        preds = {}
        for t, g in gold.items():
            y = g.to_numpy()
            if TASKS[t].kind == "regression":
                preds[t] = np.clip(y + rng.normal(0, flip * 5, n), 0, 5)
            else:
                wrong = rng.random(n) < flip
                preds[t] = np.where(wrong, (y + 1) % (5 if t == "sst" else 2), y)
        return leaderboard.Team(name, preds)

    teams = [team("ref", 0.3), team("a", 0.200), team("b", 0.205), team("best", 0.02)]
    table = leaderboard.score(teams, gold, n_resamples=2000).set_index("team")
    assert table.loc["best", "rank low"] == table.loc["best", "rank high"] == 1
    assert table.loc["a", "rank low"] <= 2 <= table.loc["a", "rank high"] and table.loc["b", "rank high"] == 3
    assert table.loc["a", "rank high"] == 3 and table.loc["b", "rank low"] == 2
