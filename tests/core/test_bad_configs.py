"""A corpus of bad run configs (tests/core/bad_configs/*.yaml) and the exact message of each.

Each case is checked through `load_run_config` (the issues, exactly) and through
`vertebra validate` (exit status 2, the message on stderr, no traceback). Sections that
the run config may require later (DATA, TRAIN, ...) are not part of these cases: an
issue that only says such a section is missing is left out of the comparison.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vertebra import config as config_io
from vertebra.cli import main
from vertebra.config import RunConfig, load_run_config, validate_run_config
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.plugins import all_registries

from tests.core.conftest import ROOT

CORPUS = Path("tests/core/bad_configs")

#: file name -> (the file the error is in, the issues in order)
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "unknown_part.yaml": (
        "unknown_part.yaml",
        ["MODEL.BACKBONE.NAME: 'MLPP' is not a registered backbone; did you mean 'MLP'?"],
    ),
    "typo_key.yaml": (
        "typo_key.yaml",
        [
            # not also "NUM_CLASSES: required key is missing": the hint names it
            "MODEL.HEAD.NUM_CLASES: unknown key; did you mean NUM_CLASSES?",
        ],
    ),
    "wrong_type.yaml": (
        "wrong_type.yaml",
        [
            "MODEL.BACKBONE.IN_FEATURES: Input should be a valid integer, unable to parse string "
            "as an integer, got 'sixty-four'"
        ],
    ),
    "missing_required.yaml": (
        "missing_required.yaml",
        [
            "MODEL.BACKBONE: required key is missing: Feature extractor (a BACKBONES part)",
            "MODEL.HEAD.NUM_CLASSES: required key is missing: Number of classes (width of the logits)",
        ],
    ),
    "bad_yaml.yaml": (
        "bad_yaml.yaml",
        [
            "line 5, column 7: invalid YAML: did not find expected ',' or '}', but found ':' "
            "(while parsing a flow mapping that starts on line 4)"
        ],
    ),
    "not_a_mapping.yaml": (
        "not_a_mapping.yaml",
        ["the top level must be a mapping of keys, got list"],
    ),
    "include_loop.yaml": (
        "includes/loop_back.yaml",
        [
            f"_BASE: include loop: {CORPUS}/include_loop.yaml -> {CORPUS}/includes/loop_back.yaml "
            f"-> {CORPUS}/include_loop.yaml"
        ],
    ),
    "missing_include.yaml": (
        "missing_include.yaml",
        [f"_BASE: included file not found: {CORPUS}/includes/no_such_file.yaml"],
    ),
    "unknown_top_level.yaml": (
        "unknown_top_level.yaml",
        ["TRIAN: unknown key; did you mean TRAIN?"],
    ),
    "several_errors.yaml": (
        "several_errors.yaml",
        [
            "MODEL.BACKBONE.ACTIVATION: Input should be 'relu', 'gelu', 'silu' or 'tanh', got "
            "'relux'; did you mean 'relu'?",
            "MODEL.BACKBONE.DROPOUT: Input should be less than 1, got 1.5",
            "MODEL.NECK.NAME: 'Identiy' is not a registered neck; did you mean 'Identity'?",
            "MODEL.HEAD.NUM_CLASSES: Input should be greater than 0, got -3",
            "MODEL.HEAD.DROPOUT_RAT: unknown key; did you mean DROPOUT_RATE?",
            "MODEL.METRICS[0].TOPK: values must be distinct, got [1, 1]",
            # Every installed metric is named (the first-party plugins add theirs).
            "MODEL.METRICS[1].NAME: required key is missing: the name of a metric "
            f"({', '.join(all_registries()['METRICS'].names())})",
        ],
    ),
    "duplicate_key.yaml": (
        "duplicate_key.yaml",
        ["line 6, column 3: invalid YAML: duplicate key 'HEAD' (first given on line 5)"],
    ),
    "head_width.yaml": (
        "head_width.yaml",
        [
            "MODEL.HEAD.DIM: the head takes 128 features, but BACKBONE MLP gives 32; set HEAD.DIM "
            "to 32",
            "TRAIN.EPOCHS: Input should be greater than or equal to 1, got 0",
        ],
    ),
    "scepter_keys.yaml": (
        "scepter_keys.yaml",
        [
            "MODEL.METRIC: give METRIC (one metric, as scepter writes it) or METRICS (a list), "
            "not both; to use several, list them all under METRICS",
            "MODEL.ACT_NAME: Input should be 'softmax' or 'sigmoid', got 'softmx'; did you mean "
            "'softmax'?",
        ],
    ),
    "part_not_a_mapping.yaml": (
        "part_not_a_mapping.yaml",
        [
            "MODEL.BACKBONE: expected a mapping with a NAME from BACKBONES, got str 'MLP'",
            "MODEL.METRICS: expected a list of METRICS configs, got dict {'NAME': 'AccuracyMetric'}",
        ],
    ),
}

CASES = sorted(EXPECTED)


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # messages show paths as given: relative to the repository


def test_the_corpus_has_one_file_per_case() -> None:
    assert sorted(p.name for p in (ROOT / CORPUS).glob("*.yaml")) == CASES


def _relevant(issues: list[ConfigIssue], raw: object) -> list[str]:
    """Issues, less those that only say a section other than MODEL is missing."""
    given = raw if isinstance(raw, dict) else {}
    optional = set(RunConfig.model_fields) - {"MODEL"}
    return [
        str(i)
        for i in issues
        if not (
            i.path in optional and i.path not in given and "required key is missing" in i.message
        )
    ]


def _raw(path: Path) -> object:
    try:
        return config_io.load(path)
    except ConfigError:
        return None


@pytest.mark.parametrize("case", CASES)
def test_load_run_config_reports_exactly(case: str) -> None:
    source, expected = EXPECTED[case]
    path = CORPUS / case
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert info.value.source == str(CORPUS / source)
    assert _relevant(info.value.issues, _raw(path)) == expected


@pytest.mark.parametrize("case", CASES)
def test_vertebra_validate_exits_2_with_the_message_on_stderr(
    case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, expected = EXPECTED[case]
    assert main(["validate", str(CORPUS / case)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    head, *lines = err.splitlines()
    assert head.startswith("vertebra validate: error: ")
    assert head.endswith(f" in {CORPUS / source}:")
    for issue in expected:
        assert f"  {issue}" in lines
    assert "Traceback" not in err


def test_overrides_fix_a_bad_value_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(CORPUS / "wrong_type.yaml")
    assert main(["validate", path, "--set", "MODEL.BACKBONE.IN_FEATURES=64"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"{path}: valid. MODEL=Classifier (BACKBONE=MLP, HEAD=ClassifierHead, LOSS=CrossEntropy)\n"
        f"{path}: it builds, but cannot train: no DATA.TRAIN "
        "(add a DATA block: DATA.TRAIN to train, DATA.VAL to evaluate)\n"
    )
    assert main(["validate", path, "--set", "MODEL.BACKBONE.IN_FEATURES=64", "--print"]) == 0
    printed = config_io.loads(capsys.readouterr().out)
    assert printed["MODEL"]["BACKBONE"]["IN_FEATURES"] == 64
    assert printed["MODEL"]["BACKBONE"]["ACTIVATION"] == "relu"  # defaults filled in
    assert printed["MODEL"]["HEAD"]["NUM_CLASSES"] == 10
    # The printed config is itself a valid config that gives the same run config.
    assert validate_run_config(printed) == load_run_config(path, ["MODEL.BACKBONE.IN_FEATURES=64"])
    assert main(["validate", path, "--set", "MODEL.BACKBONE.IN_FEATURES=ten", "--set", "oops"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"vertebra validate: error: 1 error in the --set overrides of {path}:\n"
        "  --set oops: expected KEY.PATH=VALUE (for example MODEL.HEAD.NUM_CLASSES=10)\n"
    )


def test_a_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such/run.yaml"]) == 2
    assert capsys.readouterr().err == (
        "vertebra validate: error: 1 error:\n  config file not found: no/such/run.yaml\n"
    )


def test_vertebra_validate_in_a_real_process() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "vertebra", "validate", str(CORPUS / "several_errors.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.splitlines()
    assert lines[0].startswith("vertebra validate: error: ")
    for issue in EXPECTED["several_errors.yaml"][1]:
        assert f"  {issue}" in lines
    good = subprocess.run(
        [sys.executable, "-m", "vertebra", "validate", "examples/digits.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("examples/digits.yaml: valid. MODEL=Classifier (BACKBONE=")


def test_a_misspelt_required_key_is_reported_once_and_other_missing_keys_still_are() -> None:
    config = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "MLP"},  # IN_FEATURES missing, and no unknown key near it
            "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASES": 10},
        }
    }
    with pytest.raises(ConfigError) as info:
        validate_run_config(config, source="typo.yaml")
    assert [str(i) for i in info.value.issues] == [
        "MODEL.BACKBONE.IN_FEATURES: required key is missing: "
        "Number of input features; inputs are flattened after the batch axis (with scepter's "
        "IN_DIM: its first width, which may be left out)",
        "MODEL.HEAD.NUM_CLASES: unknown key; did you mean NUM_CLASSES?",
    ]
