"""DigitCaptions and ImageTextFolder: image-caption pairs, deterministic, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from vertebra.cli import main
from vertebra.data import DATASETS
from vertebra.errors import ConfigError, UserError
from vertebra_vision.datasets.digit_captions import DIGIT_WORDS


def captions(**cfg: Any) -> Any:
    return DATASETS.build({"NAME": "DigitCaptions", **cfg})


def test_digit_captions_are_deterministic_and_name_the_digit() -> None:
    val = captions(SPLIT="val")
    again = captions(SPLIT="val")
    digits = DATASETS.build({"NAME": "Digits", "SPLIT": "val"})
    assert len(val) == len(digits) == 359 and val.captions == again.captions
    assert torch.equal(val.images, digits.images)
    for i in (0, 7, 358):
        item = val[i]
        assert set(item) == {"img", "text", "group"}
        assert int(item["group"]) == int(digits[i]["label"])
        words = DIGIT_WORDS[int(item["group"])]
        assert any(word in item["text"].replace(",", " ").split() for word in words), item["text"]
    assert len(set(val.captions)) > 30  # templates and synonyms vary the captions
    # A sample keeps its caption in whichever split it falls: "all" holds both splits'.
    every = captions(SPLIT="all")
    assert set(val.captions) <= set(every.captions)
    other = captions(SPLIT="val", SEED=1)
    assert other.captions != val.captions


def test_digit_captions_settings() -> None:
    plain = captions(SPLIT="val", SYNONYMS=False, GROUPS=False, TEMPLATES=["digit {digit}"])
    assert "group" not in plain[0]
    assert set(plain.captions) <= {f"digit {words[0]}" for words in DIGIT_WORDS}
    with pytest.raises(ConfigError, match="exactly once"):
        DATASETS.validate({"NAME": "DigitCaptions", "TEMPLATES": ["no slot here"]})


def _folder(root: Path, lines: list[str] | bytes, name: str = "captions.jsonl") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, color in enumerate(("red", "green", "blue")):
        Image.new("RGB", (6, 6), color).save(root / f"{i}.png")
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    (root / name).write_bytes(data)
    return root


def _line(file: str, caption: str, **extra: Any) -> str:
    return json.dumps({"file": file, "caption": caption, **extra})


def test_image_text_folder_pairs_and_groups(tmp_path: Path) -> None:
    root = _folder(
        tmp_path / "a",
        [
            _line("0.png", "a red square"),
            _line("0.png", "something red"),  # a second caption of one image
            _line("1.png", "a square"),
            _line("2.png", "a square"),  # a duplicate caption of another image
        ],
    )
    ds = DATASETS.build({"NAME": "ImageTextFolder", "ROOT": str(root)})
    assert len(ds) == 4 and ds[1]["text"] == "something red"
    assert ds[0]["img"].shape == (3, 6, 6)
    assert torch.equal(ds[0]["img"], ds[1]["img"])
    # Shared image -> one group; identical caption -> one group.
    assert ds.groups.tolist() == [0, 0, 1, 1]
    tsv = _folder(tmp_path / "b", ["0.png\tred\tx", "1.png\tgreen\ty", "2.png\tblue\tx"], "c.tsv")
    ds = DATASETS.build({"NAME": "ImageTextFolder", "ROOT": str(tsv), "CAPTIONS": "c.tsv"})
    assert ds.texts == ["red", "green", "blue"] and ds.groups.tolist() == [0, 1, 0]
    ungrouped = DATASETS.build(
        {"NAME": "ImageTextFolder", "ROOT": str(tsv), "CAPTIONS": "c.tsv", "GROUPS": False}
    )
    assert "group" not in ungrouped[0]


BAD: dict[str, tuple[list[str] | bytes, str]] = {
    "missing image": (
        [_line("0.png", "red"), _line("9.png", "nine")],
        ":2: image '9.png' not found",
    ),
    "empty caption": ([_line("0.png", "  ")], ":1: the caption is empty"),
    "malformed line": ([_line("0.png", "red"), '{"file": "1.png",'], ":2"),
    "missing key": ([json.dumps({"file": "0.png", "text": "red"})], "expected keys file, caption"),
    "escape": ([_line("../0.png", "red")], "must be a path inside ROOT"),
    "deep line": (["[" * 5000 + "]" * 5000], "nested deeper than"),
    "not utf-8": (b'{"file": "0.png", "caption": "caf\xe9"}\n', ":1: not valid UTF-8"),
    "no captions": ([""], "holds no captions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_caption_files_are_clear_errors(tmp_path: Path, case: str) -> None:
    lines, expected = BAD[case]
    root = _folder(tmp_path / "pairs", lines)
    with pytest.raises(UserError) as info:
        DATASETS.build({"NAME": "ImageTextFolder", "ROOT": str(root)})
    assert expected in str(info.value)
    assert "captions.jsonl" in str(info.value) or case == "no captions"


def test_a_huge_captions_file_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path / "pairs", [_line("0.png", "red " * 200)])
    monkeypatch.setenv("VERTEBRA_CONFIG_MAX_BYTES", "100")
    with pytest.raises(UserError, match="larger than 100 bytes"):
        DATASETS.build({"NAME": "ImageTextFolder", "ROOT": str(root)})


@pytest.mark.parametrize("case", ["missing image", "not utf-8", "deep line"])
def test_bad_captions_exit_2_through_the_cli(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, expected = BAD[case]
    root = _folder(tmp_path / "pairs", lines)
    config = {
        "MODEL": {
            "NAME": "Classifier",
            "BACKBONE": {"NAME": "MLP", "IN_FEATURES": 108, "HIDDEN": [8]},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 8, "NUM_CLASSES": 2},
        },
        "DATA": {"TRAIN": {"DATASET": {"NAME": "ImageTextFolder", "ROOT": str(root)}}},
        "TRAIN": {"MAX_STEPS": 1, "OUTPUT_DIR": str(tmp_path / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_link_out_of_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    Image.new("RGB", (6, 6), "red").save(outside)
    root = _folder(tmp_path / "pairs", [_line("link.png", "red")])
    (root / "link.png").symlink_to(outside)
    with pytest.raises(UserError, match=r"image 'link\.png' leads out of ROOT"):
        DATASETS.build({"NAME": "ImageTextFolder", "ROOT": str(root)})
