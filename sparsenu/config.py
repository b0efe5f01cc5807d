"""The one configuration mechanism: validated models, YAML files, includes and overrides.

Every configuration type in sparsenu (detector, simulation, augmentation, training,
benchmark suite) is a :class:`ConfigModel`, a frozen pydantic v2 model defined next to
the code it configures. One mechanism therefore checks every value, on construction,
on load from YAML and on every copy (:meth:`ConfigModel.replace`):

- unknown or misspelled keys are errors (``extra="forbid"``, with a "did you mean" hint);
- types are strict: an integer is not accepted for a boolean, a boolean not for a number,
  a float not for an integer (an integer *is* accepted for a float), and numbers must be
  finite; YAML lists are accepted where a tuple is declared;
- ranges and choices are declared on the fields (``Field(ge=..., le=...)``, ``Literal``);
  cross-field rules are ``model_validator(mode="after")`` methods raising ``ValueError``.

:func:`load_config` reads a YAML file (``include:`` other files, ``key.sub=value``
overrides) into a model; every error becomes one :class:`~sparsenu.errors.SparsenuError`
line naming the key and the file. This module imports neither torch nor any other
sparsenu subpackage.
"""
from __future__ import annotations

import copy
import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator, validate_call

from sparsenu.errors import SparsenuError

__all__ = [
    "ConfigModel",
    "from_dict",
    "to_dict",
    "load_yaml",
    "load_config",
    "apply_overrides",
    "set_dotted",
    "deep_merge",
    "dump_yaml",
    "format_validation_error",
    "json_schema",
    "yaml_scalar",
    "validated",
]

M = TypeVar("M", bound="ConfigModel")


# --------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_scalar(text: str) -> Any:
    """Parse one ``value`` of a ``key=value`` override with the YAML rules of config files.

    ``lr=1e-3`` gives a float, ``flag=true`` a bool, ``widths=[16,32]`` a list; text that is
    not valid YAML is kept as a string.
    """
    if not text.strip():
        return ""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, following ``include:`` keys.

    ``include: other.yaml`` (or a list of files), relative to the including file, is read
    first and deep-merged under the file's own keys (:func:`deep_merge`).

    Raises
    ------
    SparsenuError
        Missing, unreadable, non-UTF-8, empty or non-mapping file, invalid YAML, an include
        cycle.
    """
    return _load_yaml(Path(path), ())


def _load_yaml(path: Path, stack: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise SparsenuError(f"config file not found: {path}")
    if path.resolve() in stack:
        raise SparsenuError(f"{path}: include cycle ({' -> '.join(str(p) for p in stack + (path,))})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SparsenuError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a YAML config") from None
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise SparsenuError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        raise SparsenuError(f"{path}: the config file is empty")
    if not isinstance(data, dict):
        raise SparsenuError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    inc = data.pop("include", None)
    if inc is None:
        return data
    items = [inc] if isinstance(inc, str) else inc
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise SparsenuError(f"{path}: 'include' must be a file name or a list of file names")
    base: dict = {}
    for item in items:
        base = deep_merge(base, _load_yaml(path.parent / item, stack + (path.resolve(),)))
    return deep_merge(base, data)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict:
    """``base`` updated by ``top``; nested mappings are merged key by key, anything else replaced."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], source: str = "command line") -> dict:
    """Apply ``key.sub=value`` overrides to a nested mapping (a copy is returned).

    Values are parsed by :func:`yaml_scalar`. An override may add a key the file left at
    its default; unknown keys are caught when the mapping is validated.
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise SparsenuError(f"override '{item}' must look like key.sub=value ({source})")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise SparsenuError(f"override '{item}' has an empty key ({source})")
        try:
            set_dotted(out, key, yaml_scalar(raw))
        except ValueError as exc:
            raise SparsenuError(f"override '{item}': {exc} ({source})") from None
    return out


def set_dotted(data: dict, key: str, value: Any) -> None:
    """``data["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating missing sections.

    Raises
    ------
    ValueError
        A part of the key names something that is not a section.
    """
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"'{p}' is not a section")
        node = nxt
    node[parts[-1]] = value


def json_schema(cls: type[BaseModel]) -> dict:
    """The JSON schema of a configuration model, for editors (``sparsenu config-schema``).

    Every key with its type, default, range and description; ``additionalProperties: false``
    where unknown keys are errors.
    """
    return cls.model_json_schema()


def dump_yaml(obj: Any) -> str:
    """A model (or mapping) as YAML text, e.g. the resolved config of a run; write it with the
    I/O base's atomic writer (``sparsenu.data.formats.base.write_text_atomic``)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


# --------------------------------------------------------------------------------- models
def _has_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple or tp is tuple:
        return True
    return any(_has_tuple(a) for a in typing.get_args(tp) if a is not Ellipsis)


def _tuples(value: Any, tp: Any) -> Any:
    """Turn YAML lists into tuples wherever the annotation ``tp`` declares a tuple."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _tuples(value, args[0])
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None) and _has_tuple(a):
                return _tuples(value, a)
        return value
    if (origin is tuple or tp is tuple) and isinstance(value, list):
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(_tuples(v, a) for v, a in zip(value, args)) + tuple(value[len(args):])
        item = args[0] if args else Any
        return tuple(_tuples(v, item) for v in value)
    if origin in (list, Sequence) and isinstance(value, list) and args:
        return [_tuples(v, args[0]) for v in value]
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(args) == 2:
        return {k: _tuples(v, args[1]) for k, v in value.items()}
    return value


class ConfigModel(BaseModel):
    """Base of every sparsenu configuration type (frozen, strict, unknown keys forbidden).

    Subclasses declare fields with types, defaults, ``Field(ge=, le=)`` ranges and
    ``Literal`` choices, and cross-field rules in ``@model_validator(mode="after")``
    methods raising ``ValueError``. Copies are made with :meth:`replace`, which validates
    again (pydantic's own ``model_copy(update=...)`` would not).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              validate_default=False, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _yaml_lists_to_tuples(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            for name, field in cls.model_fields.items():
                if name in data and _has_tuple(field.annotation):
                    data[name] = _tuples(data[name], field.annotation)
        return data

    def replace(self: M, **changes: Any) -> M:
        """A validated copy with ``changes`` applied (``ValueError`` naming bad fields).

        Parameters
        ----------
        **changes
            Field name -> new value (a nested model or a mapping for nested sections).
        """
        bad = sorted(set(changes) - set(type(self).model_fields))
        if bad:
            raise ValueError(f"{type(self).__name__}.replace: unknown field(s) {bad}; "
                             f"valid: {sorted(type(self).model_fields)}")
        data = {k: getattr(self, k) for k in type(self).model_fields}
        data.update(changes)
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise ValueError(str(format_validation_error(exc, type(self)))) from None

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> M:
        """Like pydantic's, but an ``update`` is validated (:meth:`replace`)."""
        if update:
            return self.replace(**dict(update))
        return super().model_copy(deep=deep)

    def to_dict(self) -> dict:
        """Plain YAML/JSON-safe mapping of every field (tuples as lists)."""
        return to_dict(self)


def to_dict(obj: Any) -> Any:
    """Convert a model (recursively, also inside containers) to plain YAML-safe values."""
    if isinstance(obj, BaseModel):
        return {name: to_dict(getattr(obj, name)) for name in type(obj).model_fields}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------- errors
def _model_in(ann: Any) -> type[BaseModel] | None:
    return next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)),
                None)


def _tagged_member(ann: Any, tag: Any) -> type[BaseModel] | None:
    """The model of the member of a tagged union (``Annotated[Model, Tag(tag)]``) named ``tag``."""
    for member in typing.get_args(ann):
        if typing.get_origin(member) is typing.Annotated:
            base, *meta = typing.get_args(member)
            if any(getattr(m, "tag", None) == tag for m in meta):
                return _model_in(base)
    return None


def _walk_loc(cls: type[BaseModel] | None, loc: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """``loc`` without the tags pydantic inserts after a tagged-union field (``detector.segcube.x``
    -> ``detector.x``), and the field names of the model at its end (for "did you mean" hints)."""
    out: list[Any] = []
    union: Any = None
    for part in loc:
        member = _tagged_member(union, part) if union is not None else None
        union = None
        if member is not None:
            cls = member
            continue
        out.append(part)
        if cls is None or not isinstance(part, str) or part not in cls.model_fields:
            cls = None
            continue
        union = ann = cls.model_fields[part].annotation
        cls = _model_in(ann)
    return out, (sorted(cls.model_fields) if cls is not None else [])


def _fields_at(cls: type[BaseModel] | None, loc: Sequence[Any]) -> list[str]:
    """Field names of the model found by walking ``loc`` (for "did you mean" hints)."""
    return _walk_loc(cls, loc)[1]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_error(exc: ValidationError, cls: type[BaseModel] | None = None,
                            source: str | None = None, prefix: str = "") -> SparsenuError:
    """One :class:`SparsenuError` line for a pydantic ``ValidationError``.

    Names the dotted key (``prefix`` + location), the file (``source``), what was expected
    and what was given; an unknown key gets a "did you mean" hint and the valid keys.
    """
    errors = exc.errors(include_url=False)
    e = errors[0]
    raw = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    loc = _walk_loc(cls, raw)[0]
    key = prefix + ".".join(str(p) for p in loc)
    kind, msg = e["type"], e["msg"]
    where = f" in {source}" if source else ""
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if kind == "extra_forbidden":
        valid = _fields_at(cls, raw[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean '{prefix}{'.'.join(str(p) for p in loc[:-1] + [close[0]])}'?)" if close else ""
        listing = f"; valid keys: {', '.join(valid)}" if valid else ""
        text = f"unknown key '{key}'{hint}{listing}"
    elif kind == "missing":
        text = f"missing required key '{key}'"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        m = re.match(r"unknown key '([^']+)'(.*)", msg, re.S)
        if m:  # a validator naming an unknown key inside a mapping field: give its full dotted key
            text = f"unknown key '{key + '.' if key else ''}{m.group(1)}'{m.group(2)}"
        else:
            what = f"invalid '{key}'" if key else f"invalid {prefix.rstrip('.') or (cls.__name__ if cls else 'config')}"
            text = f"{what}: {msg}"
    else:
        text = f"key '{key or '<root>'}': {msg[0].lower() + msg[1:]}, got {_short(e.get('input'))}"
    return SparsenuError(f"{text}{where}{more}")


def from_dict(cls: type[M], data: Mapping[str, Any] | None, source: str | None = None, prefix: str = "") -> M:
    """Validate a mapping into the model ``cls``; errors name the key and ``source``.

    Parameters
    ----------
    cls : type of ConfigModel
    data : mapping or None
        Values; missing keys take the defaults.
    source : str, optional
        The file the values came from, named in every error.
    prefix : str
        Dotted key prefix for errors of a nested section (``"data.simulate."``).

    Raises
    ------
    SparsenuError
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        where = f" in {source}" if source else ""
        raise SparsenuError(f"key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {_short(data)}{where}")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise format_validation_error(exc, cls, source, prefix) from None


def load_config(cls: type[M], path: str | Path, overrides: Sequence[str] = ()) -> M:
    """Load YAML file ``path`` (with includes) into ``cls`` after applying ``overrides``."""
    data = apply_overrides(load_yaml(path), overrides)
    return from_dict(cls, data, source=str(path))


_CALL_CONFIG = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)
F = TypeVar("F", bound=Callable[..., Any])


def validated(what: str) -> Callable[[F], F]:
    """Validate a function's arguments against its annotations with the rules of :class:`ConfigModel`.

    For constructors whose arguments are configuration (augmentation hyper-parameters):
    declare constraints in the annotations (``Annotated[float, Field(ge=0, le=1)]``);
    a bad value raises :class:`SparsenuError` ``"<what>: key 'p': ..."``.

    Parameters
    ----------
    what : str
        Names the object in error messages (e.g. ``"augmentation VoxelDropout"``).
    """
    def wrap(func: F) -> F:
        checked = validate_call(config=_CALL_CONFIG)(func)

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return checked(*args, **kwargs)
            except ValidationError as exc:
                raise SparsenuError(f"{what}: {format_validation_error(exc)}") from None

        return inner  # type: ignore[return-value]

    return wrap
