"""`vertebra plugins list [--json] [--check]` over fixture distributions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vertebra import plugins
from vertebra.cli import main
from vertebra.testing import PluginSandbox

from tests.core import dists

ALL = ["vb-good", "vb-clash-a", "vb-clash-b", "vb-wrong-base", "vb-typo"]


@pytest.fixture
def listed(vertebra_plugins: PluginSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Registries that see only the fixture distributions (not even the core)."""
    dists.add_good(vertebra_plugins)
    dists.add_clash(vertebra_plugins)
    dists.add_wrong_base(vertebra_plugins)
    vertebra_plugins.add(
        "vb-typo",
        {"vertebra.backbone": {"X": "vb_typo:X"}, "vertebra.heads": {"Y": "vb_typo"}},
    )
    monkeypatch.delenv("VERTEBRA_PLUGINS")
    index = plugins.PluginIndex.scan([str(vertebra_plugins.root)], allow=ALL)
    with plugins.use_index(index):
        yield vertebra_plugins.root


LISTING = """\
vb-clash-a 0.1.0
  backbones  Twin
vb-clash-b 0.2.0
  backbones  Twin
vb-good 1.2.3
  backbones  TinyRes, WideRes
  heads      LinearHead
  losses     L1
vb-typo 0.1.0
  backbone  X
  heads     Y
vb-wrong-base 0.1.0
  backbones  NotAPart
"""

CONFLICT = (
    "  [duplicate] 'Twin' in group 'vertebra.backbones' is offered by vb-clash-a, vb-clash-b; "
    "configs must name one: 'vb-clash-a:Twin', 'vb-clash-b:Twin'\n"
)
TYPO = (
    "  [unknown-group] entry point 'X = vb_typo:X' in group 'vertebra.backbone' of distribution "
    "'vb-typo 0.1.0': no registry reads group 'vertebra.backbone'; did you mean "
    "'vertebra.backbones'?\n"
)
MALFORMED = (
    "  [malformed] entry point 'Y = vb_typo' in group 'vertebra.heads' of distribution "
    "'vb-typo 0.1.0' does not name 'module:Class'\n"
)


def test_list_prints_distributions_parts_and_problems(
    listed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "list"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == LISTING + "\n3 problems:\n" + CONFLICT + TYPO + MALFORMED
    assert not [m for m in sys.modules if m.startswith(("vb_good", "vb_wrong_base", "vb_clash"))]


def test_check_imports_every_entry_point_and_reports_the_broken_ones(
    listed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "list", "--check"]) == 1
    out = capsys.readouterr().out
    # The malformed entry point is not imported: its one problem is already listed.
    assert out == LISTING + "\n4 problems:\n" + CONFLICT + TYPO + MALFORMED + (
        "  [base-class] cannot load backbone 'NotAPart' from entry point 'NotAPart = "
        "vb_wrong_base.parts:NotAPart' in group 'vertebra.backbones' of distribution "
        "'vb-wrong-base 0.1.0': <class 'vb_wrong_base.parts.NotAPart'> is not a subclass of "
        "vertebra.model.base_model.BaseModel (the base of every BACKBONES part)\n"
    )


def test_json_output(listed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["allowlist"] is None
    assert [d["name"] for d in data["distributions"]] == [
        "vb-clash-a",
        "vb-clash-b",
        "vb-good",
        "vb-typo",
        "vb-wrong-base",
    ]
    good = data["distributions"][2]
    assert good == {
        "name": "vb-good",
        "version": "1.2.3",
        "enabled": True,
        "parts": {"backbones": ["TinyRes", "WideRes"], "heads": ["LinearHead"], "losses": ["L1"]},
        "entry_points": {
            "vertebra.backbones": {
                "TinyRes": "vb_good.parts:TinyRes",
                "WideRes": "vb_good.parts:WideRes",
            },
            "vertebra.heads": {"LinearHead": "vb_good.parts:LinearHead"},
            "vertebra.losses": {"L1": "vb_good.parts:L1"},
        },
    }
    assert [(p["kind"], p["name"], p["distributions"]) for p in data["problems"]] == [
        ("duplicate", "Twin", ["vb-clash-a", "vb-clash-b"]),
        ("unknown-group", "X", ["vb-typo"]),
        ("malformed", "Y", ["vb-typo"]),
    ]
    # The one problem shape of `plugins list` and `plugins doctor`.
    assert set(data["problems"][0]) == {
        "kind",
        "severity",
        "distributions",
        "group",
        "name",
        "where",
        "message",
        "fix",
    }
    assert main(["plugins", "list", "--json", "--check"]) == 1
    checked = json.loads(capsys.readouterr().out)
    assert checked["problems"][:3] == data["problems"]
    broken = checked["problems"][3:]
    assert [(p["kind"], p["group"], p["name"], p["distributions"]) for p in broken] == [
        ("base-class", "vertebra.backbones", "NotAPart", ["vb-wrong-base"]),
    ]


def test_a_distribution_left_out_by_the_allowlist_is_listed_as_such(
    vertebra_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dists.add_good(vertebra_plugins)
    dists.add_clash(vertebra_plugins)
    monkeypatch.setenv("VERTEBRA_PLUGINS", "vb-good,vb-clash-a")
    index = plugins.PluginIndex.scan(
        [str(vertebra_plugins.root)], allow=plugins.allowlist_from_env()
    )
    with plugins.use_index(index):
        assert main(["plugins", "list"]) == 0
    assert capsys.readouterr().out == (
        "vb-clash-a 0.1.0\n"
        "  backbones  Twin\n"
        "vb-clash-b 0.2.0  (not loaded: VERTEBRA_PLUGINS leaves it out)\n"
        "  backbones  Twin\n"
        "vb-good 1.2.3\n"
        "  backbones  TinyRes, WideRes\n"
        "  heads      LinearHead\n"
        "  losses     L1\n"
        "VERTEBRA_PLUGINS='vb-good,vb-clash-a': only these distributions (and vertebra) load\n"
    )


def test_an_allowlist_name_that_matches_nothing_is_a_problem(
    vertebra_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dists.add_good(vertebra_plugins)
    monkeypatch.setenv("VERTEBRA_PLUGINS", "vb-god,vertebra,nothing-like-it")
    index = plugins.PluginIndex.scan(
        [str(vertebra_plugins.root)], allow=plugins.allowlist_from_env()
    )
    with plugins.use_index(index):
        assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "2 problems:\n"
        "  [allowlist] VERTEBRA_PLUGINS names 'vb-god', but no installed distribution of that "
        "name offers vertebra parts; did you mean 'vb-good'?\n"
        "  [allowlist] VERTEBRA_PLUGINS names 'nothing-like-it', but no installed distribution "
        "of that name offers vertebra parts\n"
    )


def test_an_empty_world(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERTEBRA_PLUGINS")
    with plugins.use_index(plugins.PluginIndex()):
        assert main(["plugins", "list", "--check"]) == 0
    assert (
        capsys.readouterr().out
        == "no distribution offers vertebra parts\nevery entry point loads\n"
    )


def test_the_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plugins"])
    assert info.value.code == 2
    assert "SUBCOMMAND" in capsys.readouterr().err


def test_the_installed_projects_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """The core and the first-party plugins (the allowlist of the test run) all load."""
    assert main(["plugins", "list", "--check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [d["name"] for d in data["distributions"] if d["enabled"]]
    assert names[0] == "vertebra" and {"vertebra-vision", "vertebra-text"} <= set(names)
    assert data["problems"] == []


def test_plugins_list_in_a_real_process(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    dists.add_good(sandbox)
    dists.add_wrong_base(sandbox)
    env = {
        **os.environ,
        "PYTHONPATH": str(sandbox.root),
        "VERTEBRA_PLUGINS": "vb-good,vb-wrong-base",
    }
    plain = subprocess.run(
        [sys.executable, "-m", "vertebra", "plugins", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("vertebra 0.1.0\n  backbones ")
    assert "vb-good 1.2.3\n  backbones  TinyRes, WideRes\n  heads      LinearHead\n" in plain.stdout
    assert "vertebra-vision 0.1.0  (not loaded: VERTEBRA_PLUGINS leaves it out)" in plain.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "vertebra", "plugins", "list", "--check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert checked.returncode == 1, checked.stderr
    broken = [p for p in json.loads(checked.stdout)["problems"] if p["kind"] == "base-class"]
    assert [(p["name"], p["distributions"]) for p in broken] == [("NotAPart", ["vb-wrong-base"])]


def test_a_plugin_that_exits_at_import_is_reported_not_obeyed(
    vertebra_plugins: PluginSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dists.add_good(vertebra_plugins)
    dists.add_exit(vertebra_plugins)
    monkeypatch.delenv("VERTEBRA_PLUGINS")
    index = plugins.PluginIndex.scan([str(vertebra_plugins.root)], allow=["vb-good", "vb-exit"])
    with plugins.use_index(index):
        assert main(["plugins", "list", "--check", "--json"]) == 1
        problems = json.loads(capsys.readouterr().out)["problems"]
        assert [(p["kind"], p["distributions"], p["name"]) for p in problems] == [
            ("import", ["vb-exit"], "Quitter"),
            ("hook", ["vb-exit"], "quitter"),
        ]
        assert "raised SystemExit(3)" in problems[0]["message"]
        assert "raised SystemExit('hooks quit')" in problems[1]["message"]
        # The other distribution's parts still load and build.
        from vertebra.model.registry import BACKBONES

        assert BACKBONES.build({"NAME": "TinyRes"}).cfg.NAME == "TinyRes"


def test_a_plugin_that_exits_at_import_in_a_real_process(tmp_path: Path) -> None:
    sandbox = PluginSandbox(tmp_path / "site")
    dists.add_good(sandbox)
    dists.add_exit(sandbox)
    env = {**os.environ, "PYTHONPATH": str(sandbox.root), "VERTEBRA_PLUGINS": "vb-good,vb-exit"}
    checked = subprocess.run(
        [sys.executable, "-m", "vertebra", "plugins", "list", "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "  [import] cannot load backbone 'Quitter' from entry point" in checked.stdout
    assert "of distribution 'vb-exit 0.1.0': ImportError: importing 'vb_exit.parts'" in (
        checked.stdout
    )
