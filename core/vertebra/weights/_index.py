"""Installed weights: the entries of group `vertebra.weights` and their manifests.

An entry point `convnet-digits = convnet_digits:manifest.json` names the weights
`convnet-digits`, whose manifest is the file `manifest.json` inside the package
`convnet_digits`. The package's folder is found with `importlib.util.find_spec` of its
top-level name (then sub-folders for a dotted name), which runs none of its code: listing
weights reads metadata and manifests only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from vertebra.errors import UserError, close_match
from vertebra.plugins._discovery import WEIGHTS_GROUP, EntryPointInfo, current_index, normalize
from vertebra.weights._manifest import Manifest, ManifestError, read_manifest

__all__ = [
    "WEIGHTS_GROUP",
    "InstalledWeights",
    "UnknownWeightsError",
    "find",
    "fitting",
    "installed",
    "is_local_path",
    "locate",
    "manifest_of",
]


class UnknownWeightsError(UserError):
    """A weights name that nothing installed offers, or that several distributions offer."""


@dataclass(frozen=True)
class InstalledWeights:
    """One entry of group `vertebra.weights`: its name, its distribution, its manifest file."""

    entry: EntryPointInfo

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def distribution(self) -> str:
        return self.entry.distribution

    @property
    def version(self) -> str:
        return self.entry.version

    def manifest(self) -> Manifest:
        """The manifest, read and checked (`ManifestError` otherwise)."""
        return manifest_of(self.entry)


def is_local_path(value: str) -> bool:
    """Whether a `WEIGHTS` value names a local file rather than installed weights."""
    return value.endswith(".safetensors") or "/" in value or "\\" in value


def locate(entry: EntryPointInfo) -> Path:
    """The manifest file that `entry` names (`package.sub:path/inside.json`); runs no code.

    The path stays inside the package's folder once resolved: no `..`, no absolute path,
    no link that leads out (`ManifestError` otherwise).
    """
    return _located(entry)[1]


def _located(entry: EntryPointInfo) -> tuple[Path, Path]:
    """(the folder of the top-level package, the manifest file) that `entry` names."""
    module, _, inside = entry.value.partition(":")
    module, inside = module.strip(), inside.strip()
    parts = module.split(".")
    if not inside or not all(p.isidentifier() for p in parts):
        raise ManifestError(
            f"{entry.describe()}: expected 'package:path/to/manifest.json' (a Python package "
            "and the manifest's path inside it)"
        )
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(f"{entry.describe()}: no installed package named '{parts[0]}'")
    package = Path(next(iter(spec.submodule_search_locations)))
    file = package.joinpath(*parts[1:]) / inside
    if not _inside(file, package):
        raise ManifestError(
            f"{entry.describe()}: the manifest path '{inside}' leads out of package "
            f"'{parts[0]}' ({package}); a manifest lies inside the package that ships it"
        )
    return package, file


def _inside(path: Path, package: Path) -> bool:
    """Whether `path`, every link followed, lies inside `package` (itself resolved)."""
    try:
        path.resolve().relative_to(package.resolve())
    except (ValueError, OSError, RuntimeError):  # outside, or a link loop
        return False
    return True


def manifest_of(entry: EntryPointInfo) -> Manifest:
    """The manifest of `entry`, read and checked; its name must be the entry's, and the
    files it names lie inside the manifest's package. Every `ManifestError` names the
    entry point and its distribution."""
    package, file = _located(entry)
    try:
        manifest = read_manifest(file)
    except ManifestError as exc:
        raise ManifestError(f"{exc} ({entry.describe()})") from None
    if manifest.name != entry.name:
        raise ManifestError(
            f"manifest {file} names weights '{manifest.name}', but its {entry.describe()} "
            f"calls them '{entry.name}'"
        )
    for path in manifest.file_paths():
        if not _inside(path, package):
            raise ManifestError(
                f"manifest {file}: weights file {path} leads out of its package ({package}) "
                f"through a link ({entry.describe()})"
            )
    return manifest


def installed() -> list[InstalledWeights]:
    """Every installed weights entry, sorted by name then distribution."""
    entries = current_index().group(WEIGHTS_GROUP)
    return [InstalledWeights(e) for e in sorted(entries, key=lambda e: (e.name, e.distribution))]


def find(name: str) -> InstalledWeights:
    """The installed weights `name` (or `DISTRIBUTION:name`) selects.

    `UnknownWeightsError` with a did-you-mean for a name that nothing offers, and with the
    `DISTRIBUTION:name` forms for a name that several distributions offer.
    """
    dist, _, bare = name.rpartition(":")
    every = installed()
    found = [w for w in every if w.name == bare]
    if dist:
        found = [w for w in found if normalize(w.distribution) == normalize(dist)]
    if len(found) == 1:
        return found[0]
    if found:
        forms = ", ".join(f"'{w.distribution}:{w.name}'" for w in found)
        raise UnknownWeightsError(
            f"weights '{name}' are offered by several distributions; name one of {forms}"
        )
    names = sorted({w.name for w in every})
    message = f"no installed weights named '{name}'"
    hint = close_match(bare, names)
    if hint:
        message += f"; did you mean '{hint}'?"
    elif names:
        message += f"; installed: {', '.join(names)}"
    else:
        message += (
            f"; none are installed (a weights package declares entry points in group "
            f"'{WEIGHTS_GROUP}'; `vertebra weights pack` makes one)"
        )
    return _raise(message)


def _raise(message: str) -> InstalledWeights:
    raise UnknownWeightsError(message)


_FITTING: dict[int, dict[tuple[str, str], list[str]]] = {}


def fitting(registry: str, part: str) -> list[str]:
    """Names of the installed weights whose manifest says they fit `part` of `registry`
    (manifests that cannot be read are left out)."""
    index = current_index()
    table = _FITTING.get(id(index))
    if table is None:
        table = {}
        for w in installed():
            try:
                m = w.manifest()
            except UserError:
                continue
            table.setdefault((m.registry.upper(), m.part), []).append(w.name)
        _FITTING.clear()
        _FITTING[id(index)] = table
    return table.get((registry.upper(), part.rpartition(":")[2]), [])
