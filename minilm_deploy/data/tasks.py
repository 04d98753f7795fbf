"""`load_task(path)`: a labelled task from a local folder or file; `hub_task`: one from a hub dataset's rows.

Names (`zoo:NAME`, `hub:…`, `glue/…`) are resolved to local files or rows by `minilm_deploy.sources`,
the one resolver; this module reads what it is given and knows no names.

Paths:
- a folder: one file per split, named by the split: `train.*` (required), `dev.*` (or
  `validation.*`, `valid.*`, `val.*`), `test.*` and `test-XX.*` (e.g. `test-fr.jsonl`), in any
  format of `minilm_deploy.data.formats`. An optional `dataset.json` there gives `kind`,
  `label_names`, `metric` and `info` (the zoo writes one).
- a single file: one split, named by the file if its name is a split name (`test.csv` → "test"),
  else "train"; `as_split="test"` names it. Choosing which split to train or evaluate on is the
  caller's business (`minilm eval --split`). Label names then come from that one file: an
  evaluation caller maps labels through its model's own label map.
- a hub dataset's rows (`hub_task`, given `sources.load_task("hub:OWNER/NAME[:CONFIG]")` or
  `glue/TASK`): "validation" becomes "dev"; splits without labels (GLUE's test sets) are left out.

Columns are detected: a pair (`sentence1`+`sentence2`, `question1`+`question2`,
`premise`+`hypothesis`, `question`+`sentence`, `question`+`context`, `text`+`text_pair`,
`text_a`+`text_b`), else one text column (`text`, `sentence`, `question`, `review`, ...), and
a label column (`label`, `category`, `class`, `target`, `score`, ...); `text_column`,
`pair_column` and `label_column` override. The kind is "classification" unless `kind=` says
otherwise, or every training label is a number and some are not whole (then "regression").
Class names are the sorted training labels (numerically when all are whole numbers); a label
in another split that training never had is an error naming the label and the line. A split
without any label column is loaded unlabelled (label None), for prediction.
SQuAD JSON loads as (question, context) pairs labelled answerable/unanswerable: extractive QA
(answer spans) is out of scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from minilm_deploy.data.formats import HubData, Row, is_supported, read_rows, read_text
from minilm_deploy.data.splits import label_counts
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError

PAIR_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "sentence"), ("question", "context"), ("text", "text_pair"), ("text_a", "text_b"))
TEXT_COLUMNS = ("text", "sentence", "question", "review", "content", "document", "comment", "body", "tweet", "sms")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "score", "sentiment", "gold_label", "y")
SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev",
                 "validation_matched": "dev", "validation_mismatched": "dev-mismatched"}
METADATA = "dataset.json"


def column_choice(text_column: str | None = None, pair_column: str | None = None,
                  label_column: str | None = None) -> dict[str, str | None]:
    """The columns a caller named (None: detect), as `build_task` takes them."""
    return {"text": text_column, "pair": pair_column, "label": label_column}


def load_task(path: str | Path, *, text_column: str | None = None, pair_column: str | None = None,
              label_column: str | None = None, kind: str | None = None, header: bool = True,
              as_split: str | None = None) -> TaskData:
    """The task in local file or folder `path` (see the module docstring), checked and with its label map."""
    columns = column_choice(text_column, pair_column, label_column)
    text = str(path)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_folder(path, columns, kind, header)
    if path.is_file():
        split = as_split or split_name(path) or "train"
        return build_task(path.stem, {split: read_rows(path, header=header)}, columns=columns, kind=kind,
                          info={"source": str(path)})
    raise InputError(f"{text}: no such file or folder; give a local task file or folder")


def split_name(path: Path) -> str | None:
    """The split a file holds, by its name: train, dev (validation, valid, val), test, test-XX."""
    stem = path.name.split(".")[0].lower()
    if stem in SPLIT_ALIASES:
        return SPLIT_ALIASES[stem]
    if stem == "test" or re.fullmatch(r"test[-_][a-z0-9]+", stem):
        return stem.replace("_", "-")
    return None


# ---------------------------------------------------------------- sources


def _from_folder(folder: Path, columns: Mapping[str, str | None], kind: str | None, header: bool) -> TaskData:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        split = split_name(path) if path.is_file() and is_supported(path) else None
        if split is None:
            continue
        if split in files:
            raise InputError(f"{folder}: two files for split {split!r} ({files[split].name}, {path.name}); keep one")
        files[split] = path
    if "train" not in files:
        found = ", ".join(p.name for p in files.values()) or "no data files"
        raise InputError(f"{folder}: no train file (train.csv, train.tsv, train.jsonl or train.json); found {found}")
    meta = _metadata(folder)
    order = sorted(files, key=lambda s: (["train", "dev"].index(s) if s in ("train", "dev") else 2, s != "test", s))
    rows = {split: read_rows(files[split], header=header) for split in order}
    return build_task(meta.get("name", folder.name), rows, columns=columns, kind=kind or meta.get("kind"),
                      label_names=meta.get("label_names"), metric=meta.get("metric"),
                      info={"source": str(folder), **meta.get("info", {}), "path": str(folder)})


def _metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object with kind, label_names, metric, info")
    return meta


def hub_task(spec: str, data: HubData, columns: Mapping[str, str | None], kind: str | None, info: dict[str, Any]) -> TaskData:
    """A task from a hub dataset's rows: "validation" → "dev", splits without labels left out."""
    rows: dict[str, list[Row]] = {}
    for split, split_rows in data.rows.items():
        name = SPLIT_ALIASES.get(split, split)
        if split_rows and (split == "train" or _has_labels(split_rows, columns)):
            rows[name] = split_rows
    if "train" not in rows:
        raise InputError(f"{spec}: the hub dataset has no train split (splits: {', '.join(data.rows)})")
    label_col = columns.get("label") or _find(list(rows["train"][0].fields), LABEL_COLUMNS)
    if kind is None and label_col in data.float_columns:
        kind = "regression"
    dropped = [s for s in data.rows if SPLIT_ALIASES.get(s, s) not in rows]
    return build_task(spec, rows, columns=columns, kind=kind, info={**info, "dropped_splits": dropped})


def _has_labels(rows: Sequence[Row], columns: Mapping[str, str | None]) -> bool:
    label = columns.get("label") or _find(list(rows[0].fields), LABEL_COLUMNS)
    return label is not None and any(r.fields.get(label) is not None for r in rows)


# ---------------------------------------------------------------- rows → TaskData


def build_task(name: str, rows: Mapping[str, Sequence[Row]], *, columns: Mapping[str, str | None] | None = None,
               kind: str | None = None, label_names: Sequence[str] | None = None, metric: str | None = None,
               info: Mapping[str, Any] | None = None) -> TaskData:
    """Check rows, pick columns, convert labels and build the `TaskData` (the label map from train)."""
    columns = dict(columns or {})
    if kind not in (None, "classification", "regression"):
        raise InputError(f"task {name}: kind must be classification or regression, got {kind!r}")
    train_key = "train" if "train" in rows else next(iter(rows))
    used = {split: _columns(split_rows, columns) for split, split_rows in rows.items()}
    text_col, pair_col, label_col = used[train_key]
    if label_col is None or label_col not in rows[train_key][0].fields:
        found = ", ".join(rows[train_key][0].fields)
        raise InputError(f"{_file_of(rows[train_key][0])}: no label column (columns: {found}); pass label_column=NAME")
    for split, (_, pair, _) in used.items():
        if (pair is None) != (pair_col is None):
            raise InputError(f"{_file_of(rows[split][0])}: split {split!r} and {train_key!r} differ: one has text pairs, "
                             "the other single texts; " + COLUMN_HINT)
    kind = kind or _guess_kind([r.fields.get(label_col) for r in rows[train_key]])
    splits = {split: tuple(_examples(split_rows, *used[split], kind)) for split, split_rows in rows.items()}
    names: tuple[str, ...] = ()
    if kind == "classification":
        names = tuple(label_names) if label_names else _sorted_labels({str(ex.label) for ex in splits[train_key]})
        _check_labels(rows, splits, names, train_key)
    sizes = {split: len(examples) for split, examples in splits.items()}
    extra = {"columns": {"text": text_col, "text_pair": pair_col, "label": label_col}, "sizes": sizes}
    if kind == "classification":
        extra["label_counts"] = {split: label_counts(ex for ex in examples if ex.label is not None) for split, examples in splits.items()}
    return TaskData(name=name, kind=kind, splits=splits, label_names=names,  # type: ignore[arg-type]  # kind checked above
                    metric=metric or ("accuracy" if kind == "classification" else "pearson"),
                    info={**dict(info or {}), **extra})


COLUMN_HINT = ("name them with --set text_column=NAME (and label_column=, pair_column=) for minilm finetune and "
               "eval, or finetune.text_column in a recipe")


def _check_header(rows: Sequence[Row], columns: Mapping[str, str | None]) -> None:
    """A CSV/TSV without a header row would lose its first row to it: refuse one whose first row reads as data
    (no recognised or given column name, and a name that is a number or holds spaces)."""
    present = list(rows[0].fields)
    if not _file_of(rows[0]).endswith((".csv", ".tsv")) or present == [str(i) for i in range(len(present))]:
        return  # not a CSV/TSV row, or read without a header on purpose
    known = {c.lower() for c in (*TEXT_COLUMNS, *LABEL_COLUMNS, *(a for pair in PAIR_COLUMNS for a in pair))}
    given = {c for c in columns.values() if c}
    if any(c.lower() in known or c in given for c in present):
        return
    if any(_number(c) or " " in c.strip() or len(c) > 40 for c in present):
        shown = ", ".join(repr(c[:40]) for c in present)
        raise InputError(f"{_file_of(rows[0])}:1: the first row ({shown}) reads as data, not as a header row; add a "
                         f"first line naming the columns, e.g. text,label (recognised: {', '.join(TEXT_COLUMNS[:4])}, ... / "
                         f"{', '.join(LABEL_COLUMNS[:4])}, ...)")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _columns(rows: Sequence[Row], columns: Mapping[str, str | None]) -> tuple[str, str | None, str | None]:
    """(text, pair, label) columns of one split: the overrides, else detected from its first row."""
    _check_header(rows, columns)
    present = list(rows[0].fields)
    label = columns.get("label") or _find(present, LABEL_COLUMNS)
    if columns.get("text"):
        for col in (columns["text"], columns.get("pair")):
            if col and col not in present:
                raise InputError(f"{_file_of(rows[0])}: no column {col!r} (columns: {', '.join(present)}); {COLUMN_HINT}")
        return columns["text"], columns.get("pair"), label  # type: ignore[return-value]
    lower = {c.lower(): c for c in present}
    for a, b in PAIR_COLUMNS:
        if a in lower and b in lower:
            return lower[a], lower[b], label
    text = _find(present, TEXT_COLUMNS)
    if text is None:
        raise InputError(f"{_file_of(rows[0])}: no text column (columns: {', '.join(present)}); {COLUMN_HINT}")
    return text, columns.get("pair"), label


def _find(present: Sequence[str], candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in present}
    return next((lower[c] for c in candidates if c in lower), None)


def _examples(rows: Sequence[Row], text_col: str, pair_col: str | None, label_col: str | None, kind: str) -> list[Example]:
    labelled = label_col is not None and any(label_col in r.fields for r in rows)
    out = []
    for row in rows:
        text = _text(row, text_col)
        pair = _text(row, pair_col) if pair_col else None
        label = _label(row, label_col, kind) if labelled else None  # type: ignore[arg-type]
        out.append(Example(text, pair, label))
    return out


def _text(row: Row, column: str) -> str:
    value = row.fields.get(column)
    if not isinstance(value, str) or not value.strip():
        what = "missing" if value is None else "empty" if isinstance(value, str) else f"not text ({value!r})"
        raise InputError(f"{row.where}: the {column!r} field is {what}")
    return value


def _label(row: Row, column: str, kind: str) -> str | float:
    value = row.fields.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{row.where}: the label ({column!r}) is missing")
    if kind == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{row.where}: label {value!r} is not a number; a regression task needs numeric targets") from None
    return label_key(value)


def label_key(value: object) -> str:
    """A class label as text: 1, 1.0 and "1" are the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _guess_kind(labels: Sequence[object]) -> str:
    numbers = []
    for value in labels:
        try:
            numbers.append(float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "classification"
    return "regression" if any(not n.is_integer() for n in numbers) else "classification"


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    if all(re.fullmatch(r"-?\d+", lab) for lab in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _check_labels(rows: Mapping[str, Sequence[Row]], splits: Mapping[str, Sequence[Example]], names: Sequence[str], train: str) -> None:
    known = set(names)
    for split, examples in splits.items():
        for row, ex in zip(rows[split], examples, strict=True):
            if ex.label is not None and ex.label not in known:
                shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
                raise InputError(f"{row.where}: label {ex.label!r} is not among the {train} labels ({shown}); "
                                 "fix the label or add examples of it to the training split")


def _file_of(row: Row) -> str:
    return row.where.rsplit(":", 1)[0] if re.search(r":\d+$", row.where) else row.where
