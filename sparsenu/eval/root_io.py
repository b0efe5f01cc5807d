"""ROOT output for analyses: per-event TTrees written and read with ``uproot``.

``uproot`` is an optional dependency (``pip install sparsenu[root]``), imported only when
a ROOT file is written or read. A file holds one TTree ``events`` (one entry per event,
numeric and fixed-size array branches) and, next to it in the top directory, one
``TObjString`` per metadata item (checkpoint hash, config, input file, ...), which ROOT
shows with ``f->ls()`` and returns with ``f->Get<TObjString>("checkpoint_sha256")->GetString()``.
Layouts: ``data_specs/embeddings.md`` and ``data_specs/predictions.md``.

Files are written like every sparsenu output: to a temporary file next to the target,
renamed into place only when complete (:func:`sparsenu.data.formats.sparse_h5.atomic_output`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.errors import SparsenuError

__all__ = ["TREE_NAME", "require_uproot", "output_format", "is_root_file", "write_event_tree",
           "read_event_tree", "write_embeddings_root", "load_embeddings_root"]

#: name of the per-event TTree in every sparsenu ROOT file
TREE_NAME = "events"
#: entries per TBasket written at once (about 1 MB for 64 float32 embedding dimensions)
BASKET_ENTRIES = 4096
#: metadata items stored as text but read back as integers
_INT_METADATA = ("schema_version", "embed_dim", "n_events", "n_classes")

_SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".root": "root"}
FORMATS = ("hdf5", "root")


def require_uproot() -> Any:
    """The ``uproot`` module, or a SparsenuError that says how to install it."""
    try:
        import uproot
    except ImportError:
        raise SparsenuError("ROOT output needs uproot: pip install sparsenu[root] (or pip install uproot)") from None
    return uproot


def output_format(path: str | Path, fmt: str | None = None) -> str:
    """Output format of ``path``: ``fmt`` when given, else from the suffix.

    Parameters
    ----------
    path : path
        Output file; ``.h5``/``.hdf5``/``.hdf`` -> ``"hdf5"``, ``.root`` -> ``"root"``.
    fmt : {"hdf5", "h5", "root"}, optional
        Explicit choice (``--format``); overrides the suffix.

    Raises
    ------
    SparsenuError
        Unknown ``fmt``, or no ``fmt`` and a suffix that names neither format.
    """
    if fmt is not None:
        f = {"h5": "hdf5", "hdf5": "hdf5", "root": "root"}.get(str(fmt).lower())
        if f is None:
            raise SparsenuError(f"unknown output format {fmt!r}; choose hdf5 (h5) or root")
        return f
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise SparsenuError(f"{path}: cannot tell the output format from the suffix {suffix or '(none)'!r}; "
                            "name the file .h5/.hdf5 (HDF5) or .root (ROOT), or pass --format hdf5|root")
    return _SUFFIXES[suffix]


def is_root_file(path: str | Path) -> bool:
    """Whether ``path`` starts with the ROOT file signature (``b"root"``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"root"
    except OSError:
        return False


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, (bool, int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def write_event_tree(path: str | Path, branches: Mapping[str, np.ndarray], metadata: Mapping[str, Any], *,
                     title: str = "", overwrite: bool = False) -> Path:
    """Write one TTree :data:`TREE_NAME` plus ``TObjString`` metadata, atomically.

    Parameters
    ----------
    path : path
        Output ROOT file.
    branches : mapping name -> array [E] or [E, K]
        One branch per item, all with ``E`` entries; 2-D arrays become fixed-size array
        branches (``name[K]``). dtypes are kept (int64 -> ``Long64_t``, float32 -> ``Float_t``).
    metadata : mapping name -> value
        Each stored as a ``TObjString`` named ``name`` in the top directory (strings as
        they are, numbers as text, anything else as JSON).
    title : str
        Title of the tree.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path of the written file.
    """
    from sparsenu.data.formats.sparse_h5 import atomic_output

    uproot = require_uproot()
    arrays = {k: np.ascontiguousarray(v) for k, v in branches.items()}
    n = {len(v) for v in arrays.values()}
    if len(n) > 1:
        raise ValueError(f"branches of different lengths: { {k: len(v) for k, v in arrays.items()} }")
    if TREE_NAME in metadata:
        raise ValueError(f"metadata key {TREE_NAME!r} would replace the tree")
    types = {k: (v.dtype if v.ndim == 1 else np.dtype((v.dtype, v.shape[1:]))) for k, v in arrays.items()}
    n_entries = n.pop() if n else 0
    with atomic_output(path, overwrite) as tmp:
        with uproot.recreate(tmp) as f:
            tree = f.mktree(TREE_NAME, types, title=title)
            for a in range(0, n_entries, BASKET_ENTRIES):
                tree.extend({k: v[a:a + BASKET_ENTRIES] for k, v in arrays.items()})
            for key, value in metadata.items():
                f[str(key)] = _text(value)
    return Path(path)


def read_event_tree(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_event_tree`.

    Returns
    -------
    branches : dict name -> ndarray [E] or [E, K]
    metadata : dict name -> str (``schema_version``, ``embed_dim``, ``n_events``,
        ``n_classes`` as int)

    Raises
    ------
    SparsenuError
        Missing, unreadable or not a ROOT file, or no ``events`` tree.
    """
    uproot = require_uproot()
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"file not found: {path}")
    try:
        with uproot.open(path) as f:
            names = {k.split(";")[0]: c for k, c in f.classnames(recursive=False).items()}
            if names.get(TREE_NAME) != "TTree":
                raise SparsenuError(f"{path}: no TTree '{TREE_NAME}' (not written by sparsenu)")
            tree = f[TREE_NAME]
            branches = {k: np.asarray(v) for k, v in tree.arrays(library="np").items()}
            meta: dict[str, Any] = {k: str(f[k]) for k, c in names.items() if c == "TObjString"}
    except SparsenuError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparsenuError(f"{path}: not a readable ROOT file ({first})") from None
    for k in _INT_METADATA:
        if k in meta:
            try:
                meta[k] = int(meta[k])
            except ValueError:
                pass
    return branches, meta


def write_embeddings_root(path: str | Path, embeddings: np.ndarray, event_id: np.ndarray, labels: np.ndarray,
                          attrs: Mapping[str, Any], *, probabilities: np.ndarray | None = None,
                          predicted: np.ndarray | None = None, overwrite: bool = False) -> Path:
    """Write an embeddings file as ROOT (``data_specs/embeddings.md``, "ROOT layout").

    Parameters
    ----------
    path : path
    embeddings : float32 [E, D]
    event_id, labels : int64 [E]
    attrs : mapping
        File metadata (schema, versions, checkpoint hash, config, input, class names...),
        one ``TObjString`` each.
    probabilities : float32 [E, C], optional
    predicted : int64 [E], optional
        Given together with ``probabilities``.
    overwrite : bool
    """
    branches: dict[str, np.ndarray] = {"event_id": event_id, "label": labels, "embedding": embeddings}
    if probabilities is not None:
        branches["probabilities"] = probabilities
        branches["predicted"] = np.asarray(predicted, np.int64)
    return write_event_tree(path, branches, attrs, title="sparsenu embeddings: one entry per event",
                            overwrite=overwrite)


def load_embeddings_root(path: str | Path) -> dict[str, Any]:
    """Read a ROOT embeddings file into the dict :func:`sparsenu.load_embeddings` returns.

    Returns
    -------
    dict with ``embeddings`` float32 [E, D], ``event_id`` int64 [E], ``labels`` int64 [E],
    ``attrs`` (metadata), and, when present, ``probabilities`` float32 [E, C],
    ``predicted`` int64 [E], ``classes`` int64 [C], ``class_names`` list of str.
    """
    from sparsenu.eval.embeddings import EMBEDDINGS_SCHEMA, EMBEDDINGS_SCHEMA_VERSION

    branches, meta = read_event_tree(path)
    if meta.get("schema") != EMBEDDINGS_SCHEMA or "embedding" not in branches:
        raise SparsenuError(f"{path}: not an embeddings file (schema {meta.get('schema')!r}, "
                            f"expected {EMBEDDINGS_SCHEMA!r})")
    if int(meta.get("schema_version", 0)) > EMBEDDINGS_SCHEMA_VERSION:
        raise SparsenuError(f"{path}: embeddings schema version {meta['schema_version']} is newer than this "
                            f"sparsenu reads ({EMBEDDINGS_SCHEMA_VERSION}); upgrade sparsenu")
    emb = branches["embedding"].astype(np.float32, copy=False)
    out: dict[str, Any] = {
        "embeddings": emb.reshape(len(emb), int(meta.get("embed_dim") or (emb.shape[-1] if emb.ndim == 2 else 0))),
        "event_id": branches["event_id"].astype(np.int64, copy=False),
        "labels": branches["label"].astype(np.int64, copy=False),
        "attrs": meta,
    }
    if "probabilities" in branches:
        prob = branches["probabilities"].astype(np.float32, copy=False)
        out["probabilities"] = prob.reshape(len(prob), int(meta.get("n_classes", 0)))
        out["predicted"] = branches["predicted"].astype(np.int64, copy=False)
        out["classes"] = np.asarray(json.loads(meta.get("classes", "[]")), np.int64)
        out["class_names"] = list(json.loads(meta.get("class_names", "[]")))
    return out
