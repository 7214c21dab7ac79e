"""Configs: files, part schemas, validation, the run config, JSON Schema and templates.

A config is a plain nested mapping (`load`, `loads`, `merge`, `apply_overrides`) until it is
validated: `validate_tree` against any schema, `validate_run_config` and `load_run_config`
for a whole run. Part schemas subclass `PartConfig` and mark the fields that hold other
parts with `PartOf`. `run_config_schema` and `render` describe configs for editors and
people.

Importing this package is cheap: each name loads its module (and YAML or pydantic) on
first use, so that command-line paths that need none of it do not pay for it.

- `_files`: YAML and JSON files, `_BASE` includes, `--set` overrides, `dump`
- `_schema`: `PartConfig`, `PartOf`, `Settings` (numbers that refuse booleans), `Size`,
  `Seed`, validation of config trees with every error at once
- `_annotations`: what a field's type annotation holds (the one walker of annotations)
- `_run`: the run config's sections, `validate_run_config`, `load_run_config`
- `_limits`: bounded reading of files vertebra takes as data (`read_bytes`, `read_json`,
  `parse_json`)
- `_json_schema`: one JSON Schema of a run config, from the installed parts
- `_template`: commented YAML templates of part configs
- `_derived`, `_code_reads`: schemas of parts ported from scepter (their `para_dict`)
- `_plain`: `Config`, scepter's block of settings written in code
- `_docstrings`: one-line descriptions of parts, read from their source
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._annotations import allows_none, is_list, literal_choices, models_in, section_model
    from ._docstrings import first_line, summary
    from ._files import apply_overrides, dump, load, loads, merge, parse_override
    from ._json_schema import DRAFT, SchemaBuilder, SchemaProblem, part_schema, run_config_schema
    from ._limits import parse_json, read_bytes, read_json
    from ._plain import Config
    from ._run import (
        DataConfig,
        FsdpConfig,
        LoaderConfig,
        RunConfig,
        TrainConfig,
        load_run_config,
        plugin_settings,
        validate_run_config,
    )
    from ._schema import (
        MAX_SIZE,
        BackboneCfg,
        HeadCfg,
        LossCfg,
        MetricCfgs,
        NeckCfg,
        PartConfig,
        PartOf,
        PartSlot,
        Seed,
        Settings,
        Size,
        TokenizerCfg,
        describe_value,
        find_ineffective_keys,
        format_path,
        join,
        part_fields,
        part_slots,
        quick_validate,
        renamed_keys,
        required_keys,
        validate_into,
        validate_tree,
    )
    from ._template import PLACEHOLDER, example_config, placeholders, render, type_text

#: The module each public name lives in.
_HOMES = {
    "_annotations": ["allows_none", "is_list", "literal_choices", "models_in", "section_model"],
    "_docstrings": ["first_line", "summary"],
    "_files": ["apply_overrides", "dump", "load", "loads", "merge", "parse_override"],
    "_plain": ["Config"],
    "_limits": ["parse_json", "read_bytes", "read_json"],
    "_json_schema": ["DRAFT", "SchemaBuilder", "SchemaProblem", "part_schema", "run_config_schema"],
    "_run": [
        "DataConfig",
        "FsdpConfig",
        "LoaderConfig",
        "RunConfig",
        "TrainConfig",
        "load_run_config",
        "plugin_settings",
        "validate_run_config",
    ],
    "_schema": [
        "MAX_SIZE",
        "BackboneCfg",
        "HeadCfg",
        "LossCfg",
        "MetricCfgs",
        "NeckCfg",
        "PartConfig",
        "PartOf",
        "PartSlot",
        "Seed",
        "Settings",
        "Size",
        "TokenizerCfg",
        "describe_value",
        "find_ineffective_keys",
        "format_path",
        "join",
        "part_fields",
        "part_slots",
        "quick_validate",
        "renamed_keys",
        "required_keys",
        "validate_into",
        "validate_tree",
    ],
    "_template": ["PLACEHOLDER", "example_config", "placeholders", "render", "type_text"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "DRAFT",
    "MAX_SIZE",
    "PLACEHOLDER",
    "BackboneCfg",
    "Config",
    "DataConfig",
    "FsdpConfig",
    "HeadCfg",
    "LoaderConfig",
    "LossCfg",
    "MetricCfgs",
    "NeckCfg",
    "PartConfig",
    "PartOf",
    "PartSlot",
    "RunConfig",
    "SchemaBuilder",
    "SchemaProblem",
    "Seed",
    "Settings",
    "Size",
    "TokenizerCfg",
    "TrainConfig",
    "allows_none",
    "apply_overrides",
    "describe_value",
    "dump",
    "example_config",
    "find_ineffective_keys",
    "first_line",
    "format_path",
    "is_list",
    "join",
    "literal_choices",
    "load",
    "load_run_config",
    "loads",
    "merge",
    "models_in",
    "parse_json",
    "parse_override",
    "part_fields",
    "part_schema",
    "part_slots",
    "placeholders",
    "plugin_settings",
    "quick_validate",
    "read_bytes",
    "read_json",
    "renamed_keys",
    "render",
    "required_keys",
    "run_config_schema",
    "section_model",
    "summary",
    "type_text",
    "validate_into",
    "validate_run_config",
    "validate_tree",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
