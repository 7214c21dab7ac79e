"""Read CSV, TSV and JSON-lines files as records, each with the line it starts on."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from vertebra.errors import UserError

__all__ = ["FORMATS", "Format", "decode_file", "file_format", "read_records"]

Format = Literal["auto", "csv", "tsv", "jsonl"]
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def file_format(path: Path, fmt: Format) -> Literal["csv", "tsv", "jsonl"]:
    """`fmt`, or the format that `path`'s suffix names when `fmt` is 'auto'."""
    if fmt != "auto":
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise UserError(
            f"cannot tell the format of '{path}' from its suffix; set FORMAT to csv, tsv or "
            f"jsonl (known suffixes: {', '.join(FORMATS)})"
        )
    return found  # type: ignore[return-value]


def decode_file(path: Path, encoding: str) -> str:
    """The text of `path`; a decoding error names the line and the encoding."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    try:
        text = raw.decode(encoding)
    except LookupError as exc:
        raise UserError(f"'{encoding}' is not a known text encoding (reading '{path}')") from exc
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not valid {encoding} text ({exc.reason}); set ENCODING to the "
            "file's encoding"
        ) from exc
    # Spreadsheet programs start UTF-8 files with a byte-order mark; it is not text.
    return text.removeprefix("\ufeff")


def read_records(
    path: Path, fmt: Format = "auto", encoding: str = "utf-8"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, record)` for each row of a CSV/TSV file with a header, or JSONL object."""
    kind = file_format(path, fmt)
    text = decode_file(path, encoding)
    if kind == "jsonl":
        yield from _json_lines(path, text)
    else:
        yield from _delimited(path, text, "," if kind == "csv" else "\t")


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except RecursionError:  # a crafted line of nested brackets
            raise UserError(f"{path}:{number}: not valid JSON (nested too deep)") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _delimited(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        start = reader.line_num + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise UserError(
                    f"{path}:{start}: row has {len(row)} field(s), the header has "
                    f"{len(header)} ({', '.join(header)})"
                )
            yield start, dict(zip(header, row, strict=True))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from exc
