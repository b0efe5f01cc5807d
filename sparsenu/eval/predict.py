"""Per-event class probabilities of a trained model on any sparse-tensor file (``sparsenu predict``).

Probabilities come from the checkpoint's classifier head (softmax of
``LoadedModel.classify`` logits, i.e. the head applied to the frozen embedding) or from a
linear probe fitted on the encoder's embeddings (:func:`sparsenu.eval.probe_io.load_probe`).
Labels are never needed: an input whose labels are all ``-1`` (real detector data) is
predicted like any other; they are copied to the output when known.

Predictions file (``data_specs/predictions.md``, schema ``sparsenu.predictions`` version 1),
HDF5 or ROOT like the embeddings file::

    /event_id       int64   [E]
    /labels         int64   [E]     copied from the input, -1 unknown
    /probabilities  float32 [E, C]  row sums 1
    /predicted      int64   [E]     classes[argmax(probabilities)]
    /classes        int64   [C]     class label of each column
    attrs: schema, schema_version, n_events, n_classes, class_names (JSON), source
           ("classifier head" | "linear probe"), checkpoint, checkpoint_sha256, method,
           probe, probe_sha256, probe_metadata (JSON), input, input_sha256, sparsenu_version
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.schema import require_hdf5
from sparsenu.errors import SparsenuError

__all__ = ["PREDICTIONS_SCHEMA", "PREDICTIONS_SCHEMA_VERSION", "class_names_for", "class_columns",
           "classifier_probabilities", "write_predictions", "load_predictions", "predict_file"]

PREDICTIONS_SCHEMA = "sparsenu.predictions"
PREDICTIONS_SCHEMA_VERSION = 1


def class_names_for(classes: Sequence[int] | np.ndarray) -> list[str]:
    """Names of class labels: ``sparsenu.sim.CLASS_NAMES[k]`` where defined, else ``"class_<k>"``."""
    from sparsenu.sim import CLASS_NAMES

    return [CLASS_NAMES[int(k)] if 0 <= int(k) < len(CLASS_NAMES) else f"class_{int(k)}" for k in classes]


def class_columns(probabilities: np.ndarray, classes: np.ndarray | Sequence[int] | None,
                  class_names: Sequence[str] | None, n_events: int
                  ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Check and complete the class columns of an output file.

    Parameters
    ----------
    probabilities : float [E, C]
    classes : int [C], optional
        Label of each column (default ``0 .. C-1``).
    class_names : C str, optional
        Default :func:`class_names_for` ``(classes)``.
    n_events : int
        Expected ``E``.

    Returns
    -------
    probabilities float32 [E, C], classes int64 [C], class_names list[str],
    predicted int64 [E] (``classes[argmax]``).
    """
    prob = np.asarray(probabilities, dtype=np.float32)
    if prob.ndim != 2 or len(prob) != n_events or prob.shape[1] < 1:
        raise ValueError(f"expected probabilities [{n_events}, C], got {prob.shape}")
    cls = np.arange(prob.shape[1], dtype=np.int64) if classes is None else np.asarray(classes, np.int64)
    names = class_names_for(cls) if class_names is None else [str(n) for n in class_names]
    if cls.shape != (prob.shape[1],) or len(names) != prob.shape[1]:
        raise ValueError(f"{prob.shape[1]} probability columns but classes {cls.shape} and {len(names)} names")
    predicted = cls[np.argmax(prob, axis=1)] if len(prob) else np.zeros(0, np.int64)
    return prob, cls, names, predicted.astype(np.int64)


def classifier_probabilities(model: Any, embeddings: np.ndarray, batch_size: int = 8192) -> np.ndarray | None:
    """Softmax of the checkpoint's classifier head on frozen embeddings.

    Parameters
    ----------
    model : LoadedModel
        ``model.heads["classifier"]`` maps ``[B, D]`` embeddings to ``[B, C]`` logits
        (``LoadedModel.classify`` = head(encoder(x))).
    embeddings : float [E, D]
        ``model.encoder`` outputs (:func:`sparsenu.eval.embeddings.compute_embeddings`).
    batch_size : int
        Rows per head evaluation.

    Returns
    -------
    float32 [E, C], or None when the model has no classifier head.
    """
    import torch

    head = getattr(model, "heads", {}).get("classifier")
    if head is None:
        return None
    param = next(head.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was = head.training
    head.eval()
    out = []
    try:
        with torch.no_grad():
            for a in range(0, len(embeddings), batch_size):
                z = torch.from_numpy(np.ascontiguousarray(embeddings[a:a + batch_size], np.float32)).to(device)
                out.append(torch.softmax(head(z).float(), dim=1).cpu().numpy())
    finally:
        head.train(was)
    if not out:
        n_classes = int(getattr(model.config.model, "n_classes", 0)) if hasattr(model, "config") else 0
        return np.zeros((0, n_classes), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def write_predictions(path: str | Path, event_id: np.ndarray, probabilities: np.ndarray, *,
                      labels: np.ndarray | None = None, classes: np.ndarray | Sequence[int] | None = None,
                      class_names: Sequence[str] | None = None, attrs: Mapping[str, Any] | None = None,
                      fmt: str | None = None, overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """Write a predictions file atomically (HDF5 or ROOT, by suffix or ``fmt``).

    Parameters
    ----------
    path : path
        ``.h5``/``.hdf5`` or ``.root`` (other suffixes need ``fmt``).
    event_id : int [E]
    probabilities : float [E, C]
    labels : int [E], optional
        Known labels (-1 unknown); all -1 when omitted.
    classes : int [C], optional
        Label of each column (default ``0 .. C-1``).
    class_names : C str, optional
    attrs : mapping, optional
        Extra metadata (checkpoint, probe, input, ...).
    fmt : {"hdf5", "root"}, optional
    overwrite : bool
    inputs : paths
        Files the predictions were computed from; ``path`` may not be one of them.

    Returns
    -------
    Path of the written file.
    """
    import h5py

    from sparsenu import __version__
    from sparsenu.data.formats.base import atomic_output, check_output
    from sparsenu.eval.root_io import output_format, write_event_tree

    fmt = output_format(path, fmt)
    ids = np.asarray(event_id, np.int64)
    lab = np.full(len(ids), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    if ids.ndim != 1 or lab.shape != ids.shape:
        raise ValueError(f"expected event_id [E] and labels [E], got {ids.shape} and {lab.shape}")
    prob, cls, names, pred = class_columns(probabilities, classes, class_names, len(ids))
    meta: dict[str, Any] = {"schema": PREDICTIONS_SCHEMA, "schema_version": PREDICTIONS_SCHEMA_VERSION,
                            "n_events": len(ids), "n_classes": prob.shape[1], "class_names": json.dumps(names),
                            "sparsenu_version": __version__, **(attrs or {})}
    if fmt == "root":
        check_output(path, overwrite, inputs)
        meta["classes"] = json.dumps([int(c) for c in cls])
        return write_event_tree(path, {"event_id": ids, "label": lab, "probabilities": prob, "predicted": pred},
                                meta, title="sparsenu predictions: one entry per event", overwrite=overwrite)
    with atomic_output(path, overwrite, inputs=inputs) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in (("event_id", ids), ("labels", lab), ("probabilities", prob), ("predicted", pred),
                          ("classes", cls)):
            f.create_dataset(name, data=arr)
        for k, v in meta.items():
            f.attrs[k] = v if isinstance(v, (int, float, np.integer, np.floating)) else str(v)
    return Path(path)


def load_predictions(path: str | Path, as_dataframe: bool = False) -> Any:
    """Read a predictions file (HDF5 or ROOT).

    Returns
    -------
    dict with ``event_id`` int64 [E], ``labels`` int64 [E], ``probabilities`` float32 [E, C],
    ``predicted`` int64 [E], ``classes`` int64 [C], ``class_names`` list, ``attrs``; or a
    DataFrame (``event_id``, ``label``, ``prob_<class name>``..., ``predicted``; attributes
    in ``df.attrs``) when ``as_dataframe``.

    Raises
    ------
    SparsenuError
        Missing file, unreadable, or not a predictions file.
    """
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"predictions file not found: {path}")
    try:
        out, attrs = _read_predictions(path)
    except SparsenuError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/uproot errors of a truncated or damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparsenuError(f"{path}: corrupt or truncated predictions file ({first})") from None
    if int(attrs.get("schema_version", 0)) > PREDICTIONS_SCHEMA_VERSION:
        raise SparsenuError(f"{path}: predictions schema version {attrs['schema_version']} is newer than this "
                            f"sparsenu reads ({PREDICTIONS_SCHEMA_VERSION}); upgrade sparsenu")
    if not as_dataframe:
        return out
    import pandas as pd

    df = pd.DataFrame({"event_id": out["event_id"], "label": out["labels"]})
    for j, name in enumerate(out["class_names"]):
        df[f"prob_{name}"] = out["probabilities"][:, j]
    df["predicted"] = out["predicted"]
    df.attrs.update(attrs)
    return df


def _read_predictions(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:

    from sparsenu.data.formats.schema import open_h5
    from sparsenu.eval.root_io import is_root_file, read_event_tree

    out: dict[str, Any]
    if is_root_file(path):
        branches, attrs = read_event_tree(path)
        if attrs.get("schema") != PREDICTIONS_SCHEMA:
            raise SparsenuError(f"{path}: not a predictions file (schema {attrs.get('schema')!r})")
        prob = branches["probabilities"].astype(np.float32, copy=False)
        out = {
            "event_id": branches["event_id"].astype(np.int64), "labels": branches["label"].astype(np.int64),
            "probabilities": prob.reshape(len(prob), int(attrs.get("n_classes", 0))),
            "predicted": branches["predicted"].astype(np.int64),
            "classes": np.asarray(json.loads(attrs.get("classes", "[]")), np.int64), "attrs": attrs}
    else:
        require_hdf5(path, not_hdf5="neither an HDF5 nor a ROOT file")
        with open_h5(path) as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            if attrs.get("schema") != PREDICTIONS_SCHEMA:
                raise SparsenuError(f"{path}: not a predictions file (schema {attrs.get('schema')!r})")
            out = {k: f[k][()] for k in ("event_id", "labels", "probabilities", "predicted", "classes")}
            out["attrs"] = attrs
    out["class_names"] = list(json.loads(attrs.get("class_names", "[]")))
    return out, attrs


def predict_file(
    checkpoint: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    probe: str | Path | None = None,
    fmt: str | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> str:
    """Class probabilities of every event of a sparse-tensor file (``sparsenu predict``).

    Parameters
    ----------
    checkpoint : path
        ``best.pt``/``last.pt`` of ``sparsenu train``.
    input : path
        Sparse-tensor HDF5 file; labels may be unknown (-1).
    output : path
        Predictions file, HDF5 or ROOT (``data_specs/predictions.md``).
    probe : path, optional
        Linear probe file (:func:`sparsenu.eval.probe_io.save_probe`) fitted on this
        checkpoint's embeddings; used instead of the classifier head.
    fmt : {"hdf5", "root"}, optional
        Output format (default from the suffix).
    batch_size : int
        Events per forward pass.
    overwrite, progress, device : as for ``sparsenu embed``.

    Returns
    -------
    str
        A short summary.

    Raises
    ------
    SparsenuError
        Bad checkpoint, input, probe or output; a checkpoint without a classifier head and
        no probe; a probe fitted on another checkpoint or another embedding size.
    """
    from sparsenu.eval.embeddings import (
        _check_sparse_file,
        _config_string,
        compute_embeddings,
        file_sha256,
        open_eval_dataset,
    )
    from sparsenu.eval.root_io import output_format, require_uproot
    from sparsenu.train import load_checkpoint

    checkpoint, input, output = Path(checkpoint), Path(input), Path(output)
    fmt = output_format(output, fmt)
    if fmt == "root":
        require_uproot()
    from sparsenu.data.formats.base import check_output

    # before any work: the output may be none of the files read (--overwrite would destroy them)
    check_output(output, overwrite, inputs=(checkpoint, input) + ((Path(probe),) if probe is not None else ()))
    n_events = _check_sparse_file(input)
    model = load_checkpoint(checkpoint)
    ckpt_sha = file_sha256(checkpoint)
    attrs: dict[str, Any] = {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": ckpt_sha,
                             "method": str(model.method), "config": _config_string(model.config),
                             "input": str(input.resolve()), "input_sha256": file_sha256(input)}
    fitted = None
    if probe is not None:
        from sparsenu.eval.probe_io import load_probe

        fitted = load_probe(probe)
        want = fitted.metadata_.get("checkpoint_sha256")
        if want and want != ckpt_sha:
            raise SparsenuError(f"{probe}: probe was fitted on the embeddings of another checkpoint "
                                f"(sha256 {str(want)[:12]}, {checkpoint} has {ckpt_sha[:12]})")
        if fitted.n_features_in_ != model.embed_dim:
            raise SparsenuError(f"{probe}: probe expects {fitted.n_features_in_}-dimensional embeddings, "
                                f"{checkpoint} gives {model.embed_dim}")
        attrs.update(source="linear probe", probe=str(Path(probe).resolve()), probe_sha256=file_sha256(probe),
                     probe_metadata=json.dumps(fitted.metadata_, sort_keys=True))
    elif "classifier" not in model.heads:
        raise SparsenuError(f"{checkpoint}: the {model.method} checkpoint has no classification head; "
                            "pass --probe PROBE.h5 (a linear probe fitted on its embeddings)")
    else:
        attrs["source"] = "classifier head"
    dataset = open_eval_dataset(input, model.config, model.detector_type)
    emb, labels, ids = compute_embeddings(model.encoder, dataset, batch_size=batch_size, device=device,
                                          progress=progress, desc="predict")
    if fitted is not None:
        prob = fitted.predict_proba(emb).astype(np.float32) if len(emb) else np.zeros((0, len(fitted.classes_)))
        classes = np.asarray(fitted.classes_, np.int64)
    else:
        head_prob = classifier_probabilities(model, emb)
        assert head_prob is not None  # the head was checked above
        prob = head_prob
        classes = np.arange(prob.shape[1], dtype=np.int64)
    write_predictions(output, ids, prob, labels=labels, classes=classes, attrs=attrs, fmt=fmt, overwrite=overwrite,
                      inputs=(checkpoint, input) + ((Path(probe),) if probe is not None else ()))
    known = labels >= 0
    summary = (f"wrote {output} ({fmt}): probabilities of {prob.shape[1]} classes for {len(ids)} of {n_events} "
               f"events from the {attrs['source']} ({checkpoint.name}, method {model.method})")
    if known.any():
        acc = float((classes[np.argmax(prob[known], axis=1)] == labels[known]).mean())
        summary += f"; accuracy on the {int(known.sum())} labelled events {acc:.3f}"
    else:
        summary += "; input unlabelled"
    return summary
