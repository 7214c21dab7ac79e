"""`vertebra.testing.check_part`: the helper plugin authors call from their own tests."""

from __future__ import annotations

import pytest
import torch
from vertebra.model.registry import BACKBONES, HEADS
from vertebra.testing import CheckedPart, PluginSandbox, check_part

PARTS = '''
    """Parts with one flaw each."""
    import torch
    from pydantic import Field
    from vertebra.model.base_model import BaseModel
    from vertebra.schema import PartConfig

    class ScaleConfig(PartConfig):
        FACTOR: float = Field(2.0, description="Multiplier.")

    class Scale(BaseModel):
        """Multiplies its input."""

        Config = ScaleConfig

        def forward(self, x):
            return x * self.cfg.FACTOR

    class VagueConfig(PartConfig):
        FACTOR: float = 2.0

    class Vague(Scale):
        """Its schema lacks a description."""

        Config = VagueConfig

    class Explodes(Scale):
        """Returns infinities."""

        def forward(self, x):
            return {"out": [x / 0.0]}

    class NeedsSizeConfig(PartConfig):
        SIZE: int = Field(gt=0, description="Required size.")

    class NeedsSize(BaseModel):
        """Has a key without a default."""

        Config = NeedsSizeConfig

        def forward(self, x):
            return x[..., : self.cfg.SIZE]

    class BrokenDefaults(Scale):
        """Raises when built."""

        def __init__(self, cfg, logger=None):
            super().__init__(cfg, logger)
            raise RuntimeError("cannot build")
'''


@pytest.fixture
def flawed(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    names = ("Scale", "Vague", "Explodes", "NeedsSize", "BrokenDefaults")
    vertebra_plugins.add(
        "acme-flawed",
        {"vertebra.backbones": {n: f"acme_flawed:{n}" for n in names}},
        {"acme_flawed.py": PARTS},
    )
    return vertebra_plugins


def test_a_good_part_passes_and_returns_what_it_built(flawed: PluginSandbox) -> None:
    checked = check_part(BACKBONES, "Scale", {"FACTOR": 3.0}, torch.ones(2))
    assert isinstance(checked, CheckedPart)
    assert checked.config.FACTOR == 3.0
    torch.testing.assert_close(checked.output, torch.full((2,), 3.0))
    assert checked.template.startswith("# BACKBONES Scale (from acme-flawed 0.1.0")


def test_registry_by_name_and_input_forms(flawed: PluginSandbox) -> None:
    assert check_part("backbones", "Scale", example_input=(torch.ones(1),)).output.item() == 2.0
    assert check_part("BACKBONES", "Scale", example_input={"x": torch.ones(1)}).output.item() == 2.0
    assert check_part("BACKBONES", "Scale").output is None


def test_required_keys_come_from_example_cfg(flawed: PluginSandbox) -> None:
    checked = check_part(BACKBONES, "NeedsSize", {"SIZE": 2}, torch.ones(1, 5))
    assert checked.output.shape == (1, 2)
    with pytest.raises(AssertionError, match="example_cfg does not validate"):
        check_part(BACKBONES, "NeedsSize", {}, torch.ones(1, 5))


@pytest.mark.parametrize(
    ("name", "cfg", "expected"),
    [
        ("Nothing", {}, "BACKBONES Nothing is not registered"),
        (
            "Vague",
            {},
            r"BACKBONES Vague has 1 problem:\n  \[schema\] key FACTOR has no description",
        ),
        ("Explodes", {}, r"non-finite values at output\['out'\]\[0\]"),
        ("BrokenDefaults", {}, "does not build from its defaults: RuntimeError: cannot build"),
        ("Scale", {"FACTOR": "big"}, "example_cfg does not validate"),
        ("Scale", {"FACTR": 2.0}, "FACTR: unknown key; did you mean FACTOR"),
    ],
)
def test_flaws_fail_with_a_message_that_names_them(
    flawed: PluginSandbox, name: str, cfg: dict[str, object], expected: str
) -> None:
    with pytest.raises(AssertionError, match=expected):
        check_part(BACKBONES, name, cfg, torch.ones(2))


def test_a_part_that_does_not_load(vertebra_plugins: PluginSandbox) -> None:
    vertebra_plugins.add(
        "acme-gone",
        {"vertebra.heads": {"Gone": "acme_gone:Gone"}},
        {"acme_gone.py": "raise ImportError('no')\n"},
    )
    with pytest.raises(
        AssertionError, match=r"HEADS Gone has 1 problem:\n  \[import\] .*ImportError: no"
    ):
        check_part(HEADS, "Gone")


def test_core_parts_pass() -> None:
    head = check_part(HEADS, "ClassifierHead", {"DIM": 4, "NUM_CLASSES": 3}, torch.randn(2, 4))
    assert head.output.shape == (2, 3)


def test_fixture_from_the_pytest_plugin_is_available(pytestconfig: pytest.Config) -> None:
    # The `vertebra` pytest plugin (entry point pytest11) gives plugin authors the sandbox.
    import vertebra.testing

    assert pytestconfig.pluginmanager.get_plugin("vertebra") is vertebra.testing
