"""Command line: ``python -m mtl_lab {data,train,predict,notebooks} ...``."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import MISSING
from pathlib import Path

from mtl_lab.data import DataError
from mtl_lab.runs import PROFILE_NAMES, runs_root
from mtl_lab.training.config import TrainingError


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor {local,slurm}`` and the Slurm options (``mtl_lab.course.cluster``)."""
    from mtl_lab.course.cluster import add_executor_args as add

    add(p)


def add_profile(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    """``--profile {smoke,cpu,gpu}`` (the settings presets of ``training.config.PROFILES``)."""
    p.add_argument(
        "--profile", choices=list(PROFILE_NAMES), default=default, help=f"settings preset (default: {default})"
    )


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """The train command's options: the model's, then one per TrainConfig field that has help (``config.option``)."""
    from dataclasses import fields

    from mtl_lab.models.encoders import ENCODERS
    from mtl_lab.models.model import PAIR_HEADS
    from mtl_lab.training.config import TrainConfig

    add_profile(p)
    p.add_argument("--model", dest="backbone", help="backbone: 'minilm' (packaged, default), a HF id or a local folder")
    p.add_argument("--encoder", choices=ENCODERS, help="sentence encoder (default cls)")
    p.add_argument("--pair-head", choices=PAIR_HEADS, help="how QQP/STS compare two sentences (default cross)")
    p.add_argument("--init", help="start backbone + encoder from a pre-training run folder (its best.pt)")
    p.add_argument(
        "--pcgrad",
        action="store_true",
        help="the paper's PCGrad setting: --aggregation pcgrad, 3 task batches of 4 a step, tasks drawn uniformly",
    )
    for f in fields(TrainConfig):
        meta = f.metadata
        if "help" not in meta:
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kw = {"dest": f.name, "help": meta["help"]}
        if isinstance(f.default, bool):
            kw["action"] = "store_true"
        else:
            kw["choices"] = meta["choices"]
            kw["metavar"] = meta["metavar"]
            if f.default is MISSING:  # a tuple: several values
                kw["nargs"] = "+"
            elif f.type in ("int", "int | None", "float", "float | None"):
                kw["type"] = int if f.type.startswith("int") else float
        p.add_argument(flag, **kw)
    p.add_argument("--data", help="data folder (default: $MTL_LAB_DATA, ./data, ../shared/data)")
    p.add_argument("--out", help="run folder (default: runs/<profile>/<name>)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run folder holds a checkpoint")


def _config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line sets (None: the profile's value)."""
    from dataclasses import fields

    from mtl_lab.training.config import TrainConfig

    out = {}
    for f in fields(TrainConfig):
        if "help" not in f.metadata:
            continue
        value = getattr(args, f.name)
        if isinstance(f.default, bool):  # a flag given turns the default over (--sequential, --train-word-embeddings)
            value = (not f.default) if value else None
        out[f.name] = tuple(value) if isinstance(value, list) else value
    return out


def default_run_name(args: argparse.Namespace, model_kw: dict) -> str:
    """Run folder name from the options that change what is trained ("baseline" when none do)."""
    # a backbone or init given as a folder contributes the folder's name
    parts = [Path(v).name if k in ("init", "backbone") else v for k, v in model_kw.items()]
    parts += [*(args.tasks or [])]
    if args.pretrain:
        parts.append(f"pretrain-{args.pretrain}")
    if args.sequential:
        parts.append("seq")
    parts += [v for v in (args.sampler, args.aggregation) if v]
    if args.rdrop:
        parts.append(f"rdrop{args.rdrop:g}")
    if args.ema:
        parts.append(f"ema{args.ema:g}")
    if args.freeze_layers:
        parts.append(f"freeze{args.freeze_layers}")
    return "-".join(str(v) for v in parts) or "baseline"


def refuse_unused_options(args: argparse.Namespace) -> None:
    """Options that this command line would silently ignore are refused (one message, what to do instead)."""
    tasks = set(args.tasks or ["sst", "qqp", "sts"])
    if args.temperature is not None and not args.pretrain:
        raise ValueError("--temperature is the contrastive loss's temperature: it needs --pretrain")
    if args.pretrain and (args.tasks or args.sampler or args.sequential or args.aggregation or args.pcgrad):
        raise ValueError(
            "--pretrain trains the contrastive objective alone: drop --tasks/--sampler/--sequential/--aggregation/--pcgrad"
        )
    if args.pair_head and not args.pretrain and not tasks & {"qqp", "sts"}:
        raise ValueError("--pair-head sets how QQP and STS compare two sentences, but neither task is trained")
    if args.encoder and not args.pretrain and "sst" not in tasks and (args.pair_head or "cross") == "cross":
        raise ValueError(
            "--encoder is not used: without SST only the pair heads run, and the cross-encoder reads the [CLS] of the "
            "joined pair (add --pair-head bi or ensemble, or train sst)"
        )


def _cmd_train(args: argparse.Namespace) -> int:
    from mtl_lab.models.model import ModelConfig
    from mtl_lab.training.config import profile_config, require_device
    from mtl_lab.training.loop import train

    model_kw = {
        k: v
        for k, v in dict(backbone=args.backbone, encoder=args.encoder, pair_head=args.pair_head, init=args.init).items()
        if v
    }
    model_cfg = ModelConfig(**model_kw)
    require_device(args.profile, args.device)
    refuse_unused_options(args)
    if args.pcgrad:  # the paper's PCGrad sampling, unless given explicitly
        args.aggregation = args.aggregation or "pcgrad"
        args.sampler = args.sampler or "uniform"
        args.task_draws = args.task_draws or 3
        args.batch_size = args.batch_size or 4
    cfg = profile_config(args.profile, **_config_overrides(args))
    out = Path(args.out) if args.out else runs_root() / args.profile / default_run_name(args, model_kw)
    res = train(model_cfg, cfg, out, data_dir=args.data, resume=not args.no_resume)
    best = res["best"]
    print(f"run folder: {out}")
    print(f"best epoch {best['epoch']}: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "epoch"))
    print(
        f"wall time {res['wall_time_s'] / 60:.1f} min, {res['examples_per_s']:.1f} train examples/s ({res['precision']}, {res['device']})"
    )
    if args.pretrain:
        print(f"next: python -m mtl_lab train --profile {args.profile} --init {out} (same --encoder)")
    else:
        print(f"next: python -m mtl_lab predict --checkpoint {out} --out {out / 'predictions'}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mtl_lab.study.experiments import run_dir, run_experiment

    if args.executor == "slurm":  # a job a run (and a job a missing prerequisite)
        from mtl_lab.course import cluster

        rc, _ = cluster.submit_runs(
            args.names, args.profile, cluster.options_from_args(args), args.backbone, args.device
        )
        if rc or not args.wait:
            return rc
    # local: trains in this process; after slurm jobs: the finished runs' lines
    for name in args.names:
        res = run_experiment(
            name, args.profile, backbone=args.backbone, **({"device": args.device} if args.device else {})
        )
        best = res["best"]
        print(
            f"{name}: best epoch {best['epoch']}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "epoch")
            + f" ({res['wall_time_s'] / 60:.1f} min) -> {run_dir(args.profile, name)}"
        )
    return 0


def _cmd_recipe(args: argparse.Namespace) -> int:
    from mtl_lab.study.experiments import run_dir
    from mtl_lab.study.recipe import RECIPE, recipe_members, recipe_name, recipe_predictions

    names = args.members or recipe_members(args.seed)
    what = "your members" if args.members else f"the lab's recipe, {RECIPE['label']}"
    print(f"{what}: {', '.join(names)} ({args.profile} profile)")
    if args.executor == "slurm":  # a job a missing member, the ensemble's job after them
        from mtl_lab.course import cluster

        kwargs = dict(
            out=args.out, profile=args.profile, members=args.members, backbone=args.backbone, splits=tuple(args.splits)
        )
        rc, out = cluster.submit_recipe({**kwargs, "seed": args.seed}, names, cluster.options_from_args(args))
        if rc or out is None:  # failed, or submitted without --wait
            return rc
    else:
        out = recipe_predictions(
            args.out, args.profile, args.members, backbone=args.backbone, splits=tuple(args.splits), seed=args.seed
        )
    for name, m in out["members"].items():
        print(f"member {name}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    label = "ensemble dev" if len(names) > 1 else "dev"
    print(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()))
    print(f"leaderboard files in {args.out} ({out['minutes']:.1f} min, training of missing members included)")
    if not args.members and "dev" in args.splits:
        print(f"recorded as {run_dir(args.profile, recipe_name(args.seed))} (publish it like a trained run)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from mtl_lab.evaluate import predict_files

    members: dict = {}
    metrics = predict_files(
        args.checkpoint, args.out, data_dir=args.data, splits=args.splits, device=args.device, members=members
    )
    print(f"prediction files written to {args.out}" + (f" (ensemble of {len(args.checkpoint)})" if members else ""))
    for path, m in members.items():
        print(f"member {path}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    if metrics:
        print(("ensemble dev: " if members else "dev: ") + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from mtl_lab import data

    if args.action == "download":
        for path in data.download(args.out):
            print(f"wrote {path}")
        return 0
    folder = data.resolve_data_dir(args.data)
    print(f"data folder: {folder}")
    print(data.summary(folder).to_string(index=False))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mtl_lab.evaluate import predict_files
    from mtl_lab.study import analysis, experiments

    rc = 0
    if args.executor == "slurm" and not args.no_train:  # a job a run neither finished nor queued
        from mtl_lab.course import cluster

        names = experiments.ablation_names(args.models, args.seeds or experiments.ABLATION_SEEDS[args.profile])
        rc, _ = cluster.submit_runs(names, args.profile, cluster.options_from_args(args), args.backbone)
        if not args.wait:
            return rc
    train = not args.no_train and args.executor == "local"
    results = experiments.sweep(args.profile, args.models, args.seeds, args.backbone, train=train)
    table = analysis.ablation_table(results, experiments.ablation_grid(args.models))
    if table.empty:
        published = experiments.published_dir(args.profile, "")
        print(
            f"no finished run of yours in the grid under {experiments.run_dir(args.profile, '')} "
            f"(the published results are under {published}; train with: python -m mtl_lab sweep --profile {args.profile})"
        )
        if not args.predict:
            return 1
    else:
        print(table.drop(columns=["run"]).round(3).to_string())
        print(f"best grid row by dev overall: {experiments.best_run(results)}")
    if rc:
        return rc
    if args.predict:  # your best run of any kind with its best.pt (a full-budget one first), grid or not
        name, why = experiments.best_model(args.profile)
        print(f"writing the predictions of {name} ({why})")
        metrics = predict_files(
            experiments.run_dir(args.profile, name) / "best.pt", args.predict, splits=("dev", "test")
        )
        print(f"prediction files of {name} written to {args.predict} (dev overall {metrics['overall']:.4f})")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from mtl_lab.study.publish import publish

    for path in publish(args.profile, args.names, predictions=not args.no_predictions, replace=args.replace):
        print(f"published {path}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    import json

    from mtl_lab.study.ensemble import RULE, build

    folder = build(args.name, args.members, args.profile)
    best = json.loads((folder / "results.json").read_text())["best"]
    print(f"{args.name}: {' + '.join(args.members)} ({RULE})")
    print(f"dev overall of its leaderboard file {best['overall']:.4f}; wrote {folder}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mtl_lab.study.compare import compare_runs, format_comparison

    comparison = compare_runs(args.run_a, args.run_b, args.profile, seeds=args.seeds, honest=not args.best_epoch)
    print(format_comparison(comparison))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from mtl_lab.checkpoint import convert

    for path in args.paths:
        print(f"converted {convert(path)} (it now loads with weights_only=True)")
    return 0


def _cmd_exercises(args: argparse.Namespace) -> int:
    from mtl_lab.course.grading import release

    counts = release(args.out)  # nbgrader's release (the same as: course release)
    for name, n in counts.items():
        print(f"{name}: {n} exercise{'s' if n != 1 else ''} stubbed")
    print(f"student edition written to {args.out} (solutions removed, outputs cleared; nbgrader release)")
    return 0


def _cmd_course(args: argparse.Namespace) -> int:
    from mtl_lab.course import grading

    if args.action == "release":
        counts = grading.release(args.out)
        for name, n in counts.items():
            print(f"{name}: {n} graded exercise{'s' if n != 1 else ''}")
        print(f"student notebooks written to {args.out} (nbgrader release: solutions stubbed, outputs cleared)")
        return 0
    if args.action == "jupyter":
        from mtl_lab.course import jupyter_mode

        for path in jupyter_mode.apply(args.mode).values():
            print(f"wrote {path}")
        tools = "off" if args.mode == "student" else "on"
        print(f"JupyterLab here is in {args.mode} mode: nbgrader's instructor tools {tools}; restart jupyter lab")
        return 0
    if args.action == "leaderboard":
        from mtl_lab.course.leaderboard import leaderboard

        table, problems = leaderboard(args.submissions, args.labels, args.out, args.reference)
        shown = table[["rank", "team", "overall", "vs reference", "low", "high", "rank low", "rank high"]]
        print(shown.to_string(index=False, float_format=lambda x: f"{x:+.4f}" if abs(x) < 0.5 else f"{x:.4f}"))
        for team in problems:
            print(f"not scored: {team.name}: {team.problem}")
        print(f"\nwrote {args.out} and {Path(args.out).with_suffix('.csv')}")
        return 0
    from mtl_lab.course.sandbox import SandboxUnavailable

    out = Path(args.out)
    try:
        results = grading.autograde(
            args.submissions, out, args.feedback, timeout=args.timeout, jobs=args.jobs, sandboxed=not args.no_sandbox
        )
    except SandboxUnavailable as exc:
        print(f"error: {exc}; to grade without one (student code then runs with your rights), add --no-sandbox")
        return 2
    print()
    print(grading.summary(results))
    print(f"\ngrades: {out}; feedback: {Path(args.feedback) if args.feedback else out.parent / 'feedback'}/<student>/")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mtl_lab.study.report import build, headline_comparisons, update_readme

    comparisons = headline_comparisons(args.profile)  # the bootstrap runs once for the page and the README
    print(f"wrote {build(args.profile, args.out, comparisons)}")
    if args.profile == "cpu" and update_readme(args.profile, comparisons=comparisons):
        print("updated the headline table in README.md")
    from mtl_lab.course.runner import update_readme_minutes

    if update_readme_minutes():
        print("updated the notebook table's smoke minutes in README.md (results/smoke-notebooks.json)")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from mtl_lab.models.backbone import load_tokenizer, quiet_transformers
    from mtl_lab.study import analysis, experiments
    from mtl_lab.training.datasets import load_encoded

    quiet_transformers()
    sts_dev = load_encoded("sts", "dev", load_tokenizer(args.backbone), 128, None, 0)
    out = Path(args.out)
    for model in args.models:
        strategies = [
            s
            for s in experiments.PRETRAIN_STRATEGIES
            if (experiments.run_dir(args.profile, f"pre-{model}-{s}") / "best.pt").is_file()
        ]
        if not strategies:
            print(
                f"{model}: no pre-training checkpoints under {experiments.run_dir(args.profile, '')} (run pre-{model}-<strategy> first)"
            )
            continue
        fig = analysis.embedding_maps(
            experiments.pretrained_models(args.profile, model, strategies, args.backbone), sts_dev
        )
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"embedding_maps_{args.profile}_{model}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        print(f"wrote {path} (plain backbone + {', '.join(strategies)})")
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from mtl_lab.course.runner import refresh_published, run_notebooks, trust

    if args.action == "refresh":
        refresh_published(args.only)
        return 0
    if args.action == "trust":
        for path in trust():
            print(f"trusted: {path}")
        return 0
    if args.executor == "slurm":  # a job a notebook
        from mtl_lab.course import cluster

        opts = cluster.options_from_args(args)
        return cluster.submit_notebooks(args.profile, args.only, args.out, args.device, args.inplace, opts)
    return run_notebooks(args.profile, only=args.only, out=args.out, device=args.device, inplace=args.inplace)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from mtl_lab.course import cluster

    rows = cluster.list_jobs(show_all=args.all)
    if not rows:
        print(f"no Slurm jobs submitted for {runs_root()} (see {cluster.registry_path()})")
        return 0
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: one sub-command a task."""
    parser = argparse.ArgumentParser(prog="python -m mtl_lab", description="mtl-lab: multi-task BERT course lab")
    sub = parser.add_subparsers(dest="command", required=True)
    _training_commands(sub)
    _study_commands(sub)
    _course_commands(sub)
    return parser


def _training_commands(sub) -> None:
    """data, train, run, recipe, predict."""
    p = sub.add_parser("data", help="show the task data, or download it from the Hugging Face hub")
    p.add_argument("action", nargs="?", choices=["summary", "download"], default="summary")
    p.add_argument("--data", help="data folder to summarise")
    p.add_argument("--out", default="data", help="download: folder to write (default ./data)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("train", help="train a model (one training loop for every experiment)")
    _add_train_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="train named experiments (as the notebooks do) into runs/<profile>/<name>")
    p.add_argument("names", nargs="+", help="e.g. baseline single-sst sampler-sqrt sequential-sst-sts-qqp")
    add_profile(p, "cpu")
    p.add_argument("--model", dest="backbone", help="backbone id or folder (default: packaged MiniLM)")
    p.add_argument(
        "--device", help="auto (default), cpu, cuda, ... (--profile gpu refuses to start without CUDA unless given)"
    )
    add_executor_args(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "recipe", help="the lab's best recipe from nothing to leaderboard files: train missing members, then predict"
    )
    add_profile(p, "cpu")
    p.add_argument("--out", required=True, help="folder for {sst,para,sts}-{dev,test}-output.csv")
    p.add_argument("--members", nargs="+", help="run names to average instead of the recipe's (recipe.RECIPE)")
    p.add_argument("--seed", type=int, default=0, choices=[0, 1, 2], help="which seed's runs the recipe averages")
    p.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["dev", "test"])
    p.add_argument("--model", dest="backbone", help="backbone id or folder (default: packaged MiniLM)")
    add_executor_args(p)
    p.set_defaults(func=_cmd_recipe)

    p = sub.add_parser("predict", help="dev metrics and leaderboard prediction files from a checkpoint")
    p.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        help="best.pt or a run folder holding one; several: an ensemble averaging their probabilities / scores",
    )
    p.add_argument("--out", required=True, help="folder for {sst,para,sts}-{dev,test}-output.csv")
    p.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["dev", "test"])
    p.add_argument("--data", help="data folder")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)


def _study_commands(sub) -> None:
    """sweep, publish, compare."""
    p = sub.add_parser("sweep", help="notebook 05's ablation grid: train what is missing, print the table")
    add_profile(p, "cpu")
    p.add_argument("--models", nargs="+", default=["cls", "sbert"], choices=["cls", "sbert"])
    p.add_argument("--seeds", type=int, help="seeds per run (default: 1 on smoke/cpu, 3 on gpu)")
    p.add_argument("--no-train", action="store_true", help="only gather the finished runs")
    p.add_argument("--predict", metavar="OUT", help="write the best run's dev and test prediction files into OUT")
    p.add_argument("--model", dest="backbone", help="backbone id or folder (default: packaged MiniLM)")
    add_executor_args(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("publish", help="copy your finished runs' results.json (+ predictions/) from runs/ to results/")
    p.add_argument("names", nargs="+", help="run names under runs/<profile>/")
    add_profile(p, "cpu")
    p.add_argument("--no-predictions", action="store_true", help="copy results.json only")
    p.add_argument(
        "--replace", action="store_true", help="overwrite a published run of another configuration under the same name"
    )
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser("ensemble", help="publish a seed ensemble of published runs (a vote) as a run of its own")
    p.add_argument("members", nargs="+", help="published runs, e.g. baseline full-cls-s1 full-cls-s2")
    p.add_argument("--name", required=True, help="the ensemble's name under results/<profile>/")
    add_profile(p, "cpu")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser(
        "compare",
        help="is a difference real? with --seeds: a two-way bootstrap over seeds and dev examples, the epoch chosen "
        "inside each resample (the verdict); per task, a paired bootstrap of one seed pair",
    )
    p.add_argument("run_a", help="a published run's name, one of your runs, or a run folder")
    p.add_argument("run_b", help="the run to compare it with")
    add_profile(p, "cpu")
    p.add_argument(
        "--seeds",
        action="store_true",
        help="compare the two methods: their study rows' seeds (3+ each, or a 3-seed ensemble) and the dev examples "
        "resampled together; the t interval over seeds is shown as a description only",
    )
    p.add_argument(
        "--best-epoch",
        action="store_true",
        help="use each run's best epoch as chosen on all of dev (optimistic) instead of the cross-fitted epochs",
    )
    p.set_defaults(func=_cmd_compare)


def _course_commands(sub) -> None:
    """convert-checkpoint, exercises, course, report, figures, notebooks, jobs."""
    p = sub.add_parser(
        "convert-checkpoint", help="re-save a TRUSTED old checkpoint so that it loads safely (weights only)"
    )
    p.add_argument("paths", nargs="+", help="best.pt / checkpoint.pt files you trust")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "exercises", help="write the student edition of the notebooks (solutions stubbed, outputs cleared)"
    )
    p.add_argument("--out", required=True, help="folder for the student notebooks (not notebooks/)")
    p.set_defaults(func=_cmd_exercises)

    p = sub.add_parser("course", help="run the lab as a course with nbgrader: release the notebooks, autograde")
    course = p.add_subparsers(dest="action", required=True)
    q = course.add_parser("release", help="the student notebooks (nbgrader generate_assignment) into a folder")
    q.add_argument("--out", required=True, help="folder for the student notebooks (not notebooks/)")
    q.set_defaults(func=_cmd_course)
    q = course.add_parser(
        "autograde", help="grade SUBMISSIONS/<student>/<notebook>.ipynb: a CSV, HTML feedback, a summary table"
    )
    q.add_argument("submissions", help="folder of <student>/<notebook>.ipynb")
    q.add_argument(
        "--out", required=True, help="the CSV: student, notebook, exercise, score, max_score, flag, feedback"
    )
    q.add_argument("--feedback", help="folder for <student>/<notebook>.html (default: feedback/ beside the CSV)")
    q.add_argument(
        "--timeout", type=int, default=30, help="seconds per answer cell, and for its checker's cases (default 30)"
    )
    q.add_argument(
        "--jobs", type=int, default=None, help="notebooks graded at once (default: the cores this process may use)"
    )
    q.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without bubblewrap, with your rights (only where bwrap cannot run; docs/teaching.md)",
    )
    q.set_defaults(func=_cmd_course)
    q = course.add_parser(
        "jupyter", help="this environment's JupyterLab: student (nbgrader's instructor tools off) or instructor"
    )
    q.add_argument("mode", choices=["student", "instructor"])
    q.set_defaults(func=_cmd_course)
    q = course.add_parser(
        "leaderboard",
        help="score <team>/{sst,para,sts}-test-output.csv against the staff's test labels, with intervals",
    )
    q.add_argument("submissions", help="folder of <team>/ folders holding the three test files")
    q.add_argument(
        "--labels",
        required=True,
        help="folder of the labelled test files: ids-sst-test.csv, quora-test.csv, sts-test.csv",
    )
    q.add_argument("--out", default="leaderboard.html", help="the HTML page (a CSV of the same numbers goes beside it)")
    q.add_argument("--reference", help="a folder of test files to compare with (default: the lab's [CLS] baseline)")
    q.set_defaults(func=_cmd_course)

    p = sub.add_parser("report", help="write the results page (docs/results.md and its figures) of a profile")
    add_profile(p, "cpu")
    p.add_argument("--out", default="docs/results.md")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("figures", help="draw the embedding maps of a profile's pre-training checkpoints (notebook 03)")
    add_profile(p, "cpu")
    p.add_argument("--models", nargs="+", default=["sbert", "cls"], choices=["sbert", "cls"])
    p.add_argument("--out", default="docs/figures", help="folder for embedding_maps_<profile>_<model>.png")
    p.add_argument("--model", dest="backbone", help="backbone id or folder (default: packaged MiniLM)")
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser(
        "notebooks", help="run the notebook series with papermill / trust the committed notebooks (saved widgets)"
    )
    p.add_argument(
        "action",
        choices=["run", "trust", "refresh"],
        help="refresh: re-run only the cells showing published results (after publish), nothing retrained",
    )
    add_profile(p, "smoke")
    p.add_argument("--only", nargs="+", help="notebook numbers or names, e.g. 00 01")
    p.add_argument("--out", help="run folder (default runs/notebooks/<profile>)")
    p.add_argument("--device", default="auto", help="auto (default) or e.g. cpu to run the gpu profile without a GPU")
    p.add_argument(
        "--inplace", action="store_true", help="smoke only: write outputs back into notebooks/ (the committed copies)"
    )
    add_executor_args(p)
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("jobs", help="the Slurm jobs submitted for this runs folder: name, id, state, elapsed, log")
    p.add_argument("--all", action="store_true", help="every job, also the earlier ones of a resubmitted run")
    p.set_defaults(func=_cmd_jobs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mtl_lab``."""
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"  # no source lines
    try:
        return args.func(args)
    except (DataError, TrainingError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
