"""Find parts: entry-point discovery, the registry type, the plugin manager and the checker.

Importing this package is cheap (no torch, no pydantic, no pluggy): `vertebra plugins
list` and every `name in REGISTRY` read entry-point metadata alone. The hook names
(`hookimpl`, `get_plugin_manager`, ...) import pluggy when first used; the hook
specifications are the public module `vertebra.plugins.hookspecs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vertebra.plugins._checks import (
    Diagnosis,
    PartDiagnosis,
    Problem,
    diagnose,
    diagnose_part,
    load_problems,
    metadata_problems,
)
from vertebra.plugins._discovery import (
    CORE_DISTRIBUTION,
    ENV_PLUGINS,
    GROUP_PREFIX,
    HOOK_GROUP,
    EntryPointInfo,
    PluginIndex,
    allowlist_from_env,
    current_index,
    distribution_table,
    normalize,
    refresh,
    use_index,
)
from vertebra.plugins._loader import import_object
from vertebra.plugins._registries import all_registries, registry_for
from vertebra.plugins._registry import PartOrigin, Registry

if TYPE_CHECKING:
    from vertebra.plugins._hooks import (
        broken_plugins,
        call_each,
        get_plugin_manager,
        hook_names,
        hookimpl,
    )

__all__ = [
    "CORE_DISTRIBUTION",
    "ENV_PLUGINS",
    "GROUP_PREFIX",
    "HOOK_GROUP",
    "Diagnosis",
    "EntryPointInfo",
    "PartDiagnosis",
    "PartOrigin",
    "PluginIndex",
    "Problem",
    "Registry",
    "all_registries",
    "allowlist_from_env",
    "broken_plugins",
    "call_each",
    "current_index",
    "diagnose",
    "diagnose_part",
    "distribution_table",
    "get_plugin_manager",
    "hook_names",
    "hookimpl",
    "import_object",
    "load_problems",
    "metadata_problems",
    "normalize",
    "refresh",
    "registry_for",
    "use_index",
]

#: Names that import pluggy, loaded on first use.
_HOOK_NAMES = ("broken_plugins", "call_each", "get_plugin_manager", "hook_names", "hookimpl")


def __getattr__(name: str) -> Any:
    if name in _HOOK_NAMES:
        from vertebra.plugins import _hooks

        return getattr(_hooks, name)
    raise AttributeError(f"module 'vertebra.plugins' has no attribute {name!r}")
