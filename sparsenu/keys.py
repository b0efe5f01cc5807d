"""Stable keys: content hashes of configurations and file fingerprints.

These keys name cache entries (simulated data, training runs, evaluations). They are
stable across processes, machines and Python versions (``json`` with sorted keys and
SHA-256, never Python's salted ``hash()``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["config_hash", "file_key", "file_sha256"]


def config_hash(obj: Any, n: int = 12) -> str:
    """First ``n`` hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys).

    Parameters
    ----------
    obj : JSON-compatible value
        Typically ``ConfigModel.to_dict()`` output; other objects are converted with ``str``.
    """
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def file_key(path: str | Path) -> dict:
    """What identifies a file's version cheaply: resolved path, size and modification time (ns)."""
    path = Path(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
