"""Strict, typed configuration: YAML into frozen dataclasses, with `--set a.b=value` overrides.

Shared by recipes (`recipe.py`), export profiles and bench suites. An unknown key, a wrong type
or a missing required field is an `InputError` naming the file and the dotted path:
`quickstart.yaml: distill.student.layers: expected int, got 'six'`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from minilm_deploy.errors import InputError

T = TypeVar("T")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                "keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the path to a YAML file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 — a SafeLoader
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{path.name}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        raise InputError(f"{path.name}: the file is empty; see recipes/quickstart.yaml for a template")
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["train.lr=3e-4", "student.layers=4"]` → a nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set distill.steps=200")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {item!r}: {part} is set twice with different shapes")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], data: Any, *, source: str, path: str = "") -> T:
    """Build dataclass `cls` from `data`, strictly; errors say `source: dotted.path: problem`."""
    return typing.cast(T, _convert(cls, data, source, path))


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML/JSON-ready values (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _where(source: str, path: str) -> str:
    return f"{source}: {path}" if path else source


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if isinstance(value, dict):  # a mapping can only be the dataclass option: its own error is the precise one
            options = [a for a in options if dataclasses.is_dataclass(a)] or options
        if len(options) == 1:  # Optional[X]: X's own error is the most precise
            return _convert(options[0], value, source, path)
        for arg in options:
            try:
                return _convert(arg, value, source, path)
            except InputError:
                continue
        names = " or ".join(_type_name(a) for a in args)
        raise InputError(f"{_where(source, path)}: expected {names}, got {_describe(value)}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise InputError(f"{_where(source, path)}: expected one of {choices}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, source, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{_where(source, path)}: expected a list, got {_describe(value)}")
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{_where(source, path)}: expected a mapping, got {_describe(value)}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, source, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads "3e-4" as a string
                except ValueError:
                    pass
            raise InputError(f"{_where(source, path)}: expected float, got {_describe(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{_where(source, path)}: expected int, got {_describe(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{_where(source, path)}: expected true or false, got {_describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{_where(source, path)}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


_quiet_renames = contextvars.ContextVar("quiet_renames", default=False)


@contextlib.contextmanager
def quiet_renames() -> Iterator[None]:
    """Read old key names without the deprecation line (a file we wrote ourselves, not the user's recipe)."""
    token = _quiet_renames.set(True)
    try:
        yield
    finally:
        _quiet_renames.reset(token)


def _renamed_keys(cls: Any, value: dict[str, Any], source: str, path: str) -> dict[str, Any]:
    """Old key names (`cls.RENAMED`: old → new) read as the new ones, with a one-line deprecation warning."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    if not any(old in value for old in renamed):
        return value
    value = dict(value)
    for old, new in renamed.items():
        if old not in value:
            continue
        dotted_old, dotted_new = (f"{path}.{old}", f"{path}.{new}") if path else (old, new)
        if new in value:
            raise InputError(f"{source}: {dotted_old} and {dotted_new} are one setting ({old} is its old name); keep {new}")
        if not _quiet_renames.get():
            sys.stderr.write(f"minilm: warning: {source}: {dotted_old} is now {dotted_new}; the old name still works "
                             "in this release only\n")
        value[new] = value.pop(old)
    return value


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert_dataclass(cls: Any, value: Any, source: str, path: str) -> Any:
    if not isinstance(value, dict):
        raise InputError(f"{_where(source, path)}: expected a mapping, got {_describe(value)}")
    value = _renamed_keys(cls, value, source, path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields))
            dotted = f"{path}.{key}" if path else str(key)
            raise InputError(f"{source}: {dotted}: unknown key; known keys here: {known}")
    kwargs = {}
    for name, field in fields.items():
        dotted = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], source, dotted)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise InputError(f"{source}: {dotted}: required field is missing")
    try:
        return cls(**kwargs)
    except (ValueError, InputError) as exc:  # __post_init__ checks
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{_where(source, path)}: {exc}") from None
