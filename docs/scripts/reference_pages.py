"""The reference pages, generated from schemas when the site is built.

- `reference/parts.md`: every part of vertebra and its first-party plugins, with each
  key's type, default and description, from the parts' pydantic schemas;
- `reference/run-config.md`: the keys of every section of a run config, from
  `vertebra.config.RunConfig`.

mkdocs runs this file as a hook (`hooks:` in mkdocs.yml): `on_files` adds the pages to
the site without writing them into docs/. As a script it writes them into a folder:
`python docs/scripts/reference_pages.py OUT_DIR`. Nothing is downloaded: the pages come
from the parts installed in this environment, and only the first-party distributions'
parts are listed, whatever else is installed.
"""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from pydantic import BaseModel
    from vertebra.plugins import Registry

FIRST_PARTY = ("vertebra", "vertebra-vision", "vertebra-text")
PARTS_PAGE = "reference/parts.md"
RUN_CONFIG_PAGE = "reference/run-config.md"


def pages() -> dict[str, str]:
    """Path under docs/ -> markdown text, for every generated page."""
    from vertebra import plugins

    with plugins.use_index(plugins.PluginIndex.scan(allow=FIRST_PARTY)):
        return {PARTS_PAGE: parts_page(), RUN_CONFIG_PAGE: run_config_page()}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """mkdocs hook: add the generated pages to the site."""
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files


# -- the parts page ---------------------------------------------------------------------


def parts_page() -> str:
    from vertebra.plugins import all_registries

    lines = [
        "# Parts reference",
        "",
        "Every part that vertebra and its first-party plugins (vertebra-vision, vertebra-text) "
        "register, generated from the parts' schemas when this site was built. In your own "
        "environment, `vertebra components` lists what is installed and "
        "`vertebra template REGISTRY NAME` prints a part's config block, ready to copy.",
        "",
        "A key marked **required** has no default: a config must set it.",
        "",
    ]
    from vertebra.cli.components import ordered

    registries = ordered(all_registries().values())
    lines.extend(f"- [{reg.name}](#{reg.name.lower()}): {reg.description}" for reg in registries)
    for reg in registries:
        lines.extend(_registry_section(reg))
    return "\n".join(lines) + "\n"


def _registry_section(reg: Registry) -> list[str]:
    base = reg.base
    lines = [
        "",
        f"## {reg.name}",
        "",
        f"{reg.description} Entry-point group `{reg.group}`; parts subclass "
        f"`{base.__module__}.{base.__qualname__}`.",
    ]
    names = reg.names()
    if not names:
        lines += ["", "No first-party part is registered here."]
    for name in names:
        origin = reg.origin(name)
        cls = reg.get(name)
        schema = reg.schema(name)
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
        lines += ["", f"### {name}", ""]
        if doc:
            lines += [doc, ""]
        lines += [
            f"From `{origin.distribution}` (`{origin.value}`). "
            f"`vertebra template {reg.name} {name}` prints its block.",
            "",
        ]
        lines += _key_table(schema)
    return lines


def _key_table(schema: type[BaseModel]) -> list[str]:
    rows = list(_rows(schema, prefix=""))
    if not rows:
        return ["No keys besides `NAME`."]
    out = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    out += [
        f"| `{key}` | {_cell(kind)} | {default} | {_cell(text)} |"
        for key, kind, default, text in rows
    ]
    return out


def _rows(schema: type[BaseModel], prefix: str) -> typing.Iterator[tuple[str, str, str, str]]:
    import yaml
    from pydantic_core import to_jsonable_python
    from vertebra.config import SchemaBuilder, part_fields, section_model, type_text

    builder = SchemaBuilder()
    parts = part_fields(schema)
    for name, info in schema.model_fields.items():
        if name == "NAME" and not prefix:
            continue
        if name in ("WEIGHTS", "WEIGHTS_IGNORE", "WEIGHTS_STRICT"):
            continue  # keys of every part, documented once in weights.md
        key = f"{prefix}{info.alias if isinstance(info.alias, str) else name}"
        kind = type_text(schema, name, info, builder)
        model = None if name in parts else section_model(info.annotation)
        if info.is_required():
            default = "**required**"
        else:
            value = info.get_default(call_default_factory=True)
            if model is not None and value is not None:
                # A section's own defaults are in its keys' rows; say where this one differs.
                changed = value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                flow = yaml.safe_dump(changed, default_flow_style=True, width=10**6).strip()
                default = (
                    f"its keys' defaults, with `{_cell(flow)}`" if changed else "its keys' defaults"
                )
            else:
                text = yaml.safe_dump(
                    to_jsonable_python(value), default_flow_style=True, width=10**6
                )
                text = text.strip().removesuffix("...").strip()
                default = f"`{_cell(text)}`"
        yield key, kind, default, info.description or ""
        if model is not None:
            yield from _rows(model, prefix=f"{key}.")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# -- the run config page ------------------------------------------------------------------


def run_config_page() -> str:
    from vertebra.config import RunConfig, part_fields, section_model

    lines = [
        "# Run config reference",
        "",
        "The keys of each section of a run config (the YAML file `vertebra train` reads), "
        "generated from `vertebra.config.RunConfig` when this site was built. A block "
        "that holds a part (`MODEL`, `OPTIMIZER`, a loader's `DATASET`) takes the keys of the "
        "part its `NAME` picks: see the [parts reference](parts.md). `vertebra schema` writes "
        "all of it as one JSON Schema for editors.",
        "",
        "| Section | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    sections: list[tuple[str, type[BaseModel]]] = []
    rows = list(_rows(RunConfig, prefix=""))
    lines += [f"| `{k}` | {_cell(t)} | {d} | {_cell(x)} |" for k, t, d, x in rows if "." not in k]
    parts = part_fields(RunConfig)
    for name, info in RunConfig.model_fields.items():
        model = section_model(info.annotation)
        if model is not None and name not in parts:
            sections.append((name, model))
    for name, model in sections:
        lines += ["", f"## {name}", ""]
        doc = inspect.cleandoc(model.__dict__.get("__doc__") or "")
        if doc:
            lines += [doc, ""]
        lines += _key_table(model)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "site-reference")
    for rel, text in pages().items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
