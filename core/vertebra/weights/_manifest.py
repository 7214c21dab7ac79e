"""The manifest of a weights package: what the weights fit, their files and their origin.

A manifest is a JSON file inside the distribution that ships the weights; the entry point
of group `vertebra.weights` locates it. Reading one imports nothing heavy.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vertebra.errors import ConfigError, UserError

__all__ = [
    "FORMAT",
    "Manifest",
    "ManifestError",
    "WeightsFile",
    "control_character",
    "parse_manifest",
    "read_manifest",
]

#: The manifest format this vertebra writes and reads.
FORMAT = 1


class ManifestError(UserError):
    """A manifest that is missing, unreadable, or not of the expected shape."""


def control_character(text: str) -> str | None:
    """The first control character or line or paragraph separator in `text`; None if none.

    A manifest's text fields are printed by `vertebra weights list` and `show`, and those
    `weights pack` writes become lines of a wheel's METADATA: none may break a line or
    move a terminal's cursor.
    """
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)


@dataclass(frozen=True)
class WeightsFile:
    """One safetensors file of a weights package, as its manifest states it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a weights package states about its weights (see docs/weights.md)."""

    name: str
    registry: str
    part: str
    config: dict[str, Any]
    files: tuple[WeightsFile, ...]
    license: str = ""
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    data: str = ""
    vertebra_version: str = ""
    default_for: dict[str, Any] | None = None
    #: The folder the manifest lies in; file paths are relative to it.
    folder: Path = Path()

    def file_paths(self) -> list[Path]:
        """The files on disk, in the manifest's order."""
        return [self.folder / f.path for f in self.files]

    @property
    def size(self) -> int:
        """Bytes of every file together."""
        return sum(f.size for f in self.files)

    def as_json(self) -> dict[str, Any]:
        """The manifest as written to disk (without its folder)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "registry": self.registry,
            "part": self.part,
            "config": self.config,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            "license": self.license,
            "description": self.description,
            "metrics": self.metrics,
            "data": self.data,
            "vertebra_version": self.vertebra_version,
            "default_for": self.default_for,
        }


def read_manifest(file: Path) -> Manifest:
    """The manifest in `file`; `ManifestError` naming the file and the problem otherwise.

    The file is read within the config limits (`vertebra.config.Limits`: its size, nesting
    and number of values), so a crafted manifest can neither hang nor exhaust the process.
    """
    from vertebra.config._limits import read_json

    if not file.exists():
        raise ManifestError(f"manifest {file} does not exist")
    try:
        raw = read_json(file, "manifest")
    except ConfigError as exc:
        problems = "; ".join(str(issue) for issue in exc.issues)
        raise ManifestError(f"manifest {file} cannot be read: {problems}") from None
    return parse_manifest(raw, file)


def parse_manifest(raw: Any, file: Path) -> Manifest:
    """A manifest from its JSON value; every problem of it in one `ManifestError`."""
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest {file}: expected a JSON object, got {type(raw).__name__}")
    problems: list[str] = []

    def text(key: str, required: bool = True) -> str:
        value = raw.get(key, None if required else "")
        if not isinstance(value, str) or (required and not value):
            problems.append(f"'{key}' must be a non-empty string, got {value!r}"[:300])
            return ""
        bad = control_character(value)
        if bad is not None:
            problems.append(f"'{key}' holds the control character {bad!r}: one line of text")
            return ""
        return value

    if raw.get("format") != FORMAT:
        problems.append(f"'format' must be {FORMAT}, got {raw.get('format')!r}")
    name, registry, part = text("name"), text("registry"), text("part")
    config = raw.get("config")
    if not isinstance(config, dict) or config.get("NAME") != part:
        problems.append("'config' must be the part's config, a mapping whose NAME is 'part'")
        config = {}
    files: list[WeightsFile] = []
    entries = raw.get("files")
    if not isinstance(entries, list) or not entries:
        problems.append("'files' must be a non-empty list of {path, size, sha256}")
        entries = []
    for i, entry in enumerate(entries):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and entry["path"].endswith(".safetensors")
            and control_character(entry["path"]) is None
            and ".." not in Path(entry["path"]).parts
            and not Path(entry["path"]).is_absolute()
            and type(entry.get("size")) is int
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        )
        if not ok:
            problems.append(
                f"files[{i}] must be {{path: a relative .safetensors path, size: bytes, "
                f"sha256: 64 hex digits}}, got {entry!r}"
            )
            continue
        files.append(WeightsFile(entry["path"], entry["size"], entry["sha256"].lower()))
    metrics = raw.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and control_character(k) is None for k, v in metrics.items()
    ):
        problems.append("'metrics' must map metric names (one line of text) to numbers")
        metrics = {}
    default_for = raw.get("default_for")
    if default_for is not None and not (
        isinstance(default_for, dict) and isinstance(default_for.get("NAME"), str)
    ):
        problems.append("'default_for' must be null or a mapping with a NAME")
        default_for = None
    license_, description = text("license", False), text("description", False)
    data, version = text("data", False), text("vertebra_version", False)
    if problems:
        raise ManifestError(f"manifest {file} is malformed: " + "; ".join(problems))
    return Manifest(
        name,
        registry,
        part,
        config,
        tuple(files),
        license_,
        description,
        {str(k): float(v) for k, v in metrics.items()},
        data,
        version,
        default_for,
        file.parent,
    )
