"""Evaluation of one checkpoint on nominal and shifted test sets (cached per test set).

Works on a checkpoint and sparse-tensor files only: the frozen encoder embeds the nominal
training set (no augmentation), a linear probe and a cosine kNN are fitted there, and every
test set is scored with both, with the model's own classifier head where it has one, and
with the sensitivity (cosine distance between nominal and shifted embeddings of the same
events).

Per-event results are kept so that a report can compute bootstrap intervals, calibration
and confusion matrices without embedding anything again. In ``eval_dir``:

- ``probe.h5``: the fitted linear probe (:func:`sparsenu.eval.probe_io.save_probe`; usable
  with ``sparsenu predict --probe``);
- ``pred_<set>.h5``: the probe's class probabilities per event (predictions file,
  ``data_specs/predictions.md``: event ids, true labels, probabilities, predicted class);
- ``head_<set>.h5``: the same for the model's classifier head, where it has one;
- ``train.h5``, ``val.h5``, ``test_<set>.h5``: embeddings files (``data_specs/embeddings.md``);
- ``rows.json``: the metrics per test set and the nominal validation accuracy, each with the
  key of everything it depends on (checkpoint, data files, probe settings).
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.base import read_json, write_json_atomic
from sparsenu.errors import SparsenuError
from sparsenu.eval.calibration import expected_calibration_error
from sparsenu.eval.embeddings import compute_embeddings, load_embeddings, open_eval_dataset, write_embeddings
from sparsenu.eval.sensitivity import sensitivity
from sparsenu.keys import config_hash, file_key, file_sha256
from sparsenu.models.probe import KNNProbe, LinearProbe, accuracy, balanced_accuracy

__all__ = ["evaluate_checkpoint", "score_predictions", "write_set_predictions", "load_set_predictions",
           "EVAL_VERSION", "VALIDATION"]

#: Bumped when the evaluation changes meaning (cached rows are then recomputed).
EVAL_VERSION = 2

#: Key of the nominal validation entry in ``rows.json``.
VALIDATION = "__validation__"


def _embed_cached(model: Any, ckpt_sha: str, dataset_path: Path, out: Path, batch_size: int,
                  device: str, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels and event ids of a file, cached as an embeddings file."""
    key = config_hash({"ckpt": ckpt_sha, "data": file_key(dataset_path), "v": EVAL_VERSION})
    if out.is_file():
        try:
            e = load_embeddings(out)
            if e["attrs"].get("cache_key") == key:
                return e["embeddings"], e["labels"], e["event_id"]
        except SparsenuError:
            pass
    ds = open_eval_dataset(dataset_path, model.config, model.detector_type)
    emb, labels, ids = compute_embeddings(model.encoder, ds, batch_size=batch_size, device=device,
                                          progress=progress, desc=desc)
    write_embeddings(out, emb, ids, labels, {"cache_key": key, "input": str(dataset_path),
                                             "checkpoint_sha256": ckpt_sha, "method": model.method},
                     overwrite=True)
    return emb, labels, ids


def score_predictions(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray, prefix: str = "",
                      ece_bins: int = 15) -> dict[str, float]:
    """Accuracy, balanced accuracy and expected calibration error of class probabilities.

    Parameters
    ----------
    labels : int [E] (events with label < 0 are ignored)
    proba : float [E, C]
    classes : int [C], label of each column
    prefix : str
        Prepended to the metric names (``"head_"``).
    ece_bins : int
        Bins of :func:`sparsenu.eval.calibration.expected_calibration_error`.
    """
    m = labels >= 0
    if not m.any():
        return {}
    pred = classes[np.argmax(proba[m], axis=1)]
    return {f"{prefix}accuracy": accuracy(labels[m], pred),
            f"{prefix}balanced_accuracy": balanced_accuracy(labels[m], pred),
            f"{prefix}ece": expected_calibration_error(proba[m], labels[m], ece_bins, classes=classes)}


def write_set_predictions(path: Path, ids: np.ndarray, labels: np.ndarray, proba: np.ndarray,
                          classes: np.ndarray, source: str, key: str) -> Path:
    """A predictions file (``data_specs/predictions.md``) of one test set, atomically."""
    from sparsenu.eval.predict import write_predictions

    return write_predictions(path, ids, proba, labels=labels, classes=classes,
                             attrs={"source": source, "cache_key": key}, overwrite=True)


def load_set_predictions(path: Path) -> dict[str, Any]:
    """Read a file of :func:`write_set_predictions` (event_id, labels, probabilities,
    predicted, classes, attrs)."""
    from sparsenu.eval.predict import load_predictions

    return dict(load_predictions(path))


def _probe_metadata(model: Any, ckpt_sha: str, train_path: Path) -> dict[str, Any]:
    return {"method": str(model.method), "checkpoint_sha256": ckpt_sha, "train": str(train_path),
            "seed": int(getattr(model.config, "seed", 0))}


def evaluate_checkpoint(
    checkpoint: str | Path,
    train_path: Path,
    test_sets: dict[str, Path],
    eval_dir: Path,
    *,
    val_path: Path | None = None,
    knn_k: int = 20,
    batch_size: int = 64,
    device: str = "cpu",
    probe_c: float = 1.0,
    probe_max_iter: int = 2000,
    ece_bins: int = 15,
    nominal: str = "nominal",
    drop_embeddings: Collection[str] = (),
    progress: bool = True,
) -> dict[str, dict]:
    """Evaluate one checkpoint on several test sets (cached per test set).

    Parameters
    ----------
    checkpoint : path
        Trained model; its encoder is frozen (projection head dropped).
    train_path : path
        Nominal labelled training set (sparse-tensor file): the probes are fitted
        on its embeddings, without augmentation.
    test_sets : dict name -> path
        Must contain ``nominal``; the sensitivity of every other set is measured
        against it, matching events by event id.
    eval_dir : path
        Cache directory (see the module docstring for its files).
    val_path : path, optional
        Nominal validation set: the linear probe's accuracy there is returned under
        :data:`VALIDATION` (``{"accuracy": ...}``), the honest model-selection metric.
    knn_k, batch_size, device, probe_c, probe_max_iter
        Probe and embedding settings.
    ece_bins : int
        Confidence bins of the expected calibration error.
    nominal : str
        Name of the nominal test set.
    drop_embeddings : collection of str
        Test sets whose embeddings file is deleted once scored (their predictions stay).

    Returns
    -------
    dict test-set name -> metrics (accuracy, balanced_accuracy, ece, knn_accuracy,
    head_accuracy, head_balanced_accuracy, head_ece, sensitivity, n_events), plus
    :data:`VALIDATION` when ``val_path`` is given.
    """
    checkpoint = Path(checkpoint)
    eval_dir.mkdir(parents=True, exist_ok=True)
    ckpt_sha = file_sha256(checkpoint)
    eval_cfg = {"knn_k": knn_k, "probe_c": probe_c, "probe_max_iter": probe_max_iter, "ece_bins": ece_bins,
                "train": file_key(train_path), "ckpt": ckpt_sha, "v": EVAL_VERSION}
    nominal_key = file_key(test_sets[nominal])
    keys = {name: config_hash({**eval_cfg, "test": file_key(p), "nominal": nominal_key})
            for name, p in test_sets.items()}
    if val_path is not None:
        keys[VALIDATION] = config_hash({**eval_cfg, "val": file_key(val_path)})
    rows_path = eval_dir / "rows.json"
    cached = read_json(rows_path, "evaluation cache") or {}

    def _done(n: str) -> bool:
        c = cached.get(n)
        if not (isinstance(c, dict) and c.get("key") == keys[n]):
            return False
        return n == VALIDATION or (eval_dir / f"pred_{n}.h5").is_file()

    results = {n: cached[n]["metrics"] for n in keys if _done(n)}
    todo = [n for n in test_sets if n not in results]
    need_val = val_path is not None and VALIDATION not in results
    probe_path = eval_dir / "probe.h5"
    if not todo and not need_val and probe_path.is_file():
        return results

    from sparsenu.eval.predict import classifier_probabilities
    from sparsenu.eval.probe_io import save_probe
    from sparsenu.train import load_checkpoint

    model = load_checkpoint(checkpoint, map_location="cpu")
    emb_tr, lab_tr, _ = _embed_cached(model, ckpt_sha, train_path, eval_dir / "train.h5",
                                      batch_size, device, progress, "embed train")
    known = lab_tr >= 0
    linear = LinearProbe(C=probe_c, max_iter=probe_max_iter).fit(emb_tr[known], lab_tr[known])
    knn = KNNProbe(k=knn_k).fit(emb_tr[known], lab_tr[known])
    save_probe(probe_path, linear, {**_probe_metadata(model, ckpt_sha, train_path),
                                    "cache_key": config_hash(eval_cfg)}, overwrite=True)
    classes = np.asarray(linear.classes_)

    if need_val and val_path is not None:
        emb_v, lab_v, _ = _embed_cached(model, ckpt_sha, val_path, eval_dir / "val.h5",
                                        batch_size, device, progress, "embed val")
        mv = lab_v >= 0
        val_metrics = {"accuracy": accuracy(lab_v[mv], linear.predict(emb_v[mv])), "n_events": int(mv.sum())}
        results[VALIDATION] = val_metrics
        cached[VALIDATION] = {"key": keys[VALIDATION], "metrics": val_metrics}
        write_json_atomic(rows_path, cached)

    nom_path = eval_dir / f"test_{nominal}.h5"
    order = [nominal] + [n for n in todo if n != nominal] if nominal in todo else todo
    nom_emb = nom_ids = None
    for name in order:
        emb, lab, ids = _embed_cached(model, ckpt_sha, test_sets[name], eval_dir / f"test_{name}.h5",
                                      batch_size, device, progress, f"embed {name}")
        if name == nominal:
            nom_emb, nom_ids = emb, ids
        elif nom_emb is None:  # nominal row cached: its embeddings are too
            nom_emb, _, nom_ids = _embed_cached(model, ckpt_sha, test_sets[nominal], nom_path,
                                                batch_size, device, progress, f"embed {nominal}")
        m = lab >= 0
        metrics: dict[str, Any] = {"n_events": int(m.sum())}
        proba = linear.predict_proba(emb) if len(emb) else np.zeros((0, len(classes)))
        write_set_predictions(eval_dir / f"pred_{name}.h5", ids, lab, proba, classes, "linear probe", keys[name])
        metrics.update(score_predictions(lab, proba, classes, "", ece_bins))
        if m.any():
            metrics["knn_accuracy"] = accuracy(lab[m], knn.predict(emb[m]))
        head_proba = classifier_probabilities(model, emb)
        if head_proba is not None:
            head_classes = np.arange(head_proba.shape[1])
            write_set_predictions(eval_dir / f"head_{name}.h5", ids, lab, head_proba, head_classes,
                                  "classifier head", keys[name])
            metrics.update(score_predictions(lab, head_proba, head_classes, "head_", ece_bins))
        if name == nominal:
            metrics["sensitivity"] = 0.0
        else:
            assert nom_emb is not None and nom_ids is not None
            metrics["sensitivity"] = sensitivity(nom_emb, nom_ids, emb, ids).mean
        results[name] = metrics
        cached[name] = {"key": keys[name], "metrics": metrics}
        write_json_atomic(rows_path, cached)
        if name in drop_embeddings and name != nominal:
            (eval_dir / f"test_{name}.h5").unlink(missing_ok=True)
    return results
