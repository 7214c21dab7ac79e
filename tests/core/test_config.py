"""Config files: YAML and JSON, numbers, `_BASE` includes, `_DELETE`, overrides, dump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from vertebra import config
from vertebra.errors import ConfigError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def issues(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(i) for i in error.value.issues]


def test_numbers_that_plain_pyyaml_reads_as_strings_are_numbers() -> None:
    data = config.loads(
        "LR: 5e-4\nSTEPS: 1e5\nEPS: 10e-4\nPLUS: +1E2\nDOT: .5\nNEG: -.5\nOK: 1.0e-3\n"
        "INT: 10\nUNDERSCORE: 1_000\nINF: .inf\nWORD: e5\nQUOTED: '1e5'\nVERSION: 1.2.3\n"
    )
    assert data == {
        "LR": 5e-4,
        "STEPS": 1e5,
        "EPS": 1e-3,
        "PLUS": 100.0,
        "DOT": 0.5,
        "NEG": -0.5,
        "OK": 1e-3,
        "INT": 10,
        "UNDERSCORE": 1000,
        "INF": float("inf"),
        "WORD": "e5",
        "QUOTED": "1e5",
        "VERSION": "1.2.3",
    }
    assert type(data["STEPS"]) is float and type(data["INT"]) is int


def test_booleans_and_integers_follow_yaml_1_2() -> None:
    data = config.loads(
        "A: yes\nB: off\nC: True\nD: FALSE\nE: 017\nF: 0o17\nG: 0x1F\nH: 1:30\n"
        "I: -3\nJ: +7\nK: 0b101\nL: ~\nM: Null\nN: 0\n"
    )
    assert data == {
        "A": "yes",  # YAML 1.1 (plain PyYAML): True
        "B": "off",  # YAML 1.1: False
        "C": True,
        "D": False,
        "E": 17,  # YAML 1.1: 15 (octal)
        "F": 15,
        "G": 31,
        "H": "1:30",  # YAML 1.1: 90 (sexagesimal)
        "I": -3,
        "J": 7,
        "K": "0b101",  # not a YAML 1.2 integer
        "L": None,
        "M": None,
        "N": 0,
    }
    assert type(data["N"]) is int and type(data["C"]) is bool


def test_dumped_strings_read_back_as_strings_here_and_in_yaml_1_1() -> None:
    tricky = ["yes", "Off", "017", "0o7", "1e5", "1:30", "true", "null", "12", "x", ".5"]
    values = {"S": tricky, "N": [1e-05, 17, True, None, 0.5]}
    text = config.dump(values)
    assert config.loads(text) == values
    assert yaml.safe_load(text) == values  # plain PyYAML (YAML 1.1) agrees


def test_json_files_and_yaml_files_give_the_same_config(tmp_path: Path) -> None:
    expected = {"MODEL": {"NAME": "Classifier", "LR": 0.0005, "TOPK": [1, 5], "NECK": None}}
    as_json = write(tmp_path, "a.json", json.dumps(expected))
    as_yaml = write(
        tmp_path, "a.yaml", "MODEL:\n  NAME: Classifier\n  LR: 5e-4\n  TOPK: [1, 5]\n  NECK: null\n"
    )
    assert config.load(as_json) == expected == config.load(as_yaml)
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "bad.json", '{"MODEL": {"NAME": "x",}}'))
    assert str(info.value) == (
        f"1 error in {tmp_path / 'bad.json'}:\n"
        "  line 1, column 24: invalid JSON: Expecting property name enclosed in double quotes"
    )
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "list.json", "[1, 2]"))
    assert issues(info) == ["the top level must be a mapping of keys, got list"]
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, "dup.json", '{"A": 1, "A": 2}'))
    assert issues(info) == ["invalid JSON: duplicate key 'A'"]


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "empty.yaml", "# nothing yet\n")) == {}


def test_base_includes_merge_deeply_and_lists_replace(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bases/model.yaml",
        """
        MODEL:
          NAME: Classifier
          BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [256, 256]}
          HEAD: {NAME: ClassifierHead, NUM_CLASSES: 10}
          METRICS: [{NAME: AccuracyMetric, TOPK: [1]}]
        """.replace("\n        ", "\n"),
    )
    write(tmp_path, "bases/train.yaml", "TRAIN: {EPOCHS: 10, SEED: 0}\nMODEL: {HEAD: {DIM: 256}}\n")
    top = write(
        tmp_path,
        "run.yaml",
        "_BASE: [bases/model.yaml, bases/train.yaml]\n"
        "MODEL:\n  BACKBONE: {HIDDEN: [32]}\n  METRICS: []\nTRAIN: {EPOCHS: 2}\n",
    )
    assert config.load(top) == {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [32]},
            "HEAD": {"NAME": "ClassifierHead", "NUM_CLASSES": 10, "DIM": 256},
            "METRICS": [],
        },
        "TRAIN": {"EPOCHS": 2, "SEED": 0},
    }


def test_includes_nest_and_take_mmengine_spelling(tmp_path: Path) -> None:
    write(tmp_path, "a/base.yaml", "X: {A: 1, B: 1}\n")
    write(tmp_path, "a/b/mid.json", json.dumps({"_base_": "../base.yaml", "X": {"B": 2}}))
    top = write(tmp_path, "top.yaml", "_BASE: a/b/mid.json\nX: {C: 3}\n")
    assert config.load(top) == {"X": {"A": 1, "B": 2, "C": 3}}


def test_a_diamond_of_includes_is_no_loop(tmp_path: Path) -> None:
    write(tmp_path, "common.yaml", "A: 1\n")
    write(tmp_path, "left.yaml", "_BASE: common.yaml\nL: 1\n")
    write(tmp_path, "right.yaml", "_BASE: common.yaml\nR: 1\n")
    top = write(tmp_path, "top.yaml", "_BASE: [left.yaml, right.yaml]\n")
    assert config.load(top) == {"A": 1, "L": 1, "R": 1}


def test_delete_replaces_a_mapping_instead_of_merging(tmp_path: Path) -> None:
    write(
        tmp_path,
        "base.yaml",
        "MODEL:\n  BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [8]}\n  NAME: C\n",
    )
    top = write(
        tmp_path,
        "top.yaml",
        "_BASE: base.yaml\nMODEL:\n  BACKBONE: {_DELETE: true, NAME: ResNet, DEPTH: 18}\n"
        "  NEW: {_DELETE: true, K: 1}\n  KEEP: {_DELETE: false, K: 2}\n",
    )
    assert config.load(top) == {
        "MODEL": {
            "BACKBONE": {"NAME": "ResNet", "DEPTH": 18},
            "NAME": "C",
            "NEW": {"K": 1},
            "KEEP": {"K": 2},
        }
    }
    # Without a base the marker is dropped as well: it is never a setting.
    assert config.load(
        write(tmp_path, "alone.yaml", "A: {_DELETE: true, B: [{_DELETE: true}]}\n")
    ) == {"A": {"B": [{}]}}


def test_include_loops_and_missing_includes_are_errors(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "_BASE: sub/b.yaml\n")
    write(tmp_path, "sub/b.yaml", "_BASE: ../a.yaml\n")
    with pytest.raises(ConfigError) as info:
        config.load(a)
    assert str(info.value) == (
        f"1 error in {tmp_path / 'sub' / 'b.yaml'}:\n"
        f"  _BASE: include loop: {a} -> {tmp_path / 'sub' / 'b.yaml'} -> {a}"
    )
    itself = write(tmp_path, "self.yaml", "_BASE: self.yaml\n")
    with pytest.raises(ConfigError) as info:
        config.load(itself)
    assert issues(info) == [f"_BASE: include loop: {itself} -> {itself}"]
    missing = write(tmp_path, "missing.yaml", "_BASE: nowhere.yaml\n")
    with pytest.raises(ConfigError) as info:
        config.load(missing)
    assert str(info.value) == (
        f"1 error in {missing}:\n  _BASE: included file not found: {tmp_path / 'nowhere.yaml'}"
    )
    bad = write(tmp_path, "bad.yaml", "_BASE: [3]\n")
    with pytest.raises(ConfigError) as info:
        config.load(bad)
    assert issues(info) == ["_BASE: expected a file path or a list of them, got 3"]
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "absent.yaml")
    assert str(info.value) == f"1 error:\n  config file not found: {tmp_path / 'absent.yaml'}"
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    assert issues(info) == [f"not a regular file but a folder: {tmp_path}"]


def test_an_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "A: [1, 2\n")
    top = write(tmp_path, "top.yaml", "_BASE: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        config.load(top)
    assert info.value.source == str(tmp_path / "base.yaml")
    assert issues(info)[0].startswith(
        "line 2, column 1: invalid YAML: did not find expected ',' or ']'"
    )


def test_yaml_problems_name_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        config.loads("A:\n  B: 1\n C: 2\n", source="x.yaml")
    assert str(info.value).startswith("1 error in x.yaml:\n  line 3, column 2: invalid YAML: ")
    with pytest.raises(ConfigError) as info:
        config.loads("A: 1\nB: {X: 1}\nA: 2\n")
    assert issues(info) == [
        "line 3, column 1: invalid YAML: duplicate key 'A' (first given on line 1)"
    ]
    with pytest.raises(ConfigError) as info:
        config.loads("just a string")
    assert issues(info) == ["the top level must be a mapping of keys, got str"]
    # Only safe tags: a config cannot construct Python objects.
    with pytest.raises(ConfigError) as info:
        config.loads("A: !!python/object/apply:os.system ['true']\n")
    assert "could not determine a constructor" in issues(info)[0]


def test_merge_keys_may_be_overridden_beside_them() -> None:
    data = config.loads("base: &b {X: 1, Y: 2}\nuse:\n  <<: *b\n  X: 3\n")
    assert data["use"] == {"X": 3, "Y": 2}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("MODEL.HEAD.NUM_CLASSES=100", 100),
        ("MODEL.HEAD.NUM_CLASSES=5e-4", 5e-4),
        ("MODEL.HEAD.NUM_CLASSES=1e5", 1e5),
        ("MODEL.HEAD.NUM_CLASSES=true", True),
        ("MODEL.HEAD.NUM_CLASSES=null", None),
        ("MODEL.HEAD.NUM_CLASSES=[1, 5]", [1, 5]),
        ("MODEL.HEAD.NUM_CLASSES={A: 1}", {"A": 1}),
        ("MODEL.HEAD.NUM_CLASSES=ten", "ten"),
        ("MODEL.HEAD.NUM_CLASSES='10'", "10"),
        ("MODEL.HEAD.NUM_CLASSES=a=b", "a=b"),
        ("MODEL.HEAD.NUM_CLASSES=a: b: c", "a: b: c"),
        ("MODEL.HEAD.NUM_CLASSES=", ""),
        (" MODEL . HEAD . NUM_CLASSES =7", 7),
    ],
)
def test_overrides_are_typed_values(override: str, expected: Any) -> None:
    base = {"MODEL": {"HEAD": {"NAME": "ClassifierHead", "NUM_CLASSES": 10}}}
    out = config.apply_overrides(base, [override])
    assert out["MODEL"]["HEAD"]["NUM_CLASSES"] == expected
    assert type(out["MODEL"]["HEAD"]["NUM_CLASSES"]) is type(expected)
    assert base["MODEL"]["HEAD"]["NUM_CLASSES"] == 10  # the input is left alone


def test_overrides_address_list_items_and_create_mappings() -> None:
    base = {"MODEL": {"METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1]}], "NECK": None}}
    out = config.apply_overrides(
        base,
        [
            "MODEL.METRICS.0.TOPK=[1, 5]",
            "MODEL.METRICS.-1.NAME=Top",
            "TRAIN.EPOCHS=3",
            "MODEL.NECK.NAME=Identity",
        ],
    )
    assert out == {
        "MODEL": {"METRICS": [{"NAME": "Top", "TOPK": [1, 5]}], "NECK": {"NAME": "Identity"}},
        "TRAIN": {"EPOCHS": 3},
    }
    assert config.apply_overrides({"A": [1, 2]}, ["A.1=7"]) == {"A": [1, 7]}


def test_every_bad_override_is_reported_at_once() -> None:
    base = {"MODEL": {"NAME": "Classifier", "METRICS": [{"NAME": "AccuracyMetric"}]}}
    with pytest.raises(ConfigError) as info:
        config.apply_overrides(
            base,
            [
                "MODEL.NAME.X=1",
                "MODEL.METRICS.3.TOPK=1",
                "MODEL.METRICS.x=1",
                "NOEQUALS",
                "A..B=1",
                "=3",
            ],
            source="run.yaml",
        )
    assert str(info.value) == "\n".join(
        [
            "6 errors in the --set overrides of run.yaml:",
            "  MODEL.NAME (from --set MODEL.NAME.X=1): cannot go into str 'Classifier': it is not "
            "a mapping or list",
            "  MODEL.METRICS.3 (from --set MODEL.METRICS.3.TOPK=1): no list item 3 (the list has 1)",
            "  MODEL.METRICS.x (from --set MODEL.METRICS.x=1): no list item x (the list has 1)",
            "  --set NOEQUALS: expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10)",
            "  --set A..B=1: expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10)",
            "  --set =3: expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10)",
        ]
    )


def test_an_index_past_the_end_is_named_at_any_depth() -> None:
    base = {"M": {"L": [{"TOPK": [1]}], "S": "x"}}
    with pytest.raises(ConfigError) as info:
        config.apply_overrides(base, ["M.L.0.TOPK.4.X=1", "M.L.9=1", "M.S.0=1"])
    assert issues(info) == [
        "M.L.0.TOPK.4 (from --set M.L.0.TOPK.4.X=1): no list item 4 (the list has 1)",
        "M.L.9 (from --set M.L.9=1): no list item 9 (the list has 1)",
        "M.S (from --set M.S.0=1): cannot go into str 'x': it is not a mapping or list",
    ]


RUN = """\
MODEL:
  NAME: Classifier
  BACKBONE: {NAME: MLP, IN_FEATURES: 64, HIDDEN: [32]}
  HEAD: {NAME: ClassifierHead, DIM: 32, NUM_CLASSES: 10}
  LOSS: {NAME: CrossEntropy}
  METRICS: [{NAME: AccuracyMetric, TOPK: [1]}]
TRAIN: {EPOCHS: 1}
"""


def test_errors_an_override_caused_name_it(tmp_path: Path) -> None:
    run = write(tmp_path, "run.yaml", RUN.replace("EPOCHS: 1", "EPOCHS: 1, SEEED: 1"))
    overrides = [
        "MODEL.HEAD={NAME: ClassifierHead, DIM: 32}",  # the missing key lies under it
        "MODEL.METRICS.-1.TOPK=[x]",  # counted from the end; errors count from the start
        "MODEL.BACKBONE.HIDDEN=[32]",  # valid: blames nothing
    ]
    with pytest.raises(ConfigError) as info:
        config.load_run_config(run, overrides)
    assert str(info.value) == "\n".join(
        [
            f"3 errors in {run} and its --set overrides:",
            "  MODEL.HEAD.NUM_CLASSES (from --set 'MODEL.HEAD={NAME: ClassifierHead, DIM: 32}'): "
            "required key is missing: Number of classes (width of the logits)",
            "  MODEL.METRICS[0].TOPK[0] (from --set 'MODEL.METRICS.-1.TOPK=[x]'): Input should be "
            "a valid integer, unable to parse string as an integer, got 'x'",
            "  TRAIN.SEEED: unknown key; did you mean SEED?",
        ]
    )


def test_the_last_override_of_a_path_is_the_one_named() -> None:
    data, written = config._files._apply(
        {"A": [{"B": 1}]}, ["A.0.B=2", "A.0=3", "C.D=4"], None, config._files.limits()
    )
    assert data == {"A": [3], "C": {"D": 4}}
    assert written.which("A[0].B.E") == "A.0=3"
    assert written.which("A[0]") == "A.0=3"
    assert written.which("A") is None
    assert written.which("C.D") == "C.D=4"
    assert written.which("C.DD") is None


def test_load_applies_overrides_after_includes(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "A: {B: 1, C: 2}\n")
    top = write(tmp_path, "top.yaml", "_BASE: base.yaml\nA: {B: 5}\n")
    assert config.load(top, ["A.C=9"]) == {"A": {"B": 5, "C": 9}}


def test_dump_round_trips(tmp_path: Path) -> None:
    data = {
        "MODEL": {
            "NAME": "Classifier",
            "LR": 5e-4,
            "BIG": 1e5,
            "TEXTS": ["1e5", "5e-4", "true", "null", "yes", "", "multi\nline", "é"],
            "NESTED": [{"A": [1, 2.5, None, True]}],
        },
        "ORDER": {"Z": 1, "A": 2},
    }
    text = config.dump(data)
    assert config.loads(text) == data
    assert list(config.loads(text)["ORDER"]) == ["Z", "A"]  # order kept, not sorted
    path = write(tmp_path, "dumped.yaml", text)
    assert config.load(path) == data


def test_dump_of_a_validated_config_keeps_every_nested_part() -> None:
    from pydantic import Field
    from vertebra.config import BackboneCfg, MetricCfgs, NeckCfg, PartConfig, validate_tree

    class Net(PartConfig):
        BACKBONE: BackboneCfg = Field(description="Backbone.")
        NECK: NeckCfg = Field(None, description="Neck.")
        METRICS: MetricCfgs = Field(default_factory=list, description="Metrics.")

    raw = {
        "NAME": "Net",
        "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 4, "HIDDEN": [3]},
        "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1, 2]}],
    }
    cfg = validate_tree(Net, raw)
    dumped = config.loads(config.dump(cfg))
    assert dumped["BACKBONE"]["HIDDEN"] == [3] and dumped["BACKBONE"]["ACTIVATION"] == "relu"
    assert dumped["METRICS"] == [{"NAME": "AccuracyMetric", "TOPK": [1, 2], "IGNORE_INDEX": None}]
    assert dumped["NECK"] is None
    # The dump validates to the same config: nothing is lost.
    assert validate_tree(Net, dumped) == cfg
