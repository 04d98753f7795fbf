"""Readers of the standard data formats, each returning rows that remember where they came from.

Local files (chosen by suffix):
- `.csv`   comma-separated with a header row (RFC 4180 quoting; a field may span lines)
- `.tsv`   GLUE-style: tab-separated, a header row, no quoting at all (quotes are text)
- `.jsonl` one JSON object per line
- `.json`  SQuAD (`{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}`) or a list of objects
- `.tab`   Orange: a header line, a types line, a flags line, then tab-separated rows

Every file must be UTF-8 (a BOM is allowed). Every failure is an `InputError` of one line that
names the file and, where it applies, the line: a missing or empty file, bytes that are not
UTF-8 (line and byte offset), a malformed CSV/TSV row or JSON line.

A hub dataset's rows (`HubData`) are fetched by `minilm_deploy.hub`, through the optional `datasets` package.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minilm_deploy.errors import InputError

FIELD_LIMIT = 2**31 - 1  # CSV/TSV fields: no limit below what the platform's C long holds


@dataclass(frozen=True)
class Row:
    fields: dict[str, Any]
    where: str  # "train.csv:12" (file and line) or "squad.json: data[0].paragraphs[3].qas[1]"


# ---------------------------------------------------------------- bytes and text


def read_text(path: Path) -> str:
    """The UTF-8 text of a file; one-line errors for a missing, empty or non-UTF-8 file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: the file is empty")
    return decode_utf8(data, str(path))


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{name}: not UTF-8 at line {line} (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
            "re-save the file as UTF-8"
        ) from None


def physical_lines(text: str) -> list[str]:
    """Lines split on "\n" only (a CR before it dropped): U+2028 and friends stay inside a line."""
    return [line.removesuffix("\r") for line in text.split("\n")]


# ---------------------------------------------------------------- parsers (text → rows)


def parse_delimited(text: str, name: str, *, delimiter: str = ",", quoted: bool = True, header: bool = True) -> list[Row]:
    """CSV (quoted) or GLUE-style TSV (unquoted). With `header=False` the columns are named "0", "1", ..."""
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    csv.field_size_limit(FIELD_LIMIT)  # the module's 128 KiB default would refuse a long text JSONL accepts
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    names: list[str] | None = None
    rows: list[Row] = []
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or all(not f.strip() for f in record):
                continue
            if names is None:
                names = [c.strip() for c in record] if header else [str(i) for i in range(len(record))]
                if header:
                    _check_header(names, name)
                    continue
            if len(record) != len(names):
                hint = "check the quoting" if quoted else "a field holds a tab, or a row lacks one"
                raise InputError(f"{name}:{line}: expected {len(names)} fields (as the first row), got {len(record)}; {hint}")
            rows.append(Row(dict(zip(names, record, strict=True)), f"{name}:{line}"))
    except csv.Error as exc:
        raise InputError(f"{name}:{reader.line_num}: malformed row ({exc}); check the quoting") from None
    return rows


def _check_header(names: list[str], name: str) -> None:
    if any(not n for n in names[1:]) or len(set(names)) != len(names):
        raise InputError(f"{name}:1: the header row {names} has empty or repeated column names")


def parse_jsonl(text: str, name: str) -> list[Row]:
    rows = []
    for number, line in enumerate(physical_lines(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{number}: expected a JSON object per line, got {type(obj).__name__}")
        rows.append(Row(obj, f"{name}:{number}"))
    return rows


def parse_json(text: str, name: str) -> list[Row]:
    """SQuAD JSON (question, context pairs) or a JSON list of objects."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        return parse_squad(obj, name)
    if isinstance(obj, list) and all(isinstance(item, dict) for item in obj):
        return [Row(item, f"{name}: item {i}") for i, item in enumerate(obj)]
    raise InputError(f"{name}: expected SQuAD JSON ({{\"data\": [...]}}) or a list of objects; use .jsonl for one object per line")


def parse_squad(obj: dict[str, Any], name: str) -> list[Row]:
    """One row per question: `question`, `context`, `answer` (the first, or ""), and `label`:
    "unanswerable" for SQuAD 2.0's `is_impossible` questions, else "answerable".

    Extractive QA (predicting answer spans) is out of scope: the pairs serve sentence-pair
    classification (answerable or not) and as raw text.
    """
    rows = []
    try:
        for i, article in enumerate(obj["data"]):
            for j, para in enumerate(article["paragraphs"]):
                for k, qa in enumerate(para["qas"]):
                    answers = qa.get("answers") or [{}]
                    label = "unanswerable" if qa.get("is_impossible") else "answerable"
                    fields = {"question": qa["question"], "context": para["context"],
                              "answer": answers[0].get("text", ""), "label": label, "id": qa.get("id", "")}
                    rows.append(Row(fields, f"{name}: data[{i}].paragraphs[{j}].qas[{k}]"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{name}: not SQuAD JSON: missing or wrong field {exc} (expected data[].paragraphs[].qas[].question and paragraphs[].context)") from None
    return rows


def parse_orange_tab(text: str, name: str) -> list[Row]:
    """Orange's .tab: names, types and flags lines, then unquoted tab-separated rows."""
    lines = text.split("\n")
    if len(lines) < 4:
        raise InputError(f"{name}: an Orange .tab file needs 3 header lines and at least one row")
    header = lines[0].rstrip("\r")
    body = "\n".join([header, *lines[3:]])
    rows = parse_delimited(body, name, delimiter="\t", quoted=False)
    # parse_delimited numbers lines of `body`; shift by the two dropped header lines.
    return [Row(r.fields, _shift_line(r.where, 2)) for r in rows]


def _shift_line(where: str, by: int) -> str:
    name, _, line = where.rpartition(":")
    return f"{name}:{int(line) + by}"


# ---------------------------------------------------------------- files


def _csv(text: str, name: str, header: bool) -> list[Row]:
    return parse_delimited(text, name, delimiter=",", quoted=True, header=header)


def _tsv(text: str, name: str, header: bool) -> list[Row]:
    return parse_delimited(text, name, delimiter="\t", quoted=False, header=header)


READERS: dict[str, Callable[[str, str, bool], list[Row]]] = {
    ".csv": _csv,
    ".tsv": _tsv,
    ".jsonl": lambda text, name, header: parse_jsonl(text, name),
    ".json": lambda text, name, header: parse_json(text, name),
    ".tab": lambda text, name, header: parse_orange_tab(text, name),
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in READERS


def read_rows(path: Path, *, header: bool = True) -> list[Row]:
    """The rows of a local data file (format by suffix); an error if it has none."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'}; use one of {', '.join(READERS)}")
    rows = reader(read_text(path), str(path), header)
    if not rows:
        raise InputError(f"{path}: no rows (nothing but a header, blank lines or an empty list); an empty split cannot be used")
    return rows


# ---------------------------------------------------------------- hub datasets (fetched by minilm_deploy.hub)


@dataclass(frozen=True)
class HubData:
    rows: dict[str, list[Row]]  # by split name as the hub names it ("train", "validation", "test", ...)
    class_names: dict[str, list[str]]  # ClassLabel columns: names in id order
    float_columns: frozenset[str]  # columns of float type (regression targets)
