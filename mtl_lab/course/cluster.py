"""The lab's runs and notebooks as Slurm jobs, through submitit (``--executor slurm``).

Each named run (``run``, ``sweep``, ``recipe``) or notebook (``notebooks run``) becomes one Slurm job
that works in the shared runs folder (``$MTL_LAB_RUNS``), exactly as the local executor would in
process. What orders the jobs is Slurm's: a fine-tuning run's job starts after its pre-training
run's job succeeded (``--dependency=afterok``), the recipe's ensemble after its members, a notebook
after the notebooks whose runs it reuses; ``--max-parallel N`` chains the jobs into N lanes (each
job also waits for the one before it in its lane), so no more than N run at once.

A job whose time runs out or that is preempted gets submitit's signal (USR2, 90 s ahead), requeues
itself and starts the same call again, and the training loop resumes from the run folder's
``checkpoint.pt`` (``mtl_lab.training.loop``: the same result as an uninterrupted run). A plain ``scancel``
stops a job for good; the next submission of the same command resumes its run from the checkpoint.

Every submitted job is recorded in ``<runs>/slurm/jobs.jsonl`` (name, Slurm id, log); its log is
``<runs>/slurm/logs/<id>_0_log.out``. A second submission leaves out what is finished and what is
still queued there; ``python -m mtl_lab jobs`` lists the jobs with their state from sacct.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from mtl_lab.data import resolve_data_dir
from mtl_lab.runs import runs_root

JOB_PREFIX = "mtl-lab"
# time limits (minutes) when --time is not given: a run of the profile with its prerequisites' margin
DEFAULT_MINUTES = {"smoke": 30, "cpu": 360, "gpu": 240}
NOTEBOOK_MINUTES = {"smoke": 60, "cpu": 720, "gpu": 480}
DEFAULT_CPUS = {"smoke": 2, "cpu": 2, "gpu": 4}
# states after which a job will not run again (a requeued job goes back to PENDING)
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "PREEMPTED",  # preempted and cancelled (PreemptMode=CANCEL); a requeued job is PENDING again
}
# pending reasons that will not clear by waiting: the job asks for what the cluster cannot give
NEVER_REASONS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "DependencyNeverSatisfied",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxWallDurationPerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
    "AssocMaxCpuPerJobLimit",
}
# what sbatch prints when no controller answers
NO_CONTROLLER = ("Could not establish a configuration source", "Unable to contact slurm controller",
                 "DNS SRV lookup failed", "Connection refused", "Zero Bytes were transmitted",
                 "Unable to process configuration file")  # fmt: skip
CHECKPOINT_MINUTES = 5  # a requeued job loses at most this much training
# notebooks that train or read the runs of earlier ones start after them: 03 and 04 both train
# agg-<model>-sum, 05's grid reuses 03's and 04's runs, 06 reads 05's grid
NOTEBOOK_AFTER = {"04": ["03"], "05": ["03", "04"], "06": ["05"]}


class ClusterError(OSError):
    """Slurm is not reachable, or a submission was refused."""


@dataclass
class SlurmOptions:
    """Where and how the jobs run: the sbatch settings of ``--executor slurm``."""

    partition: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    gpus_per_job: int | None = None
    mem: str | None = None
    slurm_args: dict[str, str] = field(default_factory=dict)
    max_parallel: int | None = None
    wait: bool = False
    replace: bool = False
    poll_s: float = 10.0


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Add ``--executor`` and the Slurm options to a command that runs runs or notebooks."""
    p.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local: in this process (default); slurm: each run or notebook one Slurm job (docs/cluster.md)",
    )
    g = p.add_argument_group("slurm (with --executor slurm)")
    g.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--time", help="time limit a job: minutes or [D-]HH:MM[:SS] (default: by profile)")
    g.add_argument("--cpus-per-task", type=int, help="CPU cores a job (default 2; gpu profile 4)")
    g.add_argument("--gpus-per-job", type=int, help="GPUs a job (default: 1 with --profile gpu, else none)")
    g.add_argument("--mem", help="memory a job, e.g. 16G (default: the partition's)")
    g.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. account=mylab or qos=short (repeatable)",
    )
    g.add_argument("--max-parallel", type=int, metavar="N", help="at most N of these jobs running at once")
    g.add_argument("--wait", action="store_true", help="wait for the jobs, then print what the local executor prints")
    g.add_argument(
        "--replace",
        action="store_true",
        help="cancel this command's jobs still pending and submit them again with these options",
    )


def options_from_args(args: argparse.Namespace) -> SlurmOptions:
    """The SlurmOptions of a parsed command line (``--slurm-arg`` KEY=VALUE pairs checked)."""
    extra = {}
    for item in args.slurm_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-arg takes KEY=VALUE (an sbatch option without its dashes), got {item!r}")
        extra[key.lstrip("-").replace("-", "_")] = value
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ValueError("--max-parallel must be at least 1")
    if args.time is not None:
        minutes(args.time)  # refused now rather than by sbatch
    return SlurmOptions(
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        gpus_per_job=args.gpus_per_job,
        mem=args.mem,
        slurm_args=extra,
        max_parallel=args.max_parallel,
        wait=args.wait,
        replace=getattr(args, "replace", False),
    )


def minutes(text: str) -> int:
    """A Slurm time limit (``90``, ``1:30:00``, ``2-00:00``) in whole minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--time takes minutes or [D-]HH:MM[:SS], got {text!r}")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if b is None and days is None:
        total = a  # plain minutes
    elif days is not None and b is None:
        total = days * 1440 + a * 60  # D-HH
    elif c is None:
        total = (days or 0) * 1440 + a * 60 + b  # [D-]HH:MM
    else:
        total = (days or 0) * 1440 + a * 60 + b + (1 if c else 0)  # [D-]HH:MM:SS, seconds rounded up
    if total < 1:
        raise ValueError(f"--time must be at least a minute, got {text!r}")
    return total


# ---------------------------------------------------------------- what runs inside a job


def _job_environment(runs: str, data: str | None) -> None:
    """The submitting side's runs and data folders (on the shared file system) in the job's environment."""
    os.environ["MTL_LAB_RUNS"] = runs
    if data:
        os.environ["MTL_LAB_DATA"] = data
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MTL_LAB_CHECKPOINT_MINUTES", str(CHECKPOINT_MINUTES))


def _job_id() -> str:
    return os.environ.get("SLURM_JOB_ID", "?")


class RunJob(submitit.helpers.Checkpointable):
    """One named experiment trained in a job; requeued on preemption or timeout, it resumes from checkpoint.pt."""

    def __call__(
        self, name: str, profile: str, backbone: str | None, runs: str, data: str | None, device: str | None
    ) -> dict:
        _job_environment(runs, data)
        from mtl_lab.study.experiments import run_dir, run_experiment

        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        print(f"{name} ({profile} profile), job {_job_id()}, restart {restarts}: {run_dir(profile, name)}", flush=True)
        res = run_experiment(name, profile, backbone, progress=True, **({"device": device} if device else {}))
        return {"best": res["best"], "wall_time_s": res["wall_time_s"]}


class RecipeJob(submitit.helpers.Checkpointable):
    """The recipe's ensemble: its members' prediction files averaged (the members trained by their own jobs)."""

    def __call__(self, kwargs: dict, runs: str, data: str | None) -> dict:
        _job_environment(runs, data)
        from mtl_lab.study.recipe import recipe_predictions

        print(f"recipe ensemble, job {_job_id()}", flush=True)
        out = recipe_predictions(**kwargs)
        return {"members": out["members"], "metrics": out["metrics"], "minutes": out["minutes"]}


class NotebookJob(submitit.helpers.Checkpointable):
    """One notebook executed with papermill; requeued, it runs again (its runs resume from their checkpoints)."""

    def __call__(self, stem: str, profile: str, out: str, device: str, inplace: bool, runs: str, data) -> dict:
        _job_environment(runs, data)
        from mtl_lab.course.runner import run_notebooks

        print(f"notebook {stem} ({profile} profile), job {_job_id()}", flush=True)
        rc = run_notebooks(profile, only=[stem], out=out, device=device, inplace=inplace)
        summary = json.loads((Path(out) / "summary.json").read_text())
        if rc:
            raise RuntimeError(f"{stem}: {summary[0]['headline']}")
        return summary[0]


# ---------------------------------------------------------------- submitting


@dataclass
class Task:
    """One job to submit: a key naming it in the runs folder, the call it makes, and what it waits for."""

    key: str
    kind: str
    call: Callable
    args: tuple
    after_ok: list[str] = field(default_factory=list)
    after_any: list[str] = field(default_factory=list)
    minutes: int = 30
    folder: str = ""


@dataclass
class Submitted:
    """A task with its Slurm job (or the already queued job standing for it)."""

    task: Task
    job_id: str
    log: str
    new: bool


def slurm_folder() -> Path:
    """Where the lab keeps its job records and logs: ``<runs>/slurm``."""
    return runs_root() / "slurm"


def registry_path() -> Path:
    """The record of every job submitted for this runs folder (one JSON object a line)."""
    return slurm_folder() / "jobs.jsonl"


def job_name(key: str) -> str:
    """The Slurm job name of a task key (``smoke/baseline`` -> ``mtl-lab.smoke.baseline``)."""
    return f"{JOB_PREFIX}.{key.replace('/', '.')}"


def registered() -> list[dict]:
    """The jobs submitted for this runs folder, oldest first."""
    path = registry_path()
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _register(record: dict) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def require_slurm() -> None:
    """Refuse early, with what to do, where the Slurm commands are missing."""
    missing = [c for c in ("sbatch", "srun", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ClusterError(
            f"--executor slurm needs the Slurm commands, and {', '.join(missing)} is not on PATH: run on a login "
            "node of a Slurm cluster (docs/cluster.md), or use --executor local"
        )


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def job_states(ids: list[str]) -> dict[str, dict]:
    """State, elapsed time and times of jobs: sacct (finished ones too), else squeue (queued ones only)."""
    if not ids:
        return {}
    out: dict[str, dict] = {}
    text = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Elapsed,Submit,Start,End", "-j", ",".join(ids)])
    if text is not None:
        for line in text.splitlines():
            jid, state, elapsed, submit, start, end = (line.split("|") + [""] * 6)[:6]
            out[jid] = {"state": state.split()[0], "elapsed": elapsed, "submit": submit, "start": start, "end": end}
    text = _run(["squeue", "-h", "-o", "%i|%T|%M|%r", "-j", ",".join(ids)])
    for line in (text or "").splitlines():  # squeue knows the live state (and why a job waits) first
        jid, state, elapsed, reason = (line.split("|") + ["", "", ""])[:4]
        out.setdefault(jid, {})
        out[jid].update(state=state, elapsed=out[jid].get("elapsed") or elapsed)
        if state == "PENDING" and reason and reason != "None":
            out[jid]["reason"] = reason
    return out


def queued() -> dict[str, dict]:
    """This runs folder's jobs that Slurm still holds (pending, running, requeued), by task key."""
    records = {r["job_id"]: r for r in registered()}
    text = _run(["squeue", "--me", "-h", "-o", "%i|%T"])
    if text is None:
        return {}
    out = {}
    for line in text.splitlines():
        jid, _, state = line.partition("|")
        if jid in records and state not in FINAL_STATES:
            out[records[jid]["key"]] = {**records[jid], "state": state}
    return out


def _sbatch_options(base: dict, minutes_: int, extra: dict[str, str]) -> list[str]:
    """The sbatch command-line options equivalent to submitit's parameters (for ``--test-only``)."""
    names = {"cpus_per_task": "cpus-per-task", "partition": "partition", "mem": "mem", "gpus_per_node": "gpus-per-node"}
    args = [f"--{flag}={base[key]}" for key, flag in names.items() if key in base]
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True or v == "" else f"={v}") for k, v in extra.items()]
    return ["--nodes=1", *args, f"--time={minutes_}", *flags]  # submitit always asks for one node


def preflight(base: dict, minutes_: int, extra: dict[str, str]) -> None:
    """Ask Slurm (``sbatch --test-only``) whether it could run a job with these options; one clear line if not.

    Run before anything is submitted or written, so a refused submission leaves no job and no file behind."""
    cmd = ["sbatch", "--test-only", *_sbatch_options(base, minutes_, extra), "--wrap=true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"sbatch could not be run ({exc.__class__.__name__}): is this a Slurm login node?") from exc
    said = " ".join(line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip())
    if proc.returncode == 0:
        return
    if any(marker in said for marker in NO_CONTROLLER):
        raise ClusterError(
            "no Slurm controller answers: is slurmctld running (systemctl status slurmctld, or scontrol ping), and "
            f"does SLURM_CONF point to this cluster's slurm.conf? (sbatch: {said[-200:]})"
        )
    errors = [part.strip() for part in said.split("sbatch: error:") if part.strip()]
    raise ClusterError(
        f"Slurm cannot run these jobs as asked ({' '.join(_sbatch_options(base, minutes_, extra))}): "
        f"{errors[-1] if errors else said[-300:]}; change --partition, --cpus-per-task, --mem, --time or --gpus-per-job"
    )


def _cancel_pending(waiting: dict[str, dict], keys: set[str]) -> dict[str, dict]:
    """``--replace``: cancel the pending jobs of these tasks (a running one stays); return what is still queued."""
    left = {}
    for key, job in waiting.items():
        if key in keys and job["state"] == "PENDING":
            if _run(["scancel", job["job_id"]]) is None:
                raise ClusterError(f"{key}: scancel {job['job_id']} failed: nothing was resubmitted")
            print(f"{key}: pending job {job['job_id']} cancelled, submitting it again", flush=True)
        else:
            if key in keys:
                print(f"{key}: job {job['job_id']} is {job['state']}, not replaced", flush=True)
            left[key] = job
    return left


def submit(tasks: list[Task], opts: SlurmOptions, profile: str) -> list[Submitted]:
    """Submit tasks (in an order where every task comes after those it waits for) as Slurm jobs.

    A task still queued from an earlier submission is not submitted again: its job stands in for it
    (and later tasks wait for that job).
    """
    require_slurm()
    base = {
        "cpus_per_task": opts.cpus_per_task or DEFAULT_CPUS[profile],
        "stderr_to_stdout": True,
        # progress bars update the log every 10 s, not every step (tqdm reads this as it is imported)
        "setup": ["export TQDM_MININTERVAL=10"],
        **({"partition": opts.partition} if opts.partition else {}),
        **({"mem": opts.mem} if opts.mem else {}),
    }
    gpus = opts.gpus_per_job if opts.gpus_per_job is not None else (1 if profile == "gpu" else 0)
    if gpus:
        base["gpus_per_node"] = gpus
    if tasks:
        longest = max(minutes(opts.time) if opts.time else t.minutes for t in tasks)
        preflight({k: v for k, v in base.items() if k != "setup"}, longest, opts.slurm_args)
    folder = slurm_folder() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    waiting = queued()
    if opts.replace:
        waiting = _cancel_pending(waiting, {t.key for t in tasks})
    ids: dict[str, str] = {}
    lanes: list[str | None] = [None] * (opts.max_parallel or 0)
    done: list[Submitted] = []
    seconds = []
    for i, task in enumerate(tasks):
        if task.key in waiting:
            old = waiting[task.key]
            ids[task.key] = old["job_id"]
            done.append(Submitted(task, old["job_id"], old["log"], new=False))
            print(
                f"{task.key}: already queued as job {old['job_id']} ({old['state']}), not submitted again"
                + (" (--replace cancels it and submits it with these options)" if old["state"] == "PENDING" else ""),
                flush=True,
            )
            continue
        deps = []
        ok = [ids[k] for k in task.after_ok if k in ids]
        anyway = [ids[k] for k in task.after_any if k in ids]
        lane = i % len(lanes) if lanes else None
        if lane is not None and lanes[lane] is not None:
            anyway.append(lanes[lane])
        if ok:
            deps.append("afterok:" + ":".join(ok))
        if anyway:
            deps.append("afterany:" + ":".join(anyway))
        executor.update_parameters(
            **base,
            job_name=job_name(task.key),
            time=minutes(opts.time) if opts.time else task.minutes,
            # a job whose prerequisite failed is cancelled instead of pending forever
            additional_parameters={
                **({"dependency": ",".join(deps), "kill_on_invalid_dep": "yes"} if deps else {}),
                **opts.slurm_args,
            },
        )
        t0 = time.perf_counter()
        try:
            job = executor.submit(task.call, *task.args)
        except Exception as exc:  # submitit raises FailedJobError / CalledProcessError with sbatch's message
            raise ClusterError(f"sbatch refused {task.key}: {str(exc).strip()}") from exc
        seconds.append(time.perf_counter() - t0)
        ids[task.key] = job.job_id
        if lane is not None:
            lanes[lane] = job.job_id
        log = str(job.paths.stdout)
        record = {
            "key": task.key,
            "kind": task.kind,
            "name": job_name(task.key),
            "job_id": job.job_id,
            "log": log,
            "folder": task.folder,
            "dependency": ",".join(deps),
            "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        _register(record)
        done.append(Submitted(task, job.job_id, log, new=True))
        print(
            f"{task.key}: job {job.job_id}" + (f" (after {','.join(deps)})" if deps else "") + f", log {log}",
            flush=True,
        )
    if seconds:
        print(
            f"submitted {len(seconds)} job{'s' * (len(seconds) != 1)} in {sum(seconds):.1f} s "
            f"({sum(seconds) / len(seconds):.2f} s a job); follow them with: python -m mtl_lab jobs",
            flush=True,
        )
    return done


def wait(submitted: list[Submitted], poll_s: float = 10.0) -> dict[str, dict]:
    """Wait until every job has ended; returns {task key: {state, result or error, log}}, printing changes."""
    folder = slurm_folder() / "logs"
    pending = {s.job_id: s for s in submitted}
    last: dict[str, str] = {}
    unknown: dict[str, int] = {}
    out: dict[str, dict] = {}
    while pending:
        states = job_states(list(pending))
        for jid, s in list(pending.items()):
            state = states.get(jid, {}).get("state", "UNKNOWN")
            job = submitit.SlurmJob(folder=folder, job_id=jid)
            # UNKNOWN: neither sacct (no accounting) nor squeue (gone) knows it; ended if it stays so
            unknown[jid] = unknown.get(jid, 0) + 1 if state == "UNKNOWN" else 0
            finished = state in FINAL_STATES or job.paths.result_pickle.exists() or unknown[jid] >= 3
            reason = states.get(jid, {}).get("reason", "")
            if state != last.get(jid):
                print(f"{s.task.key}: job {jid} {state}" + (f" ({reason})" if reason else ""), flush=True)
                last[jid] = state
            if state == "PENDING" and reason in NEVER_REASONS:
                raise ClusterError(
                    f"{s.task.key}: job {jid} is pending for a reason that waiting will not clear ({reason}: the job "
                    "asks for more than its partition, account or QOS allows); submit it again with other options "
                    "and --replace, or scancel " + jid
                )
            if not finished:
                continue
            del pending[jid]
            entry: dict = {"state": state, "log": s.log, "job_id": jid}
            if state == "COMPLETED" or job.paths.result_pickle.exists():
                try:
                    entry["result"] = job.result()
                    entry["state"] = "COMPLETED"
                except Exception as exc:  # the job's own error (its traceback is in the log)
                    entry["error"] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    entry["state"] = "FAILED" if state == "COMPLETED" else state
            out[s.task.key] = entry
        if pending:
            time.sleep(poll_s)
    return out


def report_failures(outcome: dict[str, dict]) -> int:
    """Print every job that did not complete, with its log; 1 if there was one, else 0."""
    failed = {k: v for k, v in outcome.items() if v["state"] != "COMPLETED"}
    for key, v in failed.items():
        why = f": {v['error']}" if v.get("error") else ""
        print(f"{key}: job {v['job_id']} {v['state']}{why}; log {v['log']}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def _finished(profile: str, name: str) -> bool:
    from mtl_lab.runs import load_results
    from mtl_lab.study.experiments import run_dir

    res = load_results(run_dir(profile, name))
    return bool(res and res.get("finished")) and (run_dir(profile, name) / "best.pt").is_file()


def run_tasks(
    names: list[str], profile: str, backbone: str | None = None, device: str | None = None, opts=None
) -> list[Task]:
    """The jobs that train named runs, their unfinished prerequisites first (afterok); finished runs are left out."""
    from mtl_lab.study.experiments import prerequisites, run_dir

    runs, data = str(runs_root().resolve()), str(resolve_data_dir(None).resolve())
    order: list[str] = []
    after: dict[str, list[str]] = {}
    for name in names:
        for run in [*prerequisites(name, profile), name]:
            if run not in order and not _finished(profile, run):
                order.append(run)
                after[run] = [p for p in prerequisites(run, profile) if p in order]
    limit = minutes(opts.time) if opts and opts.time else DEFAULT_MINUTES[profile]
    return [
        Task(
            key=f"{profile}/{run}",
            kind="run",
            call=RunJob(),
            args=(run, profile, backbone, runs, data, device),
            after_ok=[f"{profile}/{p}" for p in after[run]],
            minutes=limit,
            folder=str(run_dir(profile, run)),
        )
        for run in order
    ]


def submit_runs(
    names: list[str], profile: str, opts: SlurmOptions, backbone: str | None = None, device: str | None = None
) -> tuple[int, dict[str, dict]]:
    """``run``/``sweep`` with ``--executor slurm``: one job a run not yet finished nor queued.

    Returns (exit status, outcome by task key: empty without ``opts.wait``)."""
    require_slurm()  # no device check here: the GPU is on the compute nodes, not on the login node
    tasks = run_tasks(names, profile, backbone, device, opts)
    skipped = [n for n in names if f"{profile}/{n}" not in {t.key for t in tasks}]
    if skipped:
        print(f"finished already (not submitted): {', '.join(skipped)}", flush=True)
    if not tasks:
        return 0, {}
    submitted = submit(tasks, opts, profile)
    if not opts.wait:
        return 0, {}
    outcome = wait(submitted, opts.poll_s)
    return report_failures(outcome), outcome


def submit_recipe(kwargs: dict, names: list[str], opts: SlurmOptions) -> tuple[int, dict | None]:
    """``recipe --executor slurm``: a job per unfinished member, then the ensemble's job after them all."""
    require_slurm()
    profile = kwargs["profile"]
    tasks = run_tasks(names, profile, kwargs.get("backbone"), None, opts)
    runs, data = str(runs_root().resolve()), str(resolve_data_dir(None).resolve())
    seed = kwargs.get("seed", 0)
    key = f"{profile}/recipe-ensemble" + (f"-s{seed}" if seed else "") + ("-custom" if kwargs.get("members") else "")
    kwargs = {**kwargs, "out": str(Path(kwargs["out"]).resolve()), "progress": True}
    tasks.append(
        Task(
            key=key,
            kind="recipe",
            call=RecipeJob(),
            args=(kwargs, runs, data),
            after_ok=[f"{profile}/{n}" for n in names],
            minutes=minutes(opts.time) if opts.time else DEFAULT_MINUTES[profile],
            folder=kwargs["out"],
        )
    )
    submitted = submit(tasks, opts, profile)
    if not opts.wait:
        return 0, None
    outcome = wait(submitted, opts.poll_s)
    return report_failures(outcome), outcome.get(key, {}).get("result")


def submit_notebooks(
    profile: str, only: list[str] | None, out: str | None, device: str, inplace: bool, opts: SlurmOptions
) -> int:
    """``notebooks run --executor slurm``: a job a notebook, after the notebooks whose runs it reuses."""
    from mtl_lab.course.notebooks import notebooks_root
    from mtl_lab.course.runner import notebook_paths

    require_slurm()
    books = notebook_paths(only)
    run_root = str(Path(out).resolve() if out else notebooks_root(profile))
    runs, data = str(runs_root().resolve()), str(resolve_data_dir(None).resolve())
    keys = {b.name[:2]: f"notebooks/{profile}/{b.stem}" for b in books}
    tasks = [
        Task(
            key=keys[b.name[:2]],
            kind="notebook",
            call=NotebookJob(),
            args=(b.stem, profile, run_root, device, inplace, runs, data),
            after_any=[keys[n] for n in NOTEBOOK_AFTER.get(b.name[:2], []) if n in keys],
            minutes=minutes(opts.time) if opts.time else NOTEBOOK_MINUTES[profile],
            folder=run_root,
        )
        for b in books
    ]
    submitted = submit(tasks, opts, profile)
    if not opts.wait:
        return 0
    outcome = wait(submitted, opts.poll_s)
    rows = [
        v.get("result") or {"notebook": k.rsplit("/", 1)[-1] + ".ipynb", "status": v["state"], "headline": v["log"]}
        for k, v in outcome.items()
    ]
    Path(run_root, "summary.json").write_text(json.dumps(rows, indent=2))
    for r in rows:
        print(f"{r['notebook']}: {r['status']} {r.get('minutes', '')} {r['headline']}")
    return report_failures(outcome)


def list_jobs(show_all: bool = False) -> list[dict]:
    """This runs folder's jobs with their Slurm state and elapsed time (the latest job of each task unless
    ``show_all``)."""
    records = registered()
    if not show_all:
        latest = {r["key"]: r for r in records}
        records = list(latest.values())
    states = job_states([r["job_id"] for r in records])
    rows = []
    for r in records:
        s = states.get(r["job_id"], {})
        rows.append(
            {
                "name": r["name"],
                "job": r["job_id"],
                "state": s.get("state", "UNKNOWN"),
                "reason": s.get("reason", ""),
                "elapsed": s.get("elapsed", ""),
                "log": r["log"],
            }
        )
    return rows
