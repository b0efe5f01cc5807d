"""Machine-readable HDF5 schemas and their validation.

An HDF5 file is described as a JSON document (:func:`describe_h5`)::

    {"attrs":    {name: value, ...},                      # root attributes, JSON values
     "datasets": {"/path": {"dtype": "int32", "ndim": 2, "shape": [N, 3],
                            "fields": {...}, "base": ...}, ...},
     "groups":   ["/path", ...]}

and validated with :mod:`jsonschema` against ``sparsenu/data/schemas/<name>.json``.
The JSON schemas describe dtypes, ranks, fixed axis lengths, required
attributes and their types. Structural cross-checks that JSON schema cannot
express (offsets monotonic, ``offsets[-1] == len(rows)``, per-event arrays of
length ``E``) are declared in each schema under ``"x-offsets"`` and checked by
:func:`check_offsets` on the real data.

Only metadata is read by :func:`describe_h5`; no dataset payload is touched.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparsenu.errors import SparsenuError

__all__ = [
    "require_hdf5",
    "schema_attr",
    "describe_h5",
    "load_schema",
    "validate_description",
    "validate_h5",
    "check_offsets",
    "open_h5",
    "dtype_name",
]


def dtype_name(dt: np.dtype) -> str:
    """A short, stable name for an HDF5/numpy dtype (``int32``, ``compound``, ``vlen``, ``string``)."""
    if h5py.check_vlen_dtype(dt) is not None:
        base = h5py.check_vlen_dtype(dt)
        if base in (str, bytes):
            return "string"
        return "vlen"
    if h5py.check_string_dtype(dt) is not None:
        return "string"
    if dt.names is not None:
        return "compound"
    if dt.subdtype is not None:
        return dtype_name(dt.subdtype[0])
    if dt.kind == "b":
        return "bool"
    return dt.name


def _dtype_doc(dt: np.dtype) -> dict:
    doc: dict[str, Any] = {"dtype": dtype_name(dt)}
    if dt.names is not None and dt.fields is not None:
        fields = {}
        for name in dt.names:
            fdt = dt.fields[name][0]
            sub = _dtype_doc(fdt.base if fdt.subdtype is not None else fdt)
            sub["shape"] = list(fdt.shape)
            fields[name] = sub
        doc["fields"] = fields
    base = h5py.check_vlen_dtype(dt)
    if base is not None and base not in (str, bytes):
        doc["base"] = dtype_name(np.dtype(base))
    return doc


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def describe_h5(f: h5py.File) -> dict:
    """Describe an open HDF5 file as a JSON-compatible document (metadata only).

    Parameters
    ----------
    f : h5py.File
        An open file.

    Returns
    -------
    dict with ``attrs`` (root attributes), ``datasets`` (``"/path"`` ->
    ``{"dtype", "ndim", "shape", ["fields"], ["base"]}``) and ``groups``.
    """
    datasets: dict[str, dict] = {}
    groups: list[str] = []

    def visit(name: str, obj: Any) -> None:
        path = "/" + name
        if isinstance(obj, h5py.Dataset):
            doc = _dtype_doc(obj.dtype)
            doc["ndim"] = obj.ndim
            doc["shape"] = [int(s) for s in obj.shape]
            datasets[path] = doc
        elif isinstance(obj, h5py.Group):
            groups.append(path)

    f.visititems(visit)
    attrs = {str(k): _json_value(v) for k, v in f.attrs.items()}
    return {"attrs": attrs, "datasets": datasets, "groups": groups}


@functools.cache
def load_schema(name: str) -> dict:
    """Load ``sparsenu/data/schemas/<name>.json`` (cached)."""
    text = resources.files("sparsenu.data").joinpath("schemas", f"{name}.json").read_text("utf-8")
    return json.loads(text)


def _where(error: Any) -> str:
    parts = [str(p) for p in error.absolute_path]
    # datasets/<path>/<key> reads better as "<path> <key>"
    if len(parts) >= 2 and parts[0] in ("datasets", "attrs"):
        head = f"dataset {parts[1]}" if parts[0] == "datasets" else f"attribute '{parts[1]}'"
        rest = "/".join(parts[2:])
        return f"{head}{' ' + rest if rest else ''}"
    return "/".join(parts) or "file"


def _message(err: Any) -> str:
    """A readable message for the common cases; jsonschema's own text otherwise."""
    parts = list(err.absolute_path)
    if err.validator == "required":
        missing = [r for r in err.validator_value if r not in (err.instance or {})]
        if parts == ["datasets"]:
            return f"missing dataset {missing[0]}" if missing else err.message
        if parts == ["attrs"]:
            return f"missing attribute '{missing[0]}'" if missing else err.message
    if err.validator == "contains" and parts == ["groups"]:
        pattern = err.validator_value.get("pattern", "?")
        return f"no group matching {pattern}"
    if err.validator == "const":
        return f"expected {err.validator_value!r}, found {err.instance!r}"
    return err.message


def validate_description(doc: dict, schema_name: str, path: str | Path) -> None:
    """Validate a :func:`describe_h5` document against a named schema.

    Raises
    ------
    SparsenuError
        Naming the file, the schema title and the first (most relevant) problem.
    """
    import jsonschema

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        msg = _message(err)
        if len(msg) > 200:
            msg = msg[:200] + "..."
        where = _where(err) if len(list(err.absolute_path)) > 1 else ""
        raise SparsenuError(
            f"{path}: not a valid {schema.get('title', schema_name)} file: {where + ': ' if where else ''}{msg}"
        )


def check_offsets(f: h5py.File, schema_name: str, path: str | Path) -> None:
    """Run the schema's ``x-offsets`` cross-checks on the data.

    Each entry ``{"offsets": "/o", "rows": ["/a", ...], "events": ["/e", ...]}``
    requires ``o[0] == 0``, ``o`` non-decreasing, ``o[-1] == len(a)`` for every
    row dataset and ``len(e) == len(o) - 1`` for every per-event dataset.
    """
    schema = load_schema(schema_name)
    for check in schema.get("x-offsets", []):
        oname = check["offsets"]
        if oname not in f:
            continue
        try:
            offsets = np.asarray(f[oname][()])
        except Exception as exc:  # corrupt payload
            raise SparsenuError(f"{path}: cannot read {oname}: {exc}") from None
        if offsets.ndim != 1 or offsets.size < 1:
            raise SparsenuError(f"{path}: {oname} must have at least one entry (E + 1 offsets)")
        if offsets[0] != 0:
            raise SparsenuError(f"{path}: {oname}[0] is {offsets[0]}, expected 0")
        if offsets.size > 1 and np.any(np.diff(offsets) < 0):
            bad = int(np.argmax(np.diff(offsets) < 0))
            raise SparsenuError(f"{path}: {oname} is not non-decreasing (at event {bad})")
        n_events = offsets.size - 1
        for rname in check.get("rows", []):
            if rname in f and f[rname].shape[0] != offsets[-1]:
                raise SparsenuError(
                    f"{path}: {oname}[-1] = {int(offsets[-1])} but {rname} has {f[rname].shape[0]} rows"
                )
        for ename in check.get("events", []):
            if ename in f and f[ename].shape[0] != n_events:
                raise SparsenuError(
                    f"{path}: {ename} has {f[ename].shape[0]} entries, expected {n_events} "
                    f"(len({oname}) - 1)"
                )


def require_hdf5(path: str | Path, *, what: str = "input file", expected: str = "",
                 not_hdf5: str = "not an HDF5 file") -> Path:
    """The path of an existing HDF5 file, or a SparsenuError saying what is wrong.

    Parameters
    ----------
    path : the file
    what : how a missing file is named ("<what> not found: <path>")
    expected : appended to the not-HDF5 message ("; expected <expected>") when given
    not_hdf5 : the not-HDF5 message itself
    """
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"{what} not found: {path}")
    if not h5py.is_hdf5(path):
        raise SparsenuError(f"{path}: {not_hdf5}" + (f"; expected {expected}" if expected else ""))
    return path


def schema_attr(f: h5py.File) -> str | None:
    """The root ``schema`` attribute of an open file, decoded (None when absent)."""
    schema = f.attrs.get("schema")
    return schema.decode() if isinstance(schema, bytes) else schema


def open_h5(path: str | Path, mode: str = "r", **kwargs: Any) -> h5py.File:
    """Open an HDF5 file for reading; missing or unreadable files are a SparsenuError."""
    path = Path(path)
    if not path.exists():
        raise SparsenuError(f"{path}: file not found")
    if path.is_dir():
        raise SparsenuError(f"{path}: is a directory, expected an HDF5 file")
    try:
        return h5py.File(path, mode, **kwargs)
    except OSError as exc:
        reason = str(exc).split("(")[0].strip() or "unreadable"
        raise SparsenuError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {reason}") from None


def validate_h5(f: h5py.File, schema_name: str, path: str | Path, *, data_checks: bool = True) -> dict:
    """Validate an open file against ``schema_name``; returns the description.

    Checks the metadata with :mod:`jsonschema`, the ``schema_version`` against
    the schema's ``x-max-version`` and (``data_checks``) the offsets.
    """
    try:
        doc = describe_h5(f)
    except Exception as exc:  # h5py raises RuntimeError/OSError/KeyError on damaged metadata
        raise SparsenuError(f"{path}: corrupt HDF5 metadata: {exc}") from None
    validate_description(doc, schema_name, path)
    schema = load_schema(schema_name)
    max_version = schema.get("x-max-version")
    version = doc["attrs"].get("schema_version")
    if max_version is not None and isinstance(version, int) and version > max_version:
        raise SparsenuError(
            f"{path}: schema_version {version} is newer than this sparsenu supports ({max_version}); "
            "upgrade sparsenu"
        )
    if data_checks:
        check_offsets(f, schema_name, path)
    return doc


def decode_attrs(f: h5py.File, json_keys: tuple[str, ...] = ()) -> dict:
    """Root attributes of ``f`` as plain Python values.

    Bytes become ``str``, numpy scalars and arrays become Python scalars and lists, and
    the attributes named in ``json_keys`` are parsed from their JSON strings (invalid JSON
    is a SparsenuError naming the file and the attribute: the file is corrupt).
    """
    out: dict[str, Any] = {}
    for k, v in f.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    for k in json_keys:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                raise SparsenuError(f"{f.filename}: attribute '{k}' is not valid JSON") from None
    return out
