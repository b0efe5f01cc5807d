"""Stable keys: the one seed derivation, content hashes of configurations, file fingerprints.

Seeds name random streams (a simulated event, a training shuffle, an augmentation view);
hashes name cache entries (simulated data, training runs, evaluations). All are stable
across processes, machines and Python versions (BLAKE2b / SHA-256 of canonical text, never
Python's salted ``hash()``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["derive_seed", "config_hash", "file_key", "file_sha256"]

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """The one seed derivation of sparsenu: a 63-bit seed from any sequence of parts.

    BLAKE2b-64 of ``'|'.join(map(str, parts))``, masked to 63 bits (a valid seed for numpy,
    torch and Python). Give a name first so that streams of different uses never collide:
    ``derive_seed("sampler", run_seed, "train", epoch)``.

    Parameters
    ----------
    *parts : str or int
        What identifies the stream.
    """
    key = "|".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _MASK63


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
