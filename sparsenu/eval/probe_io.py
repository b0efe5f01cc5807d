"""Fitted linear probes on disk, without pickle (``data_specs/predictions.md``).

A :class:`~sparsenu.models.probe.LinearProbe` is a ``StandardScaler`` followed by a
logistic regression; both are a handful of arrays. :func:`save_probe` writes them, with the
fit metadata, to a small HDF5 file; :func:`load_probe` rebuilds a ``LinearProbe`` whose
``predict`` and ``predict_proba`` equal the original's (same arrays, same scikit-learn code).

Layout (schema ``sparsenu.linear_probe``, version 1; ``D`` embedding dimensions, ``K``
classes, ``K' = 1`` for two classes else ``K``)::

    /scaler/mean       float64 [D]
    /scaler/scale      float64 [D]     (1 where the training variance was 0)
    /scaler/var        float64 [D]
    /logreg/coef       float64 [K', D]
    /logreg/intercept  float64 [K']
    /logreg/classes    int64   [K]     class label of each probability column
    attrs: schema, schema_version, C, max_iter, n_features, n_samples_seen,
           sparsenu_version, metadata (JSON: e.g. method, seed, checkpoint_sha256)
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.schema import require_hdf5, schema_attr
from sparsenu.errors import SparsenuError

__all__ = ["PROBE_SCHEMA", "PROBE_SCHEMA_VERSION", "save_probe", "load_probe", "probe_from_arrays"]

PROBE_SCHEMA = "sparsenu.linear_probe"
PROBE_SCHEMA_VERSION = 1


def save_probe(path: str | Path, probe: Any, metadata: Mapping[str, Any] | None = None, *,
               overwrite: bool = False) -> Path:
    """Write a fitted ``LinearProbe`` to an HDF5 file, atomically.

    Parameters
    ----------
    path : path
        Output file (``.h5``).
    probe : LinearProbe
        Fitted (``probe.pipeline_`` exists); integer class labels.
    metadata : mapping, optional
        JSON-serialisable fit metadata, e.g. ``{"method": "simclr", "seed": 0,
        "checkpoint_sha256": ..., "train": ...}``. ``checkpoint_sha256`` lets
        ``sparsenu predict`` refuse a probe fitted on another encoder's embeddings.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path of the written file.
    """
    import h5py

    from sparsenu import __version__
    from sparsenu.data.formats.sparse_h5 import atomic_output

    pipeline = getattr(probe, "pipeline_", None)
    if pipeline is None:
        raise ValueError("save_probe: the probe is not fitted")
    scaler, logreg = pipeline.named_steps["scale"], pipeline.named_steps["logreg"]
    classes = np.asarray(logreg.classes_)
    if classes.dtype.kind not in "iu":
        raise ValueError(f"save_probe: integer class labels expected, got {classes.dtype}")
    try:
        meta = json.dumps(dict(metadata or {}), sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"save_probe: metadata must be JSON-serialisable ({exc})") from None
    with atomic_output(path, overwrite) as tmp, h5py.File(tmp, "w") as f:
        f["scaler/mean"] = np.asarray(scaler.mean_, np.float64)
        f["scaler/scale"] = np.asarray(scaler.scale_, np.float64)
        f["scaler/var"] = np.asarray(scaler.var_, np.float64)
        f["logreg/coef"] = np.asarray(logreg.coef_, np.float64)
        f["logreg/intercept"] = np.asarray(logreg.intercept_, np.float64)
        f["logreg/classes"] = classes.astype(np.int64)
        f.attrs.update({
            "schema": PROBE_SCHEMA, "schema_version": PROBE_SCHEMA_VERSION, "C": float(probe.C),
            "max_iter": int(probe.max_iter), "n_features": int(scaler.mean_.shape[0]),
            "n_samples_seen": int(np.max(scaler.n_samples_seen_)), "sparsenu_version": __version__,
            "metadata": meta,
        })
    return Path(path)


def probe_from_arrays(mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                      classes: np.ndarray, *, var: np.ndarray | None = None, C: float = 1.0,
                      max_iter: int = 2000, n_samples_seen: int = 0) -> Any:
    """A fitted ``LinearProbe`` rebuilt from its arrays.

    Parameters
    ----------
    mean, scale : float [D]
        ``StandardScaler.mean_`` and ``scale_``.
    coef : float [K', D]
    intercept : float [K']
        ``LogisticRegression.coef_`` and ``intercept_`` (``K' = 1`` for two classes).
    classes : int [K]
        Label of each probability column.
    var : float [D], optional
        ``StandardScaler.var_`` (default ``scale ** 2``).
    C, max_iter : hyperparameters recorded on the probe.
    n_samples_seen : int

    Returns
    -------
    LinearProbe
        ``predict_proba`` / ``predict`` give what the original probe gave.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from sparsenu.models.probe import LinearProbe

    mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
    coef, intercept = np.atleast_2d(np.asarray(coef, np.float64)), np.asarray(intercept, np.float64).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    d, k = mean.shape[0], classes.shape[0]
    k_rows = 1 if k == 2 else k
    if mean.ndim != 1 or scale.shape != (d,) or coef.shape != (k_rows, d) or intercept.shape != (k_rows,) or k < 2:
        raise ValueError(f"inconsistent probe arrays: mean {mean.shape}, scale {scale.shape}, coef {coef.shape}, "
                         f"intercept {intercept.shape}, classes {classes.shape}")
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = mean, scale
    scaler.var_ = np.asarray(var, np.float64) if var is not None else scale ** 2
    scaler.n_features_in_, scaler.n_samples_seen_ = d, int(n_samples_seen)
    logreg = LogisticRegression(C=float(C), max_iter=int(max_iter))
    logreg.coef_, logreg.intercept_, logreg.classes_ = coef, intercept, classes
    logreg.n_features_in_, logreg.n_iter_ = d, np.zeros(1, np.int32)
    probe = LinearProbe(C=float(C), max_iter=int(max_iter))
    probe.pipeline_ = Pipeline([("scale", scaler), ("logreg", logreg)])
    probe.classes_, probe.n_features_in_ = classes, d
    return probe


def load_probe(path: str | Path) -> Any:
    """Read a probe written by :func:`save_probe`.

    Returns
    -------
    LinearProbe
        Fitted; its fit metadata are in ``probe.metadata_`` (dict) and the file path in
        ``probe.path_``.

    Raises
    ------
    SparsenuError
        Missing file, not HDF5, not a probe file, a newer schema, or inconsistent arrays.
    """
    import h5py

    path = require_hdf5(path, what="probe file", expected="a probe written by save_probe")
    try:
        with h5py.File(path, "r") as f:
            schema = schema_attr(f)
            if schema != PROBE_SCHEMA:
                raise SparsenuError(f"{path}: not a probe file (schema {schema!r}, expected {PROBE_SCHEMA!r})")
            version = int(f.attrs.get("schema_version", 0))
            if version > PROBE_SCHEMA_VERSION:
                raise SparsenuError(f"{path}: probe schema version {version} is newer than this sparsenu reads "
                                    f"({PROBE_SCHEMA_VERSION}); upgrade sparsenu")
            arrays = {k: f[k][()] for k in ("scaler/mean", "scaler/scale", "scaler/var", "logreg/coef",
                                            "logreg/intercept", "logreg/classes")}
            attrs = dict(f.attrs)
    except KeyError as exc:
        raise SparsenuError(f"{path}: corrupt probe file (missing {exc})") from None
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read probe file ({exc})") from None
    try:
        probe = probe_from_arrays(arrays["scaler/mean"], arrays["scaler/scale"], arrays["logreg/coef"],
                                  arrays["logreg/intercept"], arrays["logreg/classes"], var=arrays["scaler/var"],
                                  C=float(attrs.get("C", 1.0)), max_iter=int(attrs.get("max_iter", 2000)),
                                  n_samples_seen=int(attrs.get("n_samples_seen", 0)))
        meta = json.loads(attrs.get("metadata", "{}") or "{}")
    except (ValueError, TypeError) as exc:
        raise SparsenuError(f"{path}: corrupt probe file ({exc})") from None
    probe.metadata_ = meta if isinstance(meta, dict) else {}
    probe.path_ = path
    return probe
