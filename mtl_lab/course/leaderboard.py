"""A class leaderboard for course staff, who hold the test labels (the lab never does).

``python -m mtl_lab course leaderboard SUBMISSIONS --labels DIR --out leaderboard.html`` scores each team's
``SUBMISSIONS/<team>/{sst,para,sts}-test-output.csv`` against the staff's labelled test files in ``DIR``
(``ids-sst-test.csv``, ``quora-test.csv``, ``sts-test.csv``: the dev files' tab-separated format, with the
label column). Per team: each task's score and the overall score; the paired difference from a reference
submission (default: the lab's [CLS] baseline files) with a 95 % bootstrap interval over the test examples; and
a 95 % interval of its rank, from the same resamples, so a class sees which ranks are real. A file with a wrong
header, missing, duplicated or unknown ids, or values that are not predictions gives its team one line naming
the file and the problem; the other teams are scored. Writes the HTML page (a table and a plot) and a CSV of the
same numbers.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from mtl_lab.data import TASKS
from mtl_lab.evaluate import prediction_path
from mtl_lab.runs import results_root

LABEL_FILES = {"sst": "ids-sst-test.csv", "qqp": "quora-test.csv", "sts": "sts-test.csv"}
N_RESAMPLES = 10_000
REFERENCE = "(reference)"


class SubmissionError(ValueError):
    """A team's file cannot be scored: the message names the file and the problem."""


@dataclass
class Team:
    """One team's predictions per task (aligned to the labels' order), or why it could not be scored."""

    name: str
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    problem: str = ""


def read_labels(folder: str | os.PathLike) -> dict[str, pd.Series]:
    """The staff's test labels per task, indexed by id (the dev files' format)."""
    out = {}
    for task, name in LABEL_FILES.items():
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no labelled test file for {task} (the dev files' format, with labels)")
        df = pd.read_csv(path, sep="\t", dtype={"id": str}, keep_default_na=False)
        column = TASKS[task].label_col
        if "id" not in df.columns or column not in df.columns:
            raise ValueError(f"{path}: needs the columns id and {column} (found {', '.join(map(str, df.columns))})")
        labels = pd.to_numeric(df[column], errors="coerce")
        if labels.isna().any():
            row = int(labels.isna().to_numpy().argmax()) + 2
            raise ValueError(f"{path}, line {row}: {column} is not a number")
        out[task] = pd.Series(labels.to_numpy(dtype=float), index=df["id"].str.strip())
    return out


def read_submission(path: Path, task: str, labels: pd.Series) -> np.ndarray:
    """One leaderboard file's predictions in the labels' order; SubmissionError naming the first problem."""
    spec = TASKS[task]
    if not path.is_file():
        raise SubmissionError(f"{path.name}: missing")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # not a CSV at all
        raise SubmissionError(f"{path.name}: not a readable CSV ({exc.__class__.__name__})") from None
    header = [str(c).strip() for c in df.columns]
    if header != ["id", spec.pred_col]:
        raise SubmissionError(f"{path.name}: header {','.join(header)!r}, expected 'id,{spec.pred_col}'")
    ids = df["id"].str.strip()
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise SubmissionError(f"{path.name}: {len(duplicated)} duplicated id(s), e.g. {duplicated.iloc[0]}")
    unknown = ids[~ids.isin(labels.index)]
    if len(unknown):
        raise SubmissionError(f"{path.name}: {len(unknown)} unknown id(s), e.g. {unknown.iloc[0]}")
    missing = labels.index[~labels.index.isin(ids)]
    if len(missing):
        raise SubmissionError(f"{path.name}: {len(missing)} of {len(labels)} test ids missing, e.g. {missing[0]}")
    values = pd.to_numeric(df[spec.pred_col].str.strip(), errors="coerce")
    if values.isna().any():
        k = int(values.isna().to_numpy().argmax())
        raise SubmissionError(f"{path.name}, line {k + 2}: {df[spec.pred_col].iloc[k]!r} is not a number")
    lo, hi = spec.label_range
    bad = (values < lo) | (values > hi)
    if spec.kind != "regression":
        bad |= values != values.round()
    if bad.any():
        k = int(bad.to_numpy().argmax())
        kind = "a whole number" if spec.kind != "regression" else "a number"
        raise SubmissionError(f"{path.name}, line {k + 2}: {values.iloc[k]:g} is not {kind} in {lo:g}..{hi:g}")
    return pd.Series(values.to_numpy(dtype=float), index=ids.to_numpy())[labels.index].to_numpy()


def read_team(name: str, folder: Path, labels: dict[str, pd.Series]) -> Team:
    """A team's three test files, or the first problem found."""
    team = Team(name)
    try:
        for task in TASKS:
            team.predictions[task] = read_submission(prediction_path(folder, task, "test"), task, labels[task])
    except SubmissionError as exc:
        team.predictions, team.problem = {}, str(exc)
    return team


def _terms(teams: list[Team], labels: dict[str, pd.Series], w: dict[str, np.ndarray]) -> np.ndarray:
    """Every team's overall score on each resample (w: task -> B x N example counts): B x teams."""
    from mtl_lab.study.intervals import weighted_terms

    return np.mean(
        [
            weighted_terms(TASKS[task].kind, w[task], np.stack([t.predictions[task] for t in teams]), gold.to_numpy())
            for task, gold in labels.items()
        ],
        axis=0,
    )


def score(
    teams: list[Team], labels: dict[str, pd.Series], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """The leaderboard: per scored team its task scores, overall, difference from the reference and rank, with
    95 % bootstrap intervals (the test examples resampled per task; every team scored on the same resamples).

    ``teams[0]`` is the reference."""
    scored = [t for t in teams if not t.problem]
    ones = {task: np.ones((1, len(g))) for task, g in labels.items()}
    from mtl_lab.study.intervals import weighted_terms

    columns = {"sst": "SST acc", "qqp": "QQP acc", "sts": "STS r"}
    table = pd.DataFrame({"team": [t.name for t in scored]})
    for task, gold in labels.items():
        term = weighted_terms(
            TASKS[task].kind, ones[task], np.stack([t.predictions[task] for t in scored]), gold.to_numpy()
        )[0]
        table[columns[task]] = term * 2 - 1 if TASKS[task].kind == "regression" else term  # r itself, 0 for a constant
    table["overall"] = _terms(scored, labels, ones)[0]
    rng = np.random.default_rng(seed)
    boot = []
    for start in range(0, n_resamples, 500):
        b = min(500, n_resamples - start)
        w = {
            task: rng.multinomial(len(g), np.full(len(g), 1 / len(g)), size=b).astype(float)
            for task, g in labels.items()
        }
        boot.append(_terms(scored, labels, w))
    boot = np.concatenate(boot)  # B x teams
    diff = boot - boot[:, [0]]
    table["vs reference"] = table["overall"] - table["overall"].iloc[0]
    table["low"], table["high"] = np.quantile(diff, 0.025, axis=0), np.quantile(diff, 0.975, axis=0)
    # the teams' ranks among themselves (the reference is not a team): 1 = best, a tie shares the better rank
    ranks = rankdata(-boot[:, 1:], method="min", axis=1)
    teams_only = table["overall"].iloc[1:].rank(ascending=False, method="min").astype(int)
    table["rank"] = [0, *teams_only]
    table["rank low"] = [0, *np.quantile(ranks, 0.025, axis=0, method="inverted_cdf").astype(int)]
    table["rank high"] = [0, *np.quantile(ranks, 0.975, axis=0, method="inverted_cdf").astype(int)]
    return table.sort_values(["overall", "team"], ascending=[False, True]).reset_index(drop=True)


def _plot(table: pd.DataFrame) -> str:
    """The overall score with its interval against the reference, best first, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.32 * len(table)))
    y = np.arange(len(table))
    ref = table["overall"] - table["vs reference"]
    ax.errorbar(table["overall"], y, xerr=[table["vs reference"] - table["low"], table["high"] - table["vs reference"]],
                fmt="o", color="tab:blue", ecolor="tab:blue", capsize=3)  # fmt: skip
    ax.axvline(float(ref.iloc[0]), color="gray", ls="--", lw=1, label="the reference's score")
    labels = [f"{t}  (reference)" if not a else f"{t}  (rank {a}-{b})" if a != b else f"{t}  (rank {a})"
              for t, a, b in zip(table["team"], table["rank low"], table["rank high"])]  # fmt: skip
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(table) - 0.5, -0.5)
    ax.set_xlabel("test overall; bars: 95% interval of the difference from the reference")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def page(table: pd.DataFrame, problems: list[Team], reference: str) -> str:
    """The leaderboard as a self-contained HTML page."""
    shown = table.copy()
    for col in ("SST acc", "QQP acc", "STS r", "overall"):
        shown[col] = shown[col].map("{:.4f}".format)
    shown["vs reference"] = [
        f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for d, lo, hi in zip(table["vs reference"], table["low"], table["high"])
    ]
    shown["rank (95% interval)"] = [
        f"{r} ({a}-{b})" for r, a, b in zip(table["rank"], table["rank low"], table["rank high"])
    ]
    shown = shown.drop(columns=["low", "high", "rank", "rank low", "rank high"])
    issues = "".join(f"<li><b>{html.escape(t.name)}</b>: {html.escape(t.problem)}</li>" for t in problems)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Leaderboard</title><style>body{font-family:sans-serif;"
        "max-width:70em;margin:2em auto}table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}"
        "</style></head><body><h1>Leaderboard (test set)</h1>"
        f"<p>Overall = (SST acc + QQP acc + (STS r + 1) / 2) / 3. Reference: {html.escape(reference)}. Intervals: 95 %, "
        f"{N_RESAMPLES:,} bootstrap resamples of the test examples (per task, the same for every team). A rank interval "
        "is where the team places on 95 % of test sets drawn like this one: a place whose interval spans several ranks "
        "is not pinned down by this test set. The reference is shown for comparison and takes no rank.</p>"
        + shown.to_html(index=False, escape=True)
        + f"<p><img alt='overall with intervals' src='data:image/png;base64,{_plot(table)}'></p>"
        + (f"<h2>Not scored</h2><ul>{issues}</ul>" if issues else "")
        + "</body></html>\n"
    )


def leaderboard(
    submissions: str | os.PathLike,
    labels_dir: str | os.PathLike,
    out: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    n_resamples: int = N_RESAMPLES,
) -> tuple[pd.DataFrame, list[Team]]:
    """Score every ``SUBMISSIONS/<team>/``; write the HTML page and ``<out>.csv``; return the table and the teams not
    scored."""
    labels = read_labels(labels_dir)
    ref_dir = Path(reference) if reference else results_root() / "cpu" / "baseline" / "predictions"
    ref = read_team(REFERENCE, ref_dir, labels)
    if ref.problem:
        raise ValueError(f"the reference {ref_dir} cannot be scored: {ref.problem}")
    folders = sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{submissions}: no <team>/ folders")
    teams = [ref, *(read_team(p.name, p, labels) for p in folders)]
    table = score(teams, labels, n_resamples)
    problems = [t for t in teams if t.problem]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(table, problems, str(ref_dir)))
    csv = table.copy()
    csv["status"] = "scored"
    rows = [{"team": t.name, "status": t.problem} for t in problems]
    pd.concat([csv, pd.DataFrame(rows)], ignore_index=True).to_csv(out.with_suffix(".csv"), index=False)
    return table, problems
