"""Keys that validate but change nothing: each part's `ineffective_keys()`, walked over a
whole config, and the warnings `vertebra validate` prints for them (exit status 0)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from vertebra.cli import main
from vertebra.config import find_ineffective_keys, validate_run_config, validate_tree
from vertebra.errors import ConfigIssue
from vertebra.schema import PartConfig
from vertebra.testing import PluginSandbox

STEM_PARTS = '''
from pydantic import Field
from torch import nn

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig


class StemConfig(PartConfig):
    KERNEL: int = Field(7, description="Kernel size; 7 ignores STRIDE.")
    STRIDE: int = Field(1, description="Stride of the small stem.")
    WIDTH: int = Field(8, description="Output width.")

    def ineffective_keys(self):
        if self.KERNEL == 7 and "STRIDE" in self.model_fields_set:
            return {"STRIDE": "KERNEL 7 has a fixed stride"}
        return {}


class Stem(BaseModel):
    """A backbone with a key that another key can make ineffective."""

    Config = StemConfig

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger=logger)
        self.fc = nn.Linear(4, cfg.WIDTH)
        self.out_dim = cfg.WIDTH

    def forward(self, x):
        return self.fc(x)
'''


@pytest.fixture
def stem(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    vertebra_plugins.add(
        "vb-stem",
        {"vertebra.backbones": {"Stem": "vb_stem.parts:Stem"}},
        {"vb_stem/__init__.py": "", "vb_stem/parts.py": STEM_PARTS},
    )
    return vertebra_plugins


def _config(tmp_path: Path, backbone: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            MODEL:
              NAME: Classifier
              BACKBONE: {backbone}
              HEAD: {{NAME: ClassifierHead, DIM: 8, NUM_CLASSES: 2}}
            """
        ),
        encoding="utf-8",
    )
    return path


def test_validate_warns_about_each_ineffective_key_and_exits_0(
    stem: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, "{NAME: Stem, KERNEL: 7, STRIDE: 2}")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: valid. MODEL=Classifier")
    assert err.splitlines() == [
        "vertebra validate: warning: MODEL.BACKBONE.STRIDE has no effect: KERNEL 7 has a fixed stride"
    ]
    # Not set, or set where it counts: no warning.
    for backbone in ("{NAME: Stem, KERNEL: 7}", "{NAME: Stem, KERNEL: 3, STRIDE: 2}"):
        assert main(["validate", str(_config(tmp_path, backbone))]) == 0
        assert capsys.readouterr().err == ""


def test_the_walk_reaches_lists_sections_and_mappings() -> None:
    class Leaf(PartConfig):
        A: int = Field(0, description="A key.")

        def ineffective_keys(self) -> dict[str, str]:
            return {"A": "never used"} if "A" in self.model_fields_set else {}

    class Section(BaseModel):
        LEAVES: list[Leaf] = Field(default_factory=list, description="Leaves.")
        BY_NAME: dict[str, Leaf] = Field(default_factory=dict, description="Leaves by name.")

    class Tree(BaseModel):
        ONE: Leaf = Field(description="A leaf.")
        SECTION: Section = Field(description="A section.")

    tree = validate_tree(
        Tree,
        {
            "ONE": {"NAME": "x", "A": 1},
            "SECTION": {
                "LEAVES": [{"NAME": "y"}, {"NAME": "z", "A": 2}],
                "BY_NAME": {"k": {"NAME": "w", "A": 3}},
            },
        },
    )
    assert find_ineffective_keys(tree, "ROOT") == [
        ConfigIssue("ROOT.ONE.A", "never used"),
        ConfigIssue("ROOT.SECTION.LEAVES[1].A", "never used"),
        ConfigIssue("ROOT.SECTION.BY_NAME.k.A", "never used"),
    ]


def test_a_part_config_has_none_by_default() -> None:
    cfg = validate_run_config(
        {
            "MODEL": {
                "NAME": "Classifier",
                "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 4, "HIDDEN": [8]},
                "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 2},
            }
        }
    )
    assert find_ineffective_keys(cfg) == []
