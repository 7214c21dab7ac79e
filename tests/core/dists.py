"""Fixture plugin distributions for the core tests, written as real `.dist-info` folders.

Each function adds one distribution to a `vertebra.testing.PluginSandbox`. Every plugin
module appends its name to `vertebra_test_imports` in `builtins` when it is imported, so
a test can see exactly which plugin code ran (besides checking `sys.modules`).
"""

from __future__ import annotations

from vertebra.testing import PluginSandbox

#: First lines of every fixture module: record the import.
_TRACE = """\
import builtins
builtins.__dict__.setdefault("vertebra_test_imports", []).append(__name__)
"""

GOOD_PARTS = (
    _TRACE
    + '''
from pydantic import Field
from torch import nn

from vertebra.model.base_model import BaseModel
from vertebra.schema import PartConfig


class TinyResConfig(PartConfig):
    DEPTH: int = Field(2, ge=1, description="Number of blocks.")
    WIDTH: int = Field(8, ge=1, description="Width of each block.")


class TinyRes(BaseModel):
    """A stack of linear layers (a stand-in for a ResNet)."""

    Config = TinyResConfig

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger)
        self.blocks = nn.Sequential(*[nn.Linear(cfg.WIDTH, cfg.WIDTH) for _ in range(cfg.DEPTH)])

    def forward(self, x):
        return self.blocks(x)


class WideRes(TinyRes):
    """The same stack, wider by default."""


class LinearHeadConfig(PartConfig):
    DIM: int = Field(8, ge=1, description="Input width.")
    NUM_CLASSES: int = Field(ge=1, description="Number of classes.")


class LinearHead(BaseModel):
    Config = LinearHeadConfig

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger)
        self.fc = nn.Linear(cfg.DIM, cfg.NUM_CLASSES)

    def forward(self, x):
        return self.fc(x)


class L1(nn.Module):
    """A loss that is a plain nn.Module without settings."""

    def __init__(self, cfg, logger=None):
        super().__init__()
        self.cfg = cfg

    def forward(self, a, b):
        return (a - b).abs().mean()
'''
)


def add_good(sandbox: PluginSandbox, name: str = "vb-good", version: str = "1.2.3") -> None:
    """Backbones TinyRes and WideRes, head LinearHead, loss L1: all load and build."""
    sandbox.add(
        name,
        {
            "vertebra.backbones": {
                "TinyRes": "vb_good.parts:TinyRes",
                "WideRes": "vb_good.parts:WideRes",
            },
            "vertebra.heads": {"LinearHead": "vb_good.parts:LinearHead"},
            "vertebra.losses": {"L1": "vb_good.parts:L1"},
        },
        {"vb_good/__init__.py": "", "vb_good/parts.py": GOOD_PARTS},
        version=version,
    )


def add_import_error(sandbox: PluginSandbox) -> None:
    """Backbone BrokenImport: its module imports a module that does not exist."""
    sandbox.add(
        "vb-import-error",
        {"vertebra.backbones": {"BrokenImport": "vb_import_error.parts:BrokenImport"}},
        {
            "vb_import_error/__init__.py": "",
            "vb_import_error/parts.py": _TRACE + "import vb_no_such_module_anywhere\n",
        },
    )


def add_syntax_error(sandbox: PluginSandbox) -> None:
    """Backbone BrokenSyntax: its module is not valid Python."""
    sandbox.add(
        "vb-syntax-error",
        {"vertebra.backbones": {"BrokenSyntax": "vb_syntax_error.parts:BrokenSyntax"}},
        {
            "vb_syntax_error/__init__.py": "",
            "vb_syntax_error/parts.py": "class BrokenSyntax(:\n    pass\n",
        },
    )


def add_missing_attr(sandbox: PluginSandbox) -> None:
    """Backbone Missing: the module imports, the class it names is not in it."""
    sandbox.add(
        "vb-missing-attr",
        {"vertebra.backbones": {"Missing": "vb_missing_attr.parts:NoSuchClass"}},
        {"vb_missing_attr/__init__.py": "", "vb_missing_attr/parts.py": _TRACE},
    )


def add_wrong_base(sandbox: PluginSandbox) -> None:
    """Backbone NotAPart: a class that is no BaseModel subclass."""
    sandbox.add(
        "vb-wrong-base",
        {"vertebra.backbones": {"NotAPart": "vb_wrong_base.parts:NotAPart"}},
        {
            "vb_wrong_base/__init__.py": "",
            "vb_wrong_base/parts.py": _TRACE
            + "class NotAPart:\n    def __init__(self, cfg, logger=None):\n        pass\n",
        },
    )


def add_exit(sandbox: PluginSandbox) -> None:
    """Backbone Quitter and a hook module, whose modules end the process when imported."""
    sandbox.add(
        "vb-exit",
        {
            "vertebra.backbones": {"Quitter": "vb_exit.parts:Quitter"},
            "vertebra.plugins": {"quitter": "vb_exit.hooks"},
        },
        {
            "vb_exit/__init__.py": "",
            "vb_exit/parts.py": _TRACE + "import sys\n\nsys.exit(3)\n",
            "vb_exit/hooks.py": _TRACE + "raise SystemExit('hooks quit')\n",
        },
    )


CLASH_PARTS = (
    _TRACE
    + '''
from vertebra.model.base_model import BaseModel


class Twin(BaseModel):
    """Offered under the same name by two distributions."""

    SOURCE = {source!r}
'''
)


def add_clash(sandbox: PluginSandbox) -> None:
    """Backbone Twin from two distributions, vb-clash-a and vb-clash-b."""
    for suffix in ("a", "b"):
        sandbox.add(
            f"vb-clash-{suffix}",
            {"vertebra.backbones": {"Twin": f"vb_clash_{suffix}.parts:Twin"}},
            {
                f"vb_clash_{suffix}/__init__.py": "",
                f"vb_clash_{suffix}/parts.py": CLASH_PARTS.format(source=suffix),
            },
            version=f"0.{ord(suffix) - ord('a') + 1}.0",
        )


#: Parts written exactly as scepter writes them: settings in a `para_dict` class attribute,
#: read with `cfg.get(KEY, default)` and `cfg.KEY`, no pydantic schema.
SCEPTER_PARTS = (
    _TRACE
    + """
import torch
import torch.nn as nn

from vertebra.model.base_model import BaseModel


class ScepterMLP(BaseModel):
    \"\"\"An MLP ported from scepter unchanged.\"\"\"

    para_dict = {
        'IN_FEATURES': {
            'value': 16,
            'description': 'the number of input features!'
        },
        'DEPTH': {
            'value': 2,
            'description': 'the number of linear layers!'
        },
        'WIDTH': {
            'value': 8,
            'description': 'the width of each layer!'
        },
        'USE_RELU': {
            'value': True,
            'description': 'use relu or not!'
        },
        'DROPOUT_RATE': {
            'value': 0.0,
            'description': 'dropout rate, default 0.'
        },
        'ACT_NAME': {
            'value': 'relu',
            'description': 'the activation, relu or gelu'
        },
        'SCALES': {
            'value': [1, 2],
            'description': 'scales of something'
        },
        'PRETRAINED_MODEL': {
            'value': None,
            'description': 'Pretrained model path.'
        }
    }

    def __init__(self, cfg, logger=None):
        super(ScepterMLP, self).__init__(cfg, logger=logger)
        in_features = cfg.get('IN_FEATURES', 16)
        depth = cfg.get('DEPTH', 2)
        width = cfg.WIDTH
        use_relu = cfg.get('USE_RELU', True)
        layers = []
        for i in range(depth):
            layers.append(nn.Linear(in_features if i == 0 else width, width))
            if use_relu:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)
        self.out_dim = width
        self.pretrained_model = cfg.get('PRETRAINED_MODEL', None)
        self.has_pretrained_model = 'PRETRAINED_MODEL' in cfg

    def forward(self, x):
        return self.layers(x.flatten(1))


class ScepterBad(BaseModel):
    \"\"\"A scepter part whose para_dict has a default that no config can hold.\"\"\"

    para_dict = {
        'DTYPE': {
            'value': torch.float32,
            'description': 'the dtype of the weights'
        }
    }

    def __init__(self, cfg, logger=None):
        super(ScepterBad, self).__init__(cfg, logger=logger)
"""
)


def add_scepter(sandbox: PluginSandbox) -> None:
    """Backbones ScepterMLP (a scepter part ported as it is) and ScepterBad (untypeable)."""
    sandbox.add(
        "vb-scepter",
        {
            "vertebra.backbones": {
                "ScepterMLP": "vb_scepter.parts:ScepterMLP",
                "ScepterBad": "vb_scepter.parts:ScepterBad",
            }
        },
        {"vb_scepter/__init__.py": "", "vb_scepter/parts.py": SCEPTER_PARTS},
    )


def add_all(sandbox: PluginSandbox) -> None:
    """The good distribution and every broken one."""
    add_good(sandbox)
    add_import_error(sandbox)
    add_syntax_error(sandbox)
    add_missing_attr(sandbox)
    add_wrong_base(sandbox)
    add_clash(sandbox)


def imported() -> list[str]:
    """Fixture plugin modules imported so far in this process."""
    import builtins

    return list(builtins.__dict__.get("vertebra_test_imports", []))
