"""Plugin code that loops, exits, prints or raises never blocks or silences a command.

Each case is a real process (`python -m vertebra ...`) over real fixture distributions,
with a wall-clock bound: the tests are about not hanging, not about speed. The time limit
for one plugin module's import is cut to a few seconds with `VERTEBRA_IMPORT_TIMEOUT`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from vertebra import plugins
from vertebra.testing import PluginSandbox

from tests.core import dists

LIMIT_S = 3
#: The bound on one command: start-up, a child that imports torch, and the limit, twice over.
BOUND_S = 150


def _loop(sandbox: PluginSandbox) -> None:
    """Backbone Spinner and hook module `spin`, whose modules never finish importing."""
    sandbox.add(
        "vb-loop",
        {
            "vertebra.backbones": {"Spinner": "vb_loop.parts:Spinner"},
            "vertebra.plugins": {"spin": "vb_loop.hooks"},
        },
        {
            "vb_loop/__init__.py": "",
            "vb_loop/parts.py": "while True:\n    pass\n",
            "vb_loop/hooks.py": "import time\n\nwhile True:\n    time.sleep(0.1)\n",
        },
    )


def _noisy(sandbox: PluginSandbox) -> None:
    """Backbone Chatty, a good part whose module prints 10 MB when imported."""
    sandbox.add(
        "vb-noisy",
        {"vertebra.backbones": {"Chatty": "vb_noisy.parts:Chatty"}},
        {
            "vb_noisy/__init__.py": "",
            "vb_noisy/parts.py": dists.GOOD_PARTS
            + '\n\nclass Chatty(TinyRes):\n    """Says a lot."""\n\n\n'
            + "print('{\"not\": json' + 'x' * 10_000_000)\n",
        },
    )


def _vertebra(
    sandbox: PluginSandbox, allow: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(sandbox.root),
        "VERTEBRA_PLUGINS": allow,
        "VERTEBRA_IMPORT_TIMEOUT": str(LIMIT_S),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "vertebra", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=BOUND_S,
        cwd=cwd,
    )
    assert time.monotonic() - started < BOUND_S
    return done


@pytest.fixture
def looping(tmp_path: Path) -> PluginSandbox:
    sandbox = PluginSandbox(tmp_path / "site")
    dists.add_good(sandbox)
    _loop(sandbox)
    return sandbox


def test_doctor_reports_a_plugin_that_loops_at_import(looping: PluginSandbox) -> None:
    done = _vertebra(looping, "vb-good,vb-loop", "plugins", "doctor", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    found = {(p["kind"], p["name"]): p for p in report["problems"] if p["severity"] == "error"}
    assert set(found) == {("import", "Spinner"), ("hook", "spin")}
    for problem in found.values():
        assert problem["distributions"] == ["vb-loop"]
        assert f"did not finish within {LIMIT_S} s" in problem["message"]
    assert "BACKBONES vb-good:TinyRes" in report["built"]


def test_plugins_list_check_reports_a_plugin_that_loops_at_import(looping: PluginSandbox) -> None:
    done = _vertebra(looping, "vb-good,vb-loop", "plugins", "list", "--check")
    assert done.returncode == 1, done.stderr
    assert "[import] cannot load backbone 'Spinner'" in done.stdout
    assert "of distribution 'vb-loop 0.1.0'" in done.stdout
    assert "it loops or waits at import" in done.stdout


def test_components_template_and_schema_do_not_hang(looping: PluginSandbox) -> None:
    listed = _vertebra(looping, "vb-good,vb-loop", "components", "backbones")
    assert listed.returncode == 0, listed.stderr
    spinner = next(line for line in listed.stdout.splitlines() if "Spinner" in line)
    assert "vb-loop 0.1.0" in spinner and "(cannot load: " in spinner
    assert "TinyRes" in listed.stdout

    template = _vertebra(looping, "vb-good,vb-loop", "template", "backbones", "Spinner")
    assert template.returncode == 1
    assert template.stdout == ""
    assert "vb-loop" in template.stderr and "did not finish within" in template.stderr

    schema = _vertebra(looping, "vb-good,vb-loop", "schema")
    assert schema.returncode == 0, schema.stderr
    assert "TinyRes" in json.dumps(json.loads(schema.stdout))


def test_plugins_list_without_check_imports_nothing(looping: PluginSandbox) -> None:
    started = time.monotonic()
    done = _vertebra(looping, "vb-good,vb-loop", "plugins", "list")
    assert done.returncode == 0
    assert "vb-loop 0.1.0\n  backbones  Spinner\n" in done.stdout
    assert time.monotonic() - started < 30  # metadata alone: no child, no limit waited out


def test_a_plugin_that_prints_at_import_leaves_doctor_json_valid(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    _noisy(sandbox)
    done = _vertebra(sandbox, "vb-noisy", "plugins", "doctor", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and "BACKBONES vb-noisy:Chatty" in report["built"]
    assert len(done.stderr) > 10_000_000  # what it printed went to standard error
    assert len(done.stdout) < 100_000


def _config(folder: Path, backbone: str = "MLP") -> Path:
    path = folder / "run.yaml"
    model = {
        "NAME": "Classifier",
        "BACKBONE": {"NAME": backbone, "IN_FEATURES": 64, "HIDDEN": [16]},
        "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 10},
        "LOSS": {"NAME": "CrossEntropy"},
    }
    data = {
        "MODEL": model,
        "DATA": {"TRAIN": {"DATASET": {"NAME": "Digits", "SPLIT": "train"}, "BATCH_SIZE": 64}},
        "OPTIMIZER": {"NAME": "AdamW", "LR": 0.003},
        "TRAIN": {"EPOCHS": 1, "MAX_STEPS": 3, "PLOT": False, "OUTPUT_DIR": str(folder / "run")},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_validate_and_train_end_on_a_hook_module_that_loops_at_import(
    looping: PluginSandbox, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    for command in (["validate", str(config)], ["train", str(config)]):
        done = _vertebra(looping, "vertebra-vision,vb-good,vb-loop", *command)
        assert done.returncode == 1, done.stderr
        assert "cannot load hook plugin from entry point 'spin = vb_loop.hooks'" in done.stderr
        assert "of distribution 'vb-loop 0.1.0'" in done.stderr
        assert f"did not finish within {LIMIT_S} s" in done.stderr
        assert "VERTEBRA_PLUGINS='vb-good,vertebra-vision'" in done.stderr
        assert "Traceback" not in done.stderr


def test_validate_names_hook_modules_that_exit_or_raise_at_import(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    dists.add_exit(sandbox)
    sandbox.add(
        "vb-raise",
        {"vertebra.plugins": {"raiser": "vb_raise"}},
        {"vb_raise/__init__.py": "raise RuntimeError('no config here')\n"},
    )
    config = _config(tmp_path)
    done = _vertebra(sandbox, "vertebra-vision,vb-exit,vb-raise", "validate", str(config))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
    assert "cannot load hook plugin from entry point 'quitter = vb_exit.hooks'" in done.stderr
    assert "RuntimeError: no config here" in done.stderr
    assert "of distribution 'vb-raise 0.1.0'" in done.stderr
    assert "VERTEBRA_PLUGINS='vb-raise,vertebra-vision'" in done.stderr


def test_a_config_that_uses_a_part_that_exits_at_import_names_it(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    dists.add_exit(sandbox)
    config = _config(tmp_path, backbone="Quitter")
    done = _vertebra(sandbox, "vertebra-vision,vb-exit", "validate", str(config))
    assert done.returncode == 2, done.stdout + done.stderr  # a config error, as for any name
    assert "MODEL.BACKBONE.NAME: cannot load backbone 'Quitter'" in done.stderr
    assert "of distribution 'vb-exit 0.1.0'" in done.stderr
    assert "SystemExit(3)" in done.stderr


HOOK_FAILS = """
import vertebra


@vertebra.hookimpl
def vertebra_step_end(run, step, outputs):
    if step == 2:
        raise KeyError("tracker")
"""


def test_a_hook_that_raises_during_training_is_named(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    sandbox.add(
        "vb-hook-fails",
        {"vertebra.plugins": {"tracker": "vb_hook_fails"}},
        {"vb_hook_fails/__init__.py": HOOK_FAILS},
    )
    done = _vertebra(sandbox, "vertebra-vision,vb-hook-fails", "train", str(_config(tmp_path)))
    assert done.returncode == 1, done.stderr
    assert (
        "hook vertebra_step_end of plugin 'vb-hook-fails:tracker' (distribution 'vb-hook-fails') "
        "failed: KeyError: 'tracker'"
    ) in done.stderr
    assert "VERTEBRA_PLUGINS='vertebra-vision'" in done.stderr
    assert "Traceback" not in done.stderr


# -- the same commands in this process ------------------------------------------------------


def test_commands_over_a_plugin_that_exits_at_import(
    vertebra_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vertebra.cli import main

    dists.add_good(vertebra_plugins)
    dists.add_exit(vertebra_plugins)
    monkeypatch.delenv("VERTEBRA_PLUGINS")
    index = plugins.PluginIndex.scan(
        [str(vertebra_plugins.root)], allow=["vertebra", "vb-good", "vb-exit"]
    )
    with plugins.use_index(index):
        assert main(["plugins", "doctor"]) == 1
        out = capsys.readouterr().out
        assert "vb-exit 0.1.0: 2 problem(s)" in out
        assert "ends the process when imported" in out

        assert main(["components", "backbones"]) == 0
        out = capsys.readouterr().out
        assert "TinyRes" in out and "Quitter" in out

        assert main(["template", "backbones", "Quitter"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "cannot load backbone 'Quitter'" in captured.err
        assert "vb-exit" in captured.err

        assert main(["template", "backbones", "TinyRes"]) == 0
        assert "DEPTH: 2" in capsys.readouterr().out


def test_a_refused_module_is_not_tried_in_a_child_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vertebra.plugins import _loader, _probe

    # Each module leaves a file when it is imported, in whichever process imports it.
    for name in ("vb_refused_mod", "vb_fresh_mod"):
        (tmp_path / f"{name}.py").write_text(
            f"open({str(tmp_path / (name + '.imported'))!r}, 'w').close()\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    _loader.refuse("vb_refused_mod", "importing 'vb_refused_mod' did not finish within 3 s")
    try:
        assert _probe._screen_modules(["vb_refused_mod", "vb_fresh_mod"]) == {}
    finally:
        _loader._refused.pop("vb_refused_mod", None)
        _probe._cleared.discard("vb_fresh_mod")
    assert (tmp_path / "vb_fresh_mod.imported").exists()  # the child ran, and imported this
    assert not (tmp_path / "vb_refused_mod.imported").exists()
    assert "vb_refused_mod" not in sys.modules and "vb_fresh_mod" not in sys.modules


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the child forks where the platform can")
def test_the_child_imports_torch_once_and_goes_on_after_a_module_hangs_or_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vertebra.plugins import _probe

    # Good modules write the id of their process's parent: the child that imported torch.
    record = "import os\nopen({!r}, 'w').write(str(os.getppid()))\n"
    sources = {
        "vb_first": record.format(str(tmp_path / "first.ppid")),
        "vb_spins": "while True:\n    pass\n",
        "vb_middle": record.format(str(tmp_path / "middle.ppid")),
        "vb_quits": "import os\nos._exit(0)\n",
        "vb_last": record.format(str(tmp_path / "last.ppid")),
    }
    for name, text in sources.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _probe.try_imports(list(sources), limit=LIMIT_S)
    assert set(found) == {"vb_spins", "vb_quits"}
    assert f"did not finish within {LIMIT_S} s" in found["vb_spins"]
    assert "ended the process (exit status 0" in found["vb_quits"]
    parents = {(tmp_path / f"{n}.ppid").read_text() for n in ("first", "middle", "last")}
    assert len(parents) == 1 and parents != {str(os.getpid())}


# -- waiting on a module that never finishes importing ---------------------------------------

#: A limit far longer than the tests wait: the notice must come well before it.
LONG_LIMIT_S = 120
#: How long a test waits for the notice, or for the processes to go.
WAIT_S = 90


class _Running:
    """`python -m vertebra ARGS` started in the background, its standard error collected;
    every process it starts carries `marker` in its environment."""

    def __init__(self, sandbox: PluginSandbox, allow: str, *args: str) -> None:
        self.marker = f"vb-probe-{uuid.uuid4().hex}"
        env = {
            **os.environ,
            "PYTHONPATH": str(sandbox.root),
            "VERTEBRA_PLUGINS": allow,
            "VERTEBRA_IMPORT_TIMEOUT": str(LONG_LIMIT_S),
            "VB_TEST_MARKER": self.marker,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vertebra", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, text: str) -> str:
        """The first line of standard error that holds `text` (waits up to WAIT_S)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} on standard error in {WAIT_S} s: {''.join(self.lines)}")

    def stop(self, signum: int) -> None:
        self.process.send_signal(signum)
        self.process.wait(timeout=WAIT_S)
        self._reader.join(timeout=WAIT_S)


def _marked(marker: str) -> list[int]:
    """Processes alive (zombies aside) whose environment holds `marker`."""
    found = []
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            state = (folder / "stat").read_text().rpartition(")")[2].split()[0]
            environ = (folder / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if state != "Z" and marker.encode() in environ:
            found.append(int(folder.name))
    return found


def _none_left(marker: str) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")
@pytest.mark.parametrize(
    ("args", "module", "signum"),
    [
        (["plugins", "doctor"], "vb_loop.parts", signal.SIGTERM),  # as `timeout` sends
        (["plugins", "doctor"], "vb_loop.parts", signal.SIGKILL),  # no handler runs at all
        (["plugins", "doctor"], "vb_loop.parts", signal.SIGINT),
        (["plugins", "doctor"], "vb_loop.parts", signal.SIGHUP),
        (["components", "backbones"], "vb_loop.parts", signal.SIGTERM),
        (["validate", "CONFIG"], "vb_loop.hooks", signal.SIGKILL),
    ],
    ids=lambda v: (
        v.name if isinstance(v, signal.Signals) else "-".join(v) if isinstance(v, list) else v
    ),
)
def test_a_module_that_never_finishes_importing_is_named_and_nothing_outlives_the_command(
    looping: PluginSandbox, tmp_path: Path, args: list[str], module: str, signum: int
) -> None:
    args = [str(_config(tmp_path)) if a == "CONFIG" else a for a in args]
    running = _Running(looping, "vertebra-vision,vb-good,vb-loop", *args)
    try:
        notice = running.wait_for("is still importing")
        # Named with its limit, long before the limit: the wait is not silent.
        assert f"plugin module '{module}' is still importing after " in notice
        assert f"given up after {LONG_LIMIT_S} s (VERTEBRA_IMPORT_TIMEOUT)" in notice
        assert int(notice.split("after ")[1].split(" s")[0]) < LONG_LIMIT_S
        if args[0] != "validate":
            assert _marked(running.marker), "the trial processes should be running now"
        running.stop(signum)
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
    # The command ends as that signal ends it (SIGINT: the command says "interrupted").
    assert running.process.returncode == (130 if signum == signal.SIGINT else -signum)
    assert _none_left(running.marker) == []
