"""Test helpers for vertebra and its plugins; also a pytest plugin (entry point `pytest11`).

`PluginSandbox` writes real distributions (a `NAME-VERSION.dist-info` folder with
`METADATA` and `entry_points.txt`, beside the package's modules) into a temporary folder
and makes the registries see exactly those distributions plus the ones it is told to
keep (by default the core's own, `vertebra`). Nothing else installed on the machine
loads, so a test never depends on which plugins happen to be installed.

The fixture `vertebra_plugins` gives a sandbox that is entered for the test and undone
after it (the folder leaves `sys.path`, its modules leave `sys.modules`).

`check_part(registry, name, example_cfg, example_input)` checks one part the way vertebra
uses it: it loads, its schema describes every key, its template round-trips, it builds
and it runs. Plugin authors call it from their own tests.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from vertebra import plugins

if TYPE_CHECKING:
    from vertebra.config._schema import PartConfig
    from vertebra.plugins import Registry

__all__ = ["CheckedPart", "PluginSandbox", "check_part", "vertebra_plugins", "write_distribution"]


def write_distribution(
    root: str | Path,
    name: str,
    version: str = "0.1.0",
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write an installed distribution into `root` and return its `.dist-info` folder.

    `entry_points` maps group -> {entry name: "module:attr"}; `files` maps paths relative
    to `root` (`my_plugin/__init__.py`) to their text, dedented.
    """
    root = Path(root)
    folder = root / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines: list[str] = []
    for group, entries in (entry_points or {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
        lines.append("")
    (folder / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    (folder / "INSTALLER").write_text("vertebra.testing\n", encoding="utf-8")
    for rel, text in (files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


class PluginSandbox:
    """Registries that see only the distributions written here plus those in `keep`."""

    def __init__(
        self, root: str | Path, keep: Iterable[str] = (plugins.CORE_DISTRIBUTION,)
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = list(keep)
        self._names: list[str] = []
        self._saved_path: list[str] | None = None
        self._context: plugins.use_index | None = None

    def add(
        self,
        name: str,
        entry_points: Mapping[str, Mapping[str, str]] | None = None,
        files: Mapping[str, str] | None = None,
        version: str = "0.1.0",
    ) -> Path:
        """Write a distribution; the registries see it at once when the sandbox is active."""
        folder = write_distribution(self.root, name, version, entry_points, files)
        self._names.append(name)
        if self._context is not None:
            self.rescan()
        return folder

    def index(self) -> plugins.PluginIndex:
        return plugins.PluginIndex.scan(
            [str(self.root), *[p for p in sys.path if p != str(self.root)]],
            allow=[*self.keep, *self._names],
        )

    def rescan(self) -> None:
        importlib.invalidate_caches()
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = plugins.use_index(self.index())
        self._context.__enter__()

    def __enter__(self) -> PluginSandbox:
        self._saved_path = list(sys.path)
        sys.path.insert(0, str(self.root))
        self.rescan()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._context is not None:
            self._context.__exit__(exc_type, exc, tb)
            self._context = None
        if self._saved_path is not None:
            sys.path[:] = self._saved_path
        root = str(self.root.resolve())
        for mod_name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if file and str(Path(file).resolve()).startswith(root):
                del sys.modules[mod_name]
        from vertebra.plugins._hooks import reset

        reset()


@dataclass
class CheckedPart:
    """What `check_part` built and saw."""

    #: The part built from `{"NAME": name, **example_cfg}`.
    part: Any
    #: Its validated config.
    config: PartConfig
    #: What it returned for `example_input` (None when no input was given).
    output: Any
    #: Its YAML template, as `vertebra template` prints it.
    template: str


def check_part(
    registry: Registry | str,
    name: str,
    example_cfg: Mapping[str, Any] | None = None,
    example_input: Any = None,
    *,
    build_kwargs: Mapping[str, Any] | None = None,
) -> CheckedPart:
    """Check part `name` the way vertebra uses it; raise `AssertionError` saying what is wrong.

    - `name` is registered (`registry` is a `Registry`, or a name like `BACKBONES` or
      `backbones`), its class loads and has the registry's base class;
    - its schema is a `PartConfig` whose every key has a description, and its JSON Schema
      (what `vertebra schema` writes) can be generated;
    - its template (`vertebra template`) has no tabs, loads with vertebra's YAML reader,
      holds every key with its default (the weights keys for model parts only), and
      validates once each `???` has a value (taken from
      `example_cfg`, else from the field's `examples`, else made up from its type);
    - it builds from its defaults alone where they suffice, and from
      `{"NAME": name, **example_cfg}`; `build_kwargs` go to `build` (an optimizer's
      `params`, say);
    - given `example_input`, it runs: a tuple is passed as positional arguments, a dict as
      keyword arguments, anything else as the one argument; floating-point tensors in the
      output must be finite.
    """
    from vertebra.config._files import loads
    from vertebra.config._template import (
        PLACEHOLDER,
        example_config,
        left_out,
        placeholders,
        render,
    )
    from vertebra.errors import VertebraError

    reg = plugins.registry_for(registry) if isinstance(registry, str) else registry
    label = f"{reg.name} {name}"
    if name not in reg:
        raise AssertionError(
            f"{label} is not registered; registered: {', '.join(reg.names()) or 'none'}. "
            f"Is its entry point in group '{reg.group}' and the distribution (re)installed?"
        )
    try:
        checked = plugins.diagnose_part(reg, name, build_kwargs=build_kwargs)
    except VertebraError as exc:  # a name that several distributions offer
        raise AssertionError(f"{label} does not load: {exc}") from exc
    if checked.errors:
        count = len(checked.errors)
        lines = [f"{label} has {count} problem{'s' if count != 1 else ''}:"]
        for p in checked.errors:
            lines.extend([f"  [{p.kind}] {p.message}", f"    fix: {p.fix}"])
        raise AssertionError("\n".join(lines))
    schema = checked.schema
    assert schema is not None  # it loaded: no error above

    text = render(reg, name)
    if "\t" in text:
        raise AssertionError(f"{label}: its template holds a tab, which YAML rejects:\n{text}")
    try:
        loaded = loads(text, source=f"the template of {label}")
    except VertebraError as exc:
        raise AssertionError(f"{label}: its template does not load: {exc}\n{text}") from exc
    hidden = left_out(reg, name)
    missing = [k for k in schema.model_fields if k not in loaded and k not in hidden]
    if missing or loaded.get("NAME") != name:
        raise AssertionError(f"{label}: its template lacks {missing or ['NAME']}:\n{text}")
    given = dict(example_cfg or {})
    needed = {path.split(".")[0].split("[")[0] for path in placeholders(loaded)}
    try:
        filled = example_config(reg, name, {k: given[k] for k in needed if k in given})
        reg.validate(filled)
    except (VertebraError, ValueError) as exc:
        raise AssertionError(
            f"{label}: its template does not validate once its {PLACEHOLDER} are filled: {exc}\n"
            f"Pass example_cfg with values for {', '.join(sorted(needed)) or 'its keys'}."
        ) from exc

    kwargs = dict(build_kwargs or {})
    try:
        config = reg.validate({**given, "NAME": name})
    except VertebraError as exc:
        raise AssertionError(f"{label}: example_cfg does not validate: {exc}") from exc
    try:
        part = reg.build(config, **kwargs)
    except Exception as exc:
        raise AssertionError(
            f"{label} does not build from {dict(given)}: {type(exc).__name__}: {exc}"
        ) from exc
    output = None
    if example_input is not None:
        if isinstance(example_input, tuple):
            output = part(*example_input)
        elif isinstance(example_input, Mapping):
            output = part(**example_input)
        else:
            output = part(example_input)
        bad = _non_finite(output)
        if bad:
            raise AssertionError(f"{label} returned non-finite values at {bad}")
    return CheckedPart(part=part, config=config, output=output, template=text)


def _non_finite(value: Any, where: str = "output") -> str | None:
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return where
        return None
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}[{key!r}]")
        if found:
            return found
    return None


try:  # the pytest plugin part; pytest is only needed when it runs
    import pytest
except ImportError:  # pragma: no cover - vertebra itself does not need pytest
    pass
else:

    @pytest.fixture
    def vertebra_plugins(tmp_path: Path) -> Iterator[PluginSandbox]:
        """A `PluginSandbox` in a temporary folder, active for the test."""
        with PluginSandbox(tmp_path / "vertebra-plugins") as sandbox:
            yield sandbox
