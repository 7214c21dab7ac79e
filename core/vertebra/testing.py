"""Test helpers for vertebra and its plugins; also a pytest plugin (entry point `pytest11`).

`PluginSandbox` writes real distributions (a `NAME-VERSION.dist-info` folder with
`METADATA` and `entry_points.txt`, beside the package's modules) into a temporary folder
and makes the registries see exactly those distributions plus the ones it is told to
keep (by default the core's own, `vertebra`). Nothing else installed on the machine
loads, so a test never depends on which plugins happen to be installed.

The fixture `vertebra_plugins` gives a sandbox that is entered for the test and undone
after it (the folder leaves `sys.path`, its modules leave `sys.modules`).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from vertebra import discovery

__all__ = ["PluginSandbox", "vertebra_plugins", "write_distribution"]


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

    def __init__(self, root: str | Path, keep: Iterable[str] = (discovery.CORE_DISTRIBUTION,)) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = list(keep)
        self._names: list[str] = []
        self._saved_path: list[str] | None = None
        self._context: discovery.use_index | None = None

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

    def index(self) -> discovery.PluginIndex:
        return discovery.PluginIndex.scan(
            [str(self.root), *[p for p in sys.path if p != str(self.root)]],
            allow=[*self.keep, *self._names],
        )

    def rescan(self) -> None:
        importlib.invalidate_caches()
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = discovery.use_index(self.index())
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
        from vertebra.hooks import reset

        reset()


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

