"""Find parts: entry-point discovery, the registry type, the plugin manager and the checker.

Importing this package is cheap: it imports the entry-point discovery alone (no torch, no
pydantic, no pluggy, not even `inspect` or `ast`), so that `vertebra plugins list` and
every `name in REGISTRY` read entry-point metadata and nothing more. The other public
names (the registry type, the checker, the hook names) import their module when first
used; the hook specifications are the public module `vertebra.plugins.hookspecs`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from vertebra.plugins._checks import (
        Diagnosis,
        PartDiagnosis,
        Problem,
        diagnose,
        diagnose_part,
        load_problems,
        metadata_problems,
    )
    from vertebra.plugins._hooks import (
        broken_plugins,
        call_each,
        get_plugin_manager,
        hook_names,
        hookimpl,
    )
    from vertebra.plugins._loader import import_object
    from vertebra.plugins._registries import all_registries, registry_for
    from vertebra.plugins._registry import PartOrigin, Registry

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

#: Public names imported on first use, with their module: listing needs none of them
#: (the checker alone brings `inspect`, `ast` and `tempfile`; the hook names pluggy).
_LAZY = {
    **dict.fromkeys(
        (
            "Diagnosis",
            "PartDiagnosis",
            "Problem",
            "diagnose",
            "diagnose_part",
            "load_problems",
            "metadata_problems",
        ),
        "_checks",
    ),
    **dict.fromkeys(
        ("broken_plugins", "call_each", "get_plugin_manager", "hook_names", "hookimpl"), "_hooks"
    ),
    "import_object": "_loader",
    "all_registries": "_registries",
    "registry_for": "_registries",
    "PartOrigin": "_registry",
    "Registry": "_registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vertebra.plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vertebra.plugins.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
