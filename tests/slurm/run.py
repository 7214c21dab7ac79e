"""The sbatch scripts of docs/distributed.md on a real Slurm: run by `nox -s slurm`.

It installs Debian's `slurm-wlm` and `munge` when they are missing (as root, with apt),
starts `munged`, `slurmctld` and `slurmd` as plain processes (no systemd) for a one-node
cluster on localhost with two CPUs, in a temporary folder, and stops them by pid at the end.

Each script is taken from the docs page as it stands (the block marked
`<!-- test: file NAME.sbatch -->`), with the sizes made to fit two CPUs: the few texts
replaced must each be found exactly once, so a recipe that changes fails here instead of
drifting. The job trains the digits example, shortened with --set:

- `digits.sbatch` once without a stop: the reference weights;
- `digits.sbatch` stopped with `scancel --signal USR1` (what `--signal=USR1@90` sends):
  the run saves, writes its marker, the script requeues the job, and the requeued job
  resumes and ends with the reference weights bit for bit;
- `digits-batch-signal.sbatch` stopped with `scancel --batch --signal USR1` (`B:USR1`);
- `digits-torchrun.sbatch` (`srun torchrun`) stopped the same way as the first.

Any failure exits non-zero with what went wrong; the end prints a summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.docs.blocks import DOCS, blocks  # noqa: E402

PAGE = DOCS / "distributed.md"
DIGITS = ROOT / "examples" / "digits.yaml"
#: The digits example, shortened: 12 steps an epoch on 2 processes of 64.
SHORTER = (
    "TRAIN.EPOCHS=6",
    "TRAIN.LOG_EVERY=2",
    "TRAIN.NUM_THREADS=1",
    "TRAIN.PLOT=false",
    "TRAIN.PROGRESS=never",
)
STOP_AFTER_STEP = 8  # the stop signal is sent once a train record past this step is logged
MARKER = ".vertebra-stopped"
JOB_TIMEOUT_S = 900


@dataclass
class Recipe:
    """A script of the docs and how this cluster runs it."""

    name: str
    sbatch: list[str]
    #: (text in the docs' script, what replaces it here): each must be found exactly once.
    replace: list[tuple[str, str]] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


def fail(text: str) -> None:
    say(f"FAILED: {text}")
    raise SystemExit(1)


# -- the cluster ------------------------------------------------------------------------


def install() -> None:
    """Debian's slurm-wlm and munge, unless they are there."""
    if all(shutil.which(x) for x in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        fail("slurm-wlm and munge are not installed, and installing them needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm", "munge"]):
        say("$ " + " ".join(command))
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SLURM_CONF = """\
ClusterName=vertebra
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={home}/munge/munge.socket.2
CredType=cred/munge
# No cgroups here: the process tree tracks a step's processes (torchrun's included).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/log/slurmctld.log
SlurmdLogFile={home}/log/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def cluster(home: Path) -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd for one node; the environment that reaches them."""
    for sub in ("munge", "state", "spool", "log"):
        (home / sub).mkdir(parents=True)
    (home / "munge").chmod(0o711)  # munged wants its socket's folder searchable by all
    key = home / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = home / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(home=home, ctld_port=free_port(), d_port=free_port()), encoding="utf-8"
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
    munge = home / "munge"
    commands = {
        "munged": [
            "munged", "-F", "--force", f"--key-file={key}",
            f"--socket={munge / 'munge.socket.2'}", f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={home / 'log' / 'munged.log'}", f"--seed-file={munge / 'seed'}",
        ],
        "slurmctld": ["slurmctld", "-D", "-c", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
    }  # fmt: skip
    try:
        for name, command in commands.items():
            log = (home / "log" / f"{name}.out").open("wb")
            daemons.append((name, subprocess.Popen(command, env=env, stdout=log, stderr=log)))
            say(f"started {name} (pid {daemons[-1][1].pid})")
            time.sleep(1)
        wait_for(lambda: "idle" in slurm(env, "sinfo", "-h", "-o", "%T"), 60, "an idle node")
        yield env
    except SystemExit:
        for name in ("slurmctld.log", "slurmd.log"):  # what Slurm says about the failure
            lines = (home / "log" / name).read_text(errors="replace").splitlines()
            say(f"--- the end of {name}:\n" + "\n".join(lines[-25:]))
        raise
    finally:
        if len(daemons) == len(commands):  # no job outlives the cluster
            subprocess.run(["scancel", f"--user={os.getuid()}"], env=env, check=False)
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True
                ).stdout.strip()
            ):
                time.sleep(1)
        for name, daemon in reversed(daemons):
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            say(f"stopped {name} (pid {daemon.pid})")


def slurm(env: dict[str, str], *command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    fail(f"no {what} within {timeout:g} s")


# -- jobs -------------------------------------------------------------------------------


def script(recipe: Recipe, run_dir: str) -> str:
    """The docs' script for `recipe`, made to fit this cluster."""
    found = [b for b in blocks(PAGE) if b.mark == f"file {recipe.name}"]
    if len(found) != 1:
        fail(f"{PAGE.name} has {len(found)} blocks marked 'test: file {recipe.name}'")
    text = found[0].code
    shorter = " ".join(f"--set {s}" for s in SHORTER)
    replace = [
        *recipe.replace,
        ("run=runs/digits\n", f"run={run_dir}\n"),
        (" train config.yaml ", f" train {DIGITS} {shorter} "),
    ]
    for old, new in replace:
        if text.count(old) != 1:
            fail(f"{recipe.name} in {PAGE.name}: {old!r} found {text.count(old)} times, not once")
        text = text.replace(old, new)
    return text


def job_fields(env: dict[str, str], job: str) -> dict[str, str]:
    out = slurm(env, "scontrol", "show", "job", "-o", job)
    return dict(re.findall(r"(\w+)=(\S*)", out))


def last_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    steps = [json.loads(x)["step"] for x in lines if x.strip().endswith("}")]
    return max(steps, default=0)


def run_job(
    env: dict[str, str], work: Path, recipe: Recipe, run_dir: str, stop: list[str] | None
) -> tuple[dict[str, str], str, float]:
    """Submit the recipe; with `stop` (scancel's options), signal it mid-run and let the
    requeued job start at once. Returns the ended job's fields, its log and its seconds."""
    path = work / f"{run_dir.replace('/', '-')}.sbatch"
    path.write_text(script(recipe, run_dir), encoding="utf-8")
    run = work / run_dir
    started = time.monotonic()
    job = slurm(env, "sbatch", "--parsable", *recipe.sbatch, str(path), cwd=work).strip()
    say(
        f"{recipe.name}: job {job} ({run_dir})"
        + (f", stopped by scancel {' '.join(stop)}" if stop else "")
    )
    if stop is not None:
        wait_for(lambda: last_step(run) > STOP_AFTER_STEP, JOB_TIMEOUT_S, f"step {STOP_AFTER_STEP}")
        slurm(env, "scancel", *stop, job)
        say(f"  sent SIGUSR1 at step {last_step(run)}")

        def requeued() -> bool:
            fields = job_fields(env, job)
            if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
                fail(
                    f"job {job} ended ({fields.get('JobState')}) instead of being requeued:\n{log(work, job)}"
                )
            return fields.get("Restarts") == "1" and fields.get("JobState") == "PENDING"

        wait_for(requeued, JOB_TIMEOUT_S, "requeue")
        # Slurm holds a requeued job for about two minutes (Reason=BeginTime): start it
        # sooner, once the node is done with the first start (not "completing" any more)
        # and a few seconds after the requeue: slurmd refuses a start in the second its
        # credential was revoked ("Job credential revoked").
        wait_for(lambda: slurm(env, "sinfo", "-h", "-o", "%T").strip() == "idle", 120, "idle node")
        slurm(env, "scontrol", "update", f"JobId={job}", "StartTime=now+10")
        say("  requeued; started again")
    ended: dict[str, str] = {}

    def done() -> bool:
        ended.update(job_fields(env, job))
        return ended.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")

    wait_for(done, JOB_TIMEOUT_S, f"end of job {job}")
    return ended, log(work, job), time.monotonic() - started


def log(work: Path, job: str) -> str:
    found = list((work / "logs").glob(f"*-{job}.out"))
    return found[0].read_text(encoding="utf-8", errors="replace") if found else "(no log)"


def same_weights(one: Path, two: Path) -> bool:
    """Whether the last checkpoints of two run folders hold equal weights, bit for bit."""
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(r / "checkpoints" / "last" / "model.safetensors")) for r in (one, two))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_stopped(work: Path, run_dir: str, ended: dict[str, str], text: str) -> list[str]:
    """What a stopped-and-requeued job must show; returns lines for the summary."""
    run = work / run_dir
    if ended.get("JobState") != "COMPLETED" or ended.get("Restarts") != "1":
        state = " ".join(
            f"{k}={ended.get(k)}" for k in ("JobState", "Reason", "ExitCode", "Restarts")
        )
        fail(f"{run_dir}: {state}\n{text}")
    stop = re.search(r"(SIGUSR1) stopped the run at step (\d+)", text)
    if stop is None:
        fail(f"{run_dir}: no stop message in the log:\n{text}")
    if (
        f"resuming from {run_dir}/checkpoints/step-{int(stop[2]):08d} at step {stop[2]},"
        not in text
    ):
        fail(f"{run_dir}: the requeued job did not resume:\n{text}")
    if (run / MARKER).exists():
        fail(f"{run_dir}: {MARKER} is still there after the run finished")
    srun_lines = [x for x in text.splitlines() if x.startswith("srun: error:")]
    command = re.search(r"Continue with: (.*)", text)
    return [
        f"  stopped at step {stop[2]} by {stop[1]}, requeued once, resumed, finished",
        f"  srun said on the stop: {srun_lines or 'nothing'}",
        f"  resume command printed: {command[1] if command else None}",
    ]


def main() -> None:
    install()
    base = ["--nodes=1", "--time=00:30:00"]
    srun_sizes = [*base, "--ntasks-per-node=2", "--cpus-per-task=1"]
    drop_gpus = ("#SBATCH --gpus-per-node=4\n", "")
    port = str(free_port())
    plain = Recipe("digits.sbatch", srun_sizes, [drop_gpus])
    batch = Recipe("digits-batch-signal.sbatch", srun_sizes, [drop_gpus])
    torchrun = Recipe(
        "digits-torchrun.sbatch",
        [*base, "--ntasks-per-node=1", "--cpus-per-task=2"],
        [drop_gpus, ("--nproc-per-node 4", "--nproc-per-node 2"), (":29500", f":{port}")],
    )
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vertebra-slurm-") as tmp:
        home, work = Path(tmp) / "cluster", Path(tmp) / "work"
        (work / "logs").mkdir(parents=True)  # the docs: mkdir -p logs before sbatch
        with cluster(home) as env:
            env["OMP_NUM_THREADS"] = "1"
            ended, text, seconds = run_job(env, work, plain, "runs/reference", None)
            if ended.get("JobState") != "COMPLETED" or ended.get("Restarts") != "0":
                fail(f"the reference job: {ended.get('JobState')}:\n{text}")
            if (work / "runs/reference" / MARKER).exists():
                fail(f"{MARKER} after a run that finished")
            summary.append(f"digits.sbatch, no stop: finished in {seconds:.0f} s, no marker")
            stops = [
                (plain, "runs/stopped", ["--signal=USR1"]),
                (batch, "runs/batch-signal", ["--batch", "--signal=USR1"]),
                (torchrun, "runs/torchrun", ["--signal=USR1"]),
            ]
            chosen = sys.argv[1:]  # recipe names to run (all when none)
            for recipe, run_dir, stop in stops:
                if chosen and recipe.name not in chosen:
                    continue
                ended, text, seconds = run_job(env, work, recipe, run_dir, stop)
                lines = check_stopped(work, run_dir, ended, text)
                same = same_weights(work / "runs/reference", work / run_dir)
                if not same:
                    fail(f"{run_dir}: final weights differ from the reference run's")
                summary.append(f"{recipe.name}, scancel {' '.join(stop)}: {seconds:.0f} s")
                summary.extend(lines)
                summary.append("  final model.safetensors equals the uninterrupted run's: True")
    say("\nslurm: every recipe passed")
    for line in summary:
        say(line)


if __name__ == "__main__":
    main()
