"""Named experiments: the runs the notebooks (and sweeps) train, per profile, in one place.

An experiment is a (ModelConfig, TrainConfig) pair with a stable name; it trains into the
user's own ``runs/<profile>/<name>/`` (git-ignored). A finished run there is reused (its
results.json is returned without training), so notebooks and sweeps can be re-run and resumed
freely. The PUBLISHED results live apart, in ``results/<profile>/<name>/`` (committed: the
small results.json files and a few prediction files, copied there by ``mtl_lab.study.publish``):
the notebooks' cpu sections, the results page and the README read them, and nothing trains from them.
The full-budget study's rows are ``mtl_lab.study.full_budget``; the lab's recipe, ``mtl_lab.study.recipe``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from mtl_lab.models.model import ModelConfig, MultitaskModel, load_model
from mtl_lab.runs import (
    StaleDataError,
    load_results,
    results_root,
    runs_root,
    stale_data,
)
from mtl_lab.training.config import (
    PROFILES,
    TrainConfig,
    config_diff,
    profile_config,
    require_device,
    run_config,
    stored_setting,
)
from mtl_lab.training.loop import train

# Study sizes that keep the cpu profile within about an hour a notebook on 2 cores: the
# sampler comparison and the sequential run use fewer epochs / a subset (the smoke profile
# keeps its own tiny sizes). ``encoders`` is notebook 02's multi-seed single-task study;
# ``aggregation`` is notebook 04's with/without PCGrad study: the paper's PCGrad sampling (small
# per-task batches, ``task_draws`` tasks drawn uniformly with replacement per step) for every
# aggregation, so only the gradient surgery differs between its runs. ``pretrain`` sizes notebook
# 03's contrastive pre-training (one pass over the mined pairs on cpu); its fine-tuning
# runs use the ``aggregation`` budget, so ``agg-<model>-sum`` is their "initial" row.
STUDY_OVERRIDES = {
    "smoke": {
        "samplers": {},
        "sequential": {"epochs": 1},
        "encoders": {"epochs": 1, "train_limit": 96, "dev_limit": 100, "batch_size": 16},
        "aggregation": {"sampler": "uniform", "task_draws": 3, "batch_size": 8, "epochs": 1, "monitor_every": 6},
        # nothing shows a fine-tuning run's gradient conflicts: smoke skips measuring them (the cpu and gpu
        # profiles keep the configuration their published runs were trained with)
        "finetune": {"monitor_every": 0},
        "pretrain": {"epochs": 1, "train_limit": 64, "dev_limit": 100},
    },
    "cpu": {
        "samplers": {"epochs": 2, "train_fraction": 0.15},
        "sequential": {"epochs": 1},
        "encoders": {"epochs": 2, "train_fraction": 0.2},
        "aggregation": {
            "sampler": "uniform",
            "task_draws": 3,
            "batch_size": 8,
            "epochs": 2,
            "train_fraction": 0.15,
            "monitor_every": 25,
        },
        "pretrain": {"epochs": 1, "batch_size": 32, "lr": 3e-5},
    },
    "gpu": {
        "samplers": {},
        "sequential": {},
        "encoders": {},
        "aggregation": {"sampler": "uniform", "task_draws": 3, "batch_size": 4, "monitor_every": 200},
        "pretrain": {"epochs": 1, "batch_size": 64, "lr": 3e-5},
    },
}

# Sentence models by short name: the [CLS] baseline and the paper's SBERT + CNN-BiLSTM with the
# ensembled (cross + bi-encoder) pair heads.
MODELS = {
    "cls": {"encoder": "cls", "pair_head": "cross"},
    "sbert": {"encoder": "sbert_cnn_bilstm", "pair_head": "ensemble"},
}

# Notebook 02's single-task variants: SST's sentence representation; QQP/STS's pair head (the
# bi-encoder parts use the combined SBERT + CNN-BiLSTM embedding, as in the paper).
ENCODER_VARIANTS = {
    "sst": {
        "cls": {"encoder": "cls"},
        "mean": {"encoder": "mean"},
        "sbert": {"encoder": "sbert_cnn_bilstm"},
    },
    "qqp": {
        "cross": {"encoder": "cls", "pair_head": "cross"},
        "bi": {"encoder": "sbert_cnn_bilstm", "pair_head": "bi"},
        "ensemble": {"encoder": "sbert_cnn_bilstm", "pair_head": "ensemble"},
    },
}
ENCODER_VARIANTS["sts"] = ENCODER_VARIANTS["qqp"]

# Notebook 03's pre-training strategies (the paper's Table 2 rows): a SimCSE / NLI mode of
# ``mtl_lab.training.simcse``, or ``nli_<mode>`` = that mode continued from the NLI pre-trained weights.
PRETRAIN_STRATEGIES = ("nli", "qqp_sts", "sst_qqp_sts", "nli_qqp_sts")
PRETRAIN_LABELS = {
    "nli": "NLI",
    "qqp_sts": "SimCSE (QQP/STS)",
    "sst_qqp_sts": "SimCSE (SST/QQP/STS)",
    "nli_qqp_sts": "NLI + SimCSE (QQP/STS)",
}


def run_dir(profile: str, name: str) -> Path:
    """Folder of the user's own run: ``runs/<profile>/<name>`` (or under $MTL_LAB_RUNS)."""
    return runs_root() / profile / name


def published_dir(profile: str, name: str) -> Path:
    """Folder of a published run: ``results/<profile>/<name>`` (or under $MTL_LAB_RESULTS)."""
    return results_root() / profile / name


SOURCES = {"published": published_dir, "own": run_dir}


def experiment(name: str, profile: str, backbone: str | None = None, **overrides) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a named experiment under a profile.

    Names: ``baseline`` (multi-task [CLS]), ``sbert`` (multi-task SBERT + CNN-BiLSTM, ensembled
    pair heads), ``single-<task>``, ``sampler-<sampler>``, ``sequential-<t1>-<t2>-<t3>``,
    ``enc-<task>-<variant>-s<seed>`` (notebook 02, variants in ``ENCODER_VARIANTS``) and
    ``agg-<model>-<aggregation>`` (notebook 04: model ``cls``/``sbert``, aggregation
    ``sum``/``pcgrad``/``imtl_g``), ``pre-<model>-<strategy>`` (notebook 03: contrastive
    pre-training, strategies in ``PRETRAIN_STRATEGIES``) and ``ft-<model>-<strategy>[-<aggregation>]``
    (multi-task fine-tuning from that pre-training, on the ``agg-`` budget), ``seq-<model>-<t1>-<t2>-<t3>``
    (sequential training on the ``agg-`` budget); ``agg-``/``ft-``/``seq-`` names take a seed suffix
    ``-s<k>`` (notebook 05's grid).
    """
    model_kw = {"backbone": backbone} if backbone else {}
    study = STUDY_OVERRIDES[profile]
    if name == "baseline":
        return ModelConfig(**model_kw), profile_config(profile, **overrides)
    if name == "sbert":
        return ModelConfig(**model_kw, **MODELS["sbert"]), profile_config(profile, **overrides)
    if name.startswith("single-"):
        return ModelConfig(**model_kw), profile_config(profile, tasks=(name.split("-", 1)[1],), **overrides)
    if name.startswith("sampler-"):
        kw = {**study["samplers"], **overrides}
        return ModelConfig(**model_kw), profile_config(profile, sampler=name.split("-", 1)[1], **kw)
    if name.startswith("sequential-"):
        kw = {**study["sequential"], **overrides}
        return ModelConfig(**model_kw), profile_config(profile, tasks=tuple(name.split("-")[1:]), sequential=True, **kw)
    parts = name.split("-")
    if parts[0] == "full":
        return full_budget_experiment(name, profile, model_kw, **overrides)
    if parts[0] in ("agg", "ft", "seq") and len(parts) > 3 and re.fullmatch(r"s\d+", parts[-1]):
        # a further seed of a study run: ``agg-cls-sum-s1`` is ``agg-cls-sum`` with seed 1
        return experiment("-".join(parts[:-1]), profile, backbone, **{"seed": int(parts[-1][1:]), **overrides})
    if parts[0] == "seq" and len(parts) == 5 and parts[1] in MODELS:
        kw = {**study["aggregation"], "monitor_every": 0, "sampler": "proportional", **overrides}  # one task a stage
        return ModelConfig(**model_kw, **MODELS[parts[1]]), profile_config(
            profile, tasks=tuple(parts[2:]), sequential=True, **kw
        )
    if parts[0] == "enc" and len(parts) == 4 and parts[3][:1] == "s" and parts[3][1:].isdigit():
        task, variant, seed = parts[1], parts[2], int(parts[3][1:])
        if variant not in ENCODER_VARIANTS.get(task, {}):
            raise ValueError(
                f"unknown encoder study run {name!r}: variants of {task!r} are {list(ENCODER_VARIANTS.get(task, {}))}"
            )
        kw = {**study["encoders"], "seed": seed, **overrides}
        return ModelConfig(**model_kw, **ENCODER_VARIANTS[task][variant]), profile_config(profile, tasks=(task,), **kw)
    if parts[0] == "agg" and len(parts) == 3 and parts[1] in MODELS:
        kw = {**study["aggregation"], "aggregation": parts[2], **overrides}
        return ModelConfig(**model_kw, **MODELS[parts[1]]), profile_config(profile, **kw)
    if parts[0] in ("pre", "ft") and len(parts) in (3, 4) and parts[1] in MODELS:
        if parts[2] not in PRETRAIN_STRATEGIES:
            raise ValueError(f"unknown pre-training {parts[2]!r} in {name!r}: expected one of {PRETRAIN_STRATEGIES}")
        init = None
        if parts[0] == "ft":
            aggregation = parts[3] if len(parts) == 4 else "sum"
            kw = {**study["aggregation"], **study.get("finetune", {}), "aggregation": aggregation, **overrides}
            init = f"{profile}/pre-{parts[1]}-{parts[2]}"  # relative to the runs folder
        elif len(parts) == 3:
            mode = parts[2].removeprefix("nli_")
            kw = {**study["pretrain"], "pretrain": mode, **overrides}
            if parts[2].startswith("nli_"):
                init = f"{profile}/pre-{parts[1]}-nli"
        else:
            raise ValueError(f"unknown experiment {name!r}: pre-training runs are pre-<model>-<strategy>")
        return ModelConfig(**model_kw, **MODELS[parts[1]], init=init), profile_config(profile, **kw)
    raise ValueError(f"unknown experiment {name!r}")


# The full-budget study (the cpu profile's budget: all local data, 3 epochs): the paper's
# models and strategies trained as the baseline is, several seeds each (its rows: ``full_budget.full_budget_rows``).
FULL_BUDGET_PCGRAD = {"smoke": {"batch_size": 8}, "cpu": {"batch_size": 8}, "gpu": {"batch_size": 4}}
# Candidates for the lab's own recipe (row (d)), beside the paper's two models: ``mean`` is plain mean
# pooling (how all-MiniLM-L6-v2 was pre-trained) for SST and for the bi-encoder half of the ensembled
# pair heads (STS: cross-encoder score + 5 x cosine of the mean-pooled embeddings; QQP: the mean of
# the cross and bi logits) -- what notebook 02's single-task study favoured (docs/study.md).
FULL_BUDGET_MODELS = {**MODELS, "mean": {"encoder": "mean", "pair_head": "ensemble"}}
# R-Drop's consistency weight for the ``-rdrop`` runs: 1.0 in the lab's parametrisation (the MEAN of the two passes'
# task losses plus this weight times the symmetric KL, ``mtl_lab.training.rdrop``), which is alpha = 2 in the R-Drop paper's
# (the SUM of the two losses plus alpha times the same KL): twice the top of the 0.1-1.0 its GLUE runs used.
# Chosen before any run here -- not tuned on this dev set.
RDROP_ALPHA = 1.0
# Layer-wise lr decay for the ``-llrd`` runs (a recipe candidate): the heads and the sentence encoder at
# twice the profile's lr, each backbone layer below at 0.85 x the one above (the embeddings at 0.64 x the
# profile's lr), so the six layers' mean lr stays near the profile's (1.18 x). Chosen before any run
# here from the usual fine-tuning ranges (top lr 1-2 x, decay 0.8-0.95) -- not tuned on this dev set.
LLRD = {"lr_scale": 2.0, "layer_decay": 0.85}
# The weight average's decay for the ``-ema`` runs (``mtl_lab.training.ema``: a recipe candidate): 0.999 spans about the
# last 1,000 of a cpu-profile run's ~2,900 steps. The usual setting, chosen before any run here -- not tuned on dev.
EMA_DECAY = 0.999


def full_budget_experiment(name: str, profile: str, model_kw: dict, **overrides) -> tuple[ModelConfig, TrainConfig]:
    """``full-<model>[-<strategy>][-pcgrad][-llrd][-ema][-rdrop][-wemb][-f<k>][-e<n>][-s<k>]``: a multi-task run on the profile's whole budget.

    ``full-cls`` is the [CLS] baseline's configuration; ``full-sbert`` the SBERT + CNN-BiLSTM model with
    the ensembled pair heads; a pre-training strategy (``PRETRAIN_STRATEGIES``) starts it from
    ``pre-<model>-<strategy>``; ``pcgrad`` trains with PCGrad and the paper's sampling (3 task
    batches a step, tasks drawn uniformly with replacement); ``rdrop`` adds R-Drop (``mtl_lab.training.rdrop``, weight
    ``RDROP_ALPHA``: a recipe candidate); ``llrd`` layer-wise lr decay (``LLRD``), ``ema`` a moving average of the weights (``EMA_DECAY``, ``mtl_lab.training.ema``):
    recipe candidates; ``wemb`` trains the word embeddings too
    (frozen by default since the CPU speed-up: the first full-budget runs were made that way); ``f<k>`` freezes the
    lowest k transformer layers (``TrainConfig.freeze_layers``: faster steps, a small accuracy cost); ``e<n>`` trains
    n epochs instead of the profile's (the lr schedule stretched over them).
    """
    parts = name.split("-")[1:]
    kw: dict = {}
    if parts and re.fullmatch(r"s\d+", parts[-1]):
        kw["seed"] = int(parts.pop()[1:])
    if len(parts) > 1 and re.fullmatch(r"e[1-9]\d*", parts[-1]):
        kw["epochs"] = int(parts.pop()[1:])
    if len(parts) > 1 and re.fullmatch(r"f[1-9]\d*", parts[-1]):
        kw["freeze_layers"] = int(parts.pop()[1:])
    if not parts or parts[0] not in FULL_BUDGET_MODELS:
        raise ValueError(
            f"unknown experiment {name!r}: full-budget runs are "
            f"full-<{'|'.join(FULL_BUDGET_MODELS)}>[-<strategy>][-pcgrad][-llrd][-ema][-rdrop][-wemb][-f<k>][-e<n>][-s<k>]"
        )
    model, rest = parts[0], parts[1:]
    init = None
    # optional suffixes, read from the end of the name in this order (the reverse of how a name writes them)
    suffixes = {
        "wemb": {"freeze_word_embeddings": False},  # word embeddings trained (the old default)
        "rdrop": {"rdrop": RDROP_ALPHA},
        "ema": {"ema": EMA_DECAY},
        "llrd": {"lr": PROFILES[profile]["lr"] * LLRD["lr_scale"], "layer_decay": LLRD["layer_decay"]},
        "pcgrad": {"aggregation": "pcgrad", "sampler": "uniform", "task_draws": 3, **FULL_BUDGET_PCGRAD[profile]},
    }
    for suffix, settings in suffixes.items():
        if rest and rest[-1] == suffix:
            rest.pop()
            kw.update(settings)
    if rest:
        if model not in MODELS:
            raise ValueError(f"{name!r}: pre-training runs exist for {tuple(MODELS)} only, not {model!r}")
        if len(rest) > 1 or rest[0] not in PRETRAIN_STRATEGIES:
            raise ValueError(
                f"unknown pre-training {'-'.join(rest)!r} in {name!r}: expected one of {PRETRAIN_STRATEGIES}"
            )
        init = f"{profile}/pre-{model}-{rest[0]}"
    return ModelConfig(**model_kw, **FULL_BUDGET_MODELS[model], init=init), profile_config(
        profile, **{**kw, **overrides}
    )


# The exercises' short runs: a student's AdamW / PCGrad trains the real model beside the reference.
EXERCISE_RUNS = {
    "adamw": {"name": "baseline", "smoke": {"epochs": 1}, "cpu": {"epochs": 1, "train_fraction": 0.05}},
    "pcgrad": {"name": "agg-cls-pcgrad", "smoke": {"monitor_every": 0}, "cpu": {"epochs": 1, "monitor_every": 0}},
}


def exercise_run(
    exercise: str,
    label: str,
    profile: str,
    optimizer_cls: type | None = None,
    aggregator: Callable | None = None,
    progress: bool = False,
) -> dict:
    """A short run of an exercise's model with the student's piece (or the reference): ``runs/<profile>/exercise-<exercise>-<label>``.

    Always trained afresh (never reused): the student's code may have changed since the last run.
    """
    spec = EXERCISE_RUNS[exercise]
    model_cfg, cfg = experiment(spec["name"], profile, **spec.get(profile, spec["cpu"]))
    out = run_dir(profile, f"exercise-{exercise}-{label}")
    return train(
        model_cfg, cfg, out, resume=False, progress=progress, optimizer_cls=optimizer_cls, aggregator=aggregator
    )


def prerequisites(name: str, profile: str) -> list[str]:
    """The runs a named experiment starts from, trained first, in order (ft-cls-nli_qqp_sts: pre-cls-nli, ...)."""
    model_cfg, _ = experiment(name, profile)
    if not model_cfg.init:
        return []
    parent = Path(model_cfg.init).name
    return [*prerequisites(parent, profile), parent]


def pretraining_rows(model: str) -> dict[str, str]:
    """Notebook 03's Table-2 rows of a model: label -> run name ("initial" = no pre-training, ``agg-<model>-sum``)."""
    return {"initial": f"agg-{model}-sum", **{PRETRAIN_LABELS[s]: f"ft-{model}-{s}" for s in PRETRAIN_STRATEGIES}}


# Notebook 05's ablation grid: per sentence model, the paper's Table 2 strategies on one budget.
SEQUENTIAL_ORDERS = (("sst", "sts", "qqp"), ("qqp", "sts", "sst"))
ABLATION_SEEDS = {"smoke": 1, "cpu": 1, "gpu": 3}
ABLATION_MODELS = {"smoke": ("cls",), "cpu": ("cls", "sbert"), "gpu": ("cls", "sbert")}


def ablation_rows(model: str) -> dict[str, str]:
    """The grid's rows of one sentence model: strategy label -> run name (seed 0)."""
    rows = dict(pretraining_rows(model))
    rows["PCGrad"] = f"agg-{model}-pcgrad"
    rows.update({f"PCGrad + {PRETRAIN_LABELS[s]}": f"ft-{model}-{s}-pcgrad" for s in PRETRAIN_STRATEGIES})
    rows.update({f"sequential {' → '.join(o).upper()}": f"seq-{model}-{'-'.join(o)}" for o in SEQUENTIAL_ORDERS})
    return rows


def ablation_grid(models: tuple[str, ...] = ("cls", "sbert")) -> dict[str, dict[str, str]]:
    """The grid's rows of each sentence model: ``{model: {strategy label: run name}}``."""
    return {model: ablation_rows(model) for model in models}


def ablation_names(models: tuple[str, ...] = ("cls", "sbert"), seeds: int = 1) -> list[str]:
    """Every run of the grid (``seeds`` seeds each; seed 0 has no suffix), in training order."""
    names = []
    for model in models:
        for name in ablation_rows(model).values():
            names += [name] + [f"{name}-s{k}" for k in range(1, seeds)]
    return names


def encoder_study_names(seeds: int) -> list[str]:
    """The run names of notebook 02's single-task study, ``seeds`` seeds of every variant."""
    return [f"enc-{t}-{v}-s{s}" for t, variants in ENCODER_VARIANTS.items() for v in variants for s in range(seeds)]


def run_experiment(
    name: str, profile: str, backbone: str | None = None, progress: bool = True, resume: bool = True, **overrides
) -> dict:
    """Train a named experiment into the user's run folder (or return that finished run's results).

    ``resume=False`` starts the run over (its prerequisites are still reused when finished).
    """
    require_device(profile, overrides.get("device", "auto"))
    for parent in prerequisites(name, profile):
        model_cfg, train_cfg = experiment(parent, profile, backbone)
        train(model_cfg, train_cfg, run_dir(profile, parent), progress=progress)
    model_cfg, train_cfg = experiment(name, profile, backbone, **overrides)
    out = run_dir(profile, name)
    twin = identical_run(profile, name, model_cfg, train_cfg) if resume and not out.exists() else None
    if twin is not None:  # e.g. smoke's sampler-proportional is the baseline: shared, not trained twice
        share_run(twin, out)
        print(f"{name}: the same configuration as {twin.name}: its finished run is reused", flush=True)
    return train(model_cfg, train_cfg, out, progress=progress, resume=resume)


def identical_run(profile: str, name: str, model_cfg: ModelConfig, train_cfg: TrainConfig) -> Path | None:
    """Another finished run of the profile with this model and training configuration, if any.

    The same comparison resuming makes (``config_diff``). Exercise runs never count (a student's optimizer
    trains under the reference's configuration).
    """
    wanted = run_config(model_cfg, train_cfg)
    for results in sorted((runs_root() / profile).glob("*/results.json")):
        folder = results.parent
        if folder.name == name or folder.name.startswith("exercise-") or not (folder / "best.pt").is_file():
            continue
        stored = load_results(folder)
        if stored and stored.get("finished") and not config_diff(stored["config"], wanted):  # what resuming checks
            return folder
    return None


def share_run(source: Path, out: Path) -> None:
    """Make ``out`` a finished copy of the run in ``source`` (results.json copied, best.pt hard-linked where possible)."""
    tmp = out.with_name(out.name + ".sharing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        os.link(source / "best.pt", tmp / "best.pt")
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source / "best.pt", tmp / "best.pt")
    shutil.copy2(source / "results.json", tmp / "results.json")
    tmp.rename(out)


def finished_results(profile: str, names: list[str] | None = None, source: str = "published") -> dict[str, dict]:
    """results.json of every finished run of a profile (optionally only the named ones).

    ``source="published"``: the committed results (``results/``); ``"own"``: the user's runs (``runs/``).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {tuple(SOURCES)}, got {source!r}")
    root = SOURCES[source](profile, "")
    out = {}
    for path in sorted(root.glob("*/results.json")):
        res = load_results(path.parent)
        if res and res.get("finished") and (names is None or path.parent.name in names):
            out[path.parent.name] = res
    return out


def has_weights(profile: str, name: str) -> bool:
    """Whether the user's run has its ``best.pt`` (a finished results.json alone cannot predict)."""
    return (run_dir(profile, name) / "best.pt").is_file()


def sweep(
    profile: str,
    models: tuple[str, ...] = ("cls", "sbert"),
    seeds: int | None = None,
    backbone: str | None = None,
    train: bool = True,
    progress: bool = True,
) -> dict[str, dict]:
    """Notebook 05's grid: train every run not yet finished (resumable) and return all finished results.

    With ``train=False`` nothing is trained: the user's finished runs of the grid are returned.
    Published results are never returned here (see ``finished_results(..., source="published")``).
    """
    names = ablation_names(models, seeds or ABLATION_SEEDS[profile])
    if train:
        for i, name in enumerate(names):
            if progress:
                print(f"[{i + 1}/{len(names)}] {name}", flush=True)
            try:
                run_experiment(name, profile, backbone, progress=progress)
            except StaleDataError as exc:  # trained on other data: not finished, train it again
                print(f"{exc}\n-> training {name} again on today's data", flush=True)
                run_experiment(name, profile, backbone, progress=progress, resume=False)
    results = finished_results(profile, names, source="own")
    for name in list(results):
        changes = stale_data(results[name])
        if changes:
            print(f"{run_dir(profile, name)}: left out, trained on other data ({'; '.join(changes)})", flush=True)
            del results[name]
    return results


def budget(results: dict) -> str:
    """A run's training budget in words: 'full' (every training example, the profile's epochs) or the study's."""
    train = results["config"]["train"]
    if train.get("train_fraction") is None and train.get("train_limit") is None:
        return f"full budget (all training data, {train.get('epochs', '?')} epochs)"
    part = (
        f"{train['train_fraction']:.0%} of each training set"
        if train.get("train_fraction")
        else f"{train['train_limit']} examples a task"
    )
    return f"study budget ({part}, {train.get('epochs', '?')} epochs)"


def is_full_budget(results: dict) -> bool:
    """Whether a run trained on every training example (the profile's whole budget)."""
    return budget(results).startswith("full")


def best_published_with_predictions(profile: str = "cpu", exclude: tuple[str, ...] = ()) -> str | None:
    """The best published full-budget multi-task run (dev overall) with committed dev predictions, or None.

    Its files in ``results/<profile>/<run>/predictions/``, trained with frozen word embeddings as today's runs
    are; ``exclude``: runs left out."""
    runs = {
        n: r
        for n, r in finished_results(profile).items()
        if n not in exclude
        and stored_setting(r["config"], "train", "freeze_word_embeddings")  # as today's runs train
        and is_full_budget(r)
        and len(r["config"]["train"]["tasks"]) == 3
        and (published_dir(profile, n) / "predictions" / "sst-dev-output.csv").is_file()
    }
    return max(runs, key=lambda n: runs[n]["best"]["overall"]) if runs else None


def best_run(results: dict[str, dict]) -> str:
    """The multi-task run with the highest dev overall score; full-budget runs first when there are any."""
    multi = {n: r for n, r in results.items() if len(r["config"]["train"]["tasks"]) == 3}
    if not multi:
        raise ValueError("no finished multi-task run to choose from")
    full = {n: r for n, r in multi.items() if is_full_budget(r)}
    pool = full or multi
    return max(pool, key=lambda n: pool[n]["best"]["overall"])


def best_model(profile: str, names: list[str] | None = None) -> tuple[str, str]:
    """The user's best multi-task run that has its weights, and why it was chosen (dev overall, budget)."""
    own = {n: r for n, r in finished_results(profile, names, source="own").items() if has_weights(profile, n)}
    own = {n: r for n, r in own.items() if not stale_data(r)}
    if not any(len(r["config"]["train"]["tasks"]) == 3 for r in own.values()):
        raise ValueError(
            f"no finished multi-task run with its best.pt under {run_dir(profile, '')}: train one first "
            f"(e.g. python -m mtl_lab run baseline --profile {profile})"
        )
    name = best_run(own)
    res = own[name]
    others = "the only full-budget runs considered" if is_full_budget(res) else "no full-budget run of yours exists yet"
    why = f"dev overall {res['best']['overall']:.4f}, {budget(res)}; {others}"
    return name, why


def pretrained_models(
    profile: str, model: str, strategies: tuple[str, ...] | list[str], backbone: str | None = None
) -> dict:
    """The plain sentence model and each finished ``pre-<model>-<strategy>`` run of a profile, loaded for inspection."""

    kw = {"backbone": backbone} if backbone else {}
    models = {"plain backbone": MultitaskModel(ModelConfig(**kw, **MODELS[model], tasks=("simcse",)))}
    for strategy in strategies:
        path = run_dir(profile, f"pre-{model}-{strategy}") / "best.pt"
        if path.is_file():
            models[strategy] = load_model(path)
    return models
