"""``--executor slurm`` on a real single-node Slurm cluster (tests/slurm_cluster.sh), with real smoke training.

The module starts the cluster once (munged, MariaDB + slurmdbd for sacct, slurmctld, slurmd; the node's CPUs
equal to what one job asks, so jobs run one at a time), submits three runs as jobs -- a pre-training run and
its fine-tuning (a dependency chain) and a single-task run -- while the same runs train locally, and compares
their results.json. Then a job is signalled with scancel after its first checkpoint (what a preemption or a
time limit sends), requeues itself and must end with the metrics of an uninterrupted local run. Without root,
or without Slurm and apt-get to install it, every test here is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "slurm_cluster.sh"
PROFILE = "smoke"
# the jobs: pre-cls-qqp_sts (a prerequisite, submitted first) -> ft-cls-qqp_sts, and enc-sst-cls-s0 beside them
NAMES = ["enc-sst-cls-s0", "ft-cls-qqp_sts"]
RUNS = ["enc-sst-cls-s0", "pre-cls-qqp_sts", "ft-cls-qqp_sts"]
# three stages of one epoch: a checkpoint at each stage's end, so a cancelled job has one to resume from
PREEMPTED = "sequential-sst-sts-qqp"


def _cli(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtl_lab", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.fixture(scope="module")
def cluster():
    """A running single-node Slurm cluster (its SLURM_CONF), stopped again after the module."""
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests start a single-node cluster (tests/slurm_cluster.sh), which needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and there is no apt-get to install slurm-wlm and munge")
    state = Path(tempfile.mkdtemp(prefix="mtl-lab-slurm-"))
    state.chmod(0o755)  # MariaDB runs as its own user inside it
    t0 = time.perf_counter()
    # nice: the jobs inherit slurmd's niceness and stay behind interactive work on a shared machine
    proc = subprocess.run(
        ["nice", "-n", "10", "bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=900
    )
    if proc.returncode == 3:  # the script's "cannot here": no root, no packages
        pytest.skip(f"no Slurm cluster here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"the cluster did not start:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    print(f"single-node Slurm started in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    conf = str(state / "slurm.conf")
    yield conf
    env = {**os.environ, "SLURM_CONF": conf}
    ids = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["scancel", *ids], env=env)
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The runs folders: the three runs trained as Slurm jobs (shared) and the same, plus PREEMPTED, trained
    locally (local), at the same time."""
    root = tmp_path_factory.mktemp("cluster")
    shared, local = root / "shared", root / "local"
    base = {**os.environ, "SLURM_CONF": cluster, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env_shared, env_local = {**base, "MTL_LAB_RUNS": str(shared)}, {**base, "MTL_LAB_RUNS": str(local)}
    reference = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-m", "mtl_lab", "run", *RUNS, PREEMPTED, "--profile", PROFILE],
        env=env_local,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    t0 = time.perf_counter()
    jobs = _cli(["run", *NAMES, "--profile", PROFILE, "--executor", "slurm", "--wait"], env_shared)
    print(f"three runs as jobs, waited for: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(*[x for x in jobs.stdout.splitlines() if x.startswith("submitted")], file=sys.stderr)
    out, _ = reference.communicate(timeout=900)
    assert reference.returncode == 0, out[-3000:]
    assert jobs.returncode == 0, jobs.stdout[-3000:] + jobs.stderr[-3000:]
    return {"shared": shared, "local": local, "env": env_shared, "submission": jobs}


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _dev_metrics(res: dict) -> list:
    return [h["dev"] for h in res["history"]]


def _registry(runs_folder: Path) -> list[dict]:
    return [json.loads(line) for line in (runs_folder / "slurm" / "jobs.jsonl").read_text().splitlines()]


def _sacct(env: dict, job: str, settle: float = 30.0) -> dict:
    """The job's accounting record; slurmdbd records a job's end a moment after it ends, so wait (up to ``settle``
    seconds) for a final state."""
    deadline = time.time() + settle
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,JobName,State,Submit,Start,End", "-j", job],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines = [x for x in out.splitlines() if x.split("|")[0] == job]
        record = dict(zip(["id", "name", "state", "submit", "start", "end"], lines[-1].split("|"))) if lines else {}
        if record.get("state") not in (None, "PENDING", "RUNNING", "REQUEUED", "COMPLETING") or time.time() > deadline:
            return record
        time.sleep(0.5)


def test_jobs_give_the_local_metrics(runs):
    for name in RUNS:
        job, local = _results(runs["shared"] / PROFILE / name), _results(runs["local"] / PROFILE / name)
        assert job["finished"] and local["finished"]
        assert job["best"] == local["best"], name
        print(f"{name}: job {job['best']} == local {local['best']}", file=sys.stderr)
        assert _dev_metrics(job) == _dev_metrics(local), name
        assert (runs["shared"] / PROFILE / name / "best.pt").is_file()
    for r in _registry(runs["shared"]):  # what a job costs beyond its training (docs/cluster.md)
        acct = _sacct(runs["env"], r["job_id"])
        train = _results(Path(r["folder"]))["wall_time_s"]
        print(
            f"job {r['job_id']} {r['key']}: submit {acct['submit']} start {acct['start']} end {acct['end']}, "
            f"training {train:.0f} s",
            file=sys.stderr,
        )
    # --wait printed the runs' lines as the local executor does
    out = runs["submission"].stdout
    for name in NAMES:
        assert f"{name}: best epoch" in out


def test_dependency_chain_is_a_job_dependency(runs):
    jobs = {r["key"]: r for r in _registry(runs["shared"])}
    pre, ft = jobs[f"{PROFILE}/pre-cls-qqp_sts"], jobs[f"{PROFILE}/ft-cls-qqp_sts"]
    assert ft["dependency"] == f"afterok:{pre['job_id']}"
    assert jobs[f"{PROFILE}/enc-sst-cls-s0"]["dependency"] == ""
    pre_acct, ft_acct = _sacct(runs["env"], pre["job_id"]), _sacct(runs["env"], ft["job_id"])
    assert pre_acct["state"] == ft_acct["state"] == "COMPLETED"
    assert ft_acct["name"] == "mtl-lab.smoke.ft-cls-qqp_sts"
    assert ft_acct["start"] >= pre_acct["end"]  # ISO times: the fine-tuning started once the pre-training ended
    init = _results(runs["shared"] / PROFILE / "ft-cls-qqp_sts")["init_run"]
    assert init["best"] == _results(runs["shared"] / PROFILE / "pre-cls-qqp_sts")["best"]


def test_jobs_listed_and_finished_runs_not_submitted_again(runs):
    listing = _cli(["jobs"], runs["env"])
    assert listing.returncode == 0, listing.stderr
    for r in _registry(runs["shared"]):
        line = next(x for x in listing.stdout.splitlines() if r["name"] in x)
        assert r["job_id"] in line.split() and "COMPLETED" in line and r["log"] in line
        assert "Job completed successfully" in Path(r["log"]).read_text()  # submitit's line; progress above it
    before = len(_registry(runs["shared"]))
    again = _cli(["run", *NAMES, "--profile", PROFILE, "--executor", "slurm"], runs["env"])
    assert again.returncode == 0, again.stderr
    assert "finished already (not submitted): enc-sst-cls-s0, ft-cls-qqp_sts" in again.stdout
    assert len(_registry(runs["shared"])) == before


def test_cancelled_job_requeues_and_resumes_to_the_same_result(runs):
    env, folder = runs["env"], runs["shared"] / PROFILE / PREEMPTED
    first = _cli(["run", PREEMPTED, "--profile", PROFILE, "--executor", "slurm"], env)
    assert first.returncode == 0, first.stderr
    job = _registry(runs["shared"])[-1]["job_id"]
    # a second submission while it is queued submits nothing new
    second = _cli(["run", PREEMPTED, "--profile", PROFILE, "--executor", "slurm"], env)
    assert f"already queued as job {job}" in second.stdout
    assert _registry(runs["shared"])[-1]["job_id"] == job
    deadline = time.time() + 600
    while not (folder / "checkpoint.pt").is_file():  # the first stage's checkpoint
        assert time.time() < deadline, "no checkpoint.pt in 10 minutes"
        assert not (folder / "results.json").is_file() or not _results(folder)["finished"], "finished too soon"
        time.sleep(0.5)
    assert len(_results(folder)["history"]) == 1  # cancelled after its first checkpoint, two stages to go
    # what Slurm sends a job it preempts, or whose time limit is near (submitit asks for USR2 90 s ahead)
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True)
    waited = _cli(["run", PREEMPTED, "--profile", PROFILE, "--executor", "slurm", "--wait"], env)
    assert waited.returncode == 0, waited.stdout[-3000:] + waited.stderr[-3000:]
    assert f"already queued as job {job}" in waited.stdout
    log = Path(_registry(runs["shared"])[-1]["log"]).read_text()
    assert "this job is preempted" in log and "Exiting gracefully after preemption" in log  # submitit's lines
    assert f"{PREEMPTED} (smoke profile), job {job}, restart 1" in log
    assert f"resuming {folder}" in log
    print(
        *[x for x in log.splitlines() if "submitit" in x and ("signal" in x or "Starting" in x)],
        sep="\n",
        file=sys.stderr,
    )
    job_res, local = _results(folder), _results(runs["local"] / PROFILE / PREEMPTED)
    assert job_res["best"] == local["best"]
    print(f"{PREEMPTED}, requeued once: job {job_res['best']} == local {local['best']}", file=sys.stderr)
    assert _dev_metrics(job_res) == _dev_metrics(local)
    assert _sacct(env, job)["state"] == "COMPLETED"


def test_failed_job_reported_with_its_log(runs):
    env = runs["env"]
    failed = _cli(
        ["run", "enc-sst-mean-s0", "--profile", PROFILE, "--executor", "slurm", "--device", "nodevice", "--wait"], env
    )
    assert failed.returncode == 1
    record = _registry(runs["shared"])[-1]
    assert record["key"] == f"{PROFILE}/enc-sst-mean-s0"
    assert f"job {record['job_id']} FAILED" in failed.stderr and f"log {record['log']}" in failed.stderr
    assert Path(record["log"]).is_file()
    listing = _cli(["jobs"], env).stdout
    assert any(record["name"] in x and "FAILED" in x and record["log"] in x for x in listing.splitlines())


@pytest.fixture
def fresh(cluster, tmp_path):
    """An empty runs folder on the cluster."""
    return {**os.environ, "SLURM_CONF": cluster, "HF_HUB_OFFLINE": "1", "MTL_LAB_RUNS": str(tmp_path / "runs")}


def test_an_unsatisfiable_job_is_refused_before_anything_is_submitted(fresh):
    asked = _cli(["run", "enc-sst-cls-s0", "--profile", PROFILE, "--executor", "slurm", "--cpus-per-task", "64"], fresh)
    assert asked.returncode != 0
    said = asked.stdout + asked.stderr
    assert "Slurm cannot run these jobs as asked" in said and "--cpus-per-task=64" in said, said
    assert len([x for x in said.splitlines() if x.startswith("error:")]) == 1
    assert not (Path(fresh["MTL_LAB_RUNS"]) / "slurm").exists()  # no job record, no submitit file


def test_no_controller_is_one_line_with_a_hint_and_leaves_no_file(fresh):
    env = {k: v for k, v in fresh.items() if k != "SLURM_CONF"}  # no slurm.conf anywhere: sbatch finds no controller
    asked = _cli(["run", "enc-sst-cls-s0", "--profile", PROFILE, "--executor", "slurm"], env)
    said = (asked.stdout + asked.stderr).strip()
    assert asked.returncode != 0 and "no Slurm controller answers" in said and "SLURM_CONF" in said, said
    assert len(said.splitlines()) == 1
    assert not (Path(fresh["MTL_LAB_RUNS"]) / "slurm").exists()


def test_jobs_show_why_a_job_waits_and_replace_resubmits_it(fresh):
    later = ["run", "enc-sst-mean-s1", "--profile", PROFILE, "--executor", "slurm"]
    first = _cli([*later, "--slurm-arg", "begin=now+3600"], fresh)
    assert first.returncode == 0, first.stderr
    runs = Path(fresh["MTL_LAB_RUNS"])
    job = _registry(runs)[-1]["job_id"]
    deadline = time.time() + 60
    while True:
        listing = _cli(["jobs"], fresh).stdout
        if "BeginTime" in listing or time.time() > deadline:
            break
        time.sleep(1)
    assert any(job in x and "PENDING" in x and "BeginTime" in x for x in listing.splitlines()), listing
    again = _cli([*later, "--replace"], fresh)
    assert again.returncode == 0, again.stderr
    assert f"pending job {job} cancelled, submitting it again" in again.stdout
    new = _registry(runs)[-1]["job_id"]
    assert new != job
    subprocess.run(["scancel", new], env=fresh)


def test_wait_stops_on_a_reason_that_never_clears(monkeypatch, tmp_path):
    from mtl_lab.course import cluster as c

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path))
    monkeypatch.setattr(
        c, "job_states", lambda ids: {i: {"state": "PENDING", "reason": "PartitionConfig"} for i in ids}
    )
    task = c.Task("smoke/x", "run", None, ())
    with pytest.raises(c.ClusterError, match="will not clear \\(PartitionConfig"):
        c.wait([c.Submitted(task, "42", "log", True)], poll_s=0)
