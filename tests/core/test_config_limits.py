"""The bounds on what a config may be, in process: sizes, depth, values after aliases.

`test_hostile_configs.py` feeds the command line whole hostile files under a time and
memory limit; these tests pin each rule and its message with small files, the limits
lowered through their environment variables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from vertebra import config
from vertebra.config import _files
from vertebra.errors import ConfigError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(error: pytest.ExceptionInfo[ConfigError]) -> str:
    (issue,) = error.value.issues
    return str(issue)


def test_the_defaults_are_documented_values() -> None:
    assert config._files.limits() == _files.Limits(
        max_bytes=8 * 1024 * 1024, max_depth=100, max_nodes=200_000
    )


def test_an_environment_variable_that_is_not_a_count_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "lots")
    with pytest.raises(ConfigError, match="VERTEBRA_CONFIG_MAX_NODES='lots' is not a whole number"):
        config.loads("A: 1\n")


def test_the_fast_loader_is_libyaml_where_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    assert issubclass(_files._Loader, yaml.CSafeLoader)


def test_size_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "64")
    path = write(tmp_path, "big.yaml", "A: '" + "x" * 100 + "'\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.source == str(path)
    assert "larger than 64 bytes" in refusal(info)
    assert "VERTEBRA_CONFIG_MAX_BYTES" in refusal(info)
    with pytest.raises(ConfigError, match="larger than 64 bytes"):
        config.loads("A: '" + "x" * 100 + "'\n")
    # Exactly at the limit is fine.
    at_limit = write(tmp_path, "ok.yaml", "A: '" + "x" * 58 + "'\n")
    assert at_limit.stat().st_size == 64
    assert config.load(at_limit) == {"A": "x" * 58}


@pytest.mark.parametrize(
    "text",
    [
        "A: [[[[[1]]]]]\n",  # flow
        "A:\n  B:\n    C:\n      D:\n        E: 1\n",  # block
        "A: &a [[1]]\nB: &b [[*a]]\nC: [[*b]]\n",  # shallow as written, deep once expanded
        "A: &a [1, *a]\n",  # an alias inside the value it names: deep without end
    ],
    ids=["flow", "block", "aliases", "self"],
)
def test_nesting_deeper_than_the_limit_is_refused(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_DEPTH", "4")
    with pytest.raises(ConfigError) as info:
        config.loads(text, source="deep.yaml")
    assert info.value.source == "deep.yaml"
    assert refusal(info) == (
        "nested deeper than 4 levels of mappings and lists, the most a config may nest "
        "(set VERTEBRA_CONFIG_MAX_DEPTH to raise the limit)"
    )


def test_nesting_at_the_limit_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_DEPTH", "4")
    assert config.loads("A: [[[1]]]\n") == {"A": [[[1]]]}


def test_deep_nesting_past_libyaml_s_own_limit_is_the_same_refusal() -> None:
    with pytest.raises(ConfigError, match="nested deeper than 100 levels"):
        config.loads("A: " + "[" * 5000 + "]" * 5000 + "\n")


def test_values_are_counted_after_aliases_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "200")
    # 25 values as written. Expanded, every mapping, key, list and scalar counts once per
    # place: A 4, B 1 + 4 * 4 = 17, C 1 + 4 * 17 = 69, D 1 + 2 * 69 = 139, and the top
    # mapping with its 4 keys: 234.
    text = "A: &a [1, 2, 3]\nB: &b [*a, *a, *a, *a]\nC: &c [*b, *b, *b, *b]\nD: [*c, *c]\n"
    with pytest.raises(ConfigError) as info:
        config.loads(text)
    assert refusal(info) == (
        "more than 200 values after aliases are expanded, the most a config may hold "
        "(set VERTEBRA_CONFIG_MAX_NODES to raise the limit)"
    )
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "234")
    assert config.loads(text)["D"][1][3][0] == [1, 2, 3]


def test_a_billion_laughs_is_counted_without_expanding_it() -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(ConfigError, match="values after aliases"):
        config.loads("\n".join(lines))


def test_json_files_have_the_same_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = write(tmp_path, "deep.json", '{"A": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(ConfigError, match="nested deeper than 100 levels") as info:
        config.load(deep)
    assert info.value.source == str(deep)
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_DEPTH", "3")
    with pytest.raises(ConfigError, match="nested deeper than 3 levels"):
        config.load(write(tmp_path, "a.json", json.dumps({"A": [[[1]]]})))
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "10")
    with pytest.raises(ConfigError, match="more than 10 values"):
        config.load(write(tmp_path, "b.json", json.dumps({"A": list(range(20))})))


def test_includes_and_overrides_add_up_to_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "11")
    write(tmp_path, "base.yaml", "A: [1, 2, 3, 4]\n")  # 7 values
    top = write(tmp_path, "top.yaml", "_BASE: base.yaml\nB: [1, 2, 3]\n")  # 8; merged 12
    with pytest.raises(ConfigError) as info:
        config.load(top)
    assert info.value.source == str(top)
    assert refusal(info).startswith("more than 11 values after aliases are expanded")
    assert refusal(info).endswith("once its includes and --set overrides are applied")
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_NODES", "19")
    assert len(config.load(top)) == 2
    with pytest.raises(ConfigError, match="more than 19 values"):
        config.load(top, ["C=[1, 2, 3, 4, 5, 6]"])  # 12 + 8


def test_a_file_included_many_times_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each file names the next twice: 2**11 - 1 reads without a cache, 2**40 with 40 files.
    for i in range(10):
        write(tmp_path, f"f{i}.yaml", f"_BASE: [f{i + 1}.yaml, f{i + 1}.yaml]\nK{i}: {i}\n")
    write(tmp_path, "f10.yaml", "K10: 10\n")
    reads: list[Path] = []
    read = _files._read

    def counting(path: Path, *args: object) -> str:
        reads.append(path)
        return read(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_files, "_read", counting)
    data = config.load(tmp_path / "f0.yaml")
    assert data == {f"K{i}": i for i in range(10, -1, -1)}
    assert len(reads) == 11


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: __import__("os").mkfifo(p), "a FIFO (named pipe)"),
    ],
    ids=["folder", "fifo"],
)
def test_only_regular_files_are_read(tmp_path: Path, make: object, kind: str) -> None:
    target = tmp_path / "target"
    make(target)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        config.load(target)
    assert refusal(info) == f"not a regular file but {kind}: {target}"
    top = write(tmp_path, "top.yaml", "_BASE: target\n")
    with pytest.raises(ConfigError) as info:
        config.load(top)
    assert info.value.source == str(top)
    assert refusal(info) == f"_BASE: not a regular file but {kind}: {target}"


def test_a_device_is_not_read() -> None:
    with pytest.raises(ConfigError) as info:
        config.load("/dev/zero")
    assert refusal(info) == "not a regular file but a character device: /dev/zero"


def test_set_values_have_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_DEPTH", "3")
    with pytest.raises(ConfigError) as info:
        config.apply_overrides({}, ["A=[[[[1]]]]"], source="run.yaml")
    assert str(info.value) == (
        "1 error in the --set overrides of run.yaml:\n"
        "  A (from --set 'A=[[[[1]]]]'): nested deeper than 3 levels of mappings and lists, the "
        "most a config may nest (set VERTEBRA_CONFIG_MAX_DEPTH to raise the limit)"
    )
    with pytest.raises(ConfigError, match="nested deeper than 3 levels"):
        config.apply_overrides({}, ["A.B.C.D=1"])
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "10")
    with pytest.raises(ConfigError, match="larger than 10 bytes"):
        config.apply_overrides({}, ["A=" + "x" * 11])


def test_data_files_are_read_within_the_same_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read_bytes and parse_json: what a plugin's dataset reads (a captions file) is held to
    # the limits a config is, each refusal naming the file (and line).
    data = write(tmp_path, "captions.jsonl", '{"a": 1}\n' * 20)
    assert config.read_bytes(data) == b'{"a": 1}\n' * 20
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "50")
    with pytest.raises(ConfigError, match="larger than 50 bytes") as error:
        config.read_bytes(data, "captions file")
    assert str(data) in str(error.value)
    with pytest.raises(ConfigError, match="not a regular file but a folder"):
        config.read_bytes(tmp_path)
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_DEPTH", "3")
    assert config.parse_json("[[1], 2]", "x.jsonl:1") == [[1], 2]
    with pytest.raises(ConfigError, match="nested deeper than 3 levels") as error:
        config.parse_json("[[[[1]]]]", "x.jsonl:7")
    assert "x.jsonl:7" in str(error.value)
    with pytest.raises(ConfigError, match="nested deeper"):
        config.parse_json("[" * 100_000 + "]" * 100_000, "x.jsonl:8")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        config.parse_json('{"a": 1, "a": 2}', "x.jsonl:9")
    with pytest.raises(ConfigError, match="invalid JSON"):
        config.parse_json('{"a": ', "x.jsonl:10")
