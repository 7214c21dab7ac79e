"""Part schemas and config validation: the documented names, kept here for plugins.

`PartConfig`, `PartOf`, the `*Cfg` aliases and `validate_tree` live in `vertebra.config`;
importing them from here keeps working.
"""

from vertebra.config import (
    BackboneCfg,
    HeadCfg,
    LossCfg,
    MetricCfgs,
    NeckCfg,
    PartConfig,
    PartOf,
    TokenizerCfg,
    format_path,
    join,
    part_fields,
    quick_validate,
    validate_into,
    validate_tree,
)
from vertebra.errors import close_match

__all__ = [
    "BackboneCfg",
    "HeadCfg",
    "LossCfg",
    "MetricCfgs",
    "NeckCfg",
    "PartConfig",
    "PartOf",
    "TokenizerCfg",
    "close_match",
    "format_path",
    "join",
    "part_fields",
    "quick_validate",
    "validate_into",
    "validate_tree",
]
