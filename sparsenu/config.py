"""Typed configuration: YAML files loaded into validated dataclasses.

Every config in sparsenu is a (possibly nested) dataclass. :func:`from_dict`
builds one from a plain mapping and rejects, with a :class:`SparsenuError` that
names the key and the file:

- unknown or misspelled keys (with a "did you mean" hint),
- values of the wrong type (``int`` where ``float`` is expected is accepted),
- values outside a declared range (``field(metadata={"range": (lo, hi)})``) or
  not among declared choices (``metadata={"choices": (...)}``),
- anything a dataclass' own ``__post_init__`` rejects with ``ValueError``.

Command-line overrides ``key.sub=value`` are parsed with YAML scalar rules
(``lr=1e-3``, ``flag=true``, ``widths=[16,32]``) and applied before validation,
so they are checked exactly like file values.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from sparsenu.errors import SparsenuError

T = TypeVar("T")

__all__ = [
    "from_dict",
    "to_dict",
    "load_yaml",
    "load_config",
    "apply_overrides",
    "save_yaml",
]


def _fail(msg: str, source: str | None) -> SparsenuError:
    where = f" in {source}" if source else ""
    return SparsenuError(f"{msg}{where}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except SparsenuError:
                continue
        raise _fail(
            f"key '{key}': expected {' or '.join(_type_name(a) for a in args)}, got {value!r}",
            source,
        )
    if origin is typing.Literal:
        if value not in args:
            raise _fail(f"key '{key}': expected one of {list(args)}, got {value!r}", source)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _fail(f"key '{key}': expected a mapping, got {value!r}", source)
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if origin in (tuple, list, Sequence, typing.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(f"key '{key}': expected a list, got {value!r}", source)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _fail(f"key '{key}': expected {len(args)} values, got {len(value)}", source)
            items = [_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else list(items)
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(f"key '{key}': expected a mapping, got {value!r}", source)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as a number.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(f"key '{key}': expected a number, got {value!r}", source)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"key '{key}': expected an integer, got {value!r}", source)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(f"key '{key}': expected true or false, got {value!r}", source)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(f"key '{key}': expected a string, got {value!r}", source)
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise _fail(f"key '{key}': expected a path, got {value!r}", source)
        return Path(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str | None = None, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, validating every key.

    Parameters
    ----------
    cls : type
        A dataclass type. Fields may be nested dataclasses, lists, tuples,
        dicts, ``Optional``/unions and ``Literal``. ``field(metadata=...)`` may
        declare ``range=(lo, hi)`` (inclusive, ``None`` for open) or ``choices``.
    data : mapping or None
        Values; missing keys take the field defaults.
    source : str, optional
        The file the values came from, named in every error.
    prefix : str
        Dotted key prefix for nested error messages.

    Returns
    -------
    An instance of ``cls``.

    Raises
    ------
    SparsenuError
        Unknown key, wrong type, out-of-range value, missing required key.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise _fail(f"key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise _fail(
                f"unknown key '{prefix}{key}'{hint}; valid keys: {', '.join(sorted(fields))}", source
            )
    kwargs = {}
    for name, f in fields.items():
        full = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _fail(f"missing required key '{full}'", source)
            continue
        value = _convert(data[name], hints[name], full, source)
        meta = f.metadata or {}
        if "choices" in meta and value not in meta["choices"]:
            raise _fail(f"key '{full}': expected one of {list(meta['choices'])}, got {value!r}", source)
        if "range" in meta and value is not None:
            lo, hi = meta["range"]
            vals = value if isinstance(value, (list, tuple)) else [value]
            for v in vals:
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    raise _fail(
                        f"key '{full}': value {value!r} out of range [{lo}, {hi}]", source
                    )
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _fail(f"invalid '{prefix.rstrip('.') or cls.__name__}': {exc}", source) from None


def to_dict(obj: Any) -> Any:
    """Convert a dataclass (recursively) to plain YAML-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, unreadable or non-mapping file is a SparsenuError."""
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SparsenuError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SparsenuError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: Sequence[str], source: str = "command line") -> dict:
    """Apply ``key.sub=value`` overrides to a nested mapping (a copy is returned).

    Values are parsed as YAML scalars/flow collections. An override may add a key
    the file left at its default; unknown keys are caught later by :func:`from_dict`.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise SparsenuError(f"override '{item}' must look like key.sub=value ({source})")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise SparsenuError(f"override '{item}' has an empty key ({source})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise SparsenuError(f"override '{item}': '{p}' is not a section ({source})")
            node = nxt
        node[parts[-1]] = value
    return out


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Load YAML file ``path`` into dataclass ``cls`` after applying overrides.

    Errors name the offending key and the file.
    """
    data = apply_overrides(load_yaml(path), overrides)
    return from_dict(cls, data, source=str(path))


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass (or mapping) as YAML, e.g. the resolved config of a run."""
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(to_dict(obj), fh, sort_keys=False)
