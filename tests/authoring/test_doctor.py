"""`vertebra plugins doctor`: every problem with its distribution and a fix; exit 1 when broken."""

from __future__ import annotations

import json
from typing import Any

import pytest
from vertebra.cli import main
from vertebra.testing import PluginSandbox

GOOD = '''
    """A healthy plugin."""
    from pydantic import Field
    from torch import nn
    from vertebra.model.base_model import BaseModel
    from vertebra.schema import PartConfig

    class GoodNetConfig(PartConfig):
        WIDTH: int = Field(4, gt=0, description="Output width.")

    class GoodNet(BaseModel):
        """Features of width WIDTH."""

        Config = GoodNetConfig

        def __init__(self, cfg, logger=None):
            super().__init__(cfg, logger)
            self.fc = nn.Linear(2, cfg.WIDTH)
'''

UNDESCRIBED = '''
    from pydantic import Field
    from vertebra.model.base_model import BaseModel
    from vertebra.schema import PartConfig

    class VagueConfig(PartConfig):
        WIDTH: int = Field(4)
        depth: int = Field(2, description="Lower-case key.")

    class Vague(BaseModel):
        """A backbone whose schema lacks a description."""

        Config = VagueConfig
'''

WRONG_BASE = '''
    class NotAModule:
        """Not an nn.Module at all."""
'''

BAD_BUILD = '''
    from pydantic import Field
    from vertebra.model.base_model import BaseModel
    from vertebra.schema import PartConfig

    class FragileConfig(PartConfig):
        SIZE: int = Field(0, description="Zero, which the part cannot take.")

    class Fragile(BaseModel):
        """Fails to build from its defaults."""

        Config = FragileConfig

        def __init__(self, cfg, logger=None):
            super().__init__(cfg, logger)
            raise RuntimeError("SIZE must be positive")
'''

BAD_HOOKS = """
    from vertebra import hookimpl

    @hookimpl
    def vertebra_prepare_confg(config, source):
        pass
"""


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["plugins", "doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _by_dist(report: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for problem in report["problems"]:
        for dist in problem["distributions"]:
            out.setdefault(dist, []).append(problem)
    return out


@pytest.fixture
def plugins(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    sandbox = vertebra_plugins
    sandbox.add(
        "acme-good",
        {"vertebra.backbones": {"GoodNet": "acme_good:GoodNet"}},
        {"acme_good.py": GOOD},
    )
    sandbox.add(
        "acme-import",
        {"vertebra.backbones": {"Missing": "acme_import:Missing"}},
        {"acme_import.py": "import acme_not_installed\n"},
    )
    sandbox.add(
        "acme-base",
        {"vertebra.heads": {"NotAModule": "acme_base:NotAModule"}},
        {"acme_base.py": WRONG_BASE},
    )
    for dist, package in (("acme-twin-a", "acme_twin_a"), ("acme-twin-b", "acme_twin_b")):
        sandbox.add(
            dist, {"vertebra.backbones": {"TwinNet": f"{package}:GoodNet"}}, {f"{package}.py": GOOD}
        )
    sandbox.add(
        "acme-vague",
        {"vertebra.backbones": {"Vague": "acme_vague:Vague"}},
        {"acme_vague.py": UNDESCRIBED},
    )
    sandbox.add(
        "acme-typo",
        {
            "vertebra.backbone": {"Lost": "acme_typo:Lost"},
            "vertebra.necks": {"NoColon": "acme_typo"},
        },
        {"acme_typo.py": GOOD},
    )
    sandbox.add(
        "acme-fragile",
        {"vertebra.backbones": {"Fragile": "acme_fragile:Fragile"}},
        {"acme_fragile.py": BAD_BUILD},
    )
    sandbox.add(
        "acme-hooks", {"vertebra.plugins": {"hooks": "acme_hooks"}}, {"acme_hooks.py": BAD_HOOKS}
    )
    return sandbox


def test_every_problem_is_reported_with_its_distribution_and_a_fix(
    plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _doctor(capsys)
    assert code == 1
    assert report["ok"] is False
    found = _by_dist(report)
    for problems in found.values():
        for p in problems:
            assert p["fix"] and p["message"] and p["where"], p
    assert "acme-good" not in found

    (imp,) = found["acme-import"]
    assert imp["kind"] == "import" and "acme_not_installed" in imp["message"]
    assert "install 'acme_not_installed'" in imp["fix"]

    (base,) = found["acme-base"]
    assert base["kind"] == "base-class" and "vertebra.model.base_model.BaseModel" in base["fix"]

    for dist in ("acme-twin-a", "acme-twin-b"):
        kinds = {p["kind"] for p in found[dist]}
        assert kinds == {"duplicate"}, found[dist]
        assert "rename the entry point 'TwinNet'" in found[dist][0]["fix"]
    # One problem names both distributions.
    assert found["acme-twin-a"] == found["acme-twin-b"]
    (twin,) = found["acme-twin-a"]
    assert sorted(twin["distributions"]) == ["acme-twin-a", "acme-twin-b"]
    assert "'TwinNet' in group 'vertebra.backbones' is offered by acme-twin-" in twin["message"]

    vague = {(p["kind"], p["severity"]): p for p in found["acme-vague"]}
    assert "WIDTH has no description" in vague[("schema", "error")]["message"]
    assert "description=" in vague[("schema", "error")]["fix"]
    assert "rename it to DEPTH" in vague[("schema", "warning")]["fix"]

    typo = {p["where"]: p for p in found["acme-typo"]}
    assert '"vertebra.backbones"' in typo["backbone 'Lost' (acme_typo:Lost)"]["fix"]
    assert "does not name 'module:Class'" in typo["necks 'NoColon' (acme_typo)"]["message"]

    (fragile,) = found["acme-fragile"]
    assert fragile["kind"] == "build" and "SIZE must be positive" in fragile["message"]

    (hooks,) = found["acme-hooks"]
    assert hooks["kind"] == "hook" and "vertebra_prepare_config" in hooks["message"]


def test_text_report_names_distribution_problem_and_fix(
    plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "doctor", "acme-import", "acme-good"]) == 1
    out = capsys.readouterr().out
    assert "acme-good 0.1.0: ok" in out
    assert "acme-import 0.1.0: 1 problem(s)" in out
    assert "  error [import] backbones 'Missing' (acme_import:Missing):" in out
    assert "    fix: install 'acme_not_installed'" in out
    assert out.rstrip().endswith("1 error(s), 0 warning(s)")


def test_a_healthy_distribution_passes(
    plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _doctor(capsys, "acme-fragile", "acme-good", "--verbose")
    assert code == 1  # acme-fragile
    assert {d for p in report["problems"] for d in p["distributions"]} == {"acme-fragile"}
    assert main(["plugins", "doctor", "acme-good", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out
    assert "built from defaults: BACKBONES acme-good:GoodNet" in out


def test_the_installed_first_party_plugins_are_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _doctor(capsys)
    assert [p for p in report["problems"] if p["severity"] == "error"] == []
    assert code == 0
    assert {"vertebra"} <= set(report["distributions"])
    assert report["parts"] >= 10 and report["built"]


def test_a_plugin_that_exits_at_import_is_reported_with_its_distribution(
    plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins.add(
        "acme-exit",
        {
            "vertebra.backbones": {"Quitter": "acme_exit:Quitter"},
            "vertebra.plugins": {"hooks": "acme_exit_hooks"},
        },
        {
            "acme_exit.py": "import sys\n\nsys.exit(3)\n",
            "acme_exit_hooks.py": "raise SystemExit('no hooks today')\n",
        },
    )
    code, report = _doctor(capsys, "acme-exit", "acme-good")
    assert code == 1
    part, hooks = _by_dist(report)["acme-exit"]
    assert part["kind"] == "import" and part["where"] == "backbones 'Quitter' (acme_exit:Quitter)"
    assert (
        "of distribution 'acme-exit 0.1.0': ImportError: importing 'acme_exit' raised "
        in (part["message"])
    )
    assert "SystemExit(3)" in part["message"] and "sys.exit()" in part["fix"]
    assert hooks["kind"] == "hook" and "SystemExit('no hooks today')" in hooks["message"]
    assert report["built"] == ["BACKBONES acme-good:GoodNet"]  # the other plugin still works


@pytest.mark.parametrize(
    ("name", "expected"),
    [("acme-god", "did you mean 'acme-good'?"), ("vertebra-vision", "not loaded")],
)
def test_an_unknown_or_unloaded_distribution_exits_2(
    plugins: PluginSandbox, name: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if name == "vertebra-vision":
        plugins.keep = ["vertebra"]
        plugins.rescan()
        if "vertebra-vision" not in {e.distribution for e in plugins.index().entries}:
            pytest.fail(
                "vertebra-vision is not installed; the test needs an installed, unloaded plugin"
            )
    assert main(["plugins", "doctor", name]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
