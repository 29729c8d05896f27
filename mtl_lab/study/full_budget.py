"""The full-budget study: its rows, the candidates stopped early, and the rows the README's headline shows.

A row is a configuration over several seeds: the paper's models and the lab's recipe candidates, every run on
the profile's whole budget (all local data, its epochs). The run names are experiments
(``experiments.full_budget_experiment``); the lab's recipe is one of the rows (``recipe.RECIPE``).
"""

from __future__ import annotations


def full_budget_rows() -> dict[str, list[str]]:
    """The full-budget study: row label -> its runs (seeds 0, 1, 2; the published ``baseline`` is seed 0 of row (a)).

    The primed rows are the same configurations with the word embeddings trained: the lab's training
    before the CPU speed-up, kept to show what freezing them changed."""
    return {
        "(a) [CLS] baseline": ["baseline", "full-cls-s1", "full-cls-s2"],
        # row (a) over 4 epochs (the lr schedule stretched), as many as the recipe: epochs matched
        "(a4) [CLS] baseline, 4 epochs": ["full-cls-e4", "full-cls-e4-s1", "full-cls-e4-s2"],
        "(b) SBERT + CNN-BiLSTM, plain start": ["full-sbert", "full-sbert-s1", "full-sbert-s2"],
        "(c) (b) + SimCSE (QQP/STS) + PCGrad (the paper's best)": [
            f"full-sbert-qqp_sts-pcgrad{s}" for s in ("", "-s1", "-s2")
        ],
        "(d) mean pooling + ensembled pair heads": ["full-mean", "full-mean-s1", "full-mean-s2"],
        "(e) the lab's recipe: (d) + R-Drop, 4 epochs, one model (= row (i))": ["recipe", "recipe-s1", "recipe-s2"],
        # a recipe candidate: R-Drop (``mtl_lab.training.rdrop``) on row (d), about twice its training time
        "(f) (d) + R-Drop (recipe candidate)": ["full-mean-rdrop", "full-mean-rdrop-s1", "full-mean-rdrop-s2"],
        # a recipe candidate: layer-wise lr decay (``LLRD``) on row (d), the same training time
        "(g) (d) + layer-wise lr decay (recipe candidate)": [
            "full-mean-llrd",
            "full-mean-llrd-s1",
            "full-mean-llrd-s2",
        ],
        # a recipe candidate: a moving average of the weights (``mtl_lab.training.ema``) on row (d), the same training time
        "(h) (d) + weight averaging (recipe candidate)": ["full-mean-ema", "full-mean-ema-s1", "full-mean-ema-s2"],
        # row (f) with its lr schedule stretched over 4 epochs, 8/3 of row (d)'s training time: the recipe since
        # its three seeds averaged .752 (``recipe.RECIPE``)
        "(i) (d) + R-Drop, 4 epochs (the recipe)": [
            "full-mean-rdrop-e4",
            "full-mean-rdrop-e4-s1",
            "full-mean-rdrop-e4-s2",
        ],
        # the accuracy check of mtl_lab.models.fast.dropout: seeds 3 and 4 of row (a), trained with the 16-bit masks,
        # against row (a)'s spread (its seeds 0-2 trained with PyTorch's dropout)
        "(a*) (a), seeds 3-4, with the lab's dropout masks": ["full-cls-s3", "full-cls-s4"],
        # the accuracy check of mtl_lab.models.fast.unpad (the backbone over real tokens only, one pass for a pair task's
        # two views) and of the dropout masks' two multiplications: seeds 5 and 6 of row (a), against its spread
        "(a-u) (a), seeds 5-6, the backbone over real tokens only": ["full-cls-s5", "full-cls-s6"],
        # the accuracy check of the last layer for [CLS] alone (exact maths, fewer dropout draws) and the
        # dropout masks written as scaled floats: seeds 7 and 8 of row (a)
        "(a-c) (a), seeds 7-8, the last layer for [CLS] alone": ["full-cls-s7", "full-cls-s8"],
        # the accuracy check of the fused AdamW (the same update to float rounding, one pass a tensor): seeds 9
        # and 10 of row (a)
        "(a-o) (a), seeds 9-10, the fused AdamW": ["full-cls-s9", "full-cls-s10"],
        # the accuracy check of --freeze-layers 2 (faster steps): seeds 0-1 of row (a) with the
        # embeddings and the lowest 2 of the 6 transformer layers fixed
        "(a-f2) (a), the lowest 2 layers frozen": ["full-cls-f2", "full-cls-f2-s1"],
        # the first full-budget runs, made before the CPU speed-up froze the word embeddings
        "(a') (a), word embeddings trained too": ["full-cls-wemb", "full-cls-wemb-s1", "full-cls-wemb-s2"],
        "(b') (b), word embeddings trained too": ["full-sbert-wemb"],
        "(d') (d), word embeddings trained too": ["full-mean-wemb"],
    }


# Recipe candidates whose first seeds showed no gain (or that a later row superseded): their missing seeds are not
# trained. Row -> (the row it was measured against, why it stopped); the results page puts both rows' scores, seed
# by seed, beside the reason.
STOPPED_ROWS = {
    "(f) (d) + R-Drop (recipe candidate)": (
        "(d) mean pooling + ensembled pair heads",
        "superseded by row (i), the same over 4 epochs (the recipe)",
    ),
    "(g) (d) + layer-wise lr decay (recipe candidate)": ("(d) mean pooling + ensembled pair heads", "no gain"),
    "(h) (d) + weight averaging (recipe candidate)": (
        "(d) mean pooling + ensembled pair heads",
        "no gain, and none over three seeds in the GPU screening (benchmarks/results/gpu_screen_h200.json)",
    ),
}


# The README's headline: which full-budget row stands for what, and the paper's Table 2 row beside it.
HEADLINE_ROWS = {
    "the [CLS] baseline": ("(a) [CLS] baseline", "BERT [CLS] multi-task, initial"),
    "the paper's best model": (
        "(c) (b) + SimCSE (QQP/STS) + PCGrad (the paper's best)",
        "SBERT + CNN-BiLSTM, PCGrad + SimCSE (QQP/STS)",
    ),
    "the lab's recipe": ("(e) the lab's recipe: (d) + R-Drop, 4 epochs, one model (= row (i))", None),
}


# How many candidate rows a headline row was chosen among on this dev set: its verdict interval is adjusted for them
# (Bonferroni). The recipe was the best of about nine candidate rows (docs/study.md); the paper's model was the
# paper's choice, not made on this dev set.
HEADLINE_CANDIDATES = {"the lab's recipe": 9}

# Seed ensembles published as runs of their own (``mtl_lab.study.ensemble``): name -> members. The baseline's three
# seeds cost about one recipe seed of CPU (3 x 17 min against 60 min): the compute-matched comparison.
ENSEMBLES = {
    "ensemble-cls-x3": ["baseline", "full-cls-s1", "full-cls-s2"],
    "ensemble-recipe-x3": ["recipe", "recipe-s1", "recipe-s2"],
}
COMPUTE_MATCHED = ("ensemble-cls-x3", "recipe")  # the baseline's 3-seed vote against one recipe seed (its row)


def row_minutes(name: str, profile: str = "cpu") -> float:
    """A full-budget run's minutes as the README's headline states them: its row's ``minutes`` in
    ``analysis.full_budget_table`` (the mean over the seeds timed on a quiet machine; NaN when none was, or when the
    run is in no row)."""
    from mtl_lab.study import analysis, experiments

    for label, names in full_budget_rows().items():
        if name in names:
            table = analysis.full_budget_table(experiments.finished_results(profile, names), {label: names})
            return float(table["minutes"].iloc[0]) if "minutes" in table else float("nan")
    return float("nan")
