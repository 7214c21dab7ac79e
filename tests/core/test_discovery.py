"""Entry-point discovery: metadata only, the scan cache, the VERTEBRA_PLUGINS allowlist."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from vertebra.model.registry import BACKBONES
from vertebra.plugins import _discovery as discovery
from vertebra.testing import write_distribution

from tests.core.conftest import ROOT, run_python


def _dist(root: Path, name: str, parts: dict[str, str], version: str = "1.0") -> Path:
    module = name.replace("-", "_")
    return write_distribution(
        root,
        name,
        version,
        {"vertebra.backbones": {part: f"{module}:{part}" for part in parts}},
        {f"{module}.py": "\n".join(parts.values()) + "\n"},
    )


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(folder))
    monkeypatch.delenv("VERTEBRA_CACHE", raising=False)
    return folder


def test_listing_imports_neither_torch_nor_pydantic_nor_plugins(tmp_path: Path) -> None:
    """In a fresh process: names, membership, unknown-name errors and `plugins list` (no pluggy)."""
    site = tmp_path / "site"
    _dist(site, "vb-probe", {"Probe": "raise RuntimeError('plugin code ran')"})
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        from vertebra.cli import main
        from vertebra.errors import UnknownPartError
        from vertebra.model.registry import BACKBONES, HEADS
        assert "Probe" in BACKBONES.names() and "Probe" in BACKBONES
        assert "MLP" in BACKBONES and "Nope" not in HEADS
        assert BACKBONES.names("pro*") == ["Probe"]
        try:
            BACKBONES.get("Prob")
        except UnknownPartError as exc:
            assert "did you mean 'Probe'?" in str(exc), exc
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["plugins", "list"]) == 0
            assert main(["plugins", "list", "--json"]) == 0
        assert "vb-probe 1.0" in out.getvalue()
        import vertebra.plugins
        from vertebra.data import DATASETS
        assert DATASETS.group == "vertebra.datasets" and "Probe" not in DATASETS
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pydantic", "pluggy", "vb_probe", "numpy"))
        assert heavy == [], heavy
        print("clean")
        """
    )
    result = run_python(code, path=[site])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_the_scan_reads_entry_points_of_the_vertebra_groups(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_distribution(
        site,
        "vb-mixed",
        "2.0",
        {
            "vertebra.backbones": {"A": "vb_mixed:A"},
            "vertebra.heads": {"B": "vb_mixed.heads:B"},
            "console_scripts": {"vb-mixed": "vb_mixed:main"},
        },
    )
    write_distribution(site, "vb-unrelated", "1.0", {"console_scripts": {"x": "x:main"}})
    rows = discovery.read_entry_points([str(site)])
    assert rows == [
        ("vertebra.backbones", "A", "vb_mixed:A", "vb-mixed", "2.0"),
        ("vertebra.heads", "B", "vb_mixed.heads:B", "vb-mixed", "2.0"),
    ]
    # The standard library module finds the same: the benchmark compares their speed.
    assert discovery.read_entry_points([str(site)], metadata=importlib.metadata) == rows


def test_the_first_copy_on_the_path_wins_even_without_vertebra_entry_points(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_distribution(first, "vb-dup", "2.0", {"console_scripts": {"x": "x:main"}})
    _dist(second, "vb-dup", {"Old": ""}, version="1.0")
    assert discovery.read_entry_points([str(first), str(second)]) == []
    assert discovery.read_entry_points([str(second), str(first)]) == [
        ("vertebra.backbones", "Old", "vb_dup:Old", "vb-dup", "1.0")
    ]


def test_egg_info_folders_give_their_name_and_version(tmp_path: Path) -> None:
    site = tmp_path / "site"
    plain = site / "vb_source_tree.egg-info"  # as `pip install -e` leaves in a source tree
    plain.mkdir(parents=True)
    (plain / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: vb-source-tree\nVersion: 0.4\n\nBody\n"
    )
    (plain / "entry_points.txt").write_text("[vertebra.necks]\nN = vb_source_tree:N\n")
    legacy = site / "vb_legacy-3.1-py3.11.egg-info"
    legacy.mkdir()
    (legacy / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: vb-legacy\nVersion: 3.1\n")
    (legacy / "entry_points.txt").write_text("[vertebra.heads]\nH = vb_legacy:H\n")
    rows = sorted(discovery.read_entry_points([str(site)]))
    assert rows == [
        ("vertebra.heads", "H", "vb_legacy:H", "vb-legacy", "3.1"),
        ("vertebra.necks", "N", "vb_source_tree:N", "vb-source-tree", "0.4"),
    ]


def test_comments_blank_lines_and_odd_spacing_in_entry_points_txt(tmp_path: Path) -> None:
    folder = write_distribution(tmp_path, "vb-spacing", "1.0")
    (folder / "entry_points.txt").write_text(
        "# comment\n\n[ vertebra.backbones ]\n  Spaced =   vb_spacing : Spaced  \n; other\n"
        "[vertebra.heads]\nno equals sign here\n"
    )
    (row,) = discovery.read_entry_points([str(tmp_path)])
    assert row == ("vertebra.backbones", "Spaced", "vb_spacing : Spaced", "vb-spacing", "1.0")
    info = discovery.EntryPointInfo(*row)
    assert (info.module, info.attr) == ("vb_spacing", "Spaced")


def test_the_scan_finds_what_importlib_metadata_finds(tmp_path: Path) -> None:
    """Folders listed directly, a zip file and an egg on the path: the same rows."""
    import importlib_metadata

    site = tmp_path / "site"
    _dist(site, "vb-plain", {"Plain": ""})
    _dist(site, "vb-plain", {"Shadowed": ""}, version="0.9")  # a second copy in one folder
    upper = write_distribution(site, "vb-upper", "1.0", {"vertebra.heads": {"Up": "vb_upper:Up"}})
    upper.rename(site / "vb_upper-1.0.DIST-INFO")  # suffixes match in any case
    source = site / "vb_nover.egg-info"  # no version in the folder name: read from PKG-INFO
    source.mkdir()
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: vb-nover\nVersion: 0.3\n")
    (source / "entry_points.txt").write_text("[vertebra.necks]\nN = vb_nover:N\n")
    egg = tmp_path / "vb_egg-2.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: vb-egg\nVersion: 2.0\n"
    )
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[vertebra.losses]\nL = vb_egg:L\n")
    zipped = tmp_path / "zipped.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("vb_zipped-1.5.dist-info/METADATA", "Name: vb-zipped\nVersion: 1.5\n")
        archive.writestr(
            "vb_zipped-1.5.dist-info/entry_points.txt", "[vertebra.backbones]\nZ = vb_zipped:Z\n"
        )
    path = [str(site), str(egg), str(zipped), str(tmp_path / "missing"), str(site / "vb_plain.py")]
    rows = discovery.read_entry_points(path)
    assert len(rows) == 5, rows
    assert [r for r in rows if r[3] == "vb-plain"] in (
        [("vertebra.backbones", "Plain", "vb_plain:Plain", "vb-plain", "1.0")],
        [("vertebra.backbones", "Shadowed", "vb_plain:Shadowed", "vb-plain", "0.9")],
    )
    assert ("vertebra.necks", "N", "vb_nover:N", "vb-nover", "0.3") in rows
    assert ("vertebra.losses", "L", "vb_egg:L", "vb-egg", "2.0") in rows
    assert ("vertebra.backbones", "Z", "vb_zipped:Z", "vb-zipped", "1.5") in rows
    # The same rows, each name's winning copy included (a row holds its version). The order
    # across names is not compared: importlib_metadata before 10 (which mlflow-skinny
    # requires), once imported, puts its own finder before the standard library's, and it
    # yields a folder's distributions in another order; which copy of a name wins is the same.
    assert sorted(rows) == sorted(discovery.read_entry_points(path, metadata=importlib.metadata))
    assert sorted(rows) == sorted(discovery.read_entry_points(path, metadata=importlib_metadata))


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("entry-points-*.json"))


def test_the_cache_is_used_and_invalidated_by_any_change(tmp_path: Path, cache_dir: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "vb-one", {"One": ""})
    path = [str(site)]
    first = discovery.PluginIndex.scan(path)
    assert [e.name for e in first.entries] == ["One"]
    (file,) = _cache_files(cache_dir)
    # Prove the second scan reads the file: plant a row that no distribution declares.
    data = json.loads(file.read_text())
    data["entries"].append(["vertebra.heads", "Planted", "x:Planted", "vb-one", "1.0"])
    file.write_text(json.dumps(data))
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["One", "Planted"]
    assert [e.name for e in discovery.PluginIndex.scan(path, cache=False).entries] == ["One"]

    # Rewriting entry_points.txt in place (same folder, same size) changes the key.
    ep = site / "vb_one-1.0.dist-info" / "entry_points.txt"
    before = ep.stat().st_mtime_ns
    ep.write_text(ep.read_text().replace("One = ", "Uno = "))
    # As a rewrite a second later leaves it, whatever the file system's clock resolution.
    os.utime(ep, ns=(before + 10**9, before + 10**9))
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["Uno"]
    # Installing another distribution changes it.
    _dist(site, "vb-two", {"Two": ""})
    assert sorted(e.name for e in discovery.PluginIndex.scan(path).entries) == ["Two", "Uno"]
    # Removing one changes it.
    for item in (site / "vb_two-1.0.dist-info").iterdir():
        item.unlink()
    (site / "vb_two-1.0.dist-info").rmdir()
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["Uno"]
    # A damaged cache file is ignored and replaced.
    for item in _cache_files(cache_dir):
        item.write_text("{not json")
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["Uno"]
    # So is one nested far deeper than any cache vertebra writes (no RecursionError).
    for item in _cache_files(cache_dir):
        item.write_text("[" * 100_000)
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["Uno"]


def test_a_cache_file_is_read_only_for_the_state_stored_in_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    site = tmp_path / "site"
    _dist(site, "vb-one", {"One": ""})
    path = [str(site)]
    discovery.PluginIndex.scan(path)
    (file,) = _cache_files(cache_dir)
    # Another state whose checksum names the same file (as a collision would): scanned again.
    data = json.loads(file.read_text())
    data["state"] = data["state"].replace("vb_one", "vb_other")
    data["entries"] = [["vertebra.heads", "Planted", "x:Planted", "vb-one", "1.0"]]
    file.write_text(json.dumps(data))
    assert [e.name for e in discovery.PluginIndex.scan(path).entries] == ["One"]
    assert json.loads(file.read_text())["entries"][0][1] == "One"  # and stored again


def test_the_cache_can_be_switched_off_and_keeps_few_files(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    monkeypatch.setenv("VERTEBRA_CACHE", "0")
    _dist(site, "vb-one", {"One": ""})
    assert [e.name for e in discovery.PluginIndex.scan([str(site)]).entries] == ["One"]
    assert not cache_dir.exists()
    monkeypatch.delenv("VERTEBRA_CACHE")
    for i in range(12):
        _dist(site, f"vb-n{i}", {f"N{i}": ""})
        discovery.PluginIndex.scan([str(site)])
    assert len(_cache_files(cache_dir)) == 8


def test_an_unwritable_cache_folder_only_costs_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(blocker / "cache"))  # under a file: fails
    site = tmp_path / "site"
    _dist(site, "vb-one", {"One": ""})
    assert [e.name for e in discovery.PluginIndex.scan([str(site)]).entries] == ["One"]


def test_the_fingerprint_follows_the_path_and_its_metadata(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _dist(a, "vb-one", {"One": ""})
    b.mkdir()
    key = discovery.fingerprint([str(a), str(b)])
    assert key == discovery.fingerprint([str(a), str(b)])
    assert key != discovery.fingerprint([str(b), str(a)])
    assert key != discovery.fingerprint([str(a), str(b), str(tmp_path / "missing")])
    (b / "plain_module.py").write_text("")  # not metadata: no change
    assert key == discovery.fingerprint([str(a), str(b)])


ALLOWLIST_PROBE = textwrap.dedent(
    """
    from vertebra.errors import UnknownPartError
    from vertebra.model.registry import BACKBONES
    print(",".join(n for n in BACKBONES.names() if n in ("One", "Two", "MLP")))
    try:
        BACKBONES.get("Two")
    except UnknownPartError as exc:
        print(exc)
    """
)


@pytest.mark.parametrize(
    ("value", "names", "message"),
    [
        (None, "MLP,One,Two", None),
        (
            "vb-one",
            "MLP,One",
            "'Two' is not a registered backbone; it is offered by distribution "
            "'vb-two', which VERTEBRA_PLUGINS does not load (add it to VERTEBRA_PLUGINS or unset "
            "the variable)",
        ),
        (" vb_one , vb-two ,", "MLP,One,Two", None),
        (
            "",
            "MLP",
            "'Two' is not a registered backbone; it is offered by distribution 'vb-two', "
            "which VERTEBRA_PLUGINS does not load (add it to VERTEBRA_PLUGINS or unset the "
            "variable)",
        ),
    ],
    ids=["unset-loads-all", "list", "names-normalized", "empty-loads-only-the-core"],
)
def test_the_vertebra_plugins_allowlist(
    tmp_path: Path, value: str | None, names: str, message: str | None
) -> None:
    site = tmp_path / "site"
    _dist(site, "vb-one", {"One": ""})
    _dist(site, "vb-two", {"Two": "raise RuntimeError('plugin code ran')"})
    env = {} if value is None else {"VERTEBRA_PLUGINS": value}
    result = run_python(ALLOWLIST_PROBE, path=[site], env=env)
    lines = result.stdout.splitlines()
    assert lines[0] == names, result.stderr
    if message is None:
        # Two loads (and its module raises): the error is its own load error.
        assert "Two" in names and "plugin code ran" in result.stderr
    else:
        assert lines[1:] == [message]


def test_refresh_reads_the_allowlist_again_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _dist(site, "vb-one", {"One": ""})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VERTEBRA_PLUGINS", "")
    discovery.refresh()
    assert "One" not in BACKBONES and "MLP" in BACKBONES
    monkeypatch.setenv("VERTEBRA_PLUGINS", "vb-one")
    discovery.refresh()
    assert "One" in BACKBONES
    assert discovery.current_index().distributions()["vb-one"] == "1.0"


def test_as_json_and_groups(tmp_path: Path) -> None:
    write_distribution(
        tmp_path, "vb-j", "1.0", {"vertebra.heads": {"H": "m:H"}, "vertebra.necks": {"N": "m:N"}}
    )
    index = discovery.PluginIndex.scan([str(tmp_path)], cache=False)
    assert index.groups() == ["vertebra.heads", "vertebra.necks"]
    assert discovery.as_json(index)[0] == {
        "group": "vertebra.heads",
        "name": "H",
        "value": "m:H",
        "distribution": "vb-j",
        "version": "1.0",
        "enabled": True,
    }


def test_the_installed_project_is_found_once(tmp_path: Path) -> None:
    """The core is installed editable: its dist-info and its source tree's egg-info agree."""
    rows = discovery.read_entry_points(sys.path)
    core = [r for r in rows if r[3] == "vertebra"]
    assert (
        "vertebra.backbones",
        "MLP",
        "vertebra.model.backbones.mlp:MLP",
        "vertebra",
        "0.1.0",
    ) in core
    assert len(core) == len(set(core))
    assert os.path.isdir(ROOT / "core" / "vertebra")


def test_listing_knows_every_registry_group_without_importing_the_registries() -> None:
    code = textwrap.dedent(
        """
        import sys
        from vertebra.plugins._registries import CORE_GROUPS, all_registries
        assert "vertebra.model.registry" not in sys.modules
        print(sorted(CORE_GROUPS) == sorted(r.group for r in all_registries().values()))
        """
    )
    result = run_python(code)
    assert result.stdout.strip() == "True", result.stderr
