"""Tables and figures for the notebooks and the results page; nothing here trains.

Everything reads data files or results dicts (``results.json``) and returns a pandas DataFrame or a
matplotlib Figure. A module per concern, in the notebooks' order:

* ``datasets``: the tasks' data before training (notebook 00)
* ``results``: one run or several, best-epoch metrics, learning and loss curves (notebooks 01-04)
* ``anatomy``: a model's parts and the shapes a batch takes through it (notebook 02)
* ``seeds``: runs over seeds, the full-budget study, paired differences (notebooks 02, 05)
* ``geometry``: sentence-embedding geometry and SimCSE's in-batch logits (notebook 03)
* ``gradients``: task-gradient conflicts and PCGrad's toy problem (notebook 04)
* ``ablation``: notebook 05's grid as the paper's Table 2
* ``errors``: error analysis from dev prediction files (notebook 06)
* ``figures`` and ``tables``: what every figure and table keeps to (width, legends, decimals, gaps)
"""

from mtl_lab.study.analysis.ablation import ablation_table, plot_ablation, seed_check, style_ablation
from mtl_lab.study.analysis.anatomy import encoder_walkthrough, parameter_table
from mtl_lab.study.analysis.datasets import (
    TASK_LABELS,
    length_percentiles,
    load_quietly,
    malformed_rows,
    plot_label_distributions,
    plot_token_lengths,
    token_lengths,
    tokenization_table,
)
from mtl_lab.study.analysis.errors import (
    QQP_CLASSES,
    SST_CLASSES,
    dev_predictions,
    format_wordpieces,
    misclassified_wordpieces,
    per_class_accuracy,
    plot_confusion_matrices,
    plot_sts_scatter,
    run_dev_predictions,
    worst_errors,
)
from mtl_lab.study.analysis.figures import MAX_WIDTH, NOTEBOOK_DPI, fit_width, savefig
from mtl_lab.study.analysis.geometry import (
    GEOMETRY_COLUMNS,
    embedding_maps,
    geometry_table,
    in_batch_similarities,
    plot_alignment_uniformity,
    plot_in_batch_similarities,
)
from mtl_lab.study.analysis.gradients import (
    conflict_frame,
    conflict_summary,
    plot_gradient_conflicts,
    plot_toy_trajectories,
)
from mtl_lab.study.analysis.results import (
    METRIC_COLUMNS,
    history_frame,
    metric_row,
    own_vs_published,
    plot_forgetting,
    plot_learning_curves,
    plot_loss_curves,
    plot_results,
    quiet_minutes,
    results_row,
    results_table,
    single_task_ensemble,
)
from mtl_lab.study.analysis.seeds import (
    full_budget_table,
    plot_full_budget,
    plot_paired_differences,
    plot_seed_summary,
    seed_summary,
    split_seed,
)
from mtl_lab.study.analysis.tables import format_table, markdown

__all__ = [
    "GEOMETRY_COLUMNS",
    "MAX_WIDTH",
    "fit_width",
    "METRIC_COLUMNS",
    "NOTEBOOK_DPI",
    "QQP_CLASSES",
    "SST_CLASSES",
    "TASK_LABELS",
    "ablation_table",
    "conflict_frame",
    "conflict_summary",
    "dev_predictions",
    "embedding_maps",
    "encoder_walkthrough",
    "format_table",
    "format_wordpieces",
    "full_budget_table",
    "geometry_table",
    "history_frame",
    "in_batch_similarities",
    "length_percentiles",
    "load_quietly",
    "malformed_rows",
    "markdown",
    "metric_row",
    "misclassified_wordpieces",
    "own_vs_published",
    "parameter_table",
    "per_class_accuracy",
    "plot_ablation",
    "plot_alignment_uniformity",
    "plot_confusion_matrices",
    "plot_forgetting",
    "plot_full_budget",
    "plot_gradient_conflicts",
    "plot_in_batch_similarities",
    "plot_label_distributions",
    "plot_learning_curves",
    "plot_loss_curves",
    "plot_paired_differences",
    "plot_results",
    "quiet_minutes",
    "plot_seed_summary",
    "plot_sts_scatter",
    "plot_token_lengths",
    "plot_toy_trajectories",
    "results_row",
    "results_table",
    "run_dev_predictions",
    "savefig",
    "seed_check",
    "seed_summary",
    "single_task_ensemble",
    "split_seed",
    "style_ablation",
    "token_lengths",
    "tokenization_table",
    "worst_errors",
]
