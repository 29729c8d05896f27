"""The results page: ``docs/results.md`` and its figures, written from a profile's committed results.

``python -m mtl_lab report --profile cpu`` reads every ``results/<profile>/*/results.json`` (and the
committed dev prediction files of the runs notebook 06 analyses) and writes one markdown page with
the tables of notebooks 01-06, each with the command that reproduces it, and the figures beside it
in ``docs/figures/``. Nothing trains; a section whose runs are missing says so. Runs timed on a busy
machine (a ``timing_note`` in results.json) get one footnote per table and a collapsed appendix at the end.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mtl_lab.data import REPO_ROOT
from mtl_lab.study import analysis, compare, experiments
from mtl_lab.study.analysis.results import timed_quietly
from mtl_lab.study.analysis.tables import markdown
from mtl_lab.study.full_budget import (
    COMPUTE_MATCHED,
    ENSEMBLES,
    HEADLINE_CANDIDATES,
    HEADLINE_ROWS,
    STOPPED_ROWS,
    full_budget_rows,
)
from mtl_lab.study.paper import PAPER_TABLE2, paper_rows

DOCS = REPO_ROOT / "docs"


def _figure(fig: plt.Figure, folder: Path, name: str) -> str:
    """Save a figure beside the page (``figures/<name>.png``) and return its markdown image line."""
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"![{name}](figures/{name}.png)"


def _metrics(table: pd.DataFrame) -> pd.DataFrame:
    """The metric, minutes and paper columns of a results table (the page leaves out the rest)."""
    keep = ["SST", "QQP", "STS", "overall", "minutes"] + [c for c in table if c.startswith("paper ")]
    return table[[c for c in keep if c in table]]


def _stopped_line(row: str, against: str, why: str, rows: dict[str, list[str]], runs: dict[str, dict]) -> str:
    """A recipe candidate stopped before its third seed: the reason, with each seed both rows finished, paired."""
    pairs = [(k, runs[a], runs[b]) for k, (a, b) in enumerate(zip(rows[row], rows[against])) if a in runs and b in runs]
    scores = "; ".join(
        f"seed {k} {mine['best']['overall']:.4f} against {ref['best']['overall']:.4f}" for k, mine, ref in pairs
    )
    return f"- Not continued: {row}: {f'{scores} for row {against.split()[0]}; ' if pairs else ''}{why}."


def _run_command(profile: str, name: str) -> str:
    """The command that trains a run."""
    return f"python -m mtl_lab run {name} --profile {profile}"


def _noted(runs: dict[str, dict], names) -> list[str]:
    """The runs among ``names`` whose wall time was not measured on a quiet machine (they carry a ``timing_note``)."""
    return [n for n in dict.fromkeys(names) if n in runs and not timed_quietly(runs[n])]


def _footnote(runs: dict[str, dict], names, minutes_shown: bool = True) -> list[str]:
    """One line under a table: how many of its runs were not timed quietly, and where to read why."""
    names = [n for n in dict.fromkeys(names) if n in runs]
    noted = _noted(runs, names)
    if not noted:
        return []
    effect = "their `minutes` overstate a quiet run" if minutes_shown else "`minutes` averages the other runs only"
    return [
        f"<sub>Timing: {len(noted)} of these {len(names)} runs {'was' if len(noted) == 1 else 'were'} paused or "
        f"shared the cores ({effect}); "
        "each run's `results.json` says why (`timing_note`), collected under [timing notes](#timing-notes).</sub>",
        "",
    ]


def _intro(profile: str, n_runs: int) -> list[str]:
    """The page's title and the paragraph that says where its numbers come from."""
    return [
        f"# Results ({profile} profile, dev set)",
        "",
        f"Written by `python -m mtl_lab report --profile {profile}` on {date.today()} from the committed "
        f"`results/{profile}/*/results.json` ({n_runs} finished runs). Every number is the best epoch by dev "
        "overall = (SST acc + QQP acc + (STS r + 1) / 2) / 3; `minutes` is a run's wall time on 2 CPU cores. "
        "The paper's numbers (BERT-base, 141k Quora pairs, a GPU) sit beside the rows it reports; one seed per "
        "row unless a ± says otherwise. What the tables say, in words: [study.md](study.md).",
        "",
    ]


def _full_budget_section(runs: dict[str, dict], profile: str) -> list[str]:
    """The paper's models and the lab's recipe on all local data, several seeds a row, paired against the baseline."""
    rows = full_budget_rows()
    full = analysis.full_budget_table(runs, rows)
    if not (full["seeds"] > 0).any():
        return []
    stopped = STOPPED_ROWS
    missing = [n for row, names in rows.items() for n in names if n not in runs and row not in stopped]
    return [
        "## The full-budget study (cpu profile's budget: all local data, 3 epochs)",
        "",
        "Finished seeds, mean (std over seeds); `paired diff vs baseline`: the row's overall minus the baseline's "
        f"of the same seed, averaged. Reproduce a row: `{_run_command(profile, '<run>')}` (e.g. `full-cls-s1`).",
        "",
        markdown(full.reset_index(), index=False),
        "",
        *_footnote(runs, [n for names in rows.values() for n in names], minutes_shown=False),
        f"Still to train ({len(missing)}): {', '.join(f'`{n}`' for n in missing)}." if missing else "",
        "",
        *[_stopped_line(row, against, why, rows, runs) for row, (against, why) in stopped.items() if row in rows],
        "",
    ]


def _honest_section(profile: str, comparisons: list[compare.Comparison]) -> list[str]:
    """Is the difference real? The headline rows against the baseline with intervals, and the honest choice of a row."""
    if not comparisons:
        return []
    lines = [
        "## Is the difference real?",
        "",
        "Each method against the [CLS] baseline (`python -m mtl_lab compare A B --seeds`). The verdict interval is a "
        "two-way bootstrap: seeds and dev examples resampled together (10,000 times), and each run's epoch chosen "
        "again inside every resample, on one half of the drawn examples for the other (cross-fitted); the last epoch "
        "(nothing chosen) is given beside it. A row chosen among several candidates has its interval adjusted for "
        "them (Bonferroni). *Better* or *worse* only when the interval excludes 0, otherwise *inconclusive*. The table "
        "under each is one seed pair (seed 0), per task at 98.3 % (adjusted for 3 tasks); the t interval over the "
        "seeds' differences describes training noise only and decides nothing.",
        "",
    ]
    for c in comparisons:
        lines += [f"**{c.a} vs {c.b}** ({c.sources[0]} vs {c.sources[1]})", ""]
        if c.table is not None:
            table = c.table.drop(columns=["verdict"]).rename(columns={"A": c.a, "B": c.b})
            lines += [markdown(table, decimals=4), ""]
        if c.seeds is not None and len(c.seeds):
            lines += [markdown(c.seeds, decimals=4, index=False), ""]
        lines += [f"{c.sentence()}.", ""]
    selection = compare.selection_crossfit(
        {row: names for row, names in full_budget_rows().items() if row.split()[0] in ("(a)", "(c)", "(e)")},
        profile,
    )
    lines += ["### Choosing a row honestly", ""]
    recipe_candidates = HEADLINE_CANDIDATES["the lab's recipe"]
    if selection.empty:
        lines += ["No candidate row has per-example records for all its seeds yet: the retrained rows will.", ""]
    else:
        lines += [
            "Among the rows with records for every seed, the row with the "
            "best mean dev score, chosen and scored on all of dev (first line), against the same choice made on one "
            "half of dev and scored on the other. The recipe itself was first chosen among "
            f"{recipe_candidates} candidate rows, most without records: its verdict above is "
            "adjusted for all of them.",
            "",
            markdown(selection, decimals=4, index=False),
            "",
        ]
    return lines


def _baselines_section(runs: dict[str, dict], profile: str) -> list[str]:
    """Notebook 01: single-task models, the multi-task baseline, task samplers, sequential training."""
    names = ["single-sst", "single-qqp", "single-sts", "baseline", "sequential-sst-sts-qqp"]
    names += [n for n in runs if n.startswith("sampler-")]
    found = {n: runs[n] for n in names if n in runs}
    if not found:
        return []
    table = analysis.results_table(found, paper={"baseline": "BERT [CLS] multi-task, initial"})
    return [
        "## Baselines (notebook 01)",
        "",
        f"Reproduce a row: `{_run_command(profile, '<run>')}`.",
        "",
        markdown(_metrics(table)),
        "",
        *_footnote(runs, found),
    ]


def _encoder_section(runs: dict[str, dict], profile: str, figures: Path) -> list[str]:
    """Notebook 02: the single-task encoder and pair-head study, mean ± std over seeds."""
    study = {n: r for n, r in runs.items() if n.startswith("enc-")}
    if not study:
        return []
    summary = analysis.seed_summary(study)
    return [
        "## Sentence encoders and pair heads, single-task, over seeds (notebook 02)",
        "",
        "20% of each training set, 2 epochs, mean ± std over seeds. "
        f"Reproduce: `python -m mtl_lab notebooks run --profile {profile} --only 02` "
        f"(or `{_run_command(profile, 'enc-<task>-<variant>-s<seed>')}`).",
        "",
        markdown(summary.rename(columns={"count": "seeds"})),
        "",
        *_footnote(runs, study),
        _figure(analysis.plot_seed_summary(summary), figures, f"{profile}_encoder_seeds"),
        "",
    ]


def _pretraining_section(runs: dict[str, dict], profile: str, model: str, figures: Path) -> list[str]:
    """Notebook 03 for one sentence model: the embeddings' geometry after each pre-training, then fine-tuning."""
    pre = {s: runs[f"pre-{model}-{s}"] for s in experiments.PRETRAIN_STRATEGIES if f"pre-{model}-{s}" in runs}
    if not pre:
        return []
    geometry = analysis.geometry_table(pre)
    rows = experiments.pretraining_rows(model)
    ft = {label: runs[name] for label, name in rows.items() if name in runs}
    lines = [
        f"## Contrastive pre-training, {model} (notebook 03)",
        "",
        "STS-dev geometry of the sentence embeddings before and after one pass over the mined pairs "
        "(cosine Spearman with the gold score, no head; alignment and uniformity: lower is better). "
        f"Reproduce: `{_run_command(profile, f'pre-{model}-<strategy>')}`.",
        "",
        markdown(geometry),
        "",
        _figure(analysis.plot_alignment_uniformity(geometry), figures, f"{profile}_alignment_uniformity_{model}"),
    ]
    maps = figures / f"embedding_maps_{profile}_{model}.png"
    if maps.is_file():
        lines += ["", f"![embedding maps](figures/{maps.name})"]
    if len(ft) > 1:
        table = analysis.results_table(ft, paper=paper_rows(model, list(rows)))
        lines += [
            "",
            "Multi-task fine-tuning from each pre-training (the `agg-` budget: 15% of every training set, "
            f"2 epochs, 3 task batches of 8 a step). Reproduce: `{_run_command(profile, f'ft-{model}-<strategy>')}`.",
            "",
            markdown(_metrics(table)),
            "",
            *_footnote(runs, [rows[label] for label in ft]),
        ]
    return lines + [""]


def _aggregation_section(runs: dict[str, dict], profile: str) -> list[str]:
    """Notebook 04: sum, PCGrad and IMTL-G on the same budget, and how often the task gradients conflict."""
    agg = {n: r for n, r in runs.items() if n.startswith("agg-") and analysis.split_seed(n)[1] is None}
    if not agg:
        return []
    paper = {"agg-cls-sum": "BERT [CLS] multi-task, initial", "agg-sbert-sum": "SBERT + CNN-BiLSTM, initial"}
    paper["agg-sbert-pcgrad"] = "SBERT + CNN-BiLSTM, PCGrad"
    return [
        "## Gradient aggregation and conflicts (notebook 04)",
        "",
        f"Reproduce: `{_run_command(profile, 'agg-<model>-<sum|pcgrad|imtl_g>')}`.",
        "",
        markdown(_metrics(analysis.results_table(agg, paper=paper))),
        "",
        *_footnote(runs, agg),
        "Share of probes where two tasks' gradients on the shared parameters conflict (negative cosine):",
        "",
        markdown(analysis.conflict_summary(agg), 2),
        "",
    ]


def _grid_section(runs: dict[str, dict], profile: str, figures: Path) -> list[str]:
    """Notebook 05's ablation grid (the paper's Table 2), its seed check and notebook 06's error analysis."""
    grid = experiments.finished_results(profile, experiments.ablation_names())
    if not grid:
        return []
    table = analysis.ablation_table(grid, experiments.ablation_grid())
    best = experiments.best_run(grid)
    total = len(experiments.ablation_names())
    return [
        "## The ablation grid: the paper's Table 2 (notebook 05)",
        "",
        f"{len(grid)} of the grid's {total} runs finished. Reproduce all: `python -m mtl_lab sweep --profile {profile}` "
        f"(finished runs are reused); test predictions of the best: `python -m mtl_lab sweep --profile {profile} "
        "--no-train --predict predictions/`.",
        "",
        markdown(table.drop(columns=["seeds", "overall std"])),
        "",
        *_footnote(runs, grid),
        f"Best configuration by dev overall: **{best}** ({grid[best]['best']['overall']:.4f}).",
        "",
        _figure(analysis.plot_ablation(table), figures, f"{profile}_ablation"),
        "",
        *_seed_section(runs, profile),
        *_error_section(profile, best, figures),
    ]


def _timing_appendix(runs: dict[str, dict]) -> list[str]:
    """Every run's timing note, collapsed at the end of the page: the tables' footnotes point here."""
    order = [n for names in full_budget_rows().values() for n in names] + sorted(runs)
    noted = _noted(runs, order)
    if not noted:
        return []
    return [
        "## Timing notes",
        "",
        "<details>",
        f"<summary>{len(noted)} runs whose wall time was not measured on a quiet machine: why, and what a quiet run "
        "takes (each run's <code>timing_note</code>)</summary>",
        "",
        *[f"- `{n}`: {runs[n]['timing_note']}" for n in noted],
        "",
        "</details>",
        "",
    ]


def build(
    profile: str = "cpu",
    out: str | os.PathLike = DOCS / "results.md",
    comparisons: list[compare.Comparison] | None = None,
) -> Path:
    """Write the results page of a profile (and its figures next to it); return its path.

    ``comparisons``: the headline comparisons (``headline_comparisons``), when the caller has them already (the
    README's headline states the same ones): computed here otherwise.
    """
    out = Path(out)
    figures = out.parent / "figures"
    runs = experiments.finished_results(profile)
    if comparisons is None:
        comparisons = headline_comparisons(profile)
    lines = _intro(profile, len(runs))
    lines += _full_budget_section(runs, profile)
    lines += _honest_section(profile, comparisons)
    lines += _baselines_section(runs, profile)
    lines += _encoder_section(runs, profile, figures)
    for model in experiments.MODELS:
        lines += _pretraining_section(runs, profile, model, figures)
    lines += _aggregation_section(runs, profile)
    lines += _grid_section(runs, profile, figures)
    lines += _timing_appendix(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def _seed_section(runs: dict[str, dict], profile: str) -> list[str]:
    """The grid rows re-run with further seeds (``<run>-s<k>``): is the best row's lead larger than the seed spread?"""
    check = analysis.seed_check(analysis.ablation_table(runs, experiments.ablation_grid()))
    if len(check) < 2:
        return []
    lead = check["overall"].iloc[0] - check["overall"].iloc[1]
    return [
        "### Seed check",
        "",
        "The grid above is one seed a row. These rows were also trained with further seeds "
        f"(`python -m mtl_lab run <run>-s1 --profile {profile}`, `-s2`, ...); mean and std over the seeds:",
        "",
        markdown(check),
        "",
        f"Over the seeds, the top row leads the next by {lead:.3f} overall; the rows' seed std is "
        f"{check['overall std'].min():.3f}-{check['overall std'].max():.3f}.",
        "",
    ]


def _error_section(profile: str, best: str, figures: Path) -> list[str]:
    """Notebook 06's analysis from the committed dev prediction files of the baseline and the best run."""
    folders = {"baseline: agg-cls-sum": "agg-cls-sum", f"best: {best}": best}
    preds = {}
    for label, name in folders.items():
        folder = experiments.published_dir(profile, name) / "predictions"
        if (folder / "sst-dev-output.csv").is_file():
            preds[label] = analysis.dev_predictions(folder)
    if len(preds) < 2:
        return [
            "## Error analysis (notebook 06)",
            "",
            "The dev prediction files of the baseline and the best run are not committed yet.",
            "",
        ]
    lines = [
        "## Error analysis (notebook 06)",
        "",
        f"From the committed files `results/{profile}/<run>/predictions/*-dev-output.csv` "
        f"(`python -m mtl_lab predict --checkpoint runs/{profile}/<run> --out runs/{profile}/<run>/predictions --splits dev`).",
        "",
    ]
    for task in ("sst", "qqp"):
        lines += [
            markdown(analysis.per_class_accuracy(preds, task)),
            "",
            _figure(analysis.plot_confusion_matrices(preds, task), figures, f"{profile}_{task}_confusion"),
            "",
        ]
    lines += [_figure(analysis.plot_sts_scatter(preds), figures, f"{profile}_sts_scatter"), ""]
    worst = preds[f"best: {best}"]
    for task in ("sst", "qqp", "sts"):
        for kind, rows in analysis.worst_errors(worst, task, 3).items():
            lines += [f"**{task.upper()}, {kind}** (best run)", "", markdown(rows, 2, index=False), ""]
    return lines


README_START, README_END = "<!-- headline:start -->", "<!-- headline:end -->"


def headline_table(profile: str = "cpu") -> pd.DataFrame:
    """The README's headline: the baseline, the paper's best model, the lab's recipe and the compute-matched vote.

    Per row, the mean over its seeds of: the last epoch's score (nothing chosen: the bold one), the cross-fitted score
    (each half's epoch chosen on the other), and the best epoch's (chosen on the examples that score it); the paper's
    Table 2 overall beside.
    """
    runs = experiments.finished_results(profile)
    rows = full_budget_rows()
    full = analysis.full_budget_table(runs, rows)
    out = []
    entries = [(label, rows.get(row, []), row, paper) for label, (row, paper) in HEADLINE_ROWS.items()]
    name, _ = COMPUTE_MATCHED
    entries.append(("the baseline's 3 seeds voting", [name], None, None))
    for label, names, row, paper in entries:
        found = [n for n in names if n in runs]
        entry = {"model": label, "seeds": len(found) if row else len(ENSEMBLES.get(name, []))}
        if row is not None and row in full.index:
            r = full.loc[row]
            entry.update({"SST": f"{r['SST']:.3f}", "QQP": f"{r['QQP']:.3f}", "STS r": f"{r['STS']:.3f}"})
            minutes = f"{r['minutes']:.0f}" if pd.notna(r["minutes"]) else "see notes"
        elif found:
            best = runs[found[0]]["best"]
            entry.update(
                {
                    "SST": f"{best['sst_acc']:.3f}",
                    "QQP": f"{best['qqp_acc']:.3f}",
                    "STS r": f"{best['sts_pearson']:.3f}",
                }
            )
            minutes = _ensemble_minutes(name, runs)
        else:
            entry.update({"SST": "", "QQP": "", "STS r": ""})
            minutes = ""
        scores = _honest_scores(found, profile)
        entry["overall, last epoch"] = f"**{scores['last']}**" if scores["last"] else "needs records"
        entry["cross-fitted"] = scores["crossfit"] or "needs records"
        entry["best epoch"] = (
            f"{np.mean([runs[n]['best']['overall'] for n in found]):.3f}" if found else "not trained yet"
        )
        entry["minutes"] = minutes
        entry["paper (BERT-base, GPU)"] = f"{PAPER_TABLE2[paper][3]:.3f}" if paper else "—"
        out.append(entry)
    return pd.DataFrame(out)


def _ensemble_minutes(name: str, runs: dict[str, dict]) -> str:
    """An ensemble's training time: its members' quiet minutes added up (a member timed on a busy machine counts as
    its row's quietly timed seed)."""
    members = ENSEMBLES.get(name, [])
    quiet = [analysis.quiet_minutes(runs[m]) for m in members if m in runs]
    known = [q for q in quiet if pd.notna(q)]
    if not known:
        return "see notes"
    return f"{len(members)} x {np.mean(known):.0f}"


def _honest_scores(names: list[str], profile: str) -> dict[str, str]:
    """A row's selection-free scores, the mean over its seeds with records: the last epoch and the cross-fitted."""
    from mtl_lab.study import intervals

    recs = [compare.run_records(compare.run_folder(n, profile))[1] for n in names if compare.has_records(n, profile)]
    if not recs:
        return {"last": "", "crossfit": ""}
    m = intervals.material(recs, compare.dev_labels(tuple(recs[0].tasks)))
    suffix = f" ({len(recs)} seeds)" if len(recs) != len(names) else ""
    return {rule: f"{intervals.point_scores(m, rule).mean():.3f}{suffix}" for rule in ("last", "crossfit")}


def headline_comparisons(profile: str = "cpu") -> list[compare.Comparison]:
    """The headline rows against the [CLS] baseline, and the compute-matched pair: each with its verdict interval."""
    rows = full_budget_rows()
    names = {label: rows[row][0] for label, (row, _) in HEADLINE_ROWS.items() if row in rows}
    base = names.pop(next(iter(names)))
    pairs = [(name, base, HEADLINE_CANDIDATES.get(label, 1)) for label, name in names.items()]
    pairs.append((*COMPUTE_MATCHED, 1))
    out = []
    for a, b, candidates in pairs:
        try:
            c = compare.compare_runs(a, b, profile, seeds=True, candidates=candidates)
        except FileNotFoundError:
            continue  # not published yet
        if c.table is not None or c.two_way is not None:
            out.append(c)
    return out


def comparison_lines(comparisons: list[compare.Comparison]) -> list[str]:
    """One bullet a comparison: the overall difference with its interval(s), the verdict, where its numbers come from."""
    return [f"- {c.sentence()}." for c in comparisons]


def _compact_markdown(table: pd.DataFrame) -> list[str]:
    """A markdown table without padding (the README stays under 10 KB)."""
    rows = [list(map(str, table.columns)), ["---"] * len(table.columns), *table.astype(str).values.tolist()]
    return ["| " + " | ".join(row) + " |" for row in rows]


def update_readme(
    profile: str = "cpu",
    readme: str | os.PathLike = REPO_ROOT / "README.md",
    comparisons: list[compare.Comparison] | None = None,
) -> bool:
    """Rewrite the README's headline block (between its markers) from the committed runs; True if it changed.

    ``comparisons``: the headline comparisons when the caller has them already (``build`` states the same ones).
    """
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path}: no {README_START} ... {README_END} block to rewrite")
    table = headline_table(profile)
    lines = comparison_lines(headline_comparisons(profile) if comparisons is None else comparisons)
    block = "\n".join([README_START, "", *_compact_markdown(table), "", *lines, "", README_END])
    new = text[: text.index(README_START)] + block + text[text.index(README_END) + len(README_END) :]
    path.write_text(new)
    return new != text
