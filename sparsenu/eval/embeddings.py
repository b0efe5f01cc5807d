"""Frozen per-event embeddings: computing them, and the embeddings file format.

``compute_embeddings`` runs a frozen encoder (eval mode, no gradients, the
projection head is never involved: only ``LoadedModel.encoder``) over a
sparse-tensor dataset. ``embed_file`` is ``sparsenu embed``: it writes an
embeddings HDF5 file (``data_specs/embeddings.md``) atomically. ``load_embeddings``
reads one back as numpy arrays or a pandas DataFrame.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.schema import open_h5, require_hdf5
from sparsenu.errors import SparsenuError

__all__ = [
    "EMBEDDINGS_SCHEMA",
    "EMBEDDINGS_SCHEMA_VERSION",
    "compute_embeddings",
    "embed_file",
    "load_embeddings",
    "write_embeddings",
    "file_sha256",
    "dataset_kwargs_from_config",
    "open_eval_dataset",
]

EMBEDDINGS_SCHEMA = "sparsenu.embeddings"
EMBEDDINGS_SCHEMA_VERSION = 1

#: Datasets every sparse-tensor input file must hold (data_specs/sparse_tensor.md).
_SPARSE_REQUIRED = ("coords", "feats", "offsets", "event_id")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _to_device(x: Any, device: Any) -> Any:
    """Move a SparseTensor to ``device`` (no-op on CPU)."""
    import torch

    device = torch.device(device)
    if x.feats.device == device:
        return x
    if hasattr(x, "to"):
        return x.to(device)
    from sparsenu.sparse import SparseTensor

    return SparseTensor(x.coords.to(device), x.feats.to(device), stride=x.stride)


def compute_embeddings(
    encoder: Any,
    dataset: Any,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    desc: str = "embed",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of every event of ``dataset`` by a frozen encoder.

    Parameters
    ----------
    encoder : torch.nn.Module
        Maps a batched ``SparseTensor`` to a ``Tensor [B, D]`` (e.g.
        ``LoadedModel.encoder``; never the projection head). It is put in eval
        mode and run under ``torch.no_grad``; its training flag is restored.
    dataset : SparseH5Dataset
        Items ``{"views": [(coords, feats), ...], "label", "event_id", ...}``;
        only the first view is used. Pass a dataset without a transform
        (no augmentation) for evaluation.
    batch_size : int
        Events per forward pass.
    device : str or torch.device
        Where the encoder runs.
    progress : bool
        Show a tqdm bar.
    desc : str
        Label of the progress bar.

    Returns
    -------
    emb : ndarray float32 [E, D]
    labels : ndarray int64 [E] (-1 where unknown)
    event_ids : ndarray int64 [E]
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from sparsenu.data import collate_views

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_views)
    was_training = encoder.training
    encoder.eval()
    encoder.to(device)
    embs, labels, ids = [], [], []
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
                x = _to_device(batch["views"][0], device)
                z = encoder(x).detach().float().cpu().numpy()
                if not np.isfinite(z).all():
                    j = int(np.flatnonzero(~np.isfinite(z).all(axis=1))[0])
                    raise SparsenuError(
                        f"{getattr(dataset, 'path', 'input')}: the encoder gives non-finite embeddings for event_id "
                        f"{int(batch['event_ids'][j])} (features too large for float32 arithmetic?)")
                embs.append(z)
                labels.append(np.asarray(batch["labels"], dtype=np.int64))
                ids.append(np.asarray(batch["event_ids"], dtype=np.int64))
    finally:
        encoder.train(was_training)
    if not embs:
        dim = int(getattr(encoder, "embed_dim", 0))
        return np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.concatenate(embs).astype(np.float32, copy=False),
        np.concatenate(labels),
        np.concatenate(ids),
    )


# ----------------------------------------------------------------------------- model + dataset


def dataset_kwargs_from_config(config: Any) -> dict:
    """Dataset options a model was trained with that evaluation must repeat.

    Currently the input feature scale (``config.data.feature_scale`` when the
    training config has one); augmentations are deliberately *not* repeated.
    """
    out: dict = {}
    data = getattr(config, "data", None)
    if data is None and isinstance(config, Mapping):
        data = config.get("data")
    if data is None:
        return out
    scale = data.get("feature_scale") if isinstance(data, Mapping) else getattr(data, "feature_scale", None)
    if scale is not None:
        out["feature_scale"] = float(scale)
    return out


def _check_sparse_file(path: Path) -> int:
    """Validate a sparse-tensor input file (``data_specs/sparse_tensor.md``); return its event count."""

    from sparsenu.data.formats.sparse_h5 import open_sparse

    require_hdf5(path, expected="a sparse-tensor file (data_specs/sparse_tensor.md, written by "
                 "'sparsenu preprocess')")
    try:
        with open_sparse(path) as f:
            missing = [k for k in _SPARSE_REQUIRED if k not in f]
            if missing:
                raise SparsenuError(f"{path}: not a sparse-tensor file (missing datasets "
                                    f"{', '.join('/' + m for m in missing)})")
            return int(f["event_id"].shape[0])
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read HDF5 file ({exc})") from None


def open_eval_dataset(path: str | Path, config: Any = None, detector_type: str | None = None) -> Any:
    """A ``SparseH5Dataset`` for evaluation: no transform, one view.

    Parameters
    ----------
    path : path
        Sparse-tensor HDF5 file.
    config : training config, optional
        Its dataset options (feature scale) are repeated, see
        :func:`dataset_kwargs_from_config`.
    detector_type : str, optional
        The detector type of the model's training data (``LoadedModel.detector_type``): a file
        made by another detector type is refused.
    """
    from sparsenu.data import SparseH5Dataset
    from sparsenu.data.formats.base import detector_type as file_detector_type

    path = Path(path)
    _check_sparse_file(path)
    if detector_type is not None and (got := file_detector_type(path)) != detector_type:
        raise SparsenuError(f"{path}: made by a '{got}' detector, but the model was trained on "
                            f"'{detector_type}' data")
    return SparseH5Dataset(path, transform=None, n_views=1, **dataset_kwargs_from_config(config))


# ----------------------------------------------------------------------------- file format


def _config_string(config: Any) -> str:
    from sparsenu.config import to_dict

    try:
        return json.dumps(to_dict(config), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return json.dumps(str(config))


def write_embeddings(
    path: str | Path,
    embeddings: np.ndarray,
    event_id: np.ndarray,
    labels: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    probabilities: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    class_names: list[str] | None = None,
    fmt: str | None = None,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write an embeddings file atomically (``data_specs/embeddings.md``).

    Parameters
    ----------
    path : path
        Output HDF5 file, written through the I/O base
        (:func:`sparsenu.data.formats.base.atomic_output`): a crash never leaves a
        half-written file at ``path``. Its directory must exist.
    embeddings : array [E, D]
        Stored as float32.
    event_id : array [E] int
    labels : array [E] int, optional
        ``-1`` where unknown (all ``-1`` when omitted).
    attrs : mapping, optional
        Extra root attributes (strings/numbers); ``schema``, ``schema_version``,
        ``embed_dim``, ``n_events`` are always set.
    overwrite : bool
        Replace an existing file.
    probabilities : array [E, C], optional
        Class probabilities (e.g. softmax of the checkpoint's classifier head), stored as
        float32 ``/probabilities`` with ``/predicted`` = ``classes[argmax]`` (int64 [E]).
    classes : array [C] int, optional
        Class label of each probability column (default ``0 .. C-1``).
    class_names : list of C str, optional
        Default: :func:`sparsenu.eval.predict.class_names_for` ``(classes)``.
    fmt : {"hdf5", "root"}, optional
        Output format; default from the suffix (``.h5``/``.hdf5`` or ``.root``; any other
        suffix is an error). ROOT needs ``uproot`` (:mod:`sparsenu.eval.root_io`).
    inputs : paths
        Files the embeddings were computed from (checkpoint, input): ``path`` may not be
        one of them, even with ``overwrite``.

    Returns
    -------
    Path of the written file.
    """
    import h5py

    from sparsenu.eval.root_io import output_format

    path = Path(path)
    fmt = output_format(path, fmt)
    emb = np.asarray(embeddings, dtype=np.float32)
    ids = np.asarray(event_id, dtype=np.int64)
    lab = np.full(len(ids), -1, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if emb.ndim != 2 or ids.shape != (len(emb),) or lab.shape != (len(emb),):
        raise ValueError(f"expected embeddings [E, D], event_id [E], labels [E]; got "
                         f"{emb.shape}, {ids.shape}, {lab.shape}")
    prob = pred = cls = None
    if probabilities is not None:
        from sparsenu.eval.predict import class_columns

        prob, cls, class_names, pred = class_columns(probabilities, classes, class_names, len(emb))
    from sparsenu import __version__

    meta: dict[str, Any] = {"schema": EMBEDDINGS_SCHEMA, "schema_version": EMBEDDINGS_SCHEMA_VERSION,
                            "embed_dim": int(emb.shape[1]), "n_events": int(emb.shape[0]),
                            "sparsenu_version": __version__}
    if prob is not None and cls is not None:
        meta.update(n_classes=int(prob.shape[1]), classes=json.dumps([int(c) for c in cls]),
                    class_names=json.dumps(class_names))
    if fmt == "root":
        from sparsenu.data.formats.base import check_output
        from sparsenu.eval.root_io import write_embeddings_root

        check_output(path, overwrite, inputs)
        return write_embeddings_root(path, emb, ids, lab, {**meta, **(attrs or {})}, probabilities=prob,
                                     predicted=pred, overwrite=overwrite)
    from sparsenu.data.formats.base import atomic_output

    with atomic_output(path, overwrite, inputs=inputs) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("event_id", data=ids)
        f.create_dataset("labels", data=lab)
        if prob is not None:
            f.create_dataset("probabilities", data=prob)
            f.create_dataset("predicted", data=pred)
            f.create_dataset("classes", data=cls)
        for k, v in {**meta, **(attrs or {})}.items():
            f.attrs[k] = v if isinstance(v, (int, float, np.integer, np.floating)) else str(v)
    return path


def load_embeddings(path: str | Path, as_dataframe: bool = False) -> Any:
    """Read an embeddings file written by ``sparsenu embed`` (or the benchmark).

    Parameters
    ----------
    path : path
        Embeddings HDF5 file (``data_specs/embeddings.md``).
    as_dataframe : bool
        Return a ``pandas.DataFrame`` (columns ``event_id``, ``label``,
        ``emb_0`` .. ``emb_{D-1}``; file attributes in ``df.attrs``) instead of a dict.

    Returns
    -------
    dict with ``embeddings`` float32 [E, D], ``event_id`` int64 [E],
    ``labels`` int64 [E] (-1 unknown), ``attrs`` (dict of file attributes) and, when
    the file has them, ``probabilities`` float32 [E, C], ``predicted`` int64 [E],
    ``classes`` int64 [C], ``class_names`` (list of C str); or a DataFrame when
    ``as_dataframe`` (plus columns ``prob_<class name>`` and ``predicted``).
    ROOT files written by ``sparsenu embed -o X.root`` are read too.

    Raises
    ------
    SparsenuError
        Missing file, not HDF5 (or ROOT), or not an embeddings file.
    """

    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"embeddings file not found: {path}")
    from sparsenu.eval.root_io import is_root_file

    if is_root_file(path):
        from sparsenu.eval.root_io import load_embeddings_root

        try:
            root_out = load_embeddings_root(path)
        except SparsenuError:
            raise
        except Exception as exc:  # noqa: BLE001 - uproot's errors on a damaged file have no common base
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SparsenuError(f"{path}: corrupt or truncated embeddings file ({first})") from None
        return _embeddings_output(root_out, as_dataframe)
    require_hdf5(path)

    try:
        with open_h5(path) as f:
            out = _read_embeddings_h5(f, path)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        # h5py's errors on a truncated or damaged file (a chunk past the end of the file, a
        # broken object header): the file was written atomically, so it was damaged outside sparsenu
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparsenuError(f"{path}: corrupt or truncated embeddings file ({first})") from None
    return _embeddings_output(out, as_dataframe)


def _read_embeddings_h5(f: Any, path: Path) -> dict:
    schema = f.attrs.get("schema")
    if isinstance(schema, bytes):
        schema = schema.decode()
    if schema != EMBEDDINGS_SCHEMA or "embeddings" not in f:
        raise SparsenuError(
            f"{path}: not an embeddings file (schema {schema!r}, expected {EMBEDDINGS_SCHEMA!r})"
        )
    version = int(f.attrs.get("schema_version", 0))
    if version > EMBEDDINGS_SCHEMA_VERSION:
        raise SparsenuError(f"{path}: embeddings schema version {version} is newer than this "
                            f"sparsenu reads ({EMBEDDINGS_SCHEMA_VERSION}); upgrade sparsenu")
    out = {
        "embeddings": f["embeddings"][...].astype(np.float32, copy=False),
        "event_id": f["event_id"][...].astype(np.int64, copy=False),
        "labels": f["labels"][...].astype(np.int64, copy=False),
        "attrs": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()},
    }
    if "probabilities" in f:
        out["probabilities"] = f["probabilities"][...].astype(np.float32, copy=False)
        out["predicted"] = f["predicted"][...].astype(np.int64, copy=False)
        out["classes"] = f["classes"][...].astype(np.int64, copy=False)
        out["class_names"] = list(json.loads(out["attrs"].get("class_names", "[]")))
    n = len(out["event_id"])
    emb = out["embeddings"]
    if emb.ndim != 2 or emb.shape[0] != n or out["labels"].shape != (n,):
        raise SparsenuError(f"{path}: corrupt embeddings file (embeddings {emb.shape}, event_id "
                            f"{out['event_id'].shape}, labels {out['labels'].shape})")
    return out


def _embeddings_output(out: dict, as_dataframe: bool) -> Any:
    """``out`` itself, or as a DataFrame (event_id, label, emb_*, prob_<class>, predicted)."""
    if not as_dataframe:
        return out
    import pandas as pd

    emb = out["embeddings"]
    df = pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])])
    df.insert(0, "label", out["labels"])
    df.insert(0, "event_id", out["event_id"])
    if "probabilities" in out:
        for j, name in enumerate(out["class_names"]):
            df[f"prob_{name}"] = out["probabilities"][:, j]
        df["predicted"] = out["predicted"]
    df.attrs.update(out["attrs"])
    return df


def embed_file(
    checkpoint: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
    fmt: str | None = None,
) -> str:
    """Write the embeddings of every event of a sparse-tensor file (``sparsenu embed``).

    Parameters
    ----------
    checkpoint : path
        A checkpoint written by ``sparsenu train`` (``best.pt`` or ``last.pt``).
        Only its encoder is used (the projection head is dropped).
    input : path
        Sparse-tensor HDF5 file (``data_specs/sparse_tensor.md``).
    output : path
        Embeddings file to write (``data_specs/embeddings.md``): HDF5 (``.h5``/``.hdf5``)
        or ROOT (``.root``, needs ``uproot``). When the checkpoint has a classifier head,
        the class probabilities (softmax of its logits) and the predicted class are
        stored too.
    batch_size : int
        Events per forward pass.
    overwrite : bool
        Replace an existing output file.
    progress : bool
        Show a progress bar.
    device : str
        Torch device for the encoder.
    fmt : {"hdf5", "root"}, optional
        Output format (``--format``); default from the output's suffix.

    Returns
    -------
    str
        A one-paragraph summary.

    Raises
    ------
    SparsenuError
        Missing or unreadable checkpoint, input that is not a sparse-tensor file,
        existing output without ``overwrite``, an output suffix that names no format,
        ROOT output without uproot. Nothing is written in that case.
    """
    from sparsenu.eval.root_io import output_format, require_uproot

    checkpoint, input, output = Path(checkpoint), Path(input), Path(output)
    fmt = output_format(output, fmt)
    if fmt == "root":
        require_uproot()
    from sparsenu.data.formats.base import check_output

    # before any work: an existing output without --overwrite, a missing or unwritable
    # directory, or an output that is the checkpoint or the input (--overwrite would destroy it)
    check_output(output, overwrite, inputs=(checkpoint, input))
    n_events = _check_sparse_file(input)
    from sparsenu.train import load_checkpoint

    model = load_checkpoint(checkpoint)
    dataset = open_eval_dataset(input, getattr(model, "config", None), model.detector_type)
    emb, labels, ids = compute_embeddings(model.encoder, dataset, batch_size=batch_size,
                                          device=device, progress=progress)
    attrs = {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(checkpoint),
        "method": str(getattr(model, "method", "")),
        "config": _config_string(getattr(model, "config", None)),
        "input": str(input.resolve()),
        "input_sha256": file_sha256(input),
    }
    from sparsenu.eval.predict import classifier_probabilities

    probs = classifier_probabilities(model, emb)
    write_embeddings(output, emb, ids, labels, attrs, overwrite=overwrite, probabilities=probs, fmt=fmt,
                     inputs=(checkpoint, input))
    n_known = int((labels >= 0).sum())
    return (
        f"wrote {output} ({fmt}): {len(emb)} of {n_events} events, embed_dim {emb.shape[1]}, "
        f"{n_known} labelled{'' if probs is None else f', probabilities of {probs.shape[1]} classes'}; "
        f"encoder of {checkpoint} (method {attrs['method'] or '?'}, sha256 {attrs['checkpoint_sha256'][:12]})"
    )
