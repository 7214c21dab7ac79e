"""Files as an attacker would craft them: one module, so every surface's tests reuse them.

A payload never does harm: it touches a marker file, and a test asserts that the marker
does not exist afterwards. Each section below serves one surface; add what a new surface
needs to its section (or a new one), never a private copy in a test file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

__all__ = [
    "Touch",
    "alias_bomb_yaml",
    "deep_json",
    "deep_yaml",
    "payload_pickle",
    "touch_command",
]


# --- payloads -------------------------------------------------------------------------------


def touch_command(marker: Path) -> str:
    """The shell command every payload runs: it creates `marker` and nothing else."""
    return f"touch {os.fspath(marker)!s}"


class Touch:
    """Unpickles to `os.system(touch marker)`: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (touch_command(self.marker),))


def payload_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A plain pickle whose loading touches `marker`."""
    return pickle.dumps(Touch(marker), protocol=protocol)


# --- YAML and JSON --------------------------------------------------------------------------


def alias_bomb_yaml(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs document: `levels` anchors, each a list of `width` aliases of the last."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def deep_yaml(levels: int = 5000) -> str:
    """A flow sequence nested `levels` deep."""
    return "A: " + "[" * levels + "]" * levels + "\n"


def deep_json(levels: int = 100_000, closed: bool = False) -> str:
    """`levels` opening brackets, closed or (as a truncated crafted file) not."""
    return "[" * levels + ("]" * levels if closed else "")


# --- sharded checkpoints --------------------------------------------------------------------
# Crafted `.metadata`, bytes entries and shard paths (issue: code runs from a sharded checkpoint).


# --- weights packages and manifests ---------------------------------------------------------
# Crafted manifests, entry-point values and pack arguments.

#: `weights pack` options whose value would start a line of its own in the wheel's METADATA
#: or entry_points.txt (`$` of a regex matches before a trailing newline).
METADATA_INJECTIONS = (
    ("--name", "x\n"),
    ("--name", "x\n[console_scripts]\nls = os:system"),
    ("--version", "1.0\n"),
    ("--license", "MIT\nRequires-Dist: evil-package"),
    ("--description", "digits\rRequires-Dist: evil-package"),
    ("--license", "MIT\u2028Requires-Dist: evil-package"),
)


def replace_run_config(checkpoint: Path, text: str) -> None:
    """Make the run config that `checkpoint`'s `state.pt` holds `text` (a YAML bomb, say),
    as someone who hands out a checkpoint folder would."""
    import torch

    file = checkpoint / "state.pt"
    state = torch.load(file, map_location="cpu", weights_only=True)
    state["config"] = text
    torch.save(state, file)


def poison_tensor(file: Path, value: float = float("nan")) -> str:
    """Set one element of the first floating-point tensor of safetensors `file` to `value`
    (NaN by default); the tensor's name."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(file))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(file), metadata={"format": "pt"})
    return name


def escaping_entry_value(package: str, package_dir: Path, target: Path) -> str:
    """A `vertebra.weights` entry-point value that names `target` (outside the package) as
    a path relative to the package's folder: `pkg:../../outside/manifest.json`."""
    return f"{package}:{os.path.relpath(target, package_dir)}"


#: A part ported from scepter whose `para_dict` declares its own `WEIGHTS` (a list of
#: files it reads itself) and `WEIGHTS_STRICT` (a number): the core's keys must not claim them.
PARA_DICT_OWN_WEIGHTS = """
from torch import nn

from vertebra.model.base_model import BaseModel


class OwnWeights(BaseModel):
    para_dict = {
        'WEIGHTS': {'value': ['a.pth', 'b.pth'], 'description': 'files this part reads itself'},
        'WEIGHTS_STRICT': {'value': 2, 'description': 'how strict this part is'},
        'WIDTH': {'value': 4, 'description': 'width'},
    }

    def __init__(self, cfg, logger=None):
        super().__init__(cfg, logger=logger)
        self.files = cfg.get('WEIGHTS', [])
        self.strict = cfg.WEIGHTS_STRICT
        self.fc = nn.Linear(cfg.WIDTH, cfg.WIDTH)

    def forward(self, x):
        return self.fc(x)
"""


def payload_torch_file(path: Path, marker: Path) -> None:
    """A `pytorch_model.bin` in torch's zip format whose `data.pkl` is a pickle that touches
    `marker` when it is loaded without `weights_only`."""
    import io
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source,
        zipfile.ZipFile(path, "w") as crafted,
    ):
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                body = payload_pickle(marker)
            crafted.writestr(info, body)


# --- run folders ----------------------------------------------------------------------------
# Links planted in a run folder (lock, marker, checkpoints).


# --- configs and launch variables -----------------------------------------------------------
# Crafted scepter configs, Slurm and launcher variables.
