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

Hub datasets (`hub_rows`) need the optional `datasets` package, imported only when used.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minilm_deploy.errors import InputError, NetworkError

DATASETS_HINT = "pip install minilm-deploy[datasets]"
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


# ---------------------------------------------------------------- hub datasets


@dataclass(frozen=True)
class HubData:
    rows: dict[str, list[Row]]  # by split name as the hub names it ("train", "validation", "test", ...)
    class_names: dict[str, list[str]]  # ClassLabel columns: names in id order
    float_columns: frozenset[str]  # columns of float type (regression targets)


def hub_rows(repo: str, config: str | None) -> HubData:
    """Every split of a hub dataset, with ClassLabel ids turned into names (-1, "no label", into None)."""
    try:
        import datasets
    except ImportError:
        raise InputError(f"hub datasets need the optional `datasets` package: {DATASETS_HINT}") from None
    label = f"{repo}:{config}" if config else repo
    if not _hub_reachable():
        raise NetworkError(
            f"could not fetch hub dataset {label}: the hub is unreachable (no network); use local files or zoo:NAME "
            "(see `minilm zoo list`), or set HF_HUB_OFFLINE=1 to read the datasets cache"
        )
    try:
        loaded = datasets.load_dataset(repo, config)
    except Exception as exc:  # the hub stack raises many types; sort them into "no such" and "no network"
        kind, text = type(exc).__name__, str(exc)
        if "NotFound" in kind or "doesn't exist" in text or ("config" in text.lower() and "available" in text.lower()):
            raise InputError(f"hub dataset {label}: not found ({kind}); check the id and config name") from None
        raise NetworkError(
            f"could not fetch hub dataset {label} ({kind}); there is no network or the hub is unreachable: "
            "use local files or zoo:NAME (see `minilm zoo list`)"
        ) from None
    rows: dict[str, list[Row]] = {}
    class_names: dict[str, list[str]] = {}
    floats: set[str] = set()
    for split, table in loaded.items():
        for column, feature in table.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
            elif getattr(feature, "dtype", "").startswith("float"):
                floats.add(column)
        rows[split] = [Row(_named(record, class_names), f"{label}[{split}] row {i}") for i, record in enumerate(table)]
    return HubData(rows, class_names, frozenset(floats))


def _hub_reachable(timeout: float = 5.0) -> bool:
    """A quick check of the hub endpoint, so that no network fails in seconds, not after minutes of retries:
    a TCP connection, or behind a proxy one HEAD request through it (a refused tunnel is no network; any
    answer of the hub's own is one). Skipped (True) in offline mode, where the cache may serve."""
    if any(os.environ.get(v) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            return True  # the hub answered (through the proxy)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _named(record: dict[str, Any], class_names: dict[str, list[str]]) -> dict[str, Any]:
    out = dict(record)
    for column, names in class_names.items():
        value = out.get(column)
        if isinstance(value, int):
            out[column] = names[value] if 0 <= value < len(names) else None
    return out
