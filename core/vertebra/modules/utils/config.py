"""`dict_to_yaml` and `Config` at scepter's import path (`scepter.modules.utils.config`).

scepter's parts, hooks and solvers write their config template with it, from their
`para_dict`, in a `get_config_template()` static method:

    from vertebra.modules.utils.config import dict_to_yaml

    @staticmethod
    def get_config_template():
        return dict_to_yaml("BACKBONES", __class__.__name__, ResNet.para_dict, set_name=True)

so a ported file runs unchanged; so does `from vertebra.modules.utils.config import Config`
for a block written in code, `Config(cfg_dict={'NAME': 'Identity'}, load=False)` (it is
`vertebra.config.Config`). The text is YAML that any safe loader reads: under
`MODULE_NAME:`, each key's description and type as a comment above `KEY: default`, nested
sections and lists as blocks. (`vertebra template REGISTRY NAME` writes the template of a
registered part from its schema.) Imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from vertebra.config import Config

__all__ = ["Config", "dict_to_yaml"]

_INDENT = "  "


def dict_to_yaml(
    module_name: str,
    name: str,
    json_config: Mapping[str, Any] | list[Any],
    set_name: bool = False,
    exclude_keys: Collection[str] = (),
) -> str:
    """The YAML template of `json_config`, a `para_dict`, under `module_name`.

    A para_dict maps each key to `{"value": default, "description": text}`; an entry
    without `value` is a section of its own (its keys beneath), a list holds sections.
    With `set_name`, the block starts with `NAME: name`. Keys in `exclude_keys` are left
    out. `json_config` is not changed.
    """
    lines = [f"# [{_one_line(module_name)}] module yaml examples:", f"{_key(module_name)}:"]
    if set_name:
        lines.append(f"{_INDENT}NAME: {_scalar(name)}")
    lines.extend(_lines(json_config, 1, frozenset(exclude_keys)))
    return "\n".join(lines) + "\n"


def _lines(node: Any, depth: int, exclude: frozenset[str]) -> list[str]:
    pad = _INDENT * depth
    if isinstance(node, list):
        out: list[str] = []
        for item in node:
            inner = _lines(item, depth + 1, exclude) if isinstance(item, Mapping | list) else []
            if not inner:
                out.append(f"{pad}- {_scalar(item)}")
                continue
            first = next(i for i, line in enumerate(inner) if not line.lstrip().startswith("#"))
            inner[first] = f"{pad}- {inner[first][len(pad) + len(_INDENT) :]}"
            out.extend(inner)
        return out
    if not isinstance(node, Mapping):
        return []
    out = []
    for key, entry in node.items():
        if key == "description" or key in exclude:
            continue
        if isinstance(entry, Mapping) and "value" in entry:
            value = entry["value"]
            described = _one_line(str(entry.get("description", "") or ""))
            kind = type(value).__name__ if value is not None else "any value"
            out.append(f"{pad}# {described} [{kind}]" if described else f"{pad}# [{kind}]")
            out.extend(_value(pad, key, value))
        elif isinstance(entry, Mapping | list):
            about = entry.get("description") if isinstance(entry, Mapping) else None
            if about:
                out.append(f"{pad}# {_one_line(str(about))}")
            inner = _lines(entry, depth + 1, exclude)
            out.append(f"{pad}{_key(key)}:" if inner else f"{pad}{_key(key)}: {{}}")
            out.extend(inner)
        else:
            out.extend(_value(pad, key, entry))
    return out


def _value(pad: str, key: Any, value: Any) -> list[str]:
    import yaml

    if isinstance(value, Mapping | list) and value:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
        return [f"{pad}{_key(key)}: {text.strip()}"]
    return [f"{pad}{_key(key)}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    import yaml

    if isinstance(value, Mapping | list):
        return "{}" if isinstance(value, Mapping) else "[]"
    if not isinstance(value, bool | int | float | str | None):
        value = str(value)  # a dtype, a class: its name, as scepter's text shows it
    if isinstance(value, str) and not value.isprintable():
        return json.dumps(value)  # a JSON string is a YAML one, every line break escaped
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n...\n").strip()


def _key(key: Any) -> str:
    return _scalar(key if isinstance(key, str) else str(key))


def _one_line(text: str) -> str:
    """`text` on one comment line: no line break of any kind can end the comment."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
