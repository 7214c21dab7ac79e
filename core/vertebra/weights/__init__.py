"""Pretrained weights as pip packages: found through entry points, verified, loaded, packed.

A weights package declares entry points in group `vertebra.weights`: entry name = weights
name, value = `package:path/to/manifest.json`. Listing and checking names read metadata
and manifests alone; importing this package imports no torch (loading and packing do,
when called). docs/weights.md describes the manifest and the config keys.
"""

from __future__ import annotations

from vertebra.weights._digest import clear_cache, file_sha256
from vertebra.weights._digest import problems as verify
from vertebra.weights._folder import (
    FolderError,
    chosen_package,
    model_folder,
    read_model_config,
    verified,
)
from vertebra.weights._index import (
    WEIGHTS_GROUP,
    InstalledWeights,
    UnknownWeightsError,
    find,
    installed,
    is_local_path,
)
from vertebra.weights._load import WeightsError, load_into_part
from vertebra.weights._manifest import Manifest, ManifestError, WeightsFile, read_manifest

__all__ = [
    "WEIGHTS_GROUP",
    "FolderError",
    "InstalledWeights",
    "Manifest",
    "ManifestError",
    "UnknownWeightsError",
    "WeightsError",
    "WeightsFile",
    "chosen_package",
    "clear_cache",
    "file_sha256",
    "find",
    "installed",
    "is_local_path",
    "load_into_part",
    "model_folder",
    "read_manifest",
    "read_model_config",
    "verified",
    "verify",
]
