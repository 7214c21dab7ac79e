"""A scepter part file imports scepter's helpers at their own paths, with `scepter` read as
`vertebra`: `from vertebra.modules.utils.config import dict_to_yaml` (scepter's
`scepter.modules.utils.config`), used by each part's `get_config_template()`."""

from __future__ import annotations

import copy

import pytest
import yaml
from vertebra.model.registry import BACKBONES
from vertebra.modules.utils.config import dict_to_yaml
from vertebra.testing import PluginSandbox

from tests.crafting import LINE_BREAKS

#: A part file as scepter writes one, its imports changed from scepter to vertebra.
PORTED = """\
import torch.nn as nn

from vertebra.model.base_model import BaseModel
from vertebra.model.registry import BACKBONES
from vertebra.modules.utils.config import dict_to_yaml


@BACKBONES.register_class()
class PortedMLP(BaseModel):
    para_dict = {
        'IN_DIM': {'value': 4, 'description': 'input width!'},
        'DIMS': {'value': [8, 8], 'description': 'widths of the layers'},
        'USE_RELU': {'value': True, 'description': 'use relu or not!'},
        'DROPOUT_RATE': {'value': 0.1, 'description': 'dropout rate'},
        'PRETRAINED_MODEL': {'value': None, 'description': 'Pretrained model path.'},
    }

    def __init__(self, cfg, logger=None):
        super(PortedMLP, self).__init__(cfg, logger=logger)
        dims = [cfg.get('IN_DIM', 4), *cfg.get('DIMS', [8, 8])]
        self.layers = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims, dims[1:])])
        self.out_dim = dims[-1]

    def forward(self, x):
        return self.layers(x)

    @staticmethod
    def get_config_template():
        return dict_to_yaml('BACKBONES',
                            __class__.__name__,
                            PortedMLP.para_dict,
                            set_name=True)
"""


@pytest.fixture
def ported(vertebra_plugins: PluginSandbox) -> PluginSandbox:
    vertebra_plugins.add(
        "vb-ported",
        {"vertebra.backbones": {"PortedMLP": "vb_ported.mlp:PortedMLP"}},
        {"vb_ported/__init__.py": "", "vb_ported/mlp.py": PORTED},
    )
    return vertebra_plugins


def test_a_ported_part_writes_its_template_with_dict_to_yaml(ported: PluginSandbox) -> None:
    cls = BACKBONES.get("PortedMLP")
    template = cls.get_config_template()
    assert template.startswith(
        "# [BACKBONES] module yaml examples:\nBACKBONES:\n  NAME: PortedMLP\n"
    )
    assert "  # input width! [int]\n  IN_DIM: 4\n" in template
    assert "  # Pretrained model path. [any value]\n  PRETRAINED_MODEL: null\n" in template
    block = yaml.safe_load(template)["BACKBONES"]
    assert block == {
        "NAME": "PortedMLP",
        "IN_DIM": 4,
        "DIMS": [8, 8],
        "USE_RELU": True,
        "DROPOUT_RATE": 0.1,
        "PRETRAINED_MODEL": None,
    }
    assert BACKBONES.build(block).out_dim == 8  # the template is a config that builds


def test_sections_lists_and_excluded_keys() -> None:
    # A solver's para_dict: sections with a description, lists of hooks, empty sections.
    para_dict = {
        "MAX_EPOCHS": {"value": 10, "description": "Max epochs for training."},
        "TRAIN_DATA": {"description": "Train data config.", "NAME": {"value": "Folder"}},
        "TRAIN_HOOKS": [
            {"NAME": {"value": "LogHook"}, "LOG_INTERVAL": {"value": 10, "description": "x"}},
            {"NAME": {"value": "CheckpointHook"}},
        ],
        "MODEL": {},
        "FILE_SYSTEM": {"value": None, "description": "where files are"},
    }
    before = copy.deepcopy(para_dict)
    text = dict_to_yaml("SOLVER", "TrainValSolver", para_dict, exclude_keys=["FILE_SYSTEM"])
    assert para_dict == before  # scepter's removes excluded keys from its argument
    assert yaml.safe_load(text) == {
        "SOLVER": {
            "MAX_EPOCHS": 10,
            "TRAIN_DATA": {"NAME": "Folder"},
            "TRAIN_HOOKS": [{"NAME": "LogHook", "LOG_INTERVAL": 10}, {"NAME": "CheckpointHook"}],
            "MODEL": {},
        }
    }
    assert "# Train data config.\n  TRAIN_DATA:\n" in text


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=ascii)
def test_no_description_or_value_can_end_its_line(line_break: str) -> None:
    para_dict = {
        "A": {"value": f"x{line_break}B: injected", "description": f"d{line_break}C: injected"}
    }
    text = dict_to_yaml("HEADS", "H", para_dict, set_name=True)
    assert yaml.safe_load(text) == {"HEADS": {"NAME": "H", "A": f"x{line_break}B: injected"}}


#: A part file that imports both of scepter's helpers from their path, as scepter's
#: Classifier does (`from scepter.modules.utils.config import Config, dict_to_yaml`).
PORTED_WITH_CONFIG = """\
import torch.nn as nn

from vertebra.model.base_model import BaseModel
from vertebra.model.registry import BACKBONES, NECKS
from vertebra.modules.utils.config import Config, dict_to_yaml


@BACKBONES.register_class()
class NeckedMLP(BaseModel):
    para_dict = {
        'IN_DIM': {'value': 4, 'description': 'input width!'},
        'OUT_DIM': {'value': 6, 'description': 'output width!'},
    }

    def __init__(self, cfg, logger=None):
        super(NeckedMLP, self).__init__(cfg, logger=logger)
        self.fc = nn.Linear(cfg.IN_DIM, cfg.OUT_DIM)
        neck = cfg.get('NECK', Config(cfg_dict={'NAME': 'Identity'}, load=False))
        self.neck = NECKS.build(neck, logger=logger)

    def forward(self, x):
        return self.neck(self.fc(x))

    @staticmethod
    def get_config_template():
        return dict_to_yaml('BACKBONES',
                            __class__.__name__,
                            NeckedMLP.para_dict,
                            set_name=True)
"""


def test_a_ported_file_imports_config_and_dict_to_yaml_from_scepters_path(
    vertebra_plugins: PluginSandbox,
) -> None:
    import torch
    from vertebra.config import Config
    from vertebra.modules.utils import config as scepter_path

    assert scepter_path.Config is Config  # one class: a block written in code
    vertebra_plugins.add(
        "vb-necked",
        {"vertebra.backbones": {"NeckedMLP": "vb_necked.mlp:NeckedMLP"}},
        {"vb_necked/__init__.py": "", "vb_necked/mlp.py": PORTED_WITH_CONFIG},
    )
    cls = BACKBONES.get("NeckedMLP")
    block = yaml.safe_load(cls.get_config_template())["BACKBONES"]
    assert block == {"NAME": "NeckedMLP", "IN_DIM": 4, "OUT_DIM": 6}
    # Without NECK, the default block written with Config builds; with one, it is used.
    plain = BACKBONES.build(block)
    assert type(plain.neck).__name__ == "Identity"
    assert plain(torch.zeros(2, 3, 4)).shape == (2, 3, 6)
    flat = BACKBONES.build({**block, "NECK": {"NAME": "Flatten"}})
    assert type(flat.neck).__name__ == "Flatten"
    assert flat(torch.zeros(2, 3, 4)).shape == (2, 18)
