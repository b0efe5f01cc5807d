"""Test-time adaptation baselines of a suite: AdaBN and TENT on every test set (cached).

For one trained (method, seed) and one adaptation, every test set (nominal included) is
handled alone: a copy of the encoder is adapted on that set's events *without labels*
(:func:`sparsenu.eval.tta.adabn` or :func:`~sparsenu.eval.tta.tent`), the set is embedded by
the adapted copy, and scored with the linear probe fitted on nominal training embeddings of
the *unadapted* encoder (``probe.h5`` of the base evaluation) and with the classifier head
where the model has one. TENT minimises the entropy of that linear probe's softmax (the
classifier the headline numbers use; every method has one). The files in ``eval_dir`` are
those of :func:`sparsenu.eval.evaluate.evaluate_checkpoint` (``pred_<set>.h5``,
``head_<set>.h5``, ``rows.json``); no embeddings are kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.base import read_json, write_json_atomic
from sparsenu.eval.evaluate import EVAL_VERSION, score_predictions, write_set_predictions
from sparsenu.keys import config_hash, file_key, file_sha256

__all__ = ["evaluate_tta", "TTA_VERSION"]

#: Bumped when the adaptation changes meaning.
TTA_VERSION = 1


def _adapt(kind: str, encoder: Any, probe_module: Any, dataset: Any, settings: dict[str, Any],
           device: str) -> Any:
    import torch
    from torch.utils.data import DataLoader, Subset

    from sparsenu.data import collate_views
    from sparsenu.eval.tta import adabn, tent

    n = len(dataset)
    max_events = settings.get("max_events")
    if max_events is not None and n > max_events:
        # evenly spread events (labels cycle with the event id, so classes stay balanced)
        idx = np.unique(np.linspace(0, n - 1, int(max_events)).round().astype(int)).tolist()
        dataset = Subset(dataset, idx)
    loader = DataLoader(dataset, batch_size=int(settings["batch_size"]), shuffle=False, collate_fn=collate_views)
    torch.manual_seed(0)
    if kind == "adabn":
        return adabn(encoder, loader, device=device)
    if kind == "tent":
        return tent(encoder, probe_module, loader, lr=float(settings["lr"]), epochs=int(settings["epochs"]),
                    steps=int(settings["steps"]), device=device)
    raise ValueError(f"unknown test-time adaptation {kind!r}")


def evaluate_tta(
    checkpoint: Path,
    probe_path: Path,
    test_sets: dict[str, Path],
    eval_dir: Path,
    kind: str,
    *,
    batch_size: int = 64,
    eval_batch_size: int = 64,
    lr: float = 1e-3,
    epochs: int = 1,
    steps: int = 1,
    max_events: int | None = None,
    ece_bins: int = 15,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, dict]:
    """Adapt on, and score, every test set (cached per set in ``eval_dir/rows.json``).

    Parameters
    ----------
    checkpoint : path
        The trained (base) model.
    probe_path : path
        Its linear probe, fitted on nominal training embeddings of the unadapted encoder.
    test_sets : dict name -> sparse-tensor file
    eval_dir : path
        Cache directory of this (base, seed, adaptation).
    kind : {"adabn", "tent"}
    batch_size : int
        Events per adaptation batch.
    eval_batch_size : int
        Events per forward pass when embedding with the adapted encoder.
    lr, epochs, steps : TENT settings (:func:`sparsenu.eval.tta.tent`).
    max_events : int, optional
        Adapt on at most this many (evenly spread) events of each set; all are scored.
    ece_bins : int

    Returns
    -------
    dict test-set name -> metrics (accuracy, balanced_accuracy, ece, head_*, n_events).
    """
    from sparsenu.eval.embeddings import compute_embeddings, open_eval_dataset
    from sparsenu.eval.predict import classifier_probabilities
    from sparsenu.eval.probe_io import load_probe
    from sparsenu.eval.tta import probe_as_torch
    from sparsenu.train import load_checkpoint

    eval_dir.mkdir(parents=True, exist_ok=True)
    settings = {"kind": kind, "batch_size": batch_size, "lr": lr, "epochs": epochs, "steps": steps,
                "max_events": max_events}
    base = {"ckpt": file_sha256(checkpoint), "probe": file_sha256(probe_path), "settings": settings,
            "ece_bins": ece_bins, "v": [EVAL_VERSION, TTA_VERSION]}
    keys = {n: config_hash({**base, "test": file_key(p)}) for n, p in test_sets.items()}
    rows_path = eval_dir / "rows.json"
    cached = read_json(rows_path, "evaluation cache") or {}
    results = {n: cached[n]["metrics"] for n in test_sets
               if isinstance(cached.get(n), dict) and cached[n].get("key") == keys[n]
               and (eval_dir / f"pred_{n}.h5").is_file()}
    todo = [n for n in test_sets if n not in results]
    if not todo:
        return results
    model = load_checkpoint(checkpoint, map_location="cpu")
    probe = load_probe(probe_path)
    probe_module = probe_as_torch(probe).float()
    classes = np.asarray(probe.classes_)
    for name in todo:
        ds = open_eval_dataset(test_sets[name], model.config, model.detector_type)
        adapted = _adapt(kind, model.encoder, probe_module, ds, settings, device)
        emb, lab, ids = compute_embeddings(adapted, ds, batch_size=eval_batch_size, device=device,
                                           progress=progress, desc=f"{kind} {name}")
        proba = probe.predict_proba(emb) if len(emb) else np.zeros((0, len(classes)))
        metrics: dict[str, Any] = {"n_events": int((lab >= 0).sum())}
        write_set_predictions(eval_dir / f"pred_{name}.h5", ids, lab, proba, classes, f"linear probe, {kind}",
                              keys[name])
        metrics.update(score_predictions(lab, proba, classes, "", ece_bins))
        head_proba = classifier_probabilities(model, emb)
        if head_proba is not None:
            hc = np.arange(head_proba.shape[1])
            write_set_predictions(eval_dir / f"head_{name}.h5", ids, lab, head_proba, hc, f"classifier head, {kind}",
                                  keys[name])
            metrics.update(score_predictions(lab, head_proba, hc, "head_", ece_bins))
        results[name] = metrics
        cached[name] = {"key": keys[name], "metrics": metrics}
        write_json_atomic(rows_path, cached)
    return results
